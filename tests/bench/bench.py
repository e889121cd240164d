"""`make bench`: numbers, not pass/fail. Each is printed with a baseline measured
in the same run, and the ratio between them, beside the target it should beat.

- image size            vs the base image it is built on
- compose up -> ready   vs `docker run` of the same image doing nothing
- settings edit -> live vs one probe round trip (the resolution of the measure)
- controller RSS        vs a bare Python interpreter in the same container
- container memory      vs the same container's memory before any daemon ran
- delivered mail/s with metrics and JSON logs on vs both off (the log path's cost),
  and the controller's CPU seconds per 10,000 log lines
- accepted and delivered mail/s with DKIM signing on vs off (issue 8: at most 10 % less),
  and with OpenDKIM in the path but signing nothing (what the milter alone costs)
- accepted and delivered mail/s vs a hand-configured baseline container of the same
  Debian packages (tests/bench/baseline.py, issue 10: delivered >= 2 x)
- delivered mail/s through one edge vs one appliance, and two edges vs one; the drain
  time of an edge holding 1,000 messages (tests/bench/edge.py, issue 10)
"""

from __future__ import annotations

import functools
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.e2e.appliance import IMAGE, Appliance, running
from tests.e2e.compose import Project
from tests.e2e.data import BASE_FILES, base_settings
from tests.e2e.util import wait_until

ROWS: list[tuple[str, float, str, float, str]] = []


def bench_settings() -> dict:  # type: ignore[type-arg]
    """The e2e settings with a greylisting delay no probe outlasts. The sender-MX check
    is off: with no DNS server here, a new smtpd's first lookup takes a second to fail,
    which would be measured instead of the settings change."""
    settings = base_settings(300)
    settings["access"] = {"sender_mx_bogons": False}
    return settings


def row(
    name: str, value: float, unit: str, baseline: float, baseline_name: str, target: str
) -> None:
    ratio = value / baseline if baseline else float("nan")
    ROWS.append((name, value, unit, baseline, baseline_name))
    print(
        f"{name:<28} {value:10.3f} {unit:<3} | baseline {baseline:9.3f} {unit:<3} "
        f"({baseline_name}) | ratio {ratio:6.2f} | target {target}",
        flush=True,
    )


def image_size(client: docker.DockerClient) -> None:
    size = client.images.get(IMAGE).attrs["Size"] / 1e6
    base = client.images.get("debian:bookworm-slim").attrs["Size"] / 1e6
    row("image size", size, "MB", base, "debian:bookworm-slim", "<= 400 MB")


# The controller's script (a cmdline is NUL-separated: "mailctl run" never matches).
# "mailctl" alone also matches every daemon started with a config under /etc/mailctl
# (cyrmaster, lmtpd, opendkim), and the busiest of them was reported.
CONTROLLER = "/opt/mailctl/bin/mailctl"


def rss_kib(container: docker.models.containers.Container, pattern: str) -> float:
    script = (
        f"for p in /proc/[0-9]*; do "
        f"if grep -qa -- '{pattern}' $p/cmdline 2>/dev/null; then "
        "grep VmRSS $p/status; fi; done"
    )
    _, out = container.exec_run(["sh", "-c", script])
    values = [int(line.split()[1]) for line in out.decode().splitlines() if "VmRSS" in line]
    return float(max(values)) if values else 0.0


def cgroup_memory(container: docker.models.containers.Container) -> float:
    script = (
        "cat /sys/fs/cgroup/memory.current 2>/dev/null "
        "|| cat /sys/fs/cgroup/memory/memory.usage_in_bytes"
    )
    code, out = container.exec_run(["sh", "-c", script])
    if code != 0:
        raise RuntimeError(f"cannot read the container's memory use: {out!r}")
    return int(out.decode().split()[0]) / 1e6


def startup_and_memory(client: docker.DockerClient, runs: int = 3) -> None:
    bare = []
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run(["docker", "run", "--rm", "--entrypoint", "true", IMAGE], check=True)
        bare.append(time.monotonic() - t0)
    ready = []
    with tempfile.TemporaryDirectory() as tmp:
        settings_dir = Path(tmp)
        (settings_dir / "settings.yaml").write_text(yaml.safe_dump(bench_settings()))
        for name, content in BASE_FILES.items():
            (settings_dir / name).write_text(content)
        for i in range(runs):
            proj = Project(settings_dir)
            try:
                t0 = time.monotonic()
                proj.compose("up", "-d", "--no-build")
                app = proj.appliance()
                ready.append(time.monotonic() - t0)
                if i == runs - 1:
                    time.sleep(5)  # settle: idle numbers
                    ctl = rss_kib(app.container, CONTROLLER) / 1024
                    py = app.container.exec_run(
                        [
                            "/opt/mailctl/bin/python",
                            "-c",
                            "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])",
                        ]
                    )
                    bare_py = int(py.output.decode().strip()) / 1024
                    total = cgroup_memory(app.container)
                    live = change_to_live(app)
            finally:
                proj.down()
    row(
        "compose up -> ready",
        statistics.median(ready),
        "s",
        statistics.median(bare),
        "docker run true",
        "<= 3 s",
    )
    row("settings edit -> live", live[0], "s", live[1], "one RCPT probe", "<= 0.5 s")
    row("controller RSS (idle)", ctl, "MB", bare_py, "bare python3", "<= 60 MB")
    row("container memory (idle)", total, "MB", ctl, "controller alone", "<= 150 MB")


def change_to_live(app: Appliance) -> tuple[float, float]:
    """Median seconds from replacing settings.yaml until a new alias is known.

    Each probe is a new SMTP session on port 25 (an smtpd keeps the tables it
    started with): a known address gets the greylisting 450, an unknown one 550.
    """

    def probe(rcpt: str) -> int:
        return app.rcpt("bench@sender.mailctl.test", rcpt, helo="bench.mailctl.test")[0]

    def live(alias: str) -> bool:
        return probe(alias) in (250, 450)

    t0 = time.monotonic()
    for _ in range(20):
        probe("nobody@example.com")
    rtt = (time.monotonic() - t0) / 20
    settings = bench_settings()
    times = []
    for i in range(5):
        alias = f"bench{i}@example.com"
        settings["aliases"][alias] = "alice@example.com"
        t0 = time.monotonic()
        app.write_settings(settings)
        wait_until(functools.partial(live, alias), 30, f"{alias} live", interval=0)
        times.append(time.monotonic() - t0)
    return statistics.median(times), rtt


LOG_PATH = {
    "on": {"MAILCTL_METRICS": "on", "MAILCTL_LOG_FORMAT": "json"},
    "off": {"MAILCTL_METRICS": "off", "MAILCTL_LOG_FORMAT": "text"},
}


def cpu_seconds(container: docker.models.containers.Container, pattern: str) -> float:
    """utime + stime of the process whose command line holds `pattern`."""
    script = (
        "for p in /proc/[0-9]*; do "
        f"if grep -qa -- '{pattern}' $p/cmdline 2>/dev/null; then cut -d' ' -f14,15 $p/stat; fi; "
        "done"
    )
    _, out = container.exec_run(["sh", "-c", script])
    ticks = [sum(int(v) for v in line.split()) for line in out.decode().splitlines() if line]
    return max(ticks) / 100 if ticks else 0.0  # CLK_TCK is 100 on Linux


def smtp_source(c: docker.models.containers.Container, messages: int, sessions: int) -> None:
    """smtp-source in container `c` over loopback: 2 KB messages to alice@example.com."""
    code, out = c.exec_run(
        ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", "2048",
         "-f", "bench@example.com", "-t", "alice@example.com", "127.0.0.1:25"]
    )  # fmt: skip
    if code != 0:
        raise RuntimeError(f"smtp-source: {out.decode(errors='replace')}")


def queue_empty(c: docker.models.containers.Container) -> bool:
    _, q = c.exec_run(["postqueue", "-j"])
    return not q.strip()


def load(
    c: docker.models.containers.Container, messages: int, sessions: int
) -> tuple[float, float]:
    """Seconds until smtp-source has sent (accepted) and the queue is empty (delivered)."""
    t0 = time.monotonic()
    smtp_source(c, messages, sessions)
    accepted = time.monotonic() - t0
    wait_until(lambda: queue_empty(c), 600, "the queue never drained", interval=0.2)
    return accepted, time.monotonic() - t0


def delivery_run(
    client: docker.DockerClient,
    mode: str,
    messages: int = 2000,
    sessions: int = 10,
    *,
    dkim: str = "off",
) -> tuple[float, float, float]:
    """(accepted mail/s, delivered mail/s, controller CPU s per 10,000 log lines): smtp-source
    inside the container over loopback, 2 KB messages to one mailbox. Loopback is one of
    OpenDKIM's internal hosts. `dkim`: "off"; "attached", OpenDKIM in the path with its
    first key still pending, so it signs nothing (what the milter alone costs); "on",
    every message signed (RSA-2048)."""
    signing = dkim == "on"
    settings = bench_settings()
    settings["greylisting"]["enabled"] = False
    settings["dkim"] = {"enabled": dkim != "off", "dns_check_every": "1s"}
    with tempfile.TemporaryDirectory() as tmp:
        with running(
            client, settings, Path(tmp), extra_files=BASE_FILES, environment=LOG_PATH[mode]
        ) as app:
            c = app.container
            if signing:
                activate_dkim_key(app)
            elif dkim == "attached":
                wait_until(lambda: app.cli("dkim", "list")[1].strip(), 30, "a key", interval=0.2)
            cpu0 = cpu_seconds(c, CONTROLLER)
            lines0 = len(c.logs().splitlines())
            accepted, delivered = load(c, messages, sessions)
            cpu = cpu_seconds(c, CONTROLLER) - cpu0
            signed = c.logs().decode(errors="replace").count("DKIM-Signature field added")
            if signing and signed < messages:
                raise RuntimeError(f"only {signed} of {messages} messages were signed")
            lines = len(c.logs().splitlines()) - lines0
    return messages / accepted, messages / delivered, cpu / lines * 10_000


# No DNS here to publish a key on: the bench marks the first key active by hand, the
# way the rotator would once the name servers answer with it.
ACTIVATE = """
import time
from dataclasses import replace
from mailctl.apply import dkim
from mailctl.layout import Layout
with dkim.locked(Layout.from_env()) as state:
    for domain, keys in state.domains.items():
        keys[:] = [replace(k, state="active", activated=time.time()) for k in keys]
"""


def activate_dkim_key(app: Appliance) -> None:
    wait_until(lambda: app.cli("dkim", "list")[1].strip(), 30, "a DKIM key made", interval=0.2)
    code, out = app.exec("/opt/mailctl/bin/python", "-c", ACTIVATE)
    assert code == 0, out
    wait_until(
        lambda: "example.com" in app.exec("cat", "/etc/mailctl/current/opendkim/signing_table")[1],
        30,
        "the key in the signing table",
        interval=0.2,
    )
    time.sleep(1.0)  # the reload (SIGUSR1) that follows the swap: OpenDKIM re-reads its tables


def signing_cost(client: docker.DockerClient, rounds: int = 2) -> None:
    """Loopback submissions with DKIM off, attached (OpenDKIM in the path, signing
    nothing) and on (all with the log path on); medians. The attached row is the floor
    that any milter signer starts from, before a single signature."""
    modes = ("off", "attached", "on")
    got: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            got[mode].append(delivery_run(client, "on", dkim=mode))
            a, d, _ = got[mode][-1]
            print(f"  dkim {mode:<8}: accepted {a:7.1f}/s delivered {d:7.1f}/s", flush=True)
    med = {m: [statistics.median(v[i] for v in got[m]) for i in range(2)] for m in got}
    for mode, name in (("attached", "milter only"), ("on", "signing")):
        row(f"accepted mail/s ({name})", med[mode][0], "/s", med["off"][0], "dkim off",
            ">= 0.90 x baseline")  # fmt: skip
        row(f"delivered mail/s ({name})", med[mode][1], "/s", med["off"][1], "dkim off",
            ">= 0.90 x baseline")  # fmt: skip


def log_path_cost(client: docker.DockerClient, rounds: int = 2) -> None:
    """Alternately off and on, `rounds` times each; medians compared."""
    got: dict[str, list[tuple[float, float, float]]] = {"off": [], "on": []}
    for _ in range(rounds):
        for mode in ("off", "on"):
            got[mode].append(delivery_run(client, mode))
            a, d, c = got[mode][-1]
            print(f"  log path {mode:<3}: accepted {a:7.1f}/s delivered {d:7.1f}/s "
                  f"controller {c:.3f} CPU s per 10k lines", flush=True)  # fmt: skip
    med = {m: [statistics.median(v[i] for v in got[m]) for i in range(3)] for m in got}
    row("delivered mail/s (logs on)", med["on"][1], "/s", med["off"][1], "metrics+json off",
        ">= 0.95 x baseline")  # fmt: skip
    row("controller CPU / 10k lines", med["on"][2], "s", med["off"][2], "metrics+json off",
        "small")  # fmt: skip


def main() -> int:
    client = docker.from_env()
    print(f"benchmarks of {IMAGE} ({time.strftime('%Y-%m-%d %H:%M')})", flush=True)
    image_size(client)
    startup_and_memory(client)
    log_path_cost(client)
    signing_cost(client)
    from tests.bench import baseline, edge  # they import this module: not at the top

    baseline.build_baseline(client)
    baseline.side_by_side(client)
    edge.edge_throughput(client)
    edge.drain_time(client)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The side-by-side figure of `make bench`: accepted and delivered mail/s of the appliance
and of a baseline container measured in the same run.

The baseline (tests/bench/baseline/) is built here from the same Debian bookworm packages
(Postfix, Cyrus IMAP), configured by hand the way the Debian docs say, with the package
defaults for every performance knob: example.com is a Postfix virtual mailbox domain whose
mail goes over Cyrus's LMTP socket into user.alice. Both are loaded the same way:
smtp-source inside the container, over loopback, 2 KB messages to one mailbox; the two
are run alternately (appliance, baseline, appliance, baseline ...) and the medians compared.

    python tests/bench/baseline.py [ROUNDS]
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import docker.models.containers

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench import delivery_run, load, row
from tests.e2e.util import LABEL, RUN_ID, wait_until

BASELINE_DIR = Path(__file__).resolve().parent / "baseline"
BASELINE_IMAGE = "mailbench-baseline:latest"
# The message files of user.alice: "<uid>." in the directory `cyrus mbpath` names.
COUNT = "ls \"$(/usr/sbin/cyrus mbpath user.alice)\" | grep -c '^[0-9][0-9]*\\.$' || true"


def build_baseline(client: docker.DockerClient) -> str:
    """Build tests/bench/baseline/ as BASELINE_IMAGE (cached layers make it quick); its id."""
    image, _ = client.images.build(
        path=str(BASELINE_DIR), tag=BASELINE_IMAGE, quiet=True, rm=True, forcerm=True
    )
    return str(image.id)


def _sh(container: docker.models.containers.Container, script: str) -> tuple[int, str]:
    code, out = container.exec_run(["sh", "-c", script])
    return int(code), out.decode("utf-8", "replace")


def delivered_count(container: docker.models.containers.Container) -> int:
    code, out = _sh(container, COUNT)
    if code != 0 or not out.strip().isdigit():
        raise RuntimeError(f"cannot count user.alice's messages: {out!r}")
    return int(out.strip())


@contextlib.contextmanager
def baseline_container(
    client: docker.DockerClient,
) -> Iterator[docker.models.containers.Container]:
    """A fresh baseline container (no network but loopback), once Postfix runs."""
    container = client.containers.run(
        BASELINE_IMAGE,
        detach=True,
        name=f"bl-baseline-{uuid.uuid4().hex[:8]}",
        hostname="mail.example.com",
        network_mode="none",
        labels={LABEL: RUN_ID},
    )
    try:

        def ready() -> bool:
            container.reload()
            if container.status == "exited":
                raise RuntimeError(f"baseline exited:\n{container.logs().decode()[-3000:]}")
            logs = container.logs().decode("utf-8", "replace")
            return "baseline ready" in logs and _sh(container, "postfix status")[0] == 0

        wait_until(ready, 60, "the baseline never became ready", interval=0.2)
        yield container
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)


def baseline_run(
    client: docker.DockerClient, messages: int = 2000, sessions: int = 10
) -> tuple[float, float]:
    """(accepted mail/s, delivered mail/s) of a fresh baseline container, measured as
    bench.delivery_run measures the appliance; every message must reach user.alice."""
    with baseline_container(client) as c:
        before = delivered_count(c)
        accepted, delivered = load(c, messages, sessions)
        got = delivered_count(c) - before
        if got != messages:
            raise RuntimeError(f"user.alice got {got} of {messages} messages")
    return messages / accepted, messages / delivered


def side_by_side(client: docker.DockerClient, rounds: int = 2) -> None:
    """The appliance (log path on, as shipped) and the baseline, alternately, `rounds`
    times each; each run printed, then the medians with their ratio."""
    got: dict[str, list[tuple[float, float]]] = {"appliance": [], "baseline": []}
    for i in range(rounds):
        a, d, _ = delivery_run(client, "on")
        got["appliance"].append((a, d))
        print(f"  round {i + 1} appliance: accepted {a:7.1f}/s delivered {d:7.1f}/s", flush=True)
        a, d = baseline_run(client)
        got["baseline"].append((a, d))
        print(f"  round {i + 1} baseline : accepted {a:7.1f}/s delivered {d:7.1f}/s", flush=True)
    med = {k: [statistics.median(v[j] for v in runs) for j in range(2)] for k, runs in got.items()}
    row("accepted mail/s (vs hand)", med["appliance"][0], "/s", med["baseline"][0],
        "hand-configured", ">= 1 x baseline")  # fmt: skip
    row("delivered mail/s (vs hand)", med["appliance"][1], "/s", med["baseline"][1],
        "hand-configured", ">= 2 x baseline")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    rounds = int(args[0]) if args else 2
    client = docker.from_env()
    print(f"baseline image {build_baseline(client)[:19]} ({time.strftime('%Y-%m-%d %H:%M')})")
    side_by_side(client, rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

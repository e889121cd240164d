"""What the Kubernetes manifests (config/kubernetes) count on, with the real image.

Each appliance here runs the way the single-node overlay's pod would: the container's
env, capabilities (drop ALL, add the manifest's), no_new_privs (allowPrivilegeEscalation
false) and Docker's default seccomp profile (RuntimeDefault) come from the rendered
manifest; /config is laid out as the kubelet lays out a ConfigMap volume (a ..TIMESTAMP
directory, ..data pointing at it, settings.yaml -> ..data/settings.yaml) and
/run/secrets/mail as a Secret volume (the same, files 0400 and root's); every
volumeClaimTemplate is an empty directory, as a new PersistentVolume is (a Docker named
volume would be seeded from the image; a PersistentVolume is not); and ports below 1024
are privileged, as under containerd and CRI-O (Docker alone lets anyone bind them).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import smtplib
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from tests.e2e.appliance import HELO, IMAGE, PORTS, Appliance, crypt, message
from tests.e2e.util import LABEL, RUN_ID, wait_until
from tests.unit.test_kubernetes import (
    EDGE,
    EDGE_PORT,
    EDGE_ROLE,
    SINGLE_NODE,
    edge_container,
    mailbox_address,
    mailbox_container,
    pod_env,
    pod_names,
    pod_spec,
    probe_paths,
    render_overlay,
    secret_mounts,
    settings_text,
    statefulset,
)

OBJECTS = render_overlay(SINGLE_NODE)
CONTAINER = mailbox_container(OBJECTS)
CAPABILITIES: list[str] = CONTAINER["securityContext"]["capabilities"]["add"]
GRACE = int(pod_spec(OBJECTS)["terminationGracePeriodSeconds"])
(SECRET_DIR,) = secret_mounts(OBJECTS)
(SECRET_VOLUME,) = secret_mounts(OBJECTS).values()
CONFIG_DIR = "/config"
# Linux capability numbers (linux/capability.h), to read /proc/1/status.
CAP_NUMBERS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
    "NET_RAW": 13,
    "SYS_CHROOT": 18,
}

ALICE = ("alice@example.com", "alice-k8s-secret-1")
BOB = ("bob@example.com", "bob-k8s-secret-2")


class KubeletVolume:
    """A directory laid out and updated as the kubelet does a ConfigMap or Secret volume
    (pkg/volume/util/atomic_writer.go): the files in ..YYYY_MM_DD_HH_MM_SS.N, ..data a
    symlink to that directory, each name a symlink to ..data/name; an update writes a new
    directory, renames a new ..data link over the old one, then removes the old one."""

    def __init__(self, root: Path, mode: int) -> None:
        self.root = root
        self.mode = mode
        self.count = 0
        root.mkdir(parents=True)

    def current(self) -> Path:
        return self.root / os.readlink(self.root / "..data")

    def publish(self, files: dict[str, str]) -> Path:
        old = self.current() if (self.root / "..data").is_symlink() else None
        self.count += 1
        version = self.root / time.strftime(f"..%Y_%m_%d_%H_%M_%S.{self.count}", time.gmtime())
        version.mkdir(mode=0o755)
        for name, text in files.items():
            path = version / name
            path.write_text(text)
            os.chown(path, 0, 0)
            path.chmod(self.mode)
        link = self.root / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.root / "..data")  # the atomic step
        for name in files:
            if not (self.root / name).is_symlink():
                (self.root / name).symlink_to(f"..data/{name}")
        if old is not None:
            shutil.rmtree(old)
        return version


@dataclass
class Pod:
    """An appliance run as the manifest's pod, with its two kubelet volumes."""

    app: Appliance
    config: KubeletVolume
    secret: KubeletVolume
    token: str
    settings: dict[str, Any]

    def publish_settings(self, settings: dict[str, Any]) -> Path:
        self.settings = settings
        return self.config.publish({"settings.yaml": yaml.safe_dump(settings)})

    def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.app.ports[8080]}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 (loopback)
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def pod_settings() -> dict[str, Any]:
    """The ConfigMap's settings, with two users whose passwords come from the Secret and
    no greylisting (a test's first mail on port 25 would wait for it)."""
    settings: dict[str, Any] = yaml.safe_load(settings_text(OBJECTS))
    settings["users"] = [
        {"address": ALICE[0], "password_file": f"{SECRET_DIR}/alice"},
        {"address": BOB[0], "password_hash": crypt(BOB[1])},
    ]
    settings["greylisting"] = {"enabled": False}
    return settings


def start_pod(
    client: docker.DockerClient, where: Path, purpose: str, capabilities: list[str]
) -> Pod:
    """The image run as the single-node overlay's pod (see the module's docstring)."""
    config = KubeletVolume(where / "configmap", 0o644)
    secret = KubeletVolume(where / "secret", SECRET_VOLUME["defaultMode"])
    token = secrets.token_urlsafe(32)
    secret.publish({"api-token": token + "\n", "alice": ALICE[1] + "\n"})
    settings = pod_settings()
    config.publish({"settings.yaml": yaml.safe_dump(settings)})

    mounts = {
        str(config.root): {"bind": CONFIG_DIR, "mode": "ro"},
        str(secret.root): {"bind": SECRET_DIR, "mode": "ro"},
    }
    paths = {m["name"]: m["mountPath"] for m in CONTAINER["volumeMounts"]}
    for claim in statefulset(OBJECTS)["spec"]["volumeClaimTemplates"]:
        name = claim["metadata"]["name"]
        empty = where / "pv" / name
        empty.mkdir(parents=True)
        mounts[str(empty)] = {"bind": paths[name], "mode": "rw"}
    context = CONTAINER["securityContext"]
    container = client.containers.run(
        IMAGE,
        name=f"k8s-{purpose}-{RUN_ID}-{uuid.uuid4().hex[:6]}",
        detach=True,
        labels={LABEL: RUN_ID},
        hostname="mailserver-0",
        dns=["127.0.0.1"],  # nothing leaves this machine
        environment={e["name"]: e["value"] for e in CONTAINER["env"]},
        volumes=mounts,
        ports={f"{p}/tcp": ("127.0.0.1", None) for p in PORTS},
        cap_drop=context["capabilities"]["drop"],
        cap_add=capabilities,
        security_opt=(
            ["no-new-privileges:true"] if context["allowPrivilegeEscalation"] is False else []
        ),
        # containerd and CRI-O keep ports below 1024 privileged; Docker sets this to 0.
        sysctls={"net.ipv4.ip_unprivileged_port_start": "1024"},
    )
    pod = Pod(Appliance(container, config.root), config, secret, token, settings)
    try:
        pod.app.wait_ports()
    except BaseException:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)
        raise
    return pod


@contextlib.contextmanager
def running_pod(
    client: docker.DockerClient, where: Path, purpose: str, capabilities: list[str]
) -> Iterator[Pod]:
    pod = start_pod(client, where, purpose, capabilities)
    try:
        yield pod
    finally:
        with contextlib.suppress(docker.errors.APIError):
            pod.app.container.remove(force=True, v=True)


@pytest.fixture(scope="module")
def pod(client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    with running_pod(client, tmp_path_factory.mktemp("pod"), "pod", CAPABILITIES) as p:
        p.app.wait_ready()
        yield p


def rcpt_587(pod: Pod, to: str) -> int:
    """Alice's RCPT TO reply on submission (0 while Postfix reloads: ask again)."""
    return pod.app.rcpt(ALICE[0], to, port=587, login=ALICE)[0]


def deliver_on_25(app: Appliance, to: str, within: float = 60) -> tuple[str, str]:
    """A mail from outside to `to`, over SMTP to the container's address on its Docker
    network, port 25; 4xx answers (postscreen's first visit) are tried again.
    ("", why) when it was not accepted in time."""
    mid, text = message("someone@outside.test", to, subject="from the docker network")
    deadline = time.monotonic() + within
    why = ""
    while time.monotonic() < deadline:
        try:
            with smtplib.SMTP(app.ip, 25, timeout=15) as smtp:
                smtp.ehlo(HELO)
                smtp.sendmail("someone@outside.test", [to], text)
                return mid, ""
        except (OSError, smtplib.SMTPException) as exc:
            why = f"{type(exc).__name__}: {exc}"
            time.sleep(1)
    return "", why


def capabilities_of_pid_1(app: Appliance) -> tuple[int, str]:
    code, out = app.exec("cat", "/proc/1/status")
    assert code == 0, out
    fields = dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)
    return int(fields["CapEff"], 16), fields["NoNewPrivs"].strip()


# --- (a) a ConfigMap update: the kubelet swaps ..data ----------------------------------


def test_configmap_data_swap_applies_new_settings(pod: Pod) -> None:
    settings_link = pod.config.root / "settings.yaml"
    assert os.readlink(settings_link) == "..data/settings.yaml"
    assert rcpt_587(pod, "k8s-swap@example.com") == 550
    revision = pod.app.readyz()[1]["revision"]

    old = pod.config.current()
    changed = {**pod.settings, "aliases": {"k8s-swap@example.com": [ALICE[0]]}}
    new = pod.publish_settings(changed)
    assert not old.exists() and new != old
    assert os.readlink(settings_link) == "..data/settings.yaml"  # never touched
    wait_until(lambda: rcpt_587(pod, "k8s-swap@example.com") == 250, 30, "the alias live")
    assert pod.app.readyz()[1]["revision"] != revision

    # And the next swap too (the watcher follows the new ..data, not the old directory).
    pod.publish_settings({k: v for k, v in changed.items() if k != "aliases"})
    wait_until(lambda: rcpt_587(pod, "k8s-swap@example.com") == 550, 30, "the alias gone")
    wait_until(lambda: pod.app.readyz()[0] == 200, 30, "ready after the swaps")


# --- (b) Secret files, 0400 and root's ------------------------------------------------


def test_secret_files_of_mode_0400_are_read(pod: Pod) -> None:
    for name in ("api-token", "alice"):
        code, out = pod.app.exec("stat", "-L", "-c", "%a %u %g", f"{SECRET_DIR}/{name}")
        assert (code, out.split()) == (0, ["400", "0", "0"]), out
    assert SECRET_VOLUME["defaultMode"] == 0o400

    # The user's password from the Secret (password_file) logs in.
    assert pod.app.can_login(*ALICE)
    assert not pod.app.can_login(ALICE[0], "not-" + ALICE[1])

    # The admin token from the Secret (MAILCTL_API_TOKEN_FILE) opens the admin API.
    alias = {"address": "k8s-api@example.com", "targets": [BOB[0]]}
    code, body = pod.api("POST", "/aliases", pod.token, alias)
    assert code == 201, body
    assert rcpt_587(pod, "k8s-api@example.com") == 250
    code, body = pod.api("DELETE", "/aliases/k8s-api@example.com", pod.token)
    assert code == 200, body
    # ... and nothing else does.
    wrong = secrets.token_urlsafe(32)
    assert pod.api("POST", "/aliases", wrong, alias)[0] == 403
    assert pod.api("GET", "/users", wrong)[0] == 403


# --- (c) the probes -----------------------------------------------------------------


def test_probe_endpoints_answer_as_the_manifest_expects(pod: Pod) -> None:
    probes = probe_paths(CONTAINER)
    assert set(probes) == {"startupProbe", "livenessProbe", "readinessProbe"}
    for kind, (path, port) in probes.items():
        url = f"http://127.0.0.1:{pod.app.ports[port]}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            body = json.loads(resp.read())
            assert resp.status == 200, (kind, body)
        if path == "/readyz":
            assert body["daemons"]["postfix"]["pid"], body
        else:
            assert body == {"status": "alive"}


def test_readiness_goes_false_while_a_settings_change_is_refused(pod: Pod) -> None:
    """What the readinessProbe sees when a ConfigMap edit is wrong: 503 naming it, while
    the liveness probe's /healthz stays 200 (the pod is not killed for a typo)."""
    good = dict(pod.settings)
    pod.publish_settings({**good, "smtp": {"mesage_size_limit": 1}})

    def refused() -> bool:
        code, body = pod.app.readyz()
        return code == 503 and "smtp.mesage_size_limit" in " ".join(body["problems"])

    wait_until(refused, 30, "a 503 naming the setting")
    url = f"http://127.0.0.1:{pod.app.ports[8080]}/healthz"
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
    pod.publish_settings(good)
    wait_until(lambda: pod.app.readyz()[0] == 200, 30, "ready again")


# --- (d) exactly the manifest's capabilities ----------------------------------------


def test_manifest_capabilities_are_enough_to_deliver_mail(pod: Pod) -> None:
    effective, no_new_privs = capabilities_of_pid_1(pod.app)
    assert effective == sum(1 << CAP_NUMBERS[c] for c in CAPABILITIES)
    assert no_new_privs == "1"
    mid, why = deliver_on_25(pod.app, ALICE[0])
    assert mid, f"{why}\n{pod.app.logs()[-3000:]}"
    pod.app.wait_delivered(*ALICE, mid)


def test_graceful_stop_within_the_grace_period(client: docker.DockerClient, tmp_path: Path) -> None:
    """SIGTERM, as the kubelet sends it: every daemon stops (KILL lets the controller
    signal those of other users) well before terminationGracePeriodSeconds."""
    with running_pod(client, tmp_path, "stop", CAPABILITIES) as p:
        p.app.wait_ready()
        t0 = time.monotonic()
        p.app.container.stop(timeout=GRACE)
        took = time.monotonic() - t0
        result = p.app.container.wait(timeout=10)
        logs = p.app.logs()
        assert result["StatusCode"] == 0, logs[-3000:]
        assert "all daemons stopped" in logs, logs[-3000:]
        assert "Traceback" not in logs, logs[-3000:]
        assert took < GRACE / 2, took


def problems_without(pod: Pod) -> list[str]:
    """The first thing that does not work: ready, a mail in on port 25, a clean stop."""
    try:
        pod.app.wait_ready(timeout=40)
    except AssertionError as exc:
        return [f"not ready: {str(exc)[-400:]}"]
    mid, why = deliver_on_25(pod.app, ALICE[0], within=30)
    if not mid:
        return [f"port 25: {why}"]
    try:
        pod.app.wait_delivered(*ALICE, mid, timeout=20)
    except AssertionError:
        return ["not delivered"]
    pod.app.container.stop(timeout=GRACE)
    logs = pod.app.logs()
    if pod.app.container.wait(timeout=10)["StatusCode"] != 0 or "Traceback" in logs:
        return [f"no clean stop: {logs[-400:]}"]
    return []


@pytest.mark.parametrize("missing", sorted(CAPABILITIES))
def test_each_manifest_capability_is_needed(
    client: docker.DockerClient, tmp_path: Path, missing: str
) -> None:
    fewer = [c for c in CAPABILITIES if c != missing]
    with running_pod(client, tmp_path, f"no-{missing.lower().replace('_', '')}", fewer) as p:
        found = problems_without(p)
    print(f"\nwithout {missing}: {found}")
    assert found, f"the appliance works without {missing}: drop it from the manifest"


def test_service_link_variables_do_not_stop_the_controller(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """A Service named `mail` in the namespace gives every pod MAIL_SERVICE_HOST,
    MAIL_PORT, ... (unless enableServiceLinks is false, as in our manifests): the
    controller takes them for what they are, not for misspelt settings, and starts."""
    assert pod_spec(OBJECTS)["enableServiceLinks"] is False
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(pod_settings()))
    (tmp_path / "alice").write_text(ALICE[1])
    container = client.containers.run(
        IMAGE,
        name=f"k8s-links-{RUN_ID}-{uuid.uuid4().hex[:6]}",
        detach=True,
        labels={LABEL: RUN_ID},
        dns=["127.0.0.1"],
        volumes={
            str(tmp_path): {"bind": CONFIG_DIR, "mode": "ro"},
            str(tmp_path / "alice"): {"bind": f"{SECRET_DIR}/alice", "mode": "ro"},
        },
        environment={
            "MAIL_SERVICE_HOST": "10.96.0.25",
            "MAIL_PORT": "tcp://10.96.0.25:25",
            "MAIL_PORT_25_TCP_ADDR": "10.96.0.25",
        },
    )
    try:
        wait_until(
            lambda: "controller running" in container.logs().decode("utf-8", "replace"),
            60,
            lambda: container.logs().decode("utf-8", "replace")[-2000:],
        )
        container.reload()
        assert container.status == "running"
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True, v=True)


# --- (e) the edge overlay's pod -------------------------------------------------------


def test_edge_pod_of_the_edge_overlay_gets_ready(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """An edge of the edge overlay as the kubelet would run it: the StatefulSet's env
    for its second pod (MAIL_ROLE=edge, MAIL_HOSTNAME and MAIL_EDGE__MAILBOX_HOST
    expanded from the downward API's pod name and namespace, MAIL_EDGES=[]), the shared
    ConfigMap (which names `edges` for the mailbox node), the Secret, the container's
    capabilities and empty claims. It gets ready without a mailbox node, greets with its
    own name, routes to the mailbox pod's name, opens neither submission nor an edge
    port of its own, and stops within its grace period."""
    objects = render_overlay(EDGE)
    container = edge_container(objects)
    pod = pod_names(objects, EDGE_ROLE)[1]
    env = pod_env(container, pod)
    config = KubeletVolume(tmp_path / "configmap", 0o644)
    config.publish({"settings.yaml": settings_text(objects, EDGE_ROLE)})
    (secret_dir,) = secret_mounts(objects, EDGE_ROLE)
    secret = KubeletVolume(
        tmp_path / "secret", secret_mounts(objects, EDGE_ROLE)[secret_dir]["defaultMode"]
    )
    secret.publish({"api-token": secrets.token_urlsafe(32) + "\n"})
    mounts = {
        str(config.root): {"bind": CONFIG_DIR, "mode": "ro"},
        str(secret.root): {"bind": secret_dir, "mode": "ro"},
    }
    paths = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for claim in statefulset(objects, EDGE_ROLE)["spec"]["volumeClaimTemplates"]:
        empty = tmp_path / "pv" / claim["metadata"]["name"]
        empty.mkdir(parents=True)
        mounts[str(empty)] = {"bind": paths[claim["metadata"]["name"]], "mode": "rw"}
    context = container["securityContext"]
    grace = int(pod_spec(objects, EDGE_ROLE)["terminationGracePeriodSeconds"])
    run = client.containers.run(
        IMAGE,
        name=f"k8s-edge-{RUN_ID}-{uuid.uuid4().hex[:6]}",
        detach=True,
        labels={LABEL: RUN_ID},
        hostname=pod,
        dns=["127.0.0.1"],  # nothing leaves this machine (the mailbox name never resolves)
        environment=env,
        volumes=mounts,
        ports={f"{p}/tcp": ("127.0.0.1", None) for p in PORTS},
        cap_drop=context["capabilities"]["drop"],
        cap_add=context["capabilities"]["add"],
        security_opt=["no-new-privileges:true"],
        sysctls={"net.ipv4.ip_unprivileged_port_start": "1024"},
    )
    try:
        app = Appliance(run, config.root)
        app.wait_ports()
        app.wait_ready(timeout=120)
        code, out = app.exec("postconf", "-h", "myhostname", "config_directory")
        assert code == 0, out
        hostname, config_directory = out.split()
        assert hostname == env["MAIL_HOSTNAME"] == f"{pod}.mx.example.com"
        assert hostname != yaml.safe_load(settings_text(objects))["hostname"]
        code, out = app.exec("cat", f"{config_directory}/edge_transport")
        assert code == 0 and f"[{mailbox_address(objects)}]:{EDGE_PORT}" in out, out
        code, out = app.exec("postconf", "-M")
        assert code == 0, out
        services = {line.split()[0] for line in out.splitlines() if line.strip()}
        assert not services & {"submission", "smtps", "587", "465", str(EDGE_PORT)}, services
        t0 = time.monotonic()
        run.stop(timeout=grace)
        took = time.monotonic() - t0
        logs = app.logs()
        assert run.wait(timeout=10)["StatusCode"] == 0, logs[-3000:]
        assert "Traceback" not in logs, logs[-3000:]
        assert took < grace / 2, took
    finally:
        with contextlib.suppress(docker.errors.APIError):
            run.remove(force=True, v=True)

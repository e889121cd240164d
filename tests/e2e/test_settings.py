"""Issue 2: settings are validated at start and applied live; a bad change keeps the old config."""

from __future__ import annotations

import copy
import smtplib
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, start
from tests.e2e.conftest import PASSWORDS, base_settings

ALICE = ("alice@example.com", PASSWORDS["alice@example.com"])


def rcpt_code(app: Appliance, rcpt: str) -> int:
    try:
        client = app.smtp(587, login=ALICE)
    except (smtplib.SMTPException, OSError):
        return 0  # Postfix is reloading: try again
    try:
        client.mail(ALICE[0])
        return client.rcpt(rcpt)[0]
    except smtplib.SMTPException:
        return 0
    finally:
        client.close()


def wait_for(predicate: Any, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_alias_and_user_added_live_without_restart(fresh: Appliance) -> None:
    pid = fresh.pid_of("postfix")
    settings = base_settings()
    settings["users"][1]["password_file"] = "/config/bob.pw"
    assert rcpt_code(fresh, "sales@example.com") == 550
    settings["aliases"]["sales@example.com"] = "bob@example.com"
    fresh.write_settings(settings)
    seconds = wait_for(lambda: rcpt_code(fresh, "sales@example.com") == 250)
    print(f"\nalias live {seconds:.3f}s after the settings file was replaced")

    settings["users"].append({"address": "carol@example.com", "password_hash": crypt("carol-pw-3")})
    fresh.write_settings(settings)
    seconds = wait_for(lambda: rcpt_code(fresh, "carol@example.com") == 250)
    print(f"user live {seconds:.3f}s after the settings file was replaced")
    client = fresh.smtp(587, login=("carol@example.com", "carol-pw-3"))
    mid, text = message("carol@example.com", "carol@example.com", "to myself")
    client.sendmail("carol@example.com", ["carol@example.com"], text)
    client.quit()
    fresh.wait_delivered("carol@example.com", "carol-pw-3", mid)
    assert fresh.pid_of("postfix") == pid  # reloaded, not restarted
    assert fresh.readyz()[0] == 200


def test_same_content_is_a_no_op(fresh: Appliance) -> None:
    before = fresh.readyz()[1]["revision"]
    settings_file = fresh.settings_dir / "settings.yaml"
    settings_file.write_text(settings_file.read_text())  # in-place write, same bytes
    time.sleep(1.0)
    assert fresh.readyz()[1]["revision"] == before


BAD_LIVE = {
    "wrong type": ({"smtp": {"message_size_limit": "huge"}}, "smtp.message_size_limit"),
    "unknown key": ({"smtp": {"mesage_size_limit": 1}}, "smtp.mesage_size_limit"),
    "local and virtual": ({"local_domains": ["example.com"]}, "domains"),
    "main.cf injection": ({"smtp": {"banner": "hi\nmynetworks = 0.0.0.0/0"}}, "smtp.banner"),
}


@pytest.mark.parametrize("case", list(BAD_LIVE))
def test_bad_live_change_keeps_old_config_serving(fresh: Appliance, case: str) -> None:
    change, setting = BAD_LIVE[case]
    settings = base_settings()
    for key, value in change.items():
        if isinstance(value, dict):
            settings[key] = {**settings.get(key, {}), **value}
        else:
            settings[key] = value
    revision = fresh.readyz()[1]["revision"]
    fresh.write_settings(settings)

    def refused() -> bool:
        code, body = fresh.readyz()
        return code == 503 and setting in " ".join(body["problems"])

    wait_for(refused, timeout=15)
    body = fresh.readyz()[1]
    assert body["revision"] == revision
    assert setting in fresh.logs()
    # The old config still serves mail.
    mid, text = message(ALICE[0], "bob@example.com", f"still working after {case}")
    client = fresh.smtp(587, login=ALICE)
    client.sendmail(ALICE[0], ["bob@example.com"], text)
    client.quit()
    fresh.wait_delivered("bob@example.com", PASSWORDS["bob@example.com"], mid)
    code, out = fresh.exec("postconf", "-h", "mynetworks")
    assert code == 0, out
    assert out.strip() == "127.0.0.0/8, [::1]/128"


BAD_START: dict[str, tuple[dict[str, Any], str]] = {
    "wrong type": ({"users": "alice"}, "users"),
    "unknown key": ({"relay_everything": True}, "relay_everything"),
    "local and virtual": ({"local_domains": ["example.com"]}, "domains"),
    "injection": ({"hostname": "mail.example.com\nmynetworks = 0.0.0.0/0"}, "hostname"),
    "open relay network": ({"networks": ["0.0.0.0/0"]}, "networks.0"),
}


@pytest.mark.parametrize("case", list(BAD_START))
def test_invalid_settings_stop_the_controller_at_start(
    client: docker.DockerClient, tmp_path: Path, case: str
) -> None:
    change, setting = BAD_START[case]
    settings = copy.deepcopy(base_settings())
    settings.update(change)
    app = start(client, settings, tmp_path / "s", wait=False, extra_files={"bob.pw": "x\n"})
    try:
        result = app.container.wait(timeout=60)
        assert result["StatusCode"] != 0
        logs = app.logs()
        assert "cannot start" in logs and setting in logs, logs[-2000:]
    finally:
        app.container.remove(force=True, v=True)


def test_own_docker_network_is_refused_as_trusted(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    # Docker's default bridge: the container's own subnet (172.17.0.0/16 here).
    settings = base_settings()
    settings["networks"] = ["172.16.0.0/12"]
    app = start(client, settings, tmp_path / "s", wait=False, extra_files={"bob.pw": "x\n"})
    try:
        assert app.container.wait(timeout=60)["StatusCode"] != 0
        assert "open relay" in app.logs()
    finally:
        app.container.remove(force=True, v=True)


def test_kubernetes_configmap_symlink_swap_is_applied(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    """A ConfigMap volume: settings.yaml -> ..data/settings.yaml, ..data -> ..TIMESTAMP.

    Kubernetes updates it by writing a new ..TIMESTAMP directory and renaming a
    new ..data link over the old one; settings.yaml itself never changes."""
    import os

    import yaml

    root = tmp_path / "configmap"
    root.mkdir()

    def publish(settings: dict[str, Any], stamp: str) -> None:
        version = root / f"..{stamp}"
        version.mkdir()
        (version / "settings.yaml").write_text(yaml.safe_dump(settings))
        (version / "bob.pw").write_text(PASSWORDS["bob@example.com"] + "\n")
        tmp_link = root / "..data_tmp"
        tmp_link.symlink_to(version.name)
        os.replace(tmp_link, root / "..data")

    settings = base_settings()
    publish(settings, "2026_01_01_00_00_00.1")
    (root / "settings.yaml").symlink_to("..data/settings.yaml")
    (root / "bob.pw").symlink_to("..data/bob.pw")
    app = start(client, None, root)
    try:
        assert rcpt_code(app, "k8s@example.com") == 550
        settings["aliases"]["k8s@example.com"] = "alice@example.com"
        publish(settings, "2026_01_01_00_01_00.2")
        seconds = wait_for(lambda: rcpt_code(app, "k8s@example.com") == 250)
        print(f"\nConfigMap swap live after {seconds:.3f}s")
    finally:
        app.container.remove(force=True, v=True)

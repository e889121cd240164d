"""Issue 2: settings are validated at start and applied live; a bad change keeps the old config."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.appliance import Appliance, crypt
from tests.e2e.data import ALICE, BASE_FILES, PASSWORDS, base_settings
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until


def rcpt_code(app: Appliance, rcpt: str) -> int:
    """Alice's RCPT TO reply on 587 (0 while Postfix is reloading: try again)."""
    return app.rcpt(ALICE[0], rcpt, port=587, login=ALICE)[0]


def seconds_until(predicate: Any, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    wait_until(predicate, timeout, "the change to go live", interval=0.02)
    return time.monotonic() - t0


def test_alias_and_user_added_live_without_restart(fresh: Appliance) -> None:
    pid = fresh.pid_of("postfix")
    settings = base_settings()
    settings["users"][1]["password_file"] = "/config/bob.pw"
    assert rcpt_code(fresh, "sales@example.com") == 550
    settings["aliases"]["sales@example.com"] = "bob@example.com"
    fresh.write_settings(settings)
    seconds = seconds_until(lambda: rcpt_code(fresh, "sales@example.com") == 250)
    print(f"\nalias live {seconds:.3f}s after the settings file was replaced")

    settings["users"].append({"address": "carol@example.com", "password_hash": crypt("carol-pw-3")})
    fresh.write_settings(settings)
    seconds = seconds_until(lambda: rcpt_code(fresh, "carol@example.com") == 250)
    print(f"user live {seconds:.3f}s after the settings file was replaced")
    carol = ("carol@example.com", "carol-pw-3")
    mid, code, _ = fresh.send(carol[0], carol[0], port=587, login=carol, subject="to myself")
    assert code == 250
    fresh.wait_delivered("carol@example.com", "carol-pw-3", mid)
    assert fresh.pid_of("postfix") == pid  # reloaded, not restarted
    assert fresh.readyz()[0] == 200


def test_same_content_is_a_no_op(fresh: Appliance) -> None:
    before = fresh.readyz()[1]["revision"]
    settings_file = fresh.settings_dir / "settings.yaml"
    settings_file.write_text(settings_file.read_text())  # in-place write, same bytes
    time.sleep(1.0)
    assert fresh.readyz()[1]["revision"] == before


BAD_LIVE: dict[str, tuple[dict[str, Any], str]] = {
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

    wait_until(refused, 15, f"a 503 naming {setting}")
    body = fresh.readyz()[1]
    assert body["revision"] == revision
    assert setting in fresh.logs()
    # The old config still serves mail.
    mid, code, _ = fresh.send(ALICE[0], "bob@example.com", port=587, login=ALICE, subject=case)
    assert code == 250
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
    make_appliance: MakeAppliance, case: str
) -> None:
    change, setting = BAD_START[case]
    settings = copy.deepcopy(base_settings())
    settings.update(change)
    app = make_appliance(settings, wait=False, extra_files=BASE_FILES)
    result = app.container.wait(timeout=60)
    assert result["StatusCode"] != 0
    logs = app.logs()
    assert "cannot start" in logs and setting in logs, logs[-2000:]


def test_own_docker_network_is_refused_as_trusted(make_appliance: MakeAppliance) -> None:
    # Docker's default bridge: the container's own subnet (172.17.0.0/16 here).
    settings = base_settings()
    settings["networks"] = ["172.16.0.0/12"]
    app = make_appliance(settings, wait=False, extra_files=BASE_FILES)
    assert app.container.wait(timeout=60)["StatusCode"] != 0
    assert "open relay" in app.logs()


def test_kubernetes_configmap_symlink_swap_is_applied(
    make_appliance: MakeAppliance, tmp_path: Path
) -> None:
    """A ConfigMap volume: settings.yaml -> ..data/settings.yaml, ..data -> ..TIMESTAMP.

    Kubernetes updates it by writing a new ..TIMESTAMP directory and renaming a
    new ..data link over the old one; settings.yaml itself never changes."""
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
    app = make_appliance(None, settings_dir=root)
    assert rcpt_code(app, "k8s@example.com") == 550
    settings["aliases"]["k8s@example.com"] = "alice@example.com"
    publish(settings, "2026_01_01_00_01_00.2")
    seconds = seconds_until(lambda: rcpt_code(app, "k8s@example.com") == 250)
    print(f"\nConfigMap swap live after {seconds:.3f}s")

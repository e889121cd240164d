"""Issue 3: the guide's configuration conflicts are refused with the reason (P4, P9, S1).

`mailctl check` in the built image validates a settings directory the way the
controller does before anything goes live; a bad file is refused naming the
setting, and never echoes a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import yaml

from tests.e2e.appliance import IMAGE
from tests.e2e.util import LABEL, RUN_ID

HASH = "$6$saltsalt$" + "a" * 86
BASE: dict[str, Any] = {
    "hostname": "mail.example.com",
    "domains": ["example.com"],
    "users": [{"address": "alice@example.com", "password_hash": HASH}],
}


def check(client: docker.DockerClient, tmp_path: Path, settings: dict[str, Any]) -> str:
    """`mailctl check` on `settings`: '' when accepted, else what it printed."""
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(settings))
    try:
        client.containers.run(
            IMAGE,
            ["check"],
            remove=True,
            network_mode="none",
            labels={LABEL: RUN_ID},
            stderr=True,
            volumes={str(tmp_path): {"bind": "/config", "mode": "ro"}},
        )
    except docker.errors.ContainerError as exc:
        return (exc.stderr or b"").decode()
    return ""


REFUSED = [
    (
        {"domains": ["example.com", "mail.example.com"]},
        "domains: mail.example.com is also in the local names",
    ),
    ({"alias_domains": ["example.com"]}, "alias_domains: example.com is also in domains"),
    (
        {"alias_domains": ["forward.test"], "relay_domains": ["forward.test"]},
        "do not list domain forward.test in BOTH virtual_alias_domains and relay_domains",
    ),
    ({"relay_domains": ["example.com"]}, "relay_domains: example.com is also in domains"),
    ({"networks": ["0.0.0.0/0"]}, "networks.0: 0.0.0.0/0 is wider than /8"),
    (
        {"restrictions": {"recipient": ["permit_open_relay"]}},
        "'permit_open_relay' is neither a known restriction nor a class",
    ),
    (
        {"sasl": {"mechanism": "pam", "pwcheck_method": "auxprop"}},
        "auxprop reads sasldb2, so it needs sasl.mechanism: sasldb",
    ),
    ({"sasl": {"mechanism": "rimap"}}, "mechanism rimap needs the IMAP server"),
    ({"smtp": {"banner": "x\nmydestination = evil.test"}}, "smtp.banner"),
    (
        {"relay": {"host": "[smtp.isp.test]:587", "username": "u"}},
        "give both username and password_file",
    ),
    ({"aliases": {"alice@example.com": "bob@example.com"}}, "is also a user"),
    ({"unknown_key": 1}, "setting 'unknown_key': is not a known setting"),
]


@pytest.mark.parametrize(("change", "reason"), REFUSED, ids=[r[1][:40] for r in REFUSED])
def test_conflicting_settings_are_refused_with_the_reason(
    client: docker.DockerClient, tmp_path: Path, change: dict[str, Any], reason: str
) -> None:
    out = check(client, tmp_path, {**BASE, **change})
    assert reason in out, out


def test_good_settings_pass_and_a_bad_hash_is_not_echoed(
    client: docker.DockerClient, tmp_path: Path
) -> None:
    assert check(client, tmp_path, BASE) == ""
    secret = "my-clear-password-123"
    out = check(
        client,
        tmp_path,
        {**BASE, "users": [{"address": "alice@example.com", "password_hash": secret}]},
    )
    assert "users.0.password_hash" in out and secret not in out, out

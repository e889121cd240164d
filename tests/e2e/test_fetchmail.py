"""Issue 3: fetchmail pulls mail from a provider into local mailboxes (F1-F3).

The provider is a second appliance (Cyrus serves POP3 and IMAP), on the same
Docker network; the appliance under test finds it through extra_hosts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, running
from tests.e2e.data import SCREEN
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until

# The provider password is hostile on purpose: in a fetchmailrc a quote ends the
# string, and this one would add a command run on every poll.
HOSTILE = 'x" preconnect "touch /tmp/pwned'
PROVIDER_USERS = {"me@provider.test": HOSTILE, "keeper@provider.test": "keeper-pw-2"}
LOCAL_PW = "fetch-local-1"


def provider_settings() -> dict[str, Any]:
    return {
        "hostname": "mail.provider.test",
        "domains": ["provider.test"],
        "users": [{"address": a, "password_hash": crypt(p)} for a, p in PROVIDER_USERS.items()],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
    }


@pytest.fixture(scope="module")
def provider(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    with running(client, provider_settings(), tmp_path_factory.mktemp("provider")) as app:
        yield app


def seed(provider: Appliance, user: str, subject: str) -> str:
    smtp = provider.smtp(587, login=(user, PROVIDER_USERS[user]))
    mid, text = message(user, user, subject)
    smtp.sendmail(user, [user], text)
    smtp.quit()
    provider.wait_delivered(user, PROVIDER_USERS[user], mid)
    return mid


def count(provider: Appliance, user: str) -> int:
    return len(provider.message_ids(user, PROVIDER_USERS[user]))


def test_fetchmail_pop3s_and_imap_keep_and_wrong_password(
    make_appliance: MakeAppliance, provider: Appliance, tmp_path: Path
) -> None:
    pop_mids = {seed(provider, "me@provider.test", f"pop {i}") for i in range(2)}
    imap_mid = seed(provider, "keeper@provider.test", "imap keep")
    settings_dir = tmp_path / "local"
    settings_dir.mkdir()
    (settings_dir / "me.pw").write_text(HOSTILE + "\n")
    (settings_dir / "keeper.pw").write_text("keeper-pw-2\n")
    (settings_dir / "wrong.pw").write_text("not-the-password\n")
    hashed = crypt(LOCAL_PW)
    settings = {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {"address": a, "password_hash": hashed}
            for a in ("alice@example.com", "bob@example.com")
        ],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
        "fetchmail": {
            "interval": 10,
            "accounts": [
                {
                    "server": "pop.provider.test",
                    "protocol": "pop3",
                    "port": 995,
                    "ssl": True,
                    "verify_certificate": False,
                    "user": "me@provider.test",
                    "password_file": "/config/me.pw",
                    "deliver_to": "alice@example.com",
                },
                {
                    "server": "imap.provider.test",
                    "protocol": "imap",
                    "ssl": False,
                    "verify_certificate": False,
                    "user": "keeper@provider.test",
                    "keep": True,
                    "password_file": "/config/keeper.pw",
                    "deliver_to": "bob@example.com",
                },
                {
                    "server": "pop.provider.test",
                    "protocol": "pop3",
                    "port": 995,
                    "ssl": True,
                    "verify_certificate": False,
                    "user": "keeper@provider.test",
                    "password_file": "/config/wrong.pw",
                    "deliver_to": "bob@example.com",
                },
            ],
        },
    }
    hosts = {"pop.provider.test": provider.ip, "imap.provider.test": provider.ip}
    app = make_appliance(settings, settings_dir=settings_dir, extra_hosts=hosts)
    for mid in pop_mids:
        app.wait_delivered("alice@example.com", LOCAL_PW, mid, timeout=60)
    app.wait_delivered("bob@example.com", LOCAL_PW, imap_mid, timeout=60)
    # fetched and deleted (no keep)
    wait_until(lambda: count(provider, "me@provider.test") == 0, 30, "me@ emptied", interval=0.5)
    assert count(provider, "keeper@provider.test") == 1  # keep honoured
    wait_until(  # polled last; Cyrus pauses after a failed login
        lambda: "Authorization failure on keeper@provider.test" in app.logs(),
        60,
        lambda: app.logs()[-3000:],
        interval=0.5,
    )
    logs = app.logs()
    assert app.exec("test", "-e", "/tmp/pwned")[0] != 0  # the hostile password ran nothing
    for secret in (HOSTILE, "keeper-pw-2", "not-the-password"):
        assert secret not in logs
    code, out = app.exec("stat", "-c", "%a %U", "/etc/mailctl/current/fetchmail/fetchmailrc")
    assert code == 0, out
    assert out.split() == ["600", "fetchmail"]

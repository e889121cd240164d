"""Issue 3: saslauthd mechanisms and the user CLI against the real daemons (S1-S4).

Each mechanism logs a user in on submission (587, Postfix through saslauthd or
auxprop) and on IMAP (Cyrus through saslauthd); `mailctl user ...` changes
take effect without a restart.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, running
from tests.e2e.data import SCREEN
from tests.e2e.fixtures import MakeAppliance

BASE: dict[str, Any] = {
    "hostname": "mail.example.com",
    "domains": ["example.com"],
    "greylisting": {"enabled": False},
    "postscreen": dict(SCREEN),
}


def imap_ok(app: Appliance, user: str, password: str) -> bool:
    try:
        app.imap(user, password).logout()
        return True
    except imaplib.IMAP4.error:
        return False


def test_sasldb_with_auxprop_and_the_user_cli(make_appliance: MakeAppliance) -> None:
    settings = {
        **BASE,
        "sasl": {"mechanism": "sasldb", "pwcheck_method": "auxprop"},
        "users": [{"address": "dave@example.com", "password_file": "/config/dave.pw"}],
    }
    app = make_appliance(settings, extra_files={"dave.pw": "dave-pw-1\n"})
    # auxprop: smtpd reads the chroot copy of sasldb2, saslauthd is not asked
    assert app.can_login("dave@example.com", "dave-pw-1")
    assert not app.can_login("dave@example.com", "dave-pw-2")
    code, out = app.exec("stat", "-c", "%a %U %G", "/var/spool/postfix/etc/sasldb2")
    assert code == 0 and out.split() == ["640", "root", "sasl"], out
    logs = app.logs()  # the sasldb plugin refused in smtpd; saslauthd was never asked
    assert "smtpd" in logs and "SASL authentication failure: Password" in logs
    assert "[service=smtp]" not in logs

    code, out = app.cli("user", "add", "erin@example.com", stdin="erin-pw-1\n")
    assert code == 0, out
    assert app.can_login("erin@example.com", "erin-pw-1")  # no restart
    assert imap_ok(app, "erin@example.com", "erin-pw-1")
    code, out = app.cli("user", "list")
    assert out.split() == ["dave@example.com", "settings", "erin@example.com", "api"], out
    assert app.cli("user", "test", "erin@example.com", stdin="erin-pw-1\n")[0] == 0
    code, out = app.cli("user", "test", "erin@example.com", stdin="nope\n")
    assert code == 1 and "refused" in out

    code, out = app.cli("user", "passwd", "erin@example.com", stdin="erin-pw-2\n")
    assert code == 0, out
    assert app.can_login("erin@example.com", "erin-pw-2")
    assert not app.can_login("erin@example.com", "erin-pw-1")

    code, out = app.cli("user", "add", "dave@example.com", stdin="x\n")
    assert code == 2 and "settings file" in out
    code, out = app.cli("user", "add", "zed@elsewhere.test", stdin="x\n")
    assert code == 2 and "'elsewhere.test' is not listed in 'domains'" in out

    code, out = app.cli("user", "delete", "erin@example.com")
    assert code == 0 and "mail kept" in out, out
    assert not app.can_login("erin@example.com", "erin-pw-2")
    code, out = app.cli("mailbox", "list")
    assert "erin@example.com (no such user any more)" in out, out
    logs = app.logs()
    for secret in ("dave-pw-1", "erin-pw-1", "erin-pw-2"):
        assert secret not in logs


def test_shadow_accounts_follow_settings_and_cli(make_appliance: MakeAppliance) -> None:
    settings = {
        **BASE,
        "sasl": {"mechanism": "shadow"},
        "users": [{"address": "fred@example.com", "password_hash": crypt("fred-pw-1")}],
    }
    app = make_appliance(settings)
    assert app.can_login("fred@example.com", "fred-pw-1")
    assert imap_ok(app, "fred@example.com", "fred-pw-1")
    assert not app.can_login("fred@example.com", "fred-pw-2")
    code, out = app.cli("user", "add", "gina@example.com", stdin="gina-pw-1\n")
    assert code == 0, out
    assert app.can_login("gina@example.com", "gina-pw-1")
    code, out = app.exec("getent", "passwd", "gina@example.com")
    assert code == 0 and ":mailctl user:" in out, out
    app.write_settings({**settings, "users": []})  # fred's account goes with him
    app.cli("user", "delete", "gina@example.com")
    assert app.exec("getent", "passwd", "fred@example.com")[0] != 0
    assert app.exec("getent", "passwd", "gina@example.com")[0] != 0
    assert not app.can_login("gina@example.com", "gina-pw-1")


def test_pam_cli_user_gets_a_mailbox_and_mail(make_appliance: MakeAppliance) -> None:
    settings = {
        **BASE,
        "users": [{"address": "alice@example.com", "password_hash": crypt("alice-pw-1")}],
    }
    app = make_appliance(settings)
    code, out = app.cli("user", "add", "carol@example.com", stdin="carol-pw-1\n")
    assert code == 0, out
    smtp = app.smtp(587, login=("alice@example.com", "alice-pw-1"))
    mid, text = message("alice@example.com", "carol@example.com", "to a CLI user")
    smtp.sendmail("alice@example.com", ["carol@example.com"], text)
    smtp.quit()
    app.wait_delivered("carol@example.com", "carol-pw-1", mid)
    # the store is on the state volume: a controller restart keeps carol
    code, out = app.exec("cat", "/var/lib/mailctl/users/passwd")
    assert out.startswith("carol@example.com:$6$"), out


@pytest.fixture(scope="module")
def imap_server(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    """Another appliance whose Cyrus the rimap mechanism logs in to."""
    settings = {
        **BASE,
        "hostname": "imap.example.com",
        "cyrus": {"allow_plaintext": True},
        "users": [{"address": "hank@example.com", "password_hash": crypt("hank-pw-1")}],
    }
    with running(client, settings, tmp_path_factory.mktemp("imapserver")) as app:
        yield app


def test_rimap_against_another_cyrus(make_appliance: MakeAppliance, imap_server: Appliance) -> None:
    settings = {
        **BASE,
        "sasl": {"mechanism": "rimap", "rimap_server": imap_server.ip},
        "users": [{"address": "hank@example.com"}],
    }  # no password here
    app = make_appliance(settings)
    assert app.can_login("hank@example.com", "hank-pw-1")
    assert not app.can_login("hank@example.com", "hank-pw-2")
    assert imap_ok(app, "hank@example.com", "hank-pw-1")
    # the server's own IMAP takes plaintext on 143 now, as set
    plain = imaplib.IMAP4("127.0.0.1", imap_server.ports[143], timeout=20)
    assert plain.login("hank@example.com", "hank-pw-1")[0] == "OK"
    plain.logout()

"""Issue 3: core, TLS, SASL and Cyrus options against the real daemons (P1, P13, P16, P18,
S5, C1, C2, C4, C5, R5)."""

from __future__ import annotations

import imaplib
import json
import poplib
import smtplib
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, running, tls_context
from tests.e2e.data import SCREEN
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until

PW = "options-secret-1"
ALICE = ("alice@example.com", PW)
BOB = ("bob@example.com", PW)
CAROL = ("carol@example.com", PW)


def settings() -> dict[str, Any]:
    hashed = crypt(PW)
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {"address": ALICE[0], "password_hash": hashed},
            {"address": BOB[0], "password_hash": hashed, "quota_mb": 1},
            {"address": CAROL[0], "password_hash": hashed},
        ],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
        "smtp": {"inet_protocols": "all", "verbose": ["smtp"], "tls_loglevel": 2},
        "sasl": {"broken_clients": True},
        "cyrus": {"admins": [ALICE[0]], "quota_warn": 80},
    }


@pytest.fixture(scope="module")
def app(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    with running(client, settings(), tmp_path_factory.mktemp("options"), ipv6=True) as appliance:
        yield appliance


def test_rendered_values_are_what_postfix_uses(app: Appliance) -> None:
    for name, value in [
        ("inet_protocols", "all"),
        ("smtpd_tls_loglevel", "2"),
        ("broken_sasl_auth_clients", "yes"),
        ("smtpd_sasl_security_options", "noanonymous, noplaintext"),
    ]:
        code, out = app.exec("postconf", "-h", name)
        assert (code, out.strip()) == (0, value), name
    code, out = app.exec("sh", "-c", "grep -E '^(admins|quotawarn):' /etc/imapd.conf")
    assert "admins: cyrus alice@example.com" in out and "quotawarn: 80" in out


def test_ipv6_listener_with_inet_protocols_all(app: Appliance) -> None:
    script = (
        "import smtplib; s=smtplib.SMTP('::1', 25, timeout=10); "
        "print(s.ehlo('v6.mailctl.test')[0]); s.quit()"
    )
    code, out = app.exec("/opt/mailctl/bin/python", "-c", script)
    assert code == 0 and out.strip() == "250", out


def test_verbose_smtp_and_tls_loglevel_show_in_the_log(app: Appliance) -> None:
    client = smtplib.SMTP("127.0.0.1", app.ports[25], timeout=20)
    client.ehlo("verbose.mailctl.test")
    client.starttls(context=tls_context())
    client.ehlo("verbose.mailctl.test")
    client.quit()
    time.sleep(0.5)
    logs = app.logs()
    assert "> unknown[" in logs or "smtp_get:" in logs  # smtpd -v dialogue lines
    assert "SSL_accept:" in logs  # smtpd_tls_loglevel >= 2


def test_broken_clients_get_the_old_auth_line_and_anonymous_is_refused(app: Appliance) -> None:
    client = app.smtp(587)
    try:
        _, reply = client.ehlo("outlook.mailctl.test")
        assert b"AUTH=PLAIN LOGIN" in reply
        code, _ = client.docmd("AUTH", "ANONYMOUS")
        assert code >= 500
    finally:
        client.close()


def test_admin_sees_every_mailbox_and_a_user_only_their_own(app: Appliance) -> None:
    admin = app.imap(*ALICE)
    try:
        _, boxes = admin.list('""', "user/%")
        names = b" ".join(b for b in boxes if isinstance(b, bytes))
        assert b"user/bob@example.com" in names and b"user/carol@example.com" in names
    finally:
        admin.logout()
    user = app.imap(*BOB)
    try:
        _, boxes = user.list('""', "*")
        assert b"carol" not in b" ".join(b for b in boxes if isinstance(b, bytes))
    finally:
        user.logout()


def test_quota_is_set_and_over_quota_mail_is_deferred(app: Appliance) -> None:
    imap = app.imap(*BOB)
    try:
        typ, data = imap.getquotaroot("INBOX")
        assert typ == "OK" and b"STORAGE 0 1024" in b" ".join(
            d for d in data[1] if isinstance(d, bytes)
        )
    finally:
        imap.logout()
    big = "x" * 1500 * 1024
    mid, code, reply = app.send(ALICE[0], BOB[0], port=587, login=ALICE, body=big)
    assert code == 250, reply
    wait_until(
        lambda: "quota" in json.dumps([m for m in app.queue() if m["queue_name"] == "deferred"]),
        30,
        lambda: f"deferred for quota: {app.queue()}\n{app.logs()[-2000:]}",
        interval=0.3,
    )
    assert mid not in app.message_ids(*BOB)


def test_over_quota_bounces_when_set_and_defers_after_a_live_change(
    make_appliance: MakeAppliance,
) -> None:
    s = {**settings(), "cyrus": {"over_quota_perm_failure": True}}
    app2 = make_appliance(s)

    def send_big(subject: str) -> str:
        mid, code, reply = app2.send(
            ALICE[0], BOB[0], port=587, login=ALICE, subject=subject, body="x" * 1500 * 1024
        )
        assert code == 250, reply
        return mid

    def deferred() -> list[dict[str, Any]]:
        return [m for m in app2.queue() if m["queue_name"] == "deferred"]

    send_big("bounced at once")
    wait_until(
        lambda: "Over quota" in (logs := app2.logs()) and "status=bounced" in logs,
        30,
        lambda: app2.logs()[-2000:],
        interval=0.3,
    )
    assert not deferred()
    app2.write_settings({**s, "cyrus": {"over_quota_perm_failure": False}})
    wait_until(lambda: app2.readyz()[1]["revision"] != "000001", 15, "the change applied")
    send_big("deferred now")
    wait_until(deferred, 30, lambda: f"{app2.queue()}\n{app2.logs()[-2000:]}", interval=0.3)


@pytest.mark.parametrize("port", [110, 995])
def test_pop3_and_pop3s(app: Appliance, port: int) -> None:
    client = app.smtp(587, login=ALICE)
    mid, text = message(ALICE[0], CAROL[0], f"for pop {port}")
    client.sendmail(ALICE[0], [CAROL[0]], text)
    client.quit()
    app.wait_delivered(*CAROL, mid)
    if port == 995:
        pop: poplib.POP3 = poplib.POP3_SSL(
            "127.0.0.1", app.ports[995], context=tls_context(), timeout=20
        )
    else:
        pop = poplib.POP3("127.0.0.1", app.ports[110], timeout=20)
        pop.stls(context=tls_context())
    try:
        pop.user(CAROL[0])
        pop.pass_(CAROL[1])
        count, _ = pop.stat()
        texts = [b"\n".join(pop.retr(i + 1)[1]) for i in range(count)]
        assert any(mid.encode() in t for t in texts)
    finally:
        pop.quit()


def test_pop3_refuses_plaintext_login_without_tls(app: Appliance) -> None:
    pop = poplib.POP3("127.0.0.1", app.ports[110], timeout=20)
    try:
        with pytest.raises(poplib.error_proto):
            pop.user(CAROL[0])
            pop.pass_(CAROL[1])
    finally:
        pop.close()


def test_removed_user_keeps_mail_until_purged(make_appliance: MakeAppliance) -> None:
    app = make_appliance(settings())
    mid, code, reply = app.send(ALICE[0], CAROL[0], port=587, login=ALICE)
    assert code == 250, reply
    app.wait_delivered(*CAROL, mid)
    changed = settings()
    changed["users"] = changed["users"][:2]
    app.write_settings(changed)
    wait_until(
        lambda: (
            "carol@example.com (no such user any more)" in app.exec("mailctl", "mailbox", "list")[1]
        ),
        20,
        "carol listed as removed",
        interval=0.2,
    )
    with pytest.raises(imaplib.IMAP4.error):
        app.imap(*CAROL)  # no login any more...
    admin = app.imap(*ALICE)  # ...but the mail is still there
    try:
        assert admin.setacl("user/carol@example.com", ALICE[0], "lr")[0] == "OK"
        typ, data = admin.select("user/carol@example.com", readonly=True)
        assert typ == "OK" and int(data[0] or 0) >= 1
    finally:
        admin.logout()
    code, out = app.exec("mailctl", "mailbox", "purge", BOB[0])
    assert code == 2 and "still a user" in out
    code, out = app.exec("mailctl", "mailbox", "purge", CAROL[0])
    assert code == 0, out
    assert "carol" not in app.exec("mailctl", "mailbox", "list")[1]


def test_env_only_setup(make_appliance: MakeAppliance) -> None:
    users = [{"address": "office@example.org", "password_hash": crypt("office-pw-1")}]
    env = {
        "MAIL_HOSTNAME": "mail.example.org",
        "MAIL_DOMAINS": '["example.org"]',
        "MAIL_USERS": json.dumps(users),
        "MAIL_GREYLISTING__ENABLED": "false",
    }
    app = make_appliance(None, environment=env)
    smtp = app.smtp(587, login=("office@example.org", "office-pw-1"))
    mid, text = message("office@example.org", "office@example.org", "env only")
    smtp.sendmail("office@example.org", ["office@example.org"], text)
    smtp.quit()
    app.wait_delivered("office@example.org", "office-pw-1", mid)

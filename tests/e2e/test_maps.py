"""Issue 3: lookup tables and access maps, against the real Postfix (P2, P5-P8, P12, P15, P17)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, running
from tests.e2e.data import SCREEN
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until

PW = "maps-secret-1"
OUTSIDE = "outside.mailctl.test"
ALICE = ("alice@example.com", PW)
BOB = ("bob@example.com", PW)


def settings() -> dict[str, Any]:
    hashed = crypt(PW)
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {"address": a, "password_hash": hashed}
            for a in (ALICE[0], BOB[0], "closed@example.com")
        ],
        "aliases": {"watched@example.com": ALICE[0], "info@example.com": [ALICE[0], BOB[0]]},
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
        "maps": {
            "local_aliases": {
                "report": ["/var/mail/archive/report.txt"],
                "team": [":include:/config/team.txt"],
                "list": [ALICE[0], BOB[0]],
            },
            "canonical": {"u1234@example.com": ALICE[0]},
            "sender_canonical": {BOB[0]: "robert@example.com"},
            "recipient_canonical": {"al@example.com": ALICE[0]},
            "relocated": {"carol@example.com": "carol@example.org"},
            "transports": {"closed@example.com": "error:5.2.1 this mailbox is closed"},
            "sender_logins": {"info@example.com": [ALICE[0]]},
        },
        "access": {
            "senders": {
                "spammer@bad.test": "REJECT no spam please",
                "held@sender.test": "HOLD held for review",
                "drop@sender.test": "DISCARD",
                "fine@bad.test": "OK",
            },
            "recipients": {"watched@example.com": "WARN watch this one"},
            "helo": {"evil.test": "REJECT go away, evil"},
            "patterns": [
                {
                    "stage": "helo",
                    "type": "pcre",
                    "pattern": r"^bad-[0-9]+\.example$",
                    "action": "REJECT pcre says no",
                },
                {
                    "stage": "sender",
                    "type": "regexp",
                    "pattern": "@spam[.]example$",
                    "action": "REJECT regexp says no",
                },
            ],
        },
    }


@pytest.fixture(scope="module")
def app(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    with running(
        client, settings(), tmp_path_factory.mktemp("maps"), extra_files={"team.txt": f"{BOB[0]}\n"}
    ) as appliance:
        yield appliance


def outside(
    app: Appliance, sender: str, rcpt: str, helo: str = OUTSIDE, subject: str = "test"
) -> tuple[str, int, str]:
    """A stranger's message on port 25: (mid, code, text); 250 is accepted."""
    return app.send(sender, rcpt, helo=helo, subject=subject)


def headers(app: Appliance, user: tuple[str, str], mid: str) -> str:
    app.wait_delivered(*user, mid)
    imap = app.imap(*user)
    try:
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "HEADER", "Message-ID", mid)
        _, parts = imap.fetch(data[0].split()[-1], "(BODY.PEEK[HEADER])")
        assert isinstance(parts[0], tuple), parts
        return parts[0][1].decode()
    finally:
        imap.logout()


def test_local_aliases_list_file_and_include(app: Appliance) -> None:
    mid, code, reply = outside(app, "x@sender.test", "list@mail.example.com")
    assert code == 250, reply
    app.wait_delivered(*ALICE, mid)
    app.wait_delivered(*BOB, mid)
    mid2, code, reply = outside(app, "x@sender.test", "team@mail.example.com", subject="to include")
    assert code == 250, reply
    app.wait_delivered(*BOB, mid2)
    mid3, code, reply = outside(app, "x@sender.test", "report@mail.example.com", subject="to file")
    assert code == 250, reply
    wait_until(
        lambda: mid3 in app.exec("cat", "/var/mail/archive/report.txt")[1],
        20,
        lambda: app.logs()[-2000:],
        interval=0.2,
    )


def test_canonical_rewrites_envelope_and_header(app: Appliance) -> None:
    mid, code, reply = outside(app, "x@sender.test", "u1234@example.com")
    assert code == 250, reply
    head = headers(app, ALICE, mid)  # delivered to alice: the envelope was rewritten
    assert "To: alice@example.com" in head  # and the header too
    assert "To: u1234@example.com" not in head


def test_sender_canonical_rewrites_the_sender(app: Appliance) -> None:
    mid, code, reply = app.send(BOB[0], ALICE[0], port=587, login=BOB, subject="from bob")
    assert code == 250, reply
    head = headers(app, ALICE, mid)
    assert "From: robert@example.com" in head
    assert "Return-Path: <robert@example.com>" in head


def test_recipient_canonical(app: Appliance) -> None:
    mid, code, reply = outside(app, "x@sender.test", "al@example.com")
    assert code == 250, reply
    assert "To: alice@example.com" in headers(app, ALICE, mid)


def test_relocated_is_refused_with_the_new_address(app: Appliance) -> None:
    _, code, reply = outside(app, "x@sender.test", "carol@example.com")
    assert code == 550
    assert "moved to carol@example.org" in reply


def test_transport_override_refuses_with_its_text(app: Appliance) -> None:
    # closed@ is a real mailbox; its transport (error:) wins, and Postfix already
    # knows at RCPT that the address is undeliverable.
    client = app.smtp(587, login=ALICE)
    try:
        client.mail(ALICE[0])
        code, reply = client.rcpt("closed@example.com")
        assert (code, b"this mailbox is closed" in reply) == (550, True), reply
        assert client.rcpt(BOB[0])[0] == 250  # others keep the default transport
    finally:
        client.close()


@pytest.mark.parametrize(
    ("sender", "code", "text"),
    [
        ("spammer@bad.test", 554, "no spam please"),
    ],
)
def test_sender_access_reject_with_text(app: Appliance, sender: str, code: int, text: str) -> None:
    _, got, reply = outside(app, sender, ALICE[0])
    assert got == code and text in reply


def test_sender_access_ok_and_dunno(app: Appliance) -> None:
    assert outside(app, "fine@bad.test", ALICE[0])[1] == 250  # OK
    assert outside(app, "other@bad.test", ALICE[0])[1] == 250  # no entry: DUNNO


def test_sender_access_hold_puts_mail_in_the_hold_queue(app: Appliance) -> None:
    mid, code, reply = outside(app, "held@sender.test", ALICE[0], subject="hold me")
    assert code == 250, reply
    held = wait_until(
        lambda: [m for m in app.queue() if m["queue_name"] == "hold"],
        10,
        lambda: f"a held message: {app.queue()}",
    )
    # P17: the CLI sees it, shows it, releases it, and it is delivered.
    code, out = app.exec("mailctl", "queue", "list")
    assert code == 0 and held[0]["queue_id"] in out
    code, out = app.exec("mailctl", "queue", "show", held[0]["queue_id"])
    assert code == 0 and mid in out
    code, out = app.exec("mailctl", "queue", "release", held[0]["queue_id"])
    assert code == 0, out
    app.exec("mailctl", "queue", "flush")
    app.wait_delivered(*ALICE, mid)


def test_sender_access_discard_accepts_and_drops(app: Appliance) -> None:
    mid, code, reply = outside(app, "drop@sender.test", ALICE[0], subject="drop me")
    assert code == 250, reply
    time.sleep(2)
    assert mid not in app.message_ids(*ALICE)
    assert "Sender address triggers DISCARD action" in app.logs()


def test_recipient_access_warn_logs_and_delivers(app: Appliance) -> None:
    mid, code, reply = outside(app, "x@sender.test", "watched@example.com")
    assert code == 250, reply
    app.wait_delivered(*ALICE, mid)
    assert "watch this one" in app.logs()


@pytest.mark.parametrize(
    ("helo", "text"),
    [
        ("evil.test", "go away, evil"),
        ("mail.example.com", "my hostname"),
        ("bad-42.example", "pcre says no"),
    ],
)
def test_helo_access_and_own_name(app: Appliance, helo: str, text: str) -> None:
    _, code, reply = outside(app, "x@sender.test", ALICE[0], helo=helo)
    assert code == 554 and text in reply


def test_helo_with_my_own_address_is_refused(app: Appliance) -> None:
    for helo in (f"[{app.ip}]", app.ip):
        _, code, reply = outside(app, "x@sender.test", ALICE[0], helo=helo)
        assert code == 554 and "my address as HELO" in reply, (helo, reply)


def test_sender_regexp_pattern(app: Appliance) -> None:
    _, code, reply = outside(app, "anyone@spam.example", ALICE[0])
    assert code == 554 and "regexp says no" in reply, reply


def test_lmdb_tables_and_a_bad_pattern_refused(make_appliance: MakeAppliance) -> None:
    lmdb = {**settings(), "maps": {**settings()["maps"], "table_type": "lmdb"}}
    app = make_appliance(lmdb, extra_files={"team.txt": f"{BOB[0]}\n"})
    code, out = app.exec("postconf", "-h", "virtual_alias_maps", "default_database_type")
    assert code == 0 and out.split() == ["lmdb:${config_directory}/virtual", "lmdb"], out
    assert app.exec("test", "-s", "/etc/postfix/virtual.lmdb")[0] == 0
    assert (
        app.cli("lookup", "virtual", "info@example.com")[1].strip()
        == "alice@example.com, bob@example.com"
    )
    mid, code, reply = app.send(ALICE[0], "info@example.com", port=587, login=ALICE)
    assert code == 250, reply
    app.wait_delivered(*BOB, mid)
    # a pattern PCRE cannot compile is refused, naming the setting; the old config serves on
    revision = app.readyz()[1]["revision"]
    bad = {
        **lmdb,
        "access": {
            **lmdb["access"],
            "patterns": [{"stage": "helo", "pattern": "(unclosed", "action": "REJECT x"}],
        },
    }
    app.write_settings(bad)

    def refused() -> dict[str, Any] | None:
        body: dict[str, Any] = app.readyz()[1]
        return None if body["last_apply"]["ok"] else body

    body = wait_until(refused, 15, "the bad pattern refused", interval=0.2)
    assert "access.patterns.0" in body["last_apply"]["error"], body
    assert body["revision"] == revision


def test_authenticated_user_cannot_send_as_someone_else(app: Appliance) -> None:
    client = app.smtp(587, login=ALICE)
    try:
        code, reply = client.mail(BOB[0])
        if code == 250:
            code, reply = client.rcpt(BOB[0])
        assert code == 553 and b"not owned by user alice@example.com" in reply
        client.rset()
        assert client.mail("info@example.com")[0] == 250  # sender_logins allows this one
        assert client.rcpt(BOB[0])[0] == 250
    finally:
        client.close()


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        ("virtual", "info@example.com", "alice@example.com, bob@example.com"),
        ("vmailbox", "alice@example.com", "cyrus"),
        ("aliases", "list", "alice@example.com, bob@example.com"),
        ("canonical", "u1234@example.com", "alice@example.com"),
        ("relocated", "carol@example.com", "carol@example.org"),
        ("transport", "closed@example.com", "error:5.2.1 this mailbox is closed"),
        ("sender_access", "spammer@bad.test", "REJECT no spam please"),
        (
            "sender_mx_bogons.cidr",
            "10.1.2.3",
            "REJECT IP address of MX host is a IANA reserved address RFC1918",
        ),
        ("helo_access", "mail.example.com", "REJECT do not use my hostname as HELO"),
        ("helo_access.pcre", "BAD-7.example", "REJECT pcre says no"),
        ("sender_access.regexp", "x@spam.example", "REJECT regexp says no"),
    ],
)
def test_cli_lookup_in_every_rendered_table(
    app: Appliance, table: str, key: str, value: str
) -> None:
    code, out = app.exec("mailctl", "lookup", table, key)
    assert code == 0, out
    assert out.strip() == value


def test_cli_lookup_missing_key_and_unknown_table(app: Appliance) -> None:
    assert app.exec("mailctl", "lookup", "virtual", "nobody@example.com")[0] == 1
    code, out = app.exec("mailctl", "lookup", "../../etc/shadow", "root")
    assert code == 2 and "no table" in out


def test_cli_queue_hold_requeue_delete(app: Appliance) -> None:
    # A message for the outside is deferred (DNS is loopback only): use it.
    client = app.smtp(587, login=ALICE)
    for n in range(3):
        _, text = message(ALICE[0], "someone@example.net", f"queue ops {n}")
        client.sendmail(ALICE[0], ["someone@example.net"], text)
    client.quit()

    def deferred() -> list[str]:
        ids = [m["queue_id"] for m in app.queue() if m["queue_name"] == "deferred"]
        return ids if len(ids) >= 3 else []

    ids = wait_until(deferred, 20, lambda: f"3 deferred: {app.queue()}", interval=0.2)
    code, out = app.exec("mailctl", "queue", "list")
    assert code == 0 and {m["id"] for m in json.loads(out)} >= set(ids), out
    qid = ids[0]
    assert app.exec("mailctl", "queue", "hold", qid)[0] == 0
    assert {m["queue_id"]: m["queue_name"] for m in app.queue()}[qid] == "hold"
    assert app.exec("mailctl", "queue", "release", "ALL")[0] == 0
    assert {m["queue_id"]: m["queue_name"] for m in app.queue()}[qid] != "hold"
    assert app.exec("mailctl", "queue", "requeue", qid)[0] == 0
    code, out = app.exec("mailctl", "queue", "delete", qid)
    assert code == 0, out
    assert qid not in json.dumps(app.queue())
    assert app.exec("mailctl", "queue", "delete", "ALL")[0] == 0
    assert app.queue() == []
    code, out = app.exec("mailctl", "queue", "delete", "x; rm -rf /")
    assert code == 2 and "not a queue ID" in out

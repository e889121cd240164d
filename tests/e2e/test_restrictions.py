"""Issue 3: restriction lists, classes and presets (P9); the relay guard survives any list."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, message, running

PW = "restrict-secret-1"
ALICE = ("alice@example.com", PW)


def settings() -> dict[str, Any]:
    hashed = crypt(PW)
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [{"address": a, "password_hash": hashed} for a in (ALICE[0], "boss@example.com")],
        "greylisting": {"enabled": False},
        "restrictions": {
            "preset": "internet",
            # The preset's sender DNS checks need a resolver; these tests have none.
            "sender": ["permit_mynetworks", "permit_sasl_authenticated", "check_sender_access"],
            # A list that would open the server, were the relay guard not apart from it.
            "recipient": ["check_recipient_access", "permit"],
            "classes": {
                "internal_only": ["permit_mynetworks", "permit_sasl_authenticated", "reject"],
                # Classes named like the relay guard's parameters, written to
                # replace it: they must stay classes of their own.
                "smtpd_relay_restrictions": ["permit"],
                "mynetworks": ["permit"],
            },
        },
        "access": {"recipients": {"boss@example.com": "internal_only"}},
    }


@pytest.fixture(scope="module")
def app(
    client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    with running(client, settings(), tmp_path_factory.mktemp("restrict")) as appliance:
        yield appliance


# An address literal: the preset's DNS check of HELO names cannot answer here (DNS is
# loopback only), and would defer with 450 before the checks under test.
STRANGER = "[192.0.2.1]"


def rcpt(app: Appliance, sender: str, to: str, helo: str = STRANGER) -> tuple[int, bytes]:
    c = smtplib.SMTP("127.0.0.1", app.ports[25], timeout=20)
    try:
        c.ehlo(helo)
        code, reply = c.mail(sender)
        if code != 250:
            return code, reply
        return c.rcpt(to)
    finally:
        c.close()


@pytest.mark.parametrize(
    "to",
    ["victim@example.net", "victim%example.net@example.com", "@example.com:victim@example.net"],
)
def test_a_permissive_recipient_list_cannot_open_a_relay(app: Appliance, to: str) -> None:
    code, reply = rcpt(app, "someone@sender.mailctl.test", to)
    assert 500 <= code < 600, reply


def test_restriction_class_applies_only_where_the_access_map_names_it(app: Appliance) -> None:
    code, reply = rcpt(app, "someone@sender.mailctl.test", "boss@example.com")
    assert code == 554, reply  # the class rejects strangers writing to boss@
    assert rcpt(app, "someone@sender.mailctl.test", ALICE[0])[0] == 250  # no class for alice
    client = smtplib.SMTP("127.0.0.1", app.ports[587], timeout=20)
    try:
        client.starttls(context=__import__("ssl")._create_unverified_context())
        client.login(*ALICE)
        client.mail(ALICE[0])
        assert client.rcpt("boss@example.com")[0] == 250  # the class lets insiders through
    finally:
        client.close()


def test_internet_preset_checks_helo_of_strangers_only(app: Appliance) -> None:
    code, reply = rcpt(app, "someone@sender.mailctl.test", ALICE[0], helo="laptop")
    assert code == 504 and b"Helo command rejected" in reply
    client = smtplib.SMTP("127.0.0.1", app.ports[587], timeout=20)
    try:
        client.ehlo("laptop")
        client.starttls(context=__import__("ssl")._create_unverified_context())
        client.ehlo("laptop")
        client.login(*ALICE)
        mid, text = message(ALICE[0], ALICE[0], "from a laptop")
        assert client.sendmail(ALICE[0], [ALICE[0]], text) == {}
    finally:
        client.close()
    app.wait_delivered(*ALICE, mid)


def test_unauthorized_pipelining_is_refused(app: Appliance) -> None:
    with socket.create_connection(("127.0.0.1", app.ports[25]), timeout=20) as sock:
        sock.recv(1024)  # greeting
        # Talk ahead without waiting, in one write, before EHLO was answered.
        sock.sendall(
            b"EHLO [192.0.2.1]\r\nMAIL FROM:<a@sender.mailctl.test>\r\n"
            b"RCPT TO:<alice@example.com>\r\nDATA\r\n"
        )
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert b"554 5.5.0" in data or b"improper command pipelining" in data, data

"""Issue 3: restriction lists, classes and presets (P9); the relay guard survives any list."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e.appliance import Appliance, crypt, running
from tests.e2e.data import SCREEN

PW = "restrict-secret-1"
ALICE = ("alice@example.com", PW)


def settings() -> dict[str, Any]:
    hashed = crypt(PW)
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [{"address": a, "password_hash": hashed} for a in (ALICE[0], "boss@example.com")],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
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


@pytest.mark.parametrize(
    "to",
    ["victim@example.net", "victim%example.net@example.com", "@example.com:victim@example.net"],
)
def test_a_permissive_recipient_list_cannot_open_a_relay(app: Appliance, to: str) -> None:
    code, reply = app.rcpt("someone@sender.mailctl.test", to, helo=STRANGER)
    assert 500 <= code < 600, reply


def test_restriction_class_applies_only_where_the_access_map_names_it(app: Appliance) -> None:
    code, reply = app.rcpt("someone@sender.mailctl.test", "boss@example.com", helo=STRANGER)
    assert code == 554, reply  # the class rejects strangers writing to boss@
    # no class for alice
    assert app.rcpt("someone@sender.mailctl.test", ALICE[0], helo=STRANGER)[0] == 250
    # the class lets insiders through
    assert app.rcpt(ALICE[0], "boss@example.com", port=587, login=ALICE)[0] == 250


def test_internet_preset_checks_helo_of_strangers_only(app: Appliance) -> None:
    code, reply = app.rcpt("someone@sender.mailctl.test", ALICE[0], helo="laptop")
    assert code == 504 and "Helo command rejected" in reply
    mid, code, reply = app.send(
        ALICE[0], ALICE[0], port=587, helo="laptop", login=ALICE, subject="from a laptop"
    )
    assert code == 250, reply
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

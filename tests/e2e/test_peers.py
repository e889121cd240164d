"""Issue 3: features that talk to other servers, against peers of our own (images/peers).

Everything runs on Docker's default bridge: the appliance resolves through
the DNS peer (its resolv.conf names only that peer, which forwards nothing),
relays through MTA peers, logs users in against the LDAP peer and fetches
from the Dovecot peer. No test traffic leaves this machine.

Clients of the tests reach the appliance's published ports from the bridge
gateway, so the appliance sees them as the bridge gateway (appliance.bridge_gateway).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, bridge_gateway, crypt, message
from tests.e2e.data import SCREEN
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until

PW = "peers-secret-1"
ALICE = ("alice@example.com", PW)
BOB = ("bob@example.com", PW)
RELAY_USER = ("relay-user@isp.test", "relay-pw-1")
SENDER_RELAY_USER = ("bob-at-isp2@isp2.test", "relay-pw-2")
BASE_RECORDS = [
    "MX private.test 10 mx.private.test",
    "A mx.private.test 10.1.2.3",
    "MX cgnat.test 10 mx.cgnat.test",
    "A mx.cgnat.test 100.64.0.1",
    "A client.mailctl.test 100.64.0.2",  # the tests' HELO name exists
]


def base(**extra: Any) -> dict[str, Any]:
    hashed = crypt(PW)
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [{"address": a, "password_hash": hashed} for a in (ALICE[0], BOB[0])],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
        **extra,
    }


def rcpt_until(
    app: Appliance, sender: str, done: Callable[[int, str], bool], timeout: float = 15
) -> tuple[int, str]:
    """Ask RCPT TO alice as a stranger again until done(code, text); the last reply."""

    def answer() -> tuple[int, str] | None:
        code, text = app.rcpt(sender, ALICE[0])
        return (code, text) if done(code, text) else None

    return wait_until(answer, timeout, lambda: app.logs()[-2000:], interval=0.2)


def send(app: Appliance, login: tuple[str, str], to: str, subject: str) -> str:
    mid, code, reply = app.send(login[0], to, port=587, login=login, subject=subject)
    assert code == 250, reply
    return mid


@pytest.fixture(scope="module")
def dns(client: docker.DockerClient) -> Iterator[peers.Dns]:
    gw = peers.reversed_ip(bridge_gateway(client))
    with peers.running(
        client,
        peers.Dns,
        records=[
            *BASE_RECORDS,
            f"A {gw}.bl.test 127.0.0.2",
            f"TXT {gw}.bl.test Blocked by test list",
        ],
    ) as peer:
        yield peer


@pytest.fixture(scope="module")
def clean_dns(client: docker.DockerClient) -> Iterator[peers.Dns]:
    """A second resolver that lists nobody."""
    with peers.running(client, peers.Dns, records=BASE_RECORDS) as peer:
        yield peer


@pytest.fixture(scope="module")
def mta(client: docker.DockerClient) -> Iterator[peers.Mta]:
    with peers.running(
        client,
        peers.Mta,
        users=dict([RELAY_USER]),
        domains=["backend.test"],
        recipients=["known@backend.test"],
        hostname="smtp.isp.test",
    ) as peer:
        yield peer


@pytest.fixture(scope="module")
def mta2(client: docker.DockerClient) -> Iterator[peers.Mta]:
    with peers.running(
        client, peers.Mta, users=dict([SENDER_RELAY_USER]), hostname="smtp.isp2.test"
    ) as peer:
        yield peer


@pytest.fixture
def mta_clean(mta: peers.Mta, mta2: peers.Mta) -> tuple[peers.Mta, peers.Mta]:
    mta.clear()
    mta2.clear()
    return mta, mta2


def relay_settings(mta: peers.Mta, mta2: peers.Mta, **extra: Any) -> dict[str, Any]:
    return base(
        relay={
            "host": f"[{mta.ip}]:587",
            "username": RELAY_USER[0],
            "password_file": "/config/r1.pw",
            "senders": {
                BOB[0]: {
                    "host": f"[{mta2.ip}]:587",
                    "username": SENDER_RELAY_USER[0],
                    "password_file": "/config/r2.pw",
                }
            },
        },
        **extra,
    )


RELAY_FILES = {"r1.pw": RELAY_USER[1] + "\n", "r2.pw": SENDER_RELAY_USER[1] + "\n"}


def test_relayhost_and_sender_dependent_relay_with_sasl_and_tls(
    make_appliance: MakeAppliance, mta_clean: tuple[peers.Mta, peers.Mta]
) -> None:
    mta, mta2 = mta_clean
    # P3/P4: a catch-all mailbox, and an alias with a local and an external target
    aliases = {"@example.com": ALICE[0], "fwd@example.com": [BOB[0], "friend@far.test"]}
    app = make_appliance(
        relay_settings(mta, mta2, smtp={"tls_loglevel": 1}, aliases=aliases),
        extra_files=RELAY_FILES,
    )
    mid_a = send(app, ALICE, "fwd@example.com", "through the relay host")
    mid_b = send(app, BOB, "friend@far.test", "through bob's own relay host")
    [got_a] = mta.wait_mails(1)
    [got_b] = mta2.wait_mails(1)
    assert mid_a in got_a and mid_b in got_b
    assert "X-Original-To: friend@far.test" in got_a
    app.wait_delivered(*BOB, mid_a)  # the local target of the same alias
    mid_c = send(app, BOB, "nobody-here@example.com", "to the catch-all")
    app.wait_delivered(*ALICE, mid_c)
    mid_d = send(app, ALICE, BOB[0], "a real user is not caught")
    app.wait_delivered(*BOB, mid_d)
    assert mta.sasl_usernames()[-1:] == [RELAY_USER[0]]
    assert mta2.sasl_usernames()[-1:] == [SENDER_RELAY_USER[0]]
    logs = app.logs()
    assert f"TLS connection established to {mta.ip}" in logs.replace("[", "").replace("]", "")
    code, out = app.exec("sh", "-c", "stat -c '%a %U' /etc/postfix/relay_passwords*")
    assert code == 0 and out.split() == ["600", "root", "600", "root"], out
    for secret in (RELAY_USER[1], SENDER_RELAY_USER[1]):
        assert secret not in logs


def test_dialup_holds_outbound_mail_until_flush(
    make_appliance: MakeAppliance, mta_clean: tuple[peers.Mta, peers.Mta]
) -> None:
    mta, _ = mta_clean
    settings = relay_settings(mta, _, smtp={"dialup": True})
    app = make_appliance(settings, extra_files=RELAY_FILES)
    mid = send(app, ALICE, "friend@far.test", "wait for the line")
    time.sleep(3)
    assert mta.mails() == []
    queued = app.queue()
    assert len(queued) == 1 and "deferred transport" in str(queued[0]), queued
    code, out = app.cli("queue", "flush")
    assert code == 0, out
    [got] = mta.wait_mails(1)
    assert mid in got


def test_address_verification_refuses_unknown_backend_recipient(
    make_appliance: MakeAppliance, mta_clean: tuple[peers.Mta, peers.Mta]
) -> None:
    mta, _ = mta_clean
    settings = base(
        relay_domains=["backend.test"],
        maps={"transports": {"backend.test": f"smtp:[{mta.ip}]:25"}},
        restrictions={
            "recipient": [
                "permit_mynetworks",
                "permit_sasl_authenticated",
                "reject_unauth_destination",
                "reject_unverified_recipient",
            ]
        },
    )
    app = make_appliance(settings)
    code, reply = app.rcpt("someone@cgnat.test", "nobody@backend.test")
    # the probe's answer from the backend, passed on at RCPT time
    assert code in (450, 550), reply
    assert "Recipient address rejected" in reply and "User unknown" in reply, reply
    code, reply = app.rcpt("someone@cgnat.test", "known@backend.test")
    assert code == 250, reply
    # results are kept on the postfix-data volume
    assert app.exec("test", "-s", "/var/lib/postfix/verify_cache.db")[0] == 0


def test_blocklist_sender_mx_and_resolv_conf_follow_the_dns(
    client: docker.DockerClient,
    make_appliance: MakeAppliance,
    dns: peers.Dns,
    clean_dns: peers.Dns,
) -> None:
    # smtpd's own blocklist check (without postscreen; test_postscreen has postscreen's)
    settings = base(rbl={"lists": ["bl.test"]}, postscreen={"enabled": False})
    app = make_appliance(settings, dns=[clean_dns.ip])
    # P8: the guide's bogon list refuses a sender whose MX is private
    code, reply = app.rcpt("someone@private.test", ALICE[0])
    assert code == 554 and "IANA reserved address RFC1918" in reply, reply
    code, reply = app.rcpt("someone@cgnat.test", ALICE[0])
    assert code == 250, reply
    # R1: the resolver changes; Postfix's chroot copy follows, and P10 now refuses
    app.exec("sh", "-c", f"echo 'nameserver {dns.ip}' > /etc/resolv.conf")
    code, reply = rcpt_until(app, "someone@cgnat.test", lambda code, _: code == 554)
    assert "Blocked by test list" in reply, reply
    assert "chroot copy of /etc/resolv.conf updated" in app.logs()
    # a whitelisted client is not checked
    app.write_settings(
        {**settings, "rbl": {"lists": ["bl.test"], "whitelist": [bridge_gateway(client)]}}
    )
    rcpt_until(app, "someone@cgnat.test", lambda code, _: code == 250)


def test_client_access_by_name_and_by_network(
    client: docker.DockerClient, make_appliance: MakeAppliance, clean_dns: peers.Dns
) -> None:
    gateway = bridge_gateway(client)
    clean_dns.set_records(
        [*BASE_RECORDS, f"PTR {gateway} gw-client.test", f"A gw-client.test {gateway}"]
    )
    settings = base(access={"clients": {"gw-client.test": "REJECT known by name"}})
    app = make_appliance(settings, dns=[clean_dns.ip])
    code, reply = app.rcpt("someone@cgnat.test", ALICE[0])  # hash table, by name
    assert code == 554 and "known by name" in reply, reply
    app.write_settings(
        {**settings, "access": {"clients": {f"{gateway}/32": "REJECT known by network"}}}
    )  # cidr table
    code, _ = rcpt_until(app, "x@cgnat.test", lambda _, text: "known by network" in text)
    assert code == 554


def test_internet_preset_refuses_unknown_sender_domain(
    make_appliance: MakeAppliance, clean_dns: peers.Dns
) -> None:
    settings = base(restrictions={"preset": "internet"})
    app = make_appliance(settings, dns=[clean_dns.ip])
    code, reply = app.rcpt("someone@nowhere.test", ALICE[0])
    assert code in (450, 550) and "Domain not found" in reply, reply


def test_ldap_mechanism(client: docker.DockerClient, make_appliance: MakeAppliance) -> None:
    with peers.running(
        client, peers.Ldap, users={"lara@example.com": "lara-pw-1"}, ldap_base="dc=example,dc=com"
    ) as ldap:
        settings = {
            "hostname": "mail.example.com",
            "domains": ["example.com"],
            "greylisting": {"enabled": False},
            "sasl": {
                "mechanism": "ldap",
                "ldap": {
                    "servers": [f"ldap://{ldap.ip}/"],
                    "search_base": "ou=people,dc=example,dc=com",
                },
            },
            "users": [{"address": "lara@example.com"}],
        }
        app = make_appliance(settings)
        assert app.can_login("lara@example.com", "lara-pw-1")
        assert not app.can_login("lara@example.com", "lara-pw-2")
        app.imap("lara@example.com", "lara-pw-1").logout()


def test_fetchmail_from_a_dovecot_provider_pop3_plain_and_imaps(
    client: docker.DockerClient, make_appliance: MakeAppliance
) -> None:
    users = {"pat": "pat-pw-1", "kim": "kim-pw-1"}
    with peers.running(client, peers.Pop, users=users) as pop:
        pop_mid, pop_text = message("x@provider.test", "pat@provider.test", "plain pop3")
        imap_mid, imap_text = message("x@provider.test", "kim@provider.test", "imaps keep")
        pop.deliver("pat", pop_text)
        pop.deliver("kim", imap_text)
        settings = base(
            fetchmail={
                "interval": 10,
                "accounts": [
                    {
                        "server": "pop.provider.test",
                        "protocol": "pop3",
                        "port": 110,
                        "ssl": False,
                        "verify_certificate": False,
                        "user": "pat",
                        "password_file": "/config/pat.pw",
                        "deliver_to": ALICE[0],
                    },
                    {
                        "server": "pop.provider.test",
                        "protocol": "imap",
                        "port": 993,
                        "ssl": True,
                        "verify_certificate": False,
                        "user": "kim",
                        "keep": True,
                        "password_file": "/config/kim.pw",
                        "deliver_to": BOB[0],
                    },
                ],
            }
        )
        files = {"pat.pw": "pat-pw-1\n", "kim.pw": "kim-pw-1\n"}
        app = make_appliance(settings, extra_files=files, extra_hosts={"pop.provider.test": pop.ip})
        app.wait_delivered(*ALICE, pop_mid, timeout=60)
        app.wait_delivered(*BOB, imap_mid, timeout=60)
        wait_until(lambda: pop.count("pat") == 0, 30, "pat's mail fetched", interval=0.5)
        assert pop.count("kim") == 1

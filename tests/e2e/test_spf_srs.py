"""Issue 8: SPF checks of mail from outside (policyd-spf) and SRS for forwarded mail
(postsrsd), against the DNS peer and the MTA peer (tests.e2e.outside).

Strangers connect to the published port 25, so the appliance sees them coming from
the bridge gateway: SPF records name that address to pass, or leave it out to fail.
"""

from __future__ import annotations

import re
import smtplib
from typing import Any

import docker

from tests.e2e import peers
from tests.e2e.appliance import Appliance, bridge_gateway
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.outside import headers_of, publish, received, settings_for
from tests.e2e.util import wait_until

PW = "spf-secret-1"
ALICE = ("alice@example.com", PW)


def settings(**extra: Any) -> dict[str, Any]:
    # the MTA peer's address is a private one: its senders' MX would be refused
    return settings_for(ALICE, access={"sender_mx_bogons": False}, **extra)


def from_outside(app: Appliance, sender: str, to: str, n: int) -> tuple[int, str, str]:
    """(code, reply, Message-ID) of one message from a stranger on port 25."""
    mid = f"<spf-{n}@{sender.split('@')[1]}>"
    text = f"From: {sender}\r\nTo: {to}\r\nSubject: spf {n}\r\nMessage-ID: {mid}\r\n\r\nhi\r\n"
    client = app.smtp(25)
    try:
        client.sendmail(sender, [to], text)
        return 250, "", mid
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = exc.recipients[to]
        return code, reply.decode(), mid
    finally:
        client.close()


def test_spf_pass_softfail_and_fail_on_port_25(
    client: docker.DockerClient,
    make_appliance: MakeAppliance,
    auth_dns: peers.Dns,
    remote_mta: peers.Mta,
) -> None:
    gw = bridge_gateway(client)
    publish(
        auth_dns,
        remote_mta,
        {
            "pass.example": f"v=spf1 ip4:{gw} -all",
            "soft.example": "v=spf1 ip4:192.0.2.1 ~all",
            "fail.example": "v=spf1 ip4:192.0.2.1 -all",
        },
    )
    app = make_appliance(settings(), dns=[auth_dns.ip])

    code, _, mid = from_outside(app, "a@pass.example", ALICE[0], 1)
    assert code == 250
    assert re.search(r"^Received-SPF: Pass ", headers_of(app, ALICE, mid), re.M)
    code, _, mid = from_outside(app, "a@soft.example", ALICE[0], 2)
    assert code == 250  # softfail is marked, never refused
    assert re.search(r"^Received-SPF: Softfail ", headers_of(app, ALICE, mid), re.M)
    code, reply, _ = from_outside(app, "a@fail.example", ALICE[0], 3)
    assert code == 550 and "SPF" in reply, reply
    code, _, mid = from_outside(app, "a@nospf.example", ALICE[0], 4)
    assert code == 250
    assert re.search(r"^Received-SPF: None ", headers_of(app, ALICE, mid), re.M)

    # logged-in users are not checked: their sender domain may well fail SPF
    _, code, reply = app.send("alice@example.com", ALICE[0], port=587, login=ALICE)
    assert code == 250, reply

    # spf.fail: mark takes the hard fail, and says so
    app.write_settings(settings(spf={"fail": "mark"}))

    def marked() -> str | None:
        code, _, mid = from_outside(app, "b@fail.example", ALICE[0], 5)
        return mid if code == 250 else None

    mid = wait_until(marked, 20, lambda: app.logs()[-2000:], interval=0.5)
    assert re.search(r"^Received-SPF: Fail ", headers_of(app, ALICE, mid), re.M)


def test_forwarded_mail_gets_an_srs_sender_and_its_bounce_comes_back(
    make_appliance: MakeAppliance, auth_dns: peers.Dns, remote_mta: peers.Mta
) -> None:
    publish(auth_dns, remote_mta, {})
    remote_mta.clear()
    app = make_appliance(
        settings(aliases={"fwd@example.com": "bob@remote.test"}), dns=[auth_dns.ip]
    )
    text = (
        "From: someone@remote.test\r\nTo: fwd@example.com\r\nSubject: forward me\r\n"
        "Message-ID: <srs-1@remote.test>\r\n\r\nhi\r\n"
    )
    client = app.smtp(25)
    try:
        client.sendmail("someone@remote.test", ["fwd@example.com"], text)
    finally:
        client.close()
    forwarded = received(remote_mta, "forward me").decode()
    found = re.search(r"^Return-Path: <(SRS0=[^>]+@example\.com)>", forwarded, re.M)
    assert found, forwarded[:1000]
    srs_address = found.group(1)
    assert "remote.test=someone" in srs_address
    assert "From: someone@remote.test" in forwarded  # the author stays the author

    # the far end bounces to the SRS address: it reaches the original sender
    bounce = (
        f"From: MAILER-DAEMON@remote.test\r\nTo: {srs_address}\r\n"
        "Subject: bounce of forward me\r\nMessage-ID: <srs-bounce-1@remote.test>\r\n\r\n"
        "Your message could not be delivered.\r\n"
    )
    client = app.smtp(25)
    try:
        client.sendmail("", [srs_address], bounce)
    finally:
        client.close()
    back = received(remote_mta, "bounce of forward me").decode()
    assert re.search(r"^X-Original-To: someone@remote\.test", back, re.M), back[:1000]

    # a forged SRS address (a bad hash) is not a way to relay through us
    client = app.smtp(25)
    try:
        code, reply = client.mail("")
        code, reply = client.rcpt("SRS0=xxxx=AA=remote.test=victim@example.com")
    finally:
        client.close()
    assert code >= 500, reply

"""Issue 8: DMARC verdicts (OpenDMARC) on mail from outside, the three policies, and
hostile ARC headers against the real daemon (OpenDMARC 1.4.2 has open crash bugs on
them): whatever OpenDMARC does with them, no message is refused or lost.

Strangers arrive from the bridge gateway; SPF records name it to pass. Their domains
are under .example (tests.e2e.outside).
"""

from __future__ import annotations

import email
import re
import smtplib
from typing import Any

import docker
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, bridge_gateway
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.outside import headers_of, publish, settings_for
from tests.e2e.util import wait_until

PW = "dmarc-secret-1"
ALICE = ("alice@example.com", PW)


def settings(policy: str) -> dict[str, Any]:
    return settings_for(ALICE, dmarc={"policy": policy})


def records(gw: str) -> dict[str, str]:
    return {
        # SPF passes and aligns: DMARC passes
        "good.example": f"v=spf1 ip4:{gw} -all",
        "_dmarc.good.example": "v=DMARC1; p=reject",
        # SPF softfails (not refused by SPF), no DKIM: DMARC fails
        "bad.example": "v=spf1 ip4:192.0.2.1 ~all",
        "_dmarc.bad.example": "v=DMARC1; p=reject",
        "meh.example": "v=spf1 ip4:192.0.2.1 ~all",
        "_dmarc.meh.example": "v=DMARC1; p=quarantine",
    }


def send(app: Appliance, sender: str, n: int, extra: str = "") -> tuple[int, str, str]:
    """(code after DATA, reply, Message-ID) of a stranger's message to alice on port 25."""
    mid = f"<dmarc-{n}@{sender.split('@')[1]}>"
    text = (
        f"{extra}From: {sender}\r\nTo: {ALICE[0]}\r\nSubject: dmarc {n}\r\n"
        f"Message-ID: {mid}\r\n\r\nhi\r\n"
    )
    client = app.smtp(25)
    try:
        client.sendmail(sender, [ALICE[0]], text.encode("utf-8"))  # 8-bit headers too
        return 250, "", mid
    except smtplib.SMTPDataError as exc:
        error = exc.smtp_error
        return exc.smtp_code, error.decode() if isinstance(error, bytes) else error, mid
    finally:
        client.close()


def verdict(app: Appliance, mid: str) -> str:
    """Our one Authentication-Results of the delivered message, unfolded: SPF's,
    OpenDKIM's and OpenDMARC's verdicts, in that order."""
    headers = headers_of(app, ALICE, mid)
    results = email.message_from_string(headers).get_all("Authentication-Results") or []
    assert len(results) == 1, headers
    ours = " ".join(str(results[0]).split())
    assert re.fullmatch(r"mail\.example\.com; spf=\w+ .*; dkim=.*; dmarc=\w+ .*", ours), ours
    return ours


def held(app: Appliance, sender: str) -> str:
    """The queue ID of the message from `sender` in the hold queue (waits for it)."""
    return str(
        wait_until(
            lambda: next(
                (
                    m["queue_id"]
                    for m in app.queue()
                    if m["sender"] == sender and m["queue_name"] == "hold"
                ),
                None,
            ),
            20,
            lambda: f"{sender} held\n{app.logs()[-2000:]}",
            interval=0.2,
        )
    )


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
def test_dmarc_pass_and_fail_under_each_policy(
    client: docker.DockerClient,
    make_appliance: MakeAppliance,
    auth_dns: peers.Dns,
    remote_mta: peers.Mta,
    policy: str,
) -> None:
    publish(auth_dns, remote_mta, records(bridge_gateway(client)))
    app = make_appliance(settings(policy), dns=[auth_dns.ip])

    # a client's own claims at the top of its headers are not folded in as ours
    forged = (
        f"Received-SPF: Pass (mailfrom) identity=mailfrom; client-ip={bridge_gateway(client)}; "
        "envelope-from=x@forged.example\r\n"
        "Authentication-Results: mail.example.com; dkim=pass header.d=forged.example\r\n"
    )
    code, _, mid = send(app, "a@good.example", 1, forged)
    assert code == 250
    ours = verdict(app, mid)
    assert "spf=pass smtp.mailfrom=a@good.example;" in ours and "dmarc=pass" in ours, ours
    assert "forged" not in ours, ours

    code, reply, mid = send(app, "a@bad.example", 2)  # the domain asks for reject
    if policy == "reject":
        assert code == 550, reply
    else:
        assert code == 250, reply
    if policy == "none":
        assert "spf=softfail smtp.mailfrom=a@bad.example;" in verdict(app, mid)
        assert "dmarc=fail" in verdict(app, mid)
    elif policy == "quarantine":
        held(app, "a@bad.example")

    code, _, mid = send(app, "a@meh.example", 3)  # the domain asks for quarantine
    assert code == 250  # never refused: only reject domains are
    if policy == "none":
        assert "dmarc=fail" in verdict(app, mid)
    else:  # held for review; released, it is delivered with its verdict
        queue_id = held(app, "a@meh.example")
        code, out = app.cli("queue", "release", queue_id)
        assert code == 0, out
        assert "dmarc=fail" in verdict(app, mid)


# ARC headers of the kinds OpenDMARC 1.4.2's open crash reports describe: missing or
# empty tags, absurd instance numbers, duplicates, and sets that do not line up.
HOSTILE_ARC = [
    "ARC-Seal:\r\n",
    "ARC-Seal: i=\r\n",
    "ARC-Seal: i=1\r\n",
    "ARC-Seal: i=1; a=rsa-sha256; cv=none; d=good.example; s=x; b=\r\n",
    "ARC-Seal: i=0; cv=pass\r\nARC-Seal: i=-1; cv=fail\r\n",
    "ARC-Seal: i=99999999999999999999; a=rsa-sha256; cv=pass; d=x; s=y; b=AA==\r\n",
    "ARC-Seal: i=1; i=2; i=3; cv=none; cv=pass\r\n",
    "ARC-Seal: ;;;;;;;;;;==;=;=\r\n",
    "ARC-Authentication-Results: i=1\r\nARC-Message-Signature: i=1\r\nARC-Seal: i=2; cv=pass\r\n",
    "ARC-Authentication-Results:\r\nARC-Seal: i=1; cv=none; d=; s=; b=\r\n",
    "ARC-Seal: i=1; cv=none; d=" + "x" * 5000 + "; s=y; b=" + "A" * 5000 + "\r\n",
    "".join(f"ARC-Seal: i={i}; cv=pass; d=x; s=y; b=AA==\r\n" for i in range(1, 60)),
    "ARC-Seal: i=1; cv=none; d=\xe9\xe8.example; s=y; b=AA==\r\n",
]


def test_hostile_arc_headers_never_cost_a_message(
    client: docker.DockerClient,
    make_appliance: MakeAppliance,
    auth_dns: peers.Dns,
    remote_mta: peers.Mta,
) -> None:
    publish(auth_dns, remote_mta, records(bridge_gateway(client)))
    app = make_appliance(settings("reject"), dns=[auth_dns.ip])
    before = int(app.readyz()[1]["daemons"]["opendmarc"]["pid"])
    mids = []
    for n, arc in enumerate(HOSTILE_ARC):
        code, reply, mid = send(app, "a@good.example", 100 + n, extra=arc)
        assert code == 250, f"{arc[:80]!r}: {code} {reply}"
        mids.append(mid)
    for mid in mids:
        app.wait_delivered(*ALICE, mid)
    # OpenDMARC is running afterwards, restarted by the controller if a header killed it
    ready = wait_until(
        lambda: (
            (body := app.readyz()[1])["daemons"]["opendmarc"].get("state") == "running" and body
        ),
        30,
        lambda: app.logs()[-3000:],
    )
    after = int(ready["daemons"]["opendmarc"]["pid"])
    crashed = "opendmarc" in app.logs() and before != after
    print(f"hostile ARC: {len(HOSTILE_ARC)} messages delivered; opendmarc restarted: {crashed}")
    # and it still gives verdicts
    code, _, mid = send(app, "a@good.example", 999)
    assert code == 250 and "dmarc=pass" in verdict(app, mid)

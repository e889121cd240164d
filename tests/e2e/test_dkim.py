"""Issue 8: DKIM signing and key rotation against the DNS peer and a remote MTA peer.

The appliance resolves through the DNS peer, which is also the authoritative
server of example.com (its NS record names the peer). Mail to remote.test goes by
MX to the MTA peer; dkimpy verifies what arrives there with the keys the DNS peer
serves. The keys move pending -> active -> retiring -> retired by what the DNS peer
publishes, with durations of seconds.
"""

from __future__ import annotations

import email
import json
import re
import subprocess
from typing import Any

import dkim as dkimpy  # type: ignore[import-untyped]
import dkim.util  # type: ignore[import-untyped]

from tests.e2e import peers
from tests.e2e.appliance import Appliance
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.outside import headers_of, publish, received, settings_for, txt_from
from tests.e2e.util import wait_until

PW = "dkim-secret-1"
ALICE = ("alice@example.com", PW)
TTL = 5  # the DNS peer's TTL (PEER_DNS_TTL): how long a record must be seen first


def settings(**dkim: Any) -> dict[str, Any]:
    return settings_for(ALICE, dkim={"dns_check_every": "1s", "retire_after": "15s", **dkim})


def keys(app: Appliance) -> list[dict[str, Any]]:
    code, out = app.cli("dkim", "list")
    assert code == 0, out
    return [
        dict(zip(("domain", "selector", "state"), line.split("\t")[:3], strict=True))
        for line in out.splitlines()
    ]


def wait_keys(app: Appliance, want: list[tuple[str, str]], timeout: float = 40) -> None:
    """Until the keys are in these states, and the live signing table signs with the
    active ones (the state is written first; the apply that renders it follows)."""
    active = {selector for selector, state in want if state == "active"}

    def live() -> bool:
        if [(k["selector"], k["state"]) for k in keys(app)] != want:
            return False
        where = "/etc/mailctl/current/opendkim"
        _, table = app.exec(
            "sh", "-c", f"cat {where}/signing_table {where}/ed25519_signing_table 2>/dev/null"
        )
        signing = {line.split()[1].split(".")[0] for line in table.splitlines() if "@" in line}
        return signing == active

    wait_until(live, timeout, lambda: f"keys {want}: {keys(app)}", interval=0.3)


def published(app: Appliance) -> dict[str, str]:
    """name -> TXT text of every DKIM record `mailctl dns` says to publish."""
    code, out = app.cli("dns", "--json")
    assert code == 0, out
    return {
        r["name"]: r["value"]
        for r in json.loads(out)
        if "._domainkey." in r["name"] and r["value"]  # empty: a retired one, to remove
    }


def send_out(app: Appliance, subject: str) -> None:
    _, code, reply = app.send(ALICE[0], "bob@remote.test", port=587, login=ALICE, subject=subject)
    assert code == 250, reply


def selectors(mail: bytes) -> list[str]:
    """The s= of every DKIM-Signature header, in order."""
    found = email.message_from_bytes(mail).get_all("DKIM-Signature") or []
    return [dict(dkimpy.util.parse_tag_value(str(h).encode()))[b"s"].decode() for h in found]


def first_key(app: Appliance) -> str:
    """The selector of the first key, once the rotator has made it (pending)."""
    wait_until(lambda: keys(app), 20, lambda: app.logs()[-3000:], interval=0.3)
    ((selector, state),) = [(k["selector"], k["state"]) for k in keys(app)]
    assert state == "pending" and re.fullmatch(r"mc\d{8}", selector), selector
    return str(selector)


def test_signing_follows_the_keys_through_rotation_and_revocation(
    make_appliance: MakeAppliance, auth_dns: peers.Dns, remote_mta: peers.Mta
) -> None:
    dns, mta = auth_dns, remote_mta
    publish(dns, mta, {})
    app = make_appliance(settings(), dns=[dns.ip])
    s1 = first_key(app)

    # pending: not published, so nothing is signed yet
    send_out(app, "before publishing")
    assert b"DKIM-Signature" not in received(mta, "before publishing")

    # published on the domain's name server: active after its TTL, and it signs
    publish(dns, mta, published(app))
    wait_keys(app, [(s1, "active")], timeout=TTL + 20)
    send_out(app, "signed by one")
    mail1 = received(mta, "signed by one")
    assert selectors(mail1) == [s1]
    assert dkimpy.verify(mail1, dnsfunc=txt_from(dns))

    # rotation: a second key waits for its record; the first signs until then
    code, out = app.cli("dkim", "rotate", "example.com")
    assert code == 0 and "new key" in out, out
    s2 = next(k["selector"] for k in keys(app) if k["state"] == "pending")
    assert s2 != s1
    send_out(app, "still the first")
    assert selectors(received(mta, "still the first")) == [s1]
    publish(dns, mta, published(app))  # both records, as `mailctl dns` says
    wait_keys(app, [(s1, "retiring"), (s2, "active")], timeout=TTL + 20)
    send_out(app, "signed by two")
    mail2 = received(mta, "signed by two")
    assert selectors(mail2) == [s2]
    # the overlap: mail signed with the retiring key still verifies
    assert dkimpy.verify(mail1, dnsfunc=txt_from(dns))
    assert dkimpy.verify(mail2, dnsfunc=txt_from(dns))

    # after retire_after the first key retires and its private key is deleted
    wait_keys(app, [(s1, "retired"), (s2, "active")], timeout=30)
    code, out = app.exec("ls", "/var/lib/mailctl/dkim/keys/example.com")
    assert out.split() == [f"{s2}.pem"], out
    assert f"{s1}._domainkey.example.com" not in published(app)
    assert f"; retired: remove it\n; {s1}._domainkey.example.com." in app.cli("dns")[1]

    # the private key: opendkim's alone, and nowhere the operator looks
    code, out = app.exec("stat", "-c", "%a %U", f"/var/lib/mailctl/dkim/keys/example.com/{s2}.pem")
    assert out.split() == ["600", "opendkim"], out
    code, pem = app.exec("cat", f"/var/lib/mailctl/dkim/keys/example.com/{s2}.pem")
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert len(body) > 1000
    code, status = app.cli("status")
    for where in (app.logs(), status, app.cli("dns")[1], app.cli("dkim", "list")[1]):
        assert body[40:100] not in where

    # revocation: the key stops signing at once and is published empty
    code, out = app.cli("dkim", "revoke", "example.com", s2)
    assert code == 0 and "revoked" in out, out
    assert published(app)[f"{s2}._domainkey.example.com"] == "v=DKIM1; k=rsa; p="
    send_out(app, "after revoking")
    assert b"DKIM-Signature" not in received(mta, "after revoking")
    states = {k["selector"]: k["state"] for k in keys(app)}
    assert states[s2] == "revoked" and list(states.values()).count("pending") == 1


def foreign_key() -> tuple[bytes, str]:
    """A key of sender.example's own: (private PEM, the p= of its TXT record)."""
    pem = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        capture_output=True,
        check=True,
    ).stdout
    pub = subprocess.run(
        ["openssl", "pkey", "-pubout"], input=pem, capture_output=True, check=True
    ).stdout.decode()
    return pem, "".join(line for line in pub.splitlines() if not line.startswith("-----"))


def test_mail_from_outside_is_verified_not_signed(
    make_appliance: MakeAppliance, auth_dns: peers.Dns, remote_mta: peers.Mta
) -> None:
    dns, mta = auth_dns, remote_mta
    pem, public = foreign_key()
    theirs = {"s1._domainkey.sender.example": f"v=DKIM1; k=rsa; p={public}"}
    publish(dns, mta, theirs)
    app = make_appliance(settings(), dns=[dns.ip])
    s1 = first_key(app)
    publish(dns, mta, {**theirs, **published(app)})
    wait_keys(app, [(s1, "active")], timeout=TTL + 20)

    def from_outside(n: int, signed: bool = False, tamper: bool = False) -> str:
        """Delivered headers of a message from sender.example on port 25 (a stranger's)."""
        # the stranger also claims a verdict of ours: forged, so it must go
        forged = b"Authentication-Results: mail.example.com; dkim=pass header.d=example.com\r\n"
        mid = f"<outside-{n}@sender.example>"
        text = (
            f"From: someone@sender.example\r\nTo: {ALICE[0]}\r\nSubject: outside {n}\r\n"
            f"Message-ID: {mid}\r\n\r\nhello from outside\r\n"
        ).encode()
        if signed:
            text = dkimpy.sign(text, b"s1", b"sender.example", pem) + text
        if tamper:
            text = text.replace(b"hello from", b"HELLO FROM")
        client = app.smtp(25)
        try:
            client.sendmail("someone@sender.example", [ALICE[0]], forged + text)
        finally:
            client.close()
        headers = headers_of(app, ALICE, mid)
        assert "dkim=pass header.d=example.com" not in headers  # the forged verdict is gone
        assert headers.count("DKIM-Signature") == (1 if signed else 0)  # none added by us
        results = email.message_from_string(headers).get_all("Authentication-Results") or []
        # one header of ours, with OpenDKIM's and OpenDMARC's verdicts folded into it
        ours = [" ".join(str(r).split()) for r in results]
        assert len(ours) == 1, results
        assert ours[0].startswith("mail.example.com; "), ours
        assert "; dmarc=" in ours[0] and ours[0].index("dkim=") < ours[0].index("dmarc="), ours
        return ours[0]

    assert "dkim=none" in from_outside(1)
    verdict = from_outside(2, signed=True)
    assert "dkim=pass" in verdict and "header.d=sender.example" in verdict, verdict
    assert "dkim=fail" in from_outside(3, signed=True, tamper=True)


def test_ed25519_signs_beside_rsa_and_both_verify(
    make_appliance: MakeAppliance, auth_dns: peers.Dns, remote_mta: peers.Mta
) -> None:
    """dkim.ed25519: two signatures (RSA and RFC 8463), each with its own published key."""
    dns, mta = auth_dns, remote_mta
    publish(dns, mta, {})
    app = make_appliance(settings(ed25519=True), dns=[dns.ip])
    wait_until(lambda: len(keys(app)) == 2, 20, lambda: app.logs()[-3000:], interval=0.3)
    by_algorithm = {
        line.split("\t")[4]: line.split("\t")[1] for line in app.cli("dkim", "list")[1].splitlines()
    }
    rsa, ed = by_algorithm["rsa"], by_algorithm["ed25519"]
    assert ed.startswith("me") and rsa.startswith("mc")
    assert published(app)[f"{ed}._domainkey.example.com"].startswith("v=DKIM1; k=ed25519; p=")
    publish(dns, mta, published(app))
    wait_keys(app, [(rsa, "active"), (ed, "active")], timeout=TTL + 20)
    send_out(app, "signed twice")
    mail = received(mta, "signed twice")
    assert sorted(selectors(mail)) == sorted([rsa, ed])
    signer = dkimpy.DKIM(mail)
    for i in range(2):
        assert signer.verify(idx=i, dnsfunc=txt_from(dns)), f"signature {i}"

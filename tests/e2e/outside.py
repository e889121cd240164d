"""The world outside the appliance for deliverability tests: a DNS peer that is also the
authoritative server of example.com, and an MTA peer that is remote.test's MX.

Sender domains of strangers are under .example, not .test: OpenDKIM's libunbound
answers .test itself (RFC 6761) and would never ask the DNS peer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from tests.e2e import peers
from tests.e2e.appliance import Appliance, crypt
from tests.e2e.data import SCREEN
from tests.e2e.util import wait_until


def settings_for(login: tuple[str, str], **extra: Any) -> dict[str, Any]:
    """mail.example.com for example.com, with `login` as its one user, no greylisting."""
    return {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [{"address": login[0], "password_hash": crypt(login[1])}],
        "greylisting": {"enabled": False},
        "postscreen": dict(SCREEN),
        **extra,
    }


def base_records(dns: peers.Dns, mta: peers.Mta) -> list[str]:
    return [
        "NS example.com ns1.example.com",
        f"A ns1.example.com {dns.ip}",
        "MX remote.test 10 mx.remote.test",
        f"A mx.remote.test {mta.ip}",
        # a stranger's sender domain, and the tests' HELO name (CGNAT: not refused)
        "MX sender.example 10 mx.sender.example",
        "A mx.sender.example 100.64.0.9",
        "A client.mailctl.test 100.64.0.2",
    ]


def publish(dns: peers.Dns, mta: peers.Mta, txt: dict[str, str], extra: Iterable[str] = ()) -> None:
    """The base records, TXT records name -> text, and any more lines."""
    records = [f"TXT {n} {v}" for n, v in txt.items()]
    dns.set_records([*base_records(dns, mta), *records, *extra])


def txt_from(dns: peers.Dns) -> Callable[..., bytes]:
    """dkimpy's DNS: what the DNS peer serves, the strings of one record joined."""

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        del timeout
        code, out = dns.exec("dig", "+short", "@127.0.0.1", name.decode().rstrip("."), "TXT")
        assert code == 0, out
        lines = [line for line in out.splitlines() if line]
        if not lines:
            return b""
        return "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', lines[0])).encode()

    return lookup


def received(mta: peers.Mta, subject: str) -> bytes:
    """The message with `subject` as the MTA peer stored it, with CRLF line ends."""
    found = wait_until(
        lambda: [m for m in mta.mails() if f"Subject: {subject}\n" in m],
        30,
        lambda: f"{subject} at the MTA peer\n{mta.logs()[-2000:]}",
        interval=0.2,
    )
    return found[0].replace("\n", "\r\n").encode()


def headers_of(app: Appliance, login: tuple[str, str], mid: str) -> str:
    """The header of the delivered message with Message-ID `mid` (waits for it)."""
    app.wait_delivered(*login, mid)
    imap = app.imap(*login)
    try:
        imap.select("INBOX", readonly=True)
        _, found = imap.search(None, "HEADER", "Message-ID", mid.strip("<>"))
        _, data = imap.fetch(found[0].split()[-1], "(BODY.PEEK[HEADER])")
    finally:
        imap.logout()
    part = data[0]
    assert isinstance(part, tuple), data
    return bytes(part[1]).decode()

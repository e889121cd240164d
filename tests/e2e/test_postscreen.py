"""Issue 10: postscreen on port 25 (pregreet, protocol and blocklist tests, its cache on
the postfix-data volume), and submission never behind it.

The client is this host through the published port: Docker's proxy makes it the bridge
gateway, a stranger to the appliance (not in `networks`).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, bridge_gateway
from tests.e2e.data import ALICE
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.outside import settings_for
from tests.e2e.util import wait_until

SENDER = "someone@cgnat.test"
RECORDS = [
    "MX cgnat.test 10 mx.cgnat.test",
    "A mx.cgnat.test 100.64.0.1",
    "A client.mailctl.test 100.64.0.2",  # the tests' HELO name exists
]


def screened(**postscreen: Any) -> dict[str, Any]:
    return settings_for(ALICE, postscreen={"greet_wait": 2, **postscreen})


class Raw:
    """A plain socket to a port of the appliance: SMTP by hand, to talk out of turn."""

    def __init__(self, app: Appliance, port: int = 25) -> None:
        self.sock = socket.create_connection(("127.0.0.1", app.ports[port]), timeout=20)
        self.buf = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def reply(self) -> tuple[int, list[str]]:
        """The next whole reply: (code, its lines); (0, []) when the server hung up."""
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    return 0, lines
                self.buf += chunk
            raw, self.buf = self.buf.split(b"\r\n", 1)
            line = raw.decode(errors="replace")
            lines.append(line)
            if line[3:4] != "-":
                return int(line[:3]), lines

    def close(self) -> None:
        self.sock.close()


def session(app: Appliance, rcpt: str = ALICE[0]) -> tuple[int, str]:
    """A polite client up to RCPT TO: its reply (code, text)."""
    raw = Raw(app)
    try:
        code, _ = raw.reply()
        for line in ("EHLO client.mailctl.test", f"MAIL FROM:<{SENDER}>", f"RCPT TO:<{rcpt}>"):
            if code >= 400 or code == 0:
                break
            raw.send(line)
            code, lines = raw.reply()
        return code, " ".join(lines) if code else "hung up"
    finally:
        raw.close()


@pytest.fixture(scope="module")
def dns(client: docker.DockerClient) -> Iterator[peers.Dns]:
    gw = peers.reversed_ip(bridge_gateway(client))
    with peers.running(
        client,
        peers.Dns,
        records=[
            *RECORDS,
            f"A {gw}.bl.test 127.0.0.2",
            f"A {gw}.weak.test 127.0.0.3",
            f"A {gw}.broken.test 127.255.255.254",  # a list's error answer, not a listing
        ],
    ) as peer:
        yield peer


def test_a_client_that_talks_first_is_refused(make_appliance: MakeAppliance) -> None:
    app = make_appliance(screened(protocol_tests=False))
    raw = Raw(app)
    try:
        first = raw.sock.recv(4096).decode()
        assert first.startswith("220-"), first  # postscreen's greeting, still going on
        raw.send("EHLO zombie.example")  # before the greeting is over
        code, _ = raw.reply()  # answered by postscreen's own engine, not smtpd
        assert code == 250
        raw.send(f"MAIL FROM:<{SENDER}>")
        raw.reply()
        raw.send(f"RCPT TO:<{ALICE[0]}>")
        code, lines = raw.reply()
    finally:
        raw.close()
    assert code == 550 and "Protocol error" in " ".join(lines), lines
    assert "PREGREET" in app.logs()
    # A polite client from the same address is still screened, and passes once it waits.
    code, text = session(app)
    assert code == 250, text


def test_protocol_tests_make_a_new_client_come_back_once_and_the_pass_survives_a_restart(
    make_appliance: MakeAppliance,
) -> None:
    app = make_appliance(screened(protocol_tests=True))
    code, text = session(app)
    assert code == 450 and "4.3.2" in text, text  # passed the tests: come back later
    wait_until(lambda: "PASS NEW" in app.logs(), 10, "postscreen's verdict logged")
    code, text = session(app)
    assert code == 250, text  # remembered: straight to smtpd
    code, out = app.exec("sh", "-c", "ls /var/lib/postfix/postscreen_cache*")
    assert code == 0, out  # on the postfix-data volume
    app.container.restart(timeout=30)
    app.refresh_ports()
    app.wait_ready()
    code, text = session(app)
    assert code == 250, text  # the restart forgot nothing
    assert "PASS OLD" in app.logs()


def test_blocklists_are_weighed_and_error_answers_do_not_count(
    client: docker.DockerClient, make_appliance: MakeAppliance, dns: peers.Dns
) -> None:
    settings = screened(protocol_tests=False)
    settings["rbl"] = {"lists": ["weak.test", "broken.test"]}
    settings["postscreen"]["dnsbl_threshold"] = 2
    app = make_appliance(settings, dns=[dns.ip])
    code, text = session(app)
    assert code == 250, text  # weak.test alone weighs 1 of 2; broken.test's answer is no listing
    # A heavier list is enough alone. postscreen keeps a pass for the listing's TTL, so a
    # new appliance asks afresh.
    settings["rbl"] = {"lists": ["bl.test", "weak.test"]}
    settings["postscreen"]["dnsbl_weights"] = {"bl.test": 2}
    app2 = make_appliance(settings, dns=[dns.ip])
    code, text = session(app2)
    assert code == 550 and "blocked using bl.test" in text, text
    # The allow-list of the blocklists lets it through, without asking them.
    settings["rbl"]["whitelist"] = [f"{bridge_gateway(client)}/32"]
    app2.write_settings(settings)
    wait_until(lambda: session(app2)[0] == 250, 30, "the allow-list live", interval=0.5)


def test_trusted_networks_skip_the_screen_and_submission_never_meets_it(
    make_appliance: MakeAppliance,
) -> None:
    app = make_appliance(screened(greet_wait=10))
    # From loopback (always trusted), inside the container: no wait for the greeting.
    t0 = time.monotonic()
    code, out = app.exec(
        "/opt/mailctl/bin/python",
        "-c",
        "import smtplib; s = smtplib.SMTP('127.0.0.1', 25, timeout=20); print(s.noop()); s.quit()",
    )
    assert code == 0 and "250" in out, out
    assert time.monotonic() - t0 < 8, "a trusted client waited for the greeting"
    assert "ALLOWLISTED [127.0.0.1]" in app.logs() or "WHITELISTED [127.0.0.1]" in app.logs()
    # Submission answers at once, with smtpd's own one-line greeting.
    raw = Raw(app, 587)
    try:
        t0 = time.monotonic()
        code, lines = raw.reply()
        assert code == 220 and len(lines) == 1, lines
        assert time.monotonic() - t0 < 5
    finally:
        raw.close()

"""Issue 10: PROXY protocol (v1 and v2) behind a real haproxy.

haproxy runs in a peer container on the default bridge and passes its ports to the
appliance's PROXY ports (12525 for port-25 traffic, 10587 for submission), which are
not published: only the balancer reaches them. This host is the client, through the
haproxy port published here, so the client address the appliance must see is the
bridge gateway, and haproxy's own address must never appear as the client.
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, bridge_gateway, message, tls_context
from tests.e2e.data import ALICE, SCREEN
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.outside import settings_for
from tests.e2e.util import wait_until

SENDER = "someone@cgnat.test"
RECORDS = [
    "MX cgnat.test 10 mx.cgnat.test",
    "A mx.cgnat.test 100.64.0.1",
    "A client.mailctl.test 100.64.0.2",
]


def settings(**extra: Any) -> dict[str, Any]:
    return settings_for(ALICE, proxy_protocol={"smtp": True, "submission": True}, **extra)


@pytest.fixture(scope="module")
def dns(client: docker.DockerClient) -> Iterator[peers.Dns]:
    gw = peers.reversed_ip(bridge_gateway(client))
    records = [*RECORDS, f"A {gw}.bl.test 127.0.0.2", f"TXT {gw}.bl.test listed"]
    with peers.running(client, peers.Dns, records=records) as peer:
        yield peer


def balancer(client: docker.DockerClient, app: Appliance) -> peers.Proxy:
    spec = f"2525={app.ip}:12525:v1,2526={app.ip}:12525:v2,2587={app.ip}:10587:v2"
    return peers.start(client, peers.Proxy, env={"PEER_PROXY": spec}, publish=(2525, 2526, 2587))


def rcpt(port: int, to: str = ALICE[0]) -> tuple[int, str]:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
            s.ehlo("client.mailctl.test")
            code, reply = s.mail(SENDER)
            if code == 250:
                code, reply = s.rcpt(to)
            return code, reply.decode(errors="replace")
    except (OSError, smtplib.SMTPException) as exc:
        return 0, repr(exc)


def clients_seen(app: Appliance) -> set[str]:
    """Every client address postscreen and smtpd logged a connection from."""
    found = re.findall(r"(?:CONNECT from|connect from \S*?)\[([0-9.]+)\]", app.logs())
    return set(found)


def test_blocklists_greylisting_access_maps_and_logs_see_the_client_behind_haproxy(
    client: docker.DockerClient, make_appliance: MakeAppliance, dns: peers.Dns
) -> None:
    gw = bridge_gateway(client)
    base = settings(rbl={"lists": ["bl.test"]})
    app = make_appliance(base, dns=[dns.ip])
    proxy = balancer(client, app)
    try:
        v1, v2, sub = (proxy.host_port(p) for p in (2525, 2526, 2587))
        # blocklists (in postscreen): the listed address is the client's, not haproxy's
        for port in (v1, v2):
            code, text = rcpt(port)
            assert code == 550 and "blocked using bl.test" in text, text
        # greylisting: postgrey is asked about the client's address
        greylist = {k: v for k, v in base.items() if k != "rbl"}
        greylist["greylisting"] = {"enabled": True, "delay": 3}
        app.write_settings(greylist)
        wait_until(lambda: rcpt(v2)[0] == 450, 30, "greylisting live")
        assert re.search(rf"client_address={re.escape(gw)}\b", app.logs()), app.logs()[-2000:]
        # access maps: refused by the client's address, on both header versions
        refused = {**base, "rbl": {}, "access": {"clients": {gw: "REJECT known by address"}}}
        app.write_settings(refused)
        wait_until(lambda: "known by address" in rcpt(v1)[1], 30, "the access map live")
        code, text = rcpt(v2)
        assert code == 554 and "known by address" in text, text
        # submission through the balancer: a login sends mail, and the client is seen
        with smtplib.SMTP("127.0.0.1", sub, timeout=20) as s:
            s.ehlo("client.mailctl.test")
            s.starttls(context=tls_context())
            s.ehlo("client.mailctl.test")
            s.login(*ALICE)
            mid, text = message(ALICE[0], ALICE[0], "through haproxy")
            s.sendmail(ALICE[0], [ALICE[0]], text)
        app.wait_delivered(*ALICE, mid)
        assert re.search(rf"postfix/submission/smtpd.*connect from \S*\[{re.escape(gw)}\]",
                         app.logs())  # fmt: skip
        seen = clients_seen(app)
        assert gw in seen and proxy.ip not in seen, (seen, proxy.ip)
    finally:
        proxy.remove()


@pytest.mark.parametrize("port", [12525, 10587])
def test_plain_smtp_to_a_proxy_port_is_refused(make_appliance: MakeAppliance, port: int) -> None:
    app = make_appliance(settings(postscreen={"enabled": port == 12525, **SCREEN}))
    probe = (
        f"import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=20); "
        "s.sendall(b'EHLO client.mailctl.test\\r\\n'); data = b''\n"
        "try:\n"
        "    while (chunk := s.recv(4096)): data += chunk\n"
        "except ConnectionResetError: data += b' (reset)'\n"
        "print(repr(data))"
    )
    code, out = app.exec("/opt/mailctl/bin/python", "-c", probe)
    assert code == 0, out
    assert "220" not in out and "250" not in out, out  # hung up, never greeted
    wait_until(lambda: "haproxy" in app.logs(), 10, "the refusal logged")

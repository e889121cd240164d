"""Issue 2 (and P9/G1): strangers are greylisted, and nobody outside can relay.

Port 25 is reached two ways: through the port published on the Docker host
(Docker's userland proxy makes the client appear to come from the bridge
gateway, inside the container's own subnet) and directly from another
container on the same network.
"""

from __future__ import annotations

import json
import time

import docker
import pytest

from tests.e2e.appliance import IMAGE, Appliance, bridge_gateway
from tests.e2e.data import ALICE, base_settings
from tests.e2e.util import LABEL, RUN_ID, wait_until

OUTSIDE = "outside.mailctl.test"

# Relay attempts from the classic list: each must be refused for an outside client.
RELAY_TRICKS = [
    "victim@example.net",
    "victim%example.net@example.com",
    "victim!example.net@example.com",
    "@example.com:victim@example.net",
    '"victim@example.net"@example.com',
    "victim@example.net.",
    "victim@[192.0.2.1]",
    "victim@example.com@example.net",
]


def test_stranger_is_greylisted_then_accepted_after_the_delay(appliance: Appliance) -> None:
    sender = f"friend-{time.monotonic_ns()}@sender.mailctl.test"
    code, reply = appliance.rcpt(sender, ALICE[0], helo=OUTSIDE)
    assert code == 450, reply
    assert "reylist" in reply
    time.sleep(4)  # the test appliance's delay is 3 s
    mid, code, reply = appliance.send(sender, ALICE[0], helo=OUTSIDE, subject="after greylisting")
    assert code == 250, reply
    appliance.wait_delivered(*ALICE, mid)


def test_greylisting_whitelists_recipients_and_clients(
    client: docker.DockerClient, fresh: Appliance
) -> None:
    settings = base_settings()
    settings["greylisting"]["whitelist_recipients"] = [ALICE[0]]
    fresh.write_settings(settings)
    sender = f"friend-{time.monotonic_ns()}@sender.mailctl.test"
    wait_until(
        lambda: fresh.rcpt(sender, ALICE[0], helo=OUTSIDE)[0] == 250,
        15,
        "alice whitelisted",
        interval=0.2,
    )
    code, reply = fresh.rcpt(sender, "bob@example.com", helo=OUTSIDE)
    assert code == 450 and "reylist" in reply, reply  # only alice is whitelisted
    settings["greylisting"]["whitelist_clients"] = [bridge_gateway(client)]
    fresh.write_settings(settings)
    wait_until(
        lambda: fresh.rcpt(f"new-{sender}", "bob@example.com", helo=OUTSIDE)[0] == 250,
        15,
        "the bridge gateway whitelisted",
        interval=0.2,
    )


@pytest.mark.parametrize("rcpt", RELAY_TRICKS)
def test_relay_through_published_port_is_refused(appliance: Appliance, rcpt: str) -> None:
    code, reply = appliance.rcpt("someone@sender.mailctl.test", rcpt, helo=OUTSIDE)
    assert 500 <= code < 600, (code, reply)


def test_relay_from_a_container_on_the_same_network_is_refused(
    client: docker.DockerClient, appliance: Appliance
) -> None:
    script = f"""
import json, smtplib
out = {{}}
for rcpt in {RELAY_TRICKS!r}:
    s = smtplib.SMTP({appliance.ip!r}, 25, timeout=20)
    s.ehlo("neighbour.mailctl.test")
    s.mail("someone@sender.mailctl.test")
    out[rcpt] = s.rcpt(rcpt)[0]
    s.close()
print(json.dumps(out))
"""
    peer = client.containers.run(
        IMAGE,
        entrypoint=["/opt/mailctl/bin/python", "-c", script],
        dns=["127.0.0.1"],
        labels={LABEL: RUN_ID},
        detach=True,
    )
    try:
        assert peer.wait(timeout=60)["StatusCode"] == 0, peer.logs().decode()
        codes = json.loads(peer.logs(stderr=False).decode().strip().splitlines()[-1])
    finally:
        peer.remove(force=True)
    assert codes and all(500 <= c < 600 for c in codes.values()), codes


def test_logged_in_user_may_send_outward_but_stranger_may_not(appliance: Appliance) -> None:
    client = appliance.smtp(587, login=ALICE)
    try:
        client.mail(ALICE[0])
        code, _ = client.rcpt("someone@example.net")
        assert code == 250  # accepted for relay; delivery is not attempted by this test
        client.rset()
    finally:
        client.close()
    code, _ = appliance.rcpt(ALICE[0], "someone@example.net", helo=OUTSIDE)
    assert code >= 500

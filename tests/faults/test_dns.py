"""DNS unreachable while running: the resolver the container was given stops answering.

The appliance starts with the tests' usual resolver (127.0.0.1: nothing listens,
every query is refused at once). The fault points /etc/resolv.conf at an unused
address on Docker's bridge network, where queries are not refused but lost: each
lookup now waits for the resolver's timeout, as with a dead upstream. The
controller copies the file into Postfix's chroot and reloads Postfix. Trusted
clients (587, logged in) must still get their mail delivered: local delivery
needs no DNS. What does look things up: smtpd's reverse lookup of each client and
the sender-MX check of strangers; the slowest session is printed.
"""

from __future__ import annotations

import ipaddress

import docker

from tests.e2e.data import ALICE, BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.faults.harness import FaultRun, fault_settings

# How long a trusted client may wait for one whole session with DNS gone.
SESSION_BOUND_S = 15.0


def dead_address(client: docker.DockerClient) -> str:
    """The last host address of the bridge subnet, unless a container has it."""
    net = client.networks.get("bridge")
    subnet = ipaddress.ip_network(net.attrs["IPAM"]["Config"][0]["Subnet"])
    used = {c.get("IPv4Address", "").split("/")[0] for c in net.attrs["Containers"].values()}
    for candidate in (subnet.broadcast_address - n for n in range(1, 20)):
        if str(candidate) not in used:
            return str(candidate)
    raise AssertionError("no unused address on the bridge network")


def test_dns_unreachable(client: docker.DockerClient, make_appliance: MakeAppliance) -> None:
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    dead = dead_address(client)
    run = FaultRun(app, "dns-unreachable", port=587, login=ALICE)
    run.start()

    def fault() -> None:
        code, out = app.exec("sh", "-c", f"echo 'nameserver {dead}' > /etc/resolv.conf")
        assert code == 0, out

    run.inject(fault)

    def chroot_follows() -> bool:
        _, out = app.exec("cat", "/var/spool/postfix/etc/resolv.conf")
        return dead in out

    run.recovered(expect_unready=False, ready_also=chroot_follows, timeout=30)
    accepted_before = len(run.stream.accepted)
    figures = run.finish(after=8)
    after = len(run.stream.accepted) - accepted_before
    figures.notes.append(f"{after} accepted in the 8 s after Postfix had the dead resolver")
    print(f"    {figures.notes[-1]}")
    run.check_recovered()
    assert after >= 1, f"mail from trusted clients stalled: {after} in 8 s ({figures.notes})"
    assert run.stream.slowest <= SESSION_BOUND_S, f"a session took {run.stream.slowest:.1f}s"
    run.check_readiness()
    run.check_delivery()

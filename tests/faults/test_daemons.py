"""kill -9 of one process inside the appliance while mail streams in.

Supervised daemons (Postfix master, cyrmaster, saslauthd, postgrey) are restarted
by the controller: /readyz must leave 200 while one is down and come back. Their
children (smtpd, qmgr, lmtpd) are restarted by their own master: readiness stays
as it is, and mail must keep flowing. The controller itself is PID 2's child of
tini: its death ends the container, which Docker's restart policy brings back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.data import ALICE, BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.faults.harness import FaultRun, fault_settings, follow, kill9, pids


@dataclass(frozen=True)
class Victim:
    role: str  # a harness.ROLES key
    daemon: str | None  # the supervised daemon it is (None: a child its master restarts)
    submission: bool = False  # stream on 587 with a login (the fault is in the login path)
    greylisting: bool = False


VICTIMS = {
    "postfix-master": Victim("postfix-master", "postfix"),
    "smtpd": Victim("smtpd", None),
    "qmgr": Victim("qmgr", None),
    "cyrmaster": Victim("cyrmaster", "cyrus"),
    "lmtpd": Victim("lmtpd", None),
    "saslauthd": Victim("saslauthd", "saslauthd", submission=True),
    # Logged-in users pass before the policy check; strangers would get 450 anyway.
    "postgrey": Victim("postgrey", "postgrey", submission=True, greylisting=True),
}


# Known open (issue 7): a SIGKILLed lmtpd in the middle of a delivery makes Postfix
# defer that message until its 300 s retry; only when the killed one was busy, so
# not strict. The fix (flush on an LMTP deferral while Cyrus stays ready) is pending.
LMTPD_BUSY = pytest.mark.xfail(
    reason="a busy lmtpd's message waits for Postfix's 300 s retry (issue 7, open)",
    strict=False,
)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=LMTPD_BUSY) if n == "lmtpd" else n for n in VICTIMS]
)
def test_kill9_daemon(make_appliance: MakeAppliance, name: str) -> None:
    victim = VICTIMS[name]
    settings = fault_settings()
    if victim.greylisting:
        settings["greylisting"] = {"enabled": True, "delay": 60}
    app = make_appliance(settings, extra_files=BASE_FILES)
    stream: dict[str, Any] = {"port": 587, "login": ALICE} if victim.submission else {}
    run = FaultRun(app, f"kill9-{name}", **stream)
    run.start()
    # The newest process of the role: for smtpd and lmtpd, the likeliest to be busy.
    pid = pids(app, victim.role)[-1]
    run.inject(lambda: kill9(app, pid))

    def replaced() -> bool:
        return any(p != pid for p in pids(app, victim.role))

    run.recovered(expect_unready=victim.daemon is not None, ready_also=replaced)
    run.finish()
    run.check_recovered()
    run.check_readiness(victim.daemon, pid)
    run.check_delivery()


def test_kill9_controller(make_appliance: MakeAppliance) -> None:
    app = make_appliance(
        fault_settings(), options={"restart_policy": {"Name": "on-failure"}}, extra_files=BASE_FILES
    )
    run = FaultRun(app, "kill9-controller")
    run.start()
    [pid] = pids(app, "controller")
    run.inject(lambda: kill9(app, pid))

    def restarted() -> bool:
        app.container.reload()
        return int(app.container.attrs["RestartCount"]) >= 1

    # Docker may publish the ports anew at the restart: follow them while waiting.
    run.recovered(expect_unready=True, ready_also=restarted, meanwhile=lambda: follow(app))
    run.finish()
    run.check_recovered()
    run.check_readiness()
    run.check_delivery()

"""kill -9 of one process inside the appliance while mail streams in.

Supervised daemons (Postfix master, cyrmaster, saslauthd, postgrey, opendkim) are restarted
by the controller: /readyz must leave 200 while one is down and come back. Their
children (smtpd, qmgr, lmtpd) are restarted by their own master: readiness stays
as it is, and mail must keep flowing. The controller itself is PID 2's child of
tini: its death ends the container, which Docker's restart policy brings back.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.data import ALICE, BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.faults.harness import (
    FaultRun,
    cut_lmtp_session,
    fault_settings,
    follow,
    kill9,
    pids,
)


@dataclass(frozen=True)
class Victim:
    role: str  # a harness.ROLES key
    daemon: str | None  # the supervised daemon it is (None: a child its master restarts)
    submission: bool = False  # stream on 587 with a login (the fault is in the login path)
    greylisting: bool = False


VICTIMS = {
    "postfix-master": Victim("postfix-master", "postfix"),
    "smtpd": Victim("smtpd", None),
    # port 25's front door: master starts a new one for the next client
    "postscreen": Victim("postscreen", None),
    "qmgr": Victim("qmgr", None),
    "cyrmaster": Victim("cyrmaster", "cyrus"),
    "lmtpd": Victim("lmtpd", None),
    "saslauthd": Victim("saslauthd", "saslauthd", submission=True),
    # Logged-in users pass before the policy check; strangers would get 450 anyway.
    "postgrey": Victim("postgrey", "postgrey", submission=True, greylisting=True),
    # The signer: submission waits (tempfail) while it is down, never sends unsigned.
    "opendkim": Victim("opendkim", "opendkim", submission=True),
    # The DMARC evaluator on port 25: its death lets mail through unevaluated.
    "opendmarc": Victim("opendmarc", "opendmarc"),
    # The fold of the verdicts, last on port 25: its death leaves them unfolded.
    "authres": Victim("authres", "authres"),
}


@pytest.mark.parametrize("name", list(VICTIMS))
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


CUT_OFF = "status=deferred (lost connection with"  # Postfix's line for a delivery cut off


def test_kill9_busy_lmtpd(make_appliance: MakeAppliance) -> None:
    """lmtpd killed in the middle of an LMTP session.

    Postfix defers the message it was delivering ("lost connection with ...") and
    would try it again only after minimal_backoff_time (300 s), though cyrmaster has
    a new lmtpd up at once. The controller reads the deferral in the log and asks for
    that message again (postqueue -i), so it arrives within the bound."""
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "kill9-busy-lmtpd", body="z" * 64 * 1024, interval=0.05)
    run.start()
    first = pids(app, "lmtpd")
    run.inject(lambda: cut_lmtp_session(app))
    run.recovered(
        expect_unready=False, ready_also=lambda: any(p not in first for p in pids(app, "lmtpd"))
    )
    run.finish()
    logs = app.logs()
    cut = logs.count(CUT_OFF)
    asked = logs.count("its LMTP connection was lost; delivering it again now")
    print(f"    deliveries cut off: {cut}; asked for again by the controller: {asked}")
    run.check_recovered()
    run.check_readiness()
    run.check_delivery()
    assert cut >= 1, "the kill cut no delivery off: this run proves nothing"
    assert asked >= 1, "the controller did not ask for the cut-off message again"


def test_lmtpd_crash_loop(make_appliance: MakeAppliance) -> None:
    """lmtpd killed again and again: cyrmaster switches LMTP off "until next SIGHUP".

    After five deaths in ten seconds cyrmaster stops serving LMTP while running on;
    nothing would deliver mail again until someone sent it a SIGHUP. The controller
    reads that line and sends one."""
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "lmtpd-crash-loop")
    run.start()
    first = pids(app, "lmtpd")

    def crash_loop() -> None:
        for _ in range(8):
            running = pids(app, "lmtpd")
            if running:  # none for a moment after a kill, until cyrmaster forks one
                kill9(app, *running)
            time.sleep(0.3)

    run.inject(crash_loop)
    run.recovered(
        expect_unready=False, ready_also=lambda: any(p not in first for p in pids(app, "lmtpd"))
    )
    run.finish()
    logs = app.logs()
    switched_off = logs.count("disabling until next SIGHUP")
    print(f"    times cyrmaster switched LMTP off: {switched_off}")
    run.check_recovered()
    run.check_readiness()
    run.check_delivery()
    assert switched_off >= 1, "cyrmaster never switched LMTP off: this run proves nothing"


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


def test_a_frozen_controller_holds_up_no_mail(make_appliance: MakeAppliance) -> None:
    """The log path never backs up into the daemons: with the controller (PID 1, the
    reader of /dev/log and of Postfix's log pipe) frozen for 10 s, Cyrus and Postfix go
    on delivering, and afterwards every delivery's log line is there."""
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "controller-frozen-10s")
    run.start()
    app.container.reload()
    host_pid = int(app.container.attrs["State"]["Pid"])  # SIGSTOP from inside: PID 1 ignores it
    run.inject(lambda: os.kill(host_pid, signal.SIGSTOP))
    try:
        time.sleep(10)
    finally:
        os.kill(host_pid, signal.SIGCONT)
    t_cont = time.monotonic()
    during = [m for m, t in dict(run.mailbox.first_seen).items() if run.t_fault + 1 < t < t_cont]
    run.recovered(expect_unready=False)
    run.finish()
    run.check_recovered()
    run.check_delivery()
    assert len(during) >= 10, f"only {len(during)} messages delivered while it was frozen"
    logs = app.logs()
    sent = logs.count("status=sent")  # Postfix's, through postlogd and its pipe
    delivered = logs.count("Delivered:")  # Cyrus lmtpd's, through /dev/log
    assert min(sent, delivered) >= run.figures.delivered, (sent, delivered, run.figures)

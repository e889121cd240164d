"""Cyrus down for a minute while mail streams in; then the backlog must drain.

How: cyrmaster is killed with SIGKILL and cannot be started again for OUTAGE_S
seconds (its binary is made non-executable: the supervisor's every restart
fails, as it would with a broken Cyrus volume or database). Then the cause is
removed. Postfix keeps accepting meanwhile (the queue is its own); LMTP
deliveries fail and are deferred.

Expected: /readyz 503 during the outage; 200 within a few seconds after the cause
is gone, with no one having to touch the appliance; then every accepted message
in its mailbox within BOUND_S. At 8a83ac6 neither held: the supervisor gave
Cyrus up (FATAL) after 5 failed starts (~8 s) until the next settings change, and
Postfix marked the LMTP destination dead and retried deferred mail only after
minimal_backoff_time/queue_run_delay (300 s). Now a FATAL daemon is tried again
every 10 s, and the queue is flushed when Cyrus answers again.
"""

from __future__ import annotations

import time

from tests.e2e.data import BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.faults.harness import FaultRun, fault_settings, kill9, pids

OUTAGE_S = 60.0
CYRMASTER = "/usr/sbin/cyrmaster"


def test_cyrus_down_for_a_minute(make_appliance: MakeAppliance) -> None:
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "cyrus-down-60s", interval=0.25, limit=500)
    run.start(warmup=10)
    [pid] = pids(app, "cyrmaster")

    def outage() -> None:
        app.exec("chmod", "000", CYRMASTER)
        kill9(app, pid)

    run.inject(outage)
    time.sleep(OUTAGE_S)
    app.exec("chmod", "755", CYRMASTER)
    over = time.monotonic()
    run.recovered(expect_unready=True, since=over, timeout=30)
    run.finish()
    run.check_recovered()
    run.check_readiness("cyrus", pid)
    run.check_delivery()

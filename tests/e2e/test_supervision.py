"""Issue 2 (R2): a daemon killed with SIGKILL is restarted and the appliance is ready again."""

from __future__ import annotations

import re
import smtplib
import time
from typing import Any

import pytest

from tests.e2e.appliance import Appliance
from tests.e2e.data import ALICE
from tests.e2e.util import wait_until


@pytest.mark.parametrize("daemon", ["postfix", "cyrus", "saslauthd", "postgrey"])
def test_sigkilled_daemon_is_restarted(fresh: Appliance, daemon: str) -> None:
    old = fresh.pid_of(daemon)
    restarts = fresh.readyz()[1]["daemons"][daemon]["restarts"]
    code, out = fresh.exec("sh", "-c", f"kill -KILL {old}")
    assert code == 0, out

    def back() -> dict[str, Any] | None:
        status, body = fresh.readyz()
        info: dict[str, Any] = body["daemons"][daemon]
        return info if status == 200 and info["pid"] not in (None, old) else None

    info = wait_until(back, 30, lambda: f"{daemon} not back\n{fresh.logs()[-3000:]}")
    assert info["restarts"] > restarts
    # Mail flows again end to end.
    mid, code, _ = wait_until(
        lambda: fresh.send(ALICE[0], ALICE[0], port=587, login=ALICE, subject=daemon),
        20,
        "a session on 587",
        interval=0.2,
        ignore=(OSError, smtplib.SMTPException),
    )
    assert code == 250
    fresh.wait_delivered(*ALICE, mid)


def test_sigterm_stops_everything_gracefully(fresh: Appliance) -> None:
    t0 = time.monotonic()
    fresh.container.stop(timeout=30)
    seconds = time.monotonic() - t0
    assert fresh.container.wait(timeout=5)["StatusCode"] == 0
    logs = fresh.logs()
    assert "all daemons stopped" in logs
    print(f"\nstopped in {seconds:.2f}s")

    # Reverse start order: postfix stops before cyrus, cyrus before saslauthd (each may
    # still be in its start window: ready counts from the first answer on its ports).
    def stopping(name: str) -> int:
        found = re.search(rf"mailctl: {name}: (starting|running) -> stopping", logs)
        assert found, logs[-2000:]
        return found.start()

    assert stopping("postfix") < stopping("cyrus") < stopping("saslauthd")

"""Issue 2 (R2): a daemon killed with SIGKILL is restarted and the appliance is ready again."""

from __future__ import annotations

import re
import time

import pytest

from tests.e2e.appliance import Appliance, message
from tests.e2e.conftest import PASSWORDS

ALICE = ("alice@example.com", PASSWORDS["alice@example.com"])


@pytest.mark.parametrize("daemon", ["postfix", "cyrus", "saslauthd", "postgrey"])
def test_sigkilled_daemon_is_restarted(fresh: Appliance, daemon: str) -> None:
    old = fresh.pid_of(daemon)
    restarts = fresh.readyz()[1]["daemons"][daemon]["restarts"]
    code, out = fresh.exec("sh", "-c", f"kill -KILL {old}")
    assert code == 0, out
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, body = fresh.readyz()
        info = body["daemons"][daemon]
        if status == 200 and info["pid"] not in (None, old):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"{daemon} not back: {body}\n{fresh.logs()[-3000:]}")
    assert info["restarts"] > restarts
    # Mail flows again end to end.
    mid, text = message(ALICE[0], ALICE[0], f"after killing {daemon}")
    deadline = time.monotonic() + 20
    while True:
        try:
            client = fresh.smtp(587, login=ALICE)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client.sendmail(ALICE[0], [ALICE[0]], text)
    client.quit()
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

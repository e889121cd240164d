"""The queue's filesystem full: Postfix must answer 4xx, never 250 and then lose it.

The queue is a tmpfs volume of its own (16 MB; Docker copies the image's
/var/spool/postfix into it, as into the compose file's `queue` volume). The
message size limit is 1 MB, so smtpd's free-space check (1.5 x the limit) is
met before the fault. The fault: a file fills every free byte while 64 KB
messages stream in; after FULL_S seconds it is removed. Every message that got
250 (before, during, after) must be delivered.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from tests.e2e.data import BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import LABEL, RUN_ID
from tests.faults.harness import FaultRun, fault_settings

FULL_S = 4.0
FILL = "/var/spool/postfix/fill"


@pytest.fixture
def queue_volume(client: docker.DockerClient) -> Iterator[str]:
    volume = client.volumes.create(
        driver="local",
        driver_opts={"type": "tmpfs", "device": "tmpfs", "o": "size=16m,mode=0755"},
        labels={LABEL: RUN_ID},
    )
    yield str(volume.name)
    with contextlib.suppress(docker.errors.APIError):
        volume.remove(force=True)


def test_queue_filesystem_full(make_appliance: MakeAppliance, queue_volume: str) -> None:
    app = make_appliance(
        fault_settings(smtp={"message_size_limit": 1_048_576}),
        volumes={queue_volume: {"bind": "/var/spool/postfix", "mode": "rw"}},
        extra_files=BASE_FILES,
    )
    run = FaultRun(app, "queue-full", body="y" * 64 * 1024, interval=0.05)
    run.start()
    full: dict[str, float] = {}

    def fill() -> None:
        app.exec("sh", "-c", f"dd if=/dev/zero of={FILL} bs=64k 2>/dev/null; sync")
        full["at"] = time.monotonic()

    run.inject(fill)
    _, df = app.exec("df", "-k", "/var/spool/postfix")
    refused_before = sum(run.stream.refused.values())
    time.sleep(FULL_S)
    refused_full = dict(run.stream.refused)
    accepted_full = [mid for mid, at in run.stream.accepted.items() if at > full["at"] + 0.5]
    app.exec("rm", "-f", FILL)
    freed = time.monotonic()

    def accepting() -> bool:
        return any(at > freed for at in run.stream.accepted.values())

    run.recovered(expect_unready=False, ready_also=accepting, timeout=30)
    figures = run.finish()
    figures.notes.append(f"while full: refused {refused_full}; df:\n{df}")
    print(f"    while full: {refused_full}\n{df}")
    run.check_recovered()
    # 4xx while full (and no 5xx: a client must try again, not bounce)
    codes = [k.split()[0] for k in refused_full if k[:1].isdigit()]
    assert sum(run.stream.refused.values()) > refused_before, "nothing refused while full"
    assert codes and all(c.startswith("4") for c in codes), refused_full
    assert not accepted_full, f"{len(accepted_full)} accepted with a full queue filesystem"
    run.check_readiness()
    run.check_delivery()

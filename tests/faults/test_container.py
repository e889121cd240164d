"""The whole container killed (SIGKILL, as a power cut or the OOM killer would) and
started again: the queue and the mailboxes are on its filesystem, nothing accepted
may be lost, and it must come back by itself.

The second test kills it while Postfix's cleanup is writing a queue file (a large
message in the middle of DATA) and leaves what such a crash can leave in
incoming/: a file under the temporary name cleanup gives a queue file before it
renames it to its queue ID (mail_queue_enter: `<pid>.<microseconds>`). It is
planted for a deterministic result; a kill inside the rename's window leaves the
same. Known bug at 8a83ac6: the controller then refuses to start (`postfix check:
postsuper: warning: bogus file name: incoming/...`).
"""

from __future__ import annotations

import smtplib

from tests.e2e.appliance import Appliance
from tests.e2e.data import ALICE, BASE_FILES
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.peers import tar_of
from tests.faults.harness import SENDER, FaultRun, fault_settings, follow


def restart_after_kill(app: Appliance, plant: dict[str, str] | None = None) -> None:
    app.container.kill()
    app.container.wait(timeout=30)
    if plant:
        assert app.container.put_archive("/var/spool/postfix/incoming", tar_of(plant, 0o600))
    app.container.start()


def test_docker_kill_and_start(make_appliance: MakeAppliance) -> None:
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "docker-kill")
    run.start()
    run.inject(lambda: restart_after_kill(app))
    run.recovered(expect_unready=True, meanwhile=lambda: follow(app))
    run.finish()
    run.check_recovered()
    run.check_readiness()
    run.check_delivery()


def big_message_half_sent(app: Appliance) -> smtplib.SMTP:
    """A session in the middle of DATA: headers and 2 MB of body sent, no end."""
    client = app.smtp(25)
    assert client.mail(SENDER)[0] == 250
    assert client.rcpt(ALICE[0])[0] == 250
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(b"Subject: big\r\nMessage-ID: <big-unfinished@mailctl.test>\r\n\r\n")
    client.send((b"x" * 998 + b"\r\n") * 2000)
    return client


def test_docker_kill_while_cleanup_writes(make_appliance: MakeAppliance) -> None:
    app = make_appliance(fault_settings(), extra_files=BASE_FILES)
    run = FaultRun(app, "docker-kill-mid-queue-file")
    run.start()
    big = big_message_half_sent(app)
    _, incoming = app.exec("sh", "-c", "ls -l /var/spool/postfix/incoming")
    print(f"\nincoming/ at the kill:\n{incoming}")
    run.inject(lambda: restart_after_kill(app, plant={"4242.123456": "partial"}))
    big.close()
    run.recovered(expect_unready=True, meanwhile=lambda: follow(app))
    run.finish()
    run.check_recovered()
    run.check_readiness()
    run.check_delivery()

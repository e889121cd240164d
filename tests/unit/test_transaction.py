"""The transaction and the controller loop, driven through their seams with fakes.

Real files in a temp layout, real renders of real settings; only the commands
(FakeRunner), the daemons (FakeDaemons) and the clock are stand-ins.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailctl.apply import files, inputs, logins, users
from mailctl.apply.transaction import Transaction, login_plan, reloads
from mailctl.errors import ApplyError, SettingsError
from mailctl.layout import Layout
from mailctl.reconcile import Controller
from mailctl.render import Facts
from mailctl.supervise import output
from mailctl.supervise.supervisor import Supervisor
from tests.unit.factory import CERT, HASH, KEY, base_data
from tests.unit.fakes import FakeClock, FakeDaemons, FakeRunner


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    (tmp_path / "root/etc").mkdir(parents=True)
    (tmp_path / "root/etc/hosts").write_text("127.0.0.1 localhost\n")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/cert.pem").write_bytes(CERT)
    (tmp_path / "certs/key.pem").write_bytes(KEY)
    return Layout(
        etc=tmp_path / "etc",
        state=tmp_path / "state",
        users=tmp_path / "state/users",
        chroot=tmp_path / "spool",
        root=tmp_path / "root",
        settings_dir=tmp_path / "config",
        owners=False,
    )


def write_settings(layout: Layout, **extra: Any) -> None:
    certs = layout.root.parent / "certs"
    data = base_data(
        tls={"cert_file": str(certs / "cert.pem"), "key_file": str(certs / "key.pem")}, **extra
    )
    layout.settings_dir.mkdir(parents=True, exist_ok=True)
    layout.settings_file.write_text(yaml.safe_dump(data))


def sasldb_settings(layout: Layout, **passwords: str) -> None:
    users_ = []
    for name, password in passwords.items():
        secret = layout.root.parent / f"{name}.pw"
        secret.write_text(password + "\n")
        users_.append({"address": f"{name}@example.com", "password_file": str(secret)})
    write_settings(layout, users=users_, sasl={"mechanism": "sasldb"}, aliases={})


def txn(layout: Layout, runner: FakeRunner, daemons: FakeDaemons | None = None, **kw: Any) -> Any:
    gathered = inputs.gather(layout, runner=runner, found=Facts())
    return Transaction(gathered, layout, runner=runner, daemons=daemons, **kw)


def sasldb_entries(layout: Layout) -> dict[str, str]:
    return dict(json.loads(layout.sasldb.read_text())) if layout.sasldb.exists() else {}


def live(layout: Layout, rel: str) -> str:
    return (files.current_link(layout.etc) / rel).read_text()


# --- the phases -----------------------------------------------------------------------


def test_first_apply_makes_every_file_live_and_checks_all(layout: Layout) -> None:
    write_settings(layout)
    runner = FakeRunner()
    outcome = txn(layout, runner, force=True).run()
    assert outcome.revision is not None
    assert "myhostname = mail.example.com" in live(layout, "postfix/main.cf")
    assert runner.ran("cyr_info"), "everything is checked on a first apply"
    assert (layout.chroot / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
    assert list(outcome.timings) == [
        *("plan", "stage", "validate", "swap", "logins", "reload", "commit", "total")
    ]


def test_a_change_reloads_only_the_daemons_that_read_it(layout: Layout) -> None:
    write_settings(layout)
    txn(layout, FakeRunner(), force=True).run()
    write_settings(layout, smtp={"message_size_limit": 1000000})
    daemons, runner = FakeDaemons(), FakeRunner()
    outcome = txn(layout, runner, daemons).run()
    assert outcome.changed == {"postfix/main.cf"}
    assert daemons.reloads == ["postfix"]
    assert not runner.ran("cyr_info"), "imapd.conf did not change: not checked again"


def test_unchanged_settings_make_no_revision(layout: Layout) -> None:
    write_settings(layout)
    first = txn(layout, FakeRunner(), force=True).run()
    daemons = FakeDaemons()
    again = txn(layout, FakeRunner(), daemons).run()
    assert again.revision is None and daemons.reloads == []
    assert files.live_revision(layout.etc) == first.revision


def test_a_refused_revision_leaves_the_live_one(layout: Layout) -> None:
    write_settings(layout)
    txn(layout, FakeRunner(), force=True).run()
    write_settings(layout, smtp={"message_size_limit": 1000000})
    runner = FakeRunner()
    runner.fail["postconf -c"] = "postconf: warning: something"
    with pytest.raises(ApplyError, match=r"\(validate\).*warning: something"):
        txn(layout, runner, FakeDaemons()).run()
    assert "message_size_limit = 1000000" not in live(layout, "postfix/main.cf")
    assert len(list(layout.revs.iterdir())) == 1, "the refused stage is gone"


def test_a_login_failure_after_the_swap_rolls_everything_back(layout: Layout) -> None:
    """The review's appendix B: the new revision stayed live, unreloaded, 'not applied'."""
    sasldb_settings(layout, alice="one")
    txn(layout, FakeRunner(), force=True).run()
    before = live(layout, "postfix/main.cf")
    sasldb_settings(layout, alice="two", bob="three")
    write_settings_size = layout.settings_file.read_text().replace("aliases: {}", "aliases: {}")
    layout.settings_file.write_text(write_settings_size)
    runner, daemons = FakeRunner(), FakeDaemons()
    runner.fail["saslpasswd2"] = "saslpasswd2: generic failure"
    with pytest.raises(ApplyError, match=r"\(logins\).*could not set the password"):
        txn(layout, runner, daemons).run()
    assert live(layout, "postfix/main.cf") == before
    assert sasldb_entries(layout) == {"alice@example.com": "one"}
    assert daemons.reloads == [], "nothing was reloaded: the old revision never stopped"
    assert not list(layout.users.glob("sasldb2.*")), "no staged or previous copy left"


def test_a_reload_failure_restores_files_and_logins(layout: Layout) -> None:
    sasldb_settings(layout, alice="one")
    txn(layout, FakeRunner(), force=True).run()
    old_revision = files.live_revision(layout.etc)
    sasldb_settings(layout, alice="two")
    write_settings_text = layout.settings_file.read_text()
    layout.settings_file.write_text(write_settings_text + "smtp: {message_size_limit: 5000000}\n")
    daemons = FakeDaemons()
    daemons.fail.add("postfix")
    with pytest.raises(ApplyError, match=r"\(reload\).*postfix refused"):
        txn(layout, FakeRunner(), daemons).run()
    assert files.live_revision(layout.etc) == old_revision
    assert sasldb_entries(layout) == {"alice@example.com": "one"}, "the password change undone"
    assert daemons.reloads == ["postfix", "postfix"], "reloaded again onto the old files"


def test_sasldb_writes_only_what_changed_and_removes_who_left(layout: Layout) -> None:
    sasldb_settings(layout, alice="one", bob="two")
    txn(layout, FakeRunner(), force=True).run()
    assert sasldb_entries(layout) == {"alice@example.com": "one", "bob@example.com": "two"}
    state = layout.login_state.read_text()
    assert "one" not in state and "two" not in state, "digests are keyed, not the passwords"
    sasldb_settings(layout, alice="one")
    runner = FakeRunner()
    outcome = txn(layout, runner).run()
    assert sasldb_entries(layout) == {"alice@example.com": "one"}
    sets = [c for c in runner.ran("saslpasswd2") if "-d" not in c and c[-1] != "cyrus"]
    assert sets == [], "alice's unchanged password is not written again"
    assert "sasldb: bob@example.com removed" in outcome.notes


def test_the_transaction_waits_for_the_cli_lock(layout: Layout) -> None:
    """One writer of sasldb2 at a time: the CLI holds the users lock while it writes."""
    write_settings(layout)
    txn(layout, FakeRunner(), force=True).run()
    write_settings(layout, smtp={"message_size_limit": 1000000})
    t = txn(layout, FakeRunner(), FakeDaemons())
    done = threading.Event()
    with users.locked(layout.users):

        def work() -> None:
            t.run()
            done.set()

        worker = threading.Thread(target=work)
        worker.start()
        time.sleep(0.3)
        assert not done.is_set(), "it went live while the CLI held the lock"
    worker.join(10)
    assert done.is_set()


def test_check_validates_everything_and_makes_nothing_live(layout: Layout) -> None:
    write_settings(layout)
    runner = FakeRunner()
    bundle = txn(layout, runner).check()
    assert "postfix/main.cf" in bundle.files
    assert runner.ran("cyr_info") and runner.ran("postconf")
    assert files.live_revision(layout.etc) is None and not layout.revs.exists()


def test_check_and_run_refuse_with_the_same_message(layout: Layout) -> None:
    write_settings(layout)
    runner = FakeRunner()
    runner.fail["postmap"] = "postmap: warning: bad pattern"
    with pytest.raises(ApplyError) as checked:
        txn(layout, runner).check()
    with pytest.raises(ApplyError) as ran:
        txn(layout, runner, force=True).run()
    assert str(checked.value) == str(ran.value)


def test_gather_refuses_our_own_network_naming_the_setting(layout: Layout) -> None:
    import ipaddress

    write_settings(layout, networks=["172.17.0.0/16"])
    own = Facts(own_ipv4=frozenset({ipaddress.IPv4Address("172.17.0.2")}))
    with pytest.raises(SettingsError, match=r"networks\.0: .*open relay"):
        inputs.gather(layout, runner=FakeRunner(), found=own)


def test_own_address_as_helo_is_a_render_input(layout: Layout) -> None:
    import ipaddress

    write_settings(layout)
    own = Facts(own_ipv4=frozenset({ipaddress.IPv4Address("172.17.0.2")}))
    gathered = inputs.gather(layout, runner=FakeRunner(), found=own)
    assert not any("172.17.0.2" in str(v) for v in gathered.settings.access.helo), (
        "the settings keep what the user wrote"
    )
    Transaction(gathered, layout, runner=FakeRunner(), force=True).run()
    assert "[172.17.0.2]\tREJECT" in live(layout, "postfix/helo_access")


def test_pure_rules() -> None:
    from mailctl.render import render
    from tests.unit.factory import secrets_for, settings

    s = settings()
    bundle = render(s, secrets_for(s))
    assert reloads(bundle, frozenset({"cyrus/imapd.conf"})) == ("cyrus",)
    assert reloads(bundle, frozenset({"tls/cert.pem"})) == ("postfix",)
    assert reloads(bundle, frozenset()) == ()
    plan = login_plan(inputs.Inputs(s, secrets_for(s), Facts(), {}))
    assert plan.sasldb is None and plan.accounts == {} and plan.admin_realm == s.hostname


def test_account_steps_record_their_inverse() -> None:
    steps = users.account_steps(
        {"a@example.com": HASH, "b@example.com": "$6$new$x"},
        mine={"b@example.com", "c@example.com"},
        others={"root"},
        current={"b@example.com": "$6$old$y", "c@example.com": "$6$c$z"},
    )
    assert [(what, argv[0], undo[0]) for what, argv, undo in steps] == [
        ("account a@example.com added", "useradd", "userdel"),
        ("account b@example.com password changed", "usermod", "usermod"),
        ("account c@example.com removed", "userdel", "useradd"),
    ]
    assert steps[1][2] == ["usermod", "-p", "$6$old$y", "b@example.com"]
    with pytest.raises(Exception, match="system account"):
        users.account_steps({"root": HASH}, set(), {"root"}, {})


def test_undo_runs_the_inverse_commands_in_reverse(layout: Layout) -> None:
    changes = logins.LoginChanges(layout, FakeRunner(), b"k" * 32)
    runner = FakeRunner()
    changes.runner = runner
    changes._undo = [["userdel", "a"], ["usermod", "-p", "old", "b"]]
    changes.undo()
    assert runner.calls == [["usermod", "-p", "old", "b"], ["userdel", "a"]]


# --- the controller loop -----------------------------------------------------------


class Quiet(Supervisor):
    """A supervisor with no processes: the loop's decisions only."""

    def __init__(self) -> None:
        super().__init__()
        self.reloaded: list[str] = []

    def reload(self, name: str) -> None:
        self.reloaded.append(name)

    def ready(self, name: str) -> bool:
        return name != "cyrus"  # no mailbox sync in these tests


def controller(layout: Layout, runner: FakeRunner, clock: FakeClock) -> Controller:
    ctl = Controller(layout, runner=runner, supervisor=Quiet(), clock=clock)
    ctl.supervisor.tick = lambda: None  # type: ignore[method-assign]
    return ctl


@pytest.fixture
def changed(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> tuple[Controller, FakeRunner, FakeClock]:
    """A controller after one good apply, with the settings file changed since."""
    monkeypatch.setattr(inputs, "facts", Facts)
    write_settings(layout)
    clock, runner = FakeClock(), FakeRunner()
    ctl = controller(layout, runner, clock)
    assert ctl.apply(first=True)
    write_settings(layout, smtp={"message_size_limit": 1000000})
    return ctl, runner, clock


def count_applies(ctl: Controller) -> list[bool]:
    """The outcome of each apply the controller makes from now on, in order."""
    applied: list[bool] = []
    real = ctl.apply

    def counted(first: bool = False) -> bool:
        applied.append(real(first))
        return applied[-1]

    ctl.apply = counted  # type: ignore[method-assign]
    return applied


def test_a_burst_of_events_causes_one_apply(
    changed: tuple[Controller, FakeRunner, FakeClock],
) -> None:
    ctl, _, clock = changed
    applied = count_applies(ctl)
    for _ in range(20):
        ctl.settings_changed()
        clock.advance(0.01)
        ctl.tick(debounce=0.05)
    clock.advance(0.1)
    ctl.tick(debounce=0.05)
    ctl.tick(debounce=0.05)
    assert applied == [True]


def test_a_failed_apply_is_retried_with_backoff_and_reported(
    layout: Layout, changed: tuple[Controller, FakeRunner, FakeClock]
) -> None:
    ctl, runner, clock = changed
    runner.fail["postconf -c"] = "postconf: fatal: something transient"
    ctl.settings_changed()
    clock.advance(1)
    ctl.tick()
    ready, body = ctl.readiness()
    assert not ready and "something transient" in body["last_apply"]["error"]
    del runner.fail["postconf -c"]
    clock.advance(0.5)
    ctl.tick()
    assert not ctl.status.ok, "not retried before the first backoff delay"
    clock.advance(1)
    ctl.tick()
    assert ctl.status.ok and "message_size_limit = 1000000" in live(layout, "postfix/main.cf")


def test_a_signal_while_logging_still_stops(layout: Layout) -> None:
    """The review's appendix A: a handler that logged deadlocked on the output lock."""
    ctl = Controller(layout, supervisor=Quiet())
    ctl.supervisor.stop_all = lambda deadline=20.0: None  # type: ignore[method-assign]

    def on_signal(signum: int, frame: object) -> None:
        output.emit("mailctl", "a handler that logs must not deadlock either")
        ctl.request_stop()

    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        handler = output.logger("mailctl").parent
        assert handler is not None and handler.handlers
        lock = handler.handlers[0].lock
        assert lock is not None
        with lock:  # the main thread is inside a log call
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)
        assert ctl.stop_requested
        ctl.run()  # returns at once: the stop was recorded
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_a_published_example_password_is_never_live(layout: Layout) -> None:
    from mailctl.settings.published import PUBLISHED

    demo = next(iter(PUBLISHED))
    write_settings(layout, users=[{"address": "demo@example.com", "password_hash": demo}])
    with pytest.raises(SettingsError, match=r"users\.0\.password_hash: .*published example"):
        inputs.gather(layout, runner=FakeRunner(), found=Facts())


def test_the_example_settings_have_no_login() -> None:
    example = Path(__file__).parents[2] / "config/settings.yaml"
    data = yaml.safe_load(example.read_text())
    assert data["users"] == [], "a login in the example is a login with a published password"


def test_an_unforeseen_exception_is_a_refusal_not_a_crash(
    changed: tuple[Controller, FakeRunner, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctl, _, _ = changed

    def boom(*args: object, **kw: object) -> None:
        raise ValueError("embedded null byte in s3cret")

    monkeypatch.setattr(inputs, "gather", boom)
    assert ctl.apply() is False
    ready, body = ctl.readiness()
    assert not ready and "unexpected ValueError" in body["last_apply"]["error"]
    assert "s3cret" not in body["last_apply"]["error"]


def test_the_queue_is_flushed_three_times_after_cyrus_comes_back(layout: Layout) -> None:
    clock, runner = FakeClock(), FakeRunner()
    ctl = Controller(layout, runner=runner, supervisor=Quiet(), clock=clock)
    cyrus_up = {"ready": False}
    ctl.supervisor.ready = lambda name: cyrus_up["ready"] or name != "cyrus"  # type: ignore[method-assign]
    ctl.flush_after_lmtp_outage()
    cyrus_up["ready"] = True
    ctl.flush_after_lmtp_outage()
    assert runner.ran("postqueue") == [], "Cyrus's first start is no outage"
    cyrus_up["ready"] = False
    ctl.flush_after_lmtp_outage()
    cyrus_up["ready"] = True
    for _ in range(12):
        ctl.flush_after_lmtp_outage()
        clock.advance(1.0)
    assert runner.ran("postqueue") == [["postqueue", "-f"]] * 3


LOST_LINE = (
    "Dec  2 21:30:01 mail postfix/lmtp[812]: {id}: to=<alice@example.org>, "
    "relay=mail.example.org[/run/cyrus/socket/lmtp], dsn=4.4.2, status=deferred (lost "
    "connection with mail.example.org[/run/cyrus/socket/lmtp] while sending end of data)"
)


def test_a_message_cut_off_by_a_dying_lmtpd_is_asked_for_again(layout: Layout) -> None:
    clock, runner = FakeClock(), FakeRunner()
    ctl = Controller(layout, runner=runner, supervisor=Quiet(), clock=clock)
    ctl.supervisor.ready = lambda name: True  # type: ignore[method-assign]
    ctl.saw_line("postfix", LOST_LINE.format(id="4F3A21C0A2"))
    ctl.saw_line("cyrus", LOST_LINE.format(id="AAAA"))  # not Postfix's line: ignored
    ctl.redeliver_lost()
    assert runner.ran("postqueue") == [], "not before it has left the active queue"
    for _ in range(6):
        clock.advance(1.0)
        ctl.redeliver_lost()
    assert runner.ran("postqueue") == [["postqueue", "-i", "4F3A21C0A2"]] * 2
    clock.advance(60)
    ctl.redeliver_lost()
    assert len(runner.ran("postqueue")) == 2, "asked twice, then left to Postfix"


def test_no_redelivery_while_cyrus_is_down_nor_in_dialup_mode(layout: Layout) -> None:
    clock, runner = FakeClock(), FakeRunner()
    ctl = Controller(layout, runner=runner, supervisor=Quiet(), clock=clock)
    up = {"cyrus": False}
    ctl.supervisor.ready = lambda name: up.get(name, True)  # type: ignore[method-assign]
    ctl.saw_line("postfix", LOST_LINE.format(id="B1"))
    clock.advance(10)
    ctl.redeliver_lost()
    assert runner.ran("postqueue") == [], "Cyrus down: its return flushes the queue"
    up["cyrus"] = True
    ctl.redeliver_lost()
    assert runner.ran("postqueue") == [["postqueue", "-i", "B1"]] * 2
    ctl._dialup = True
    ctl.saw_line("postfix", LOST_LINE.format(id="C2"))
    clock.advance(10)
    ctl.redeliver_lost()
    assert len(runner.ran("postqueue")) == 2, "dial-up: the operator flushes"


def test_readiness_says_when_the_queue_has_no_room_for_a_message(
    changed: tuple[Controller, FakeRunner, FakeClock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """smtpd answers 452 to every MAIL FROM below 1.5 x message_size_limit of free space."""
    ctl, _, _ = changed
    assert ctl.queue_space_problem() is None  # the test machine's disk has room
    real = os.statvfs

    def full(path: object) -> os.statvfs_result:
        st = real(str(path))
        return os.statvfs_result((st.f_bsize, 4096, 1000, 10, 300, *tuple(st)[5:]))

    monkeypatch.setattr("mailctl.reconcile.os.statvfs", full)
    problem = ctl.queue_space_problem()
    assert problem is not None and "1200 KiB free" in problem
    assert "below 76800 KiB" in problem  # the default limit, 50 MiB, x 1.5
    ready, body = ctl.readiness()
    assert not ready and problem in body["problems"]


def test_a_cyrus_service_switched_off_is_switched_on_at_once(layout: Layout) -> None:
    ctl = Controller(layout, runner=FakeRunner(), supervisor=Quiet(), clock=FakeClock())
    reloaded: list[str] = []
    ctl.reload = reloaded.append  # type: ignore[method-assign,assignment]
    ctl.saw_line("cyrus/master", "process type:SERVICE name:lmtpunix ... signaled to death")
    ctl.reenable_cyrus()
    assert reloaded == []
    ctl.saw_line(
        "cyrus/master", "too many failures for service lmtpunix/unix, disabling until next SIGHUP"
    )
    ctl.reenable_cyrus()
    ctl.reenable_cyrus()
    assert reloaded == ["cyrus"]


# --- an edge's drain ---------------------------------------------------------------


def draining(layout: Layout, queued: list[int]) -> tuple[Controller, FakeRunner, FakeClock]:
    """A controller whose `postqueue -j` shows queued.pop(0) messages (the last one
    repeats), each ask taking a second of the fake clock."""
    clock, runner = FakeClock(), FakeRunner()

    def postqueue(args: list[str], _: str | None) -> subprocess.CompletedProcess[str]:
        if "-j" in args:
            clock.advance(1.0)
            n = queued.pop(0) if len(queued) > 1 else queued[0]
            return subprocess.CompletedProcess(args, 0, '{"queue_id": "x"}\n' * n, "")
        return subprocess.CompletedProcess(args, 0, "", "")

    runner.handlers["postqueue"] = postqueue
    return controller(layout, runner, clock), runner, clock


def test_a_draining_edge_stops_listening_flushes_and_waits_for_an_empty_queue(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    ctl, runner, _ = draining(layout, [3, 2, 0])
    ctl.drain(20)
    assert runner.calls[0] == ["postconf", "-e", "master_service_disable = inet"]
    assert ctl.supervisor.reloaded == ["postfix"]  # type: ignore[attr-defined]
    assert ["postqueue", "-f"] in runner.calls
    assert "drained: the queue is empty" in capsys.readouterr().out


def test_a_drain_gives_up_at_its_deadline_and_leaves_the_mail_queued(
    layout: Layout, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)
    ctl, runner, _ = draining(layout, [5])
    ctl.drain(10)
    out = capsys.readouterr().out
    assert "5 messages still queued" in out and "stay on the volume" in out
    # asked again every few seconds, not once
    assert len(runner.ran("postqueue")) > 3 and runner.calls.count(["postqueue", "-f"]) >= 3
    assert not [c for c in runner.calls if c[:2] == ["postsuper", "-d"]]  # nothing deleted


# --- secret files outside the watched directory -------------------------------------


def test_a_changed_secret_file_is_applied_within_seconds(
    layout: Layout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inputs, "facts", Facts)
    sasldb_settings(layout, carol="first-pw-1")
    clock, runner = FakeClock(), FakeRunner()
    ctl = controller(layout, runner, clock)
    assert ctl.apply(first=True)
    applied = count_applies(ctl)
    for _ in range(3):  # nothing changed: nothing applied
        clock.advance(6)
        ctl.tick()
    assert applied == []
    (layout.root.parent / "carol.pw").write_text("second-pw-2\n")  # a rotated Secret
    clock.advance(6)
    ctl.tick()
    assert applied == [True]
    sasl = [c for c in runner.ran("saslpasswd2") if "carol" in c]
    assert len(sasl) == 2  # set again, with the new password
    clock.advance(6)
    ctl.tick()
    assert applied == [True]  # once

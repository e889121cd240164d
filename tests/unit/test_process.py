"""The process state machine and the supervisor, driven by a fake clock and spawner.

Process takes a clock but spawns with subprocess.Popen and signals with os.kill /
os.killpg directly; the tests swap the module's `subprocess` and `os` for fakes.
"""

from __future__ import annotations

import io
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from mailctl.render.bundle import DaemonSpec, Probe, Reload
from mailctl.supervise import events, probe, process
from mailctl.supervise.process import Process, State, backoff_delays
from mailctl.supervise.supervisor import Supervisor


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakePopen:
    def __init__(self, argv: list[str], pid: int) -> None:
        self.argv = argv
        self.pid = pid
        self.returncode: int | None = None
        self.stdout = io.BytesIO(b"")

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class Spawner:
    """Stands in for subprocess.Popen, os.kill and os.killpg.

    Each daemon is the leader of its own group. `groups` holds the groups with a
    live member; a leader's exit leaves its group alive (children that outlive it,
    as cyrmaster's do) until a group signal ends them: SIGKILL always, SIGTERM
    unless `children_ignore_term`."""

    fail_spawn: bool = False
    die_on_term: bool = True
    children_ignore_term: bool = False
    procs: list[FakePopen] = field(default_factory=list)
    groups: set[int] = field(default_factory=set)
    signals: list[tuple[int, int]] = field(default_factory=list)
    group_kills: list[tuple[int, int]] = field(default_factory=list)

    def popen(self, argv: list[str], **kwargs: Any) -> FakePopen:
        assert kwargs.get("start_new_session") is True, "a daemon gets its own process group"
        if self.fail_spawn:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        p = FakePopen(argv, 4000 + len(self.procs))
        self.procs.append(p)
        self.groups.add(p.pid)
        return p

    def by_pid(self, pid: int) -> FakePopen:
        return next(p for p in self.procs if p.pid == pid)

    def kill(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))
        if self.die_on_term and signum == signal.SIGTERM:
            self.by_pid(pid).returncode = -signum
            self.groups.discard(pid)  # the stop signal: the leader ends its children

    def killpg(self, pgid: int, signum: int) -> None:
        if pgid not in self.groups:
            raise ProcessLookupError(3, "No such process")
        if signum == 0:
            return
        self.group_kills.append((pgid, signum))
        p = self.by_pid(pgid)
        if p.returncode is None:
            p.returncode = -signum
        if signum == signal.SIGKILL or not self.children_ignore_term:
            self.groups.discard(pgid)

    @property
    def last(self) -> FakePopen:
        return self.procs[-1]


@pytest.fixture
def spawner(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spawner]:
    sp = Spawner()
    monkeypatch.setattr(
        process,
        "subprocess",
        SimpleNamespace(
            Popen=sp.popen,
            DEVNULL=subprocess.DEVNULL,
            PIPE=subprocess.PIPE,
            STDOUT=subprocess.STDOUT,
            TimeoutExpired=subprocess.TimeoutExpired,
        ),
    )
    monkeypatch.setattr(process, "os", SimpleNamespace(kill=sp.kill, killpg=sp.killpg))
    yield sp


def spec(name: str = "daemon", **kw: Any) -> DaemonSpec:
    return DaemonSpec(
        name=name, argv=(f"/usr/sbin/{name}", "-f"), reads=(), reload=Reload("restart"), **kw
    )


def state(p: Process) -> State:
    """The current state (a call, so that mypy does not keep an earlier narrowing)."""
    return p.state


def proc(clock: FakeClock, **kw: Any) -> Process:
    return Process(spec(), startsecs=1.0, max_retries=5, clock=clock, **kw)


def test_backoff_delays_double_up_to_a_cap() -> None:
    delays = backoff_delays()
    assert [next(delays) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_start_then_running_after_startsecs(
    spawner: Spawner, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    p = proc(clock)
    assert state(p) is State.STOPPED
    p.start()
    assert state(p) is State.STARTING
    assert spawner.last.argv == ["/usr/sbin/daemon", "-f"]
    clock.advance(0.5)
    p.tick()
    assert state(p) is State.STARTING, "not running before startsecs"
    clock.advance(0.5)
    p.tick()
    assert state(p) is State.RUNNING
    st = p.status()
    assert (st.state, st.pid, st.restarts, st.since) == ("running", spawner.last.pid, 0, clock.now)
    out = capsys.readouterr().out
    assert "daemon: stopped -> starting" in out and "daemon: starting -> running" in out


def test_start_is_ignored_unless_stopped(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    p.start()
    assert len(spawner.procs) == 1


def test_crash_while_running_restarts_after_backoff(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    clock.advance(1)
    p.tick()
    first = spawner.last
    first.returncode = 3
    p.tick()
    assert state(p) is State.BACKOFF
    assert (p.restarts, p.last_exit) == (1, 3)
    assert spawner.group_kills == [(first.pid, signal.SIGTERM)], "leftovers may finish first"
    clock.advance(0.4)
    p.tick()
    assert state(p) is State.BACKOFF and len(spawner.procs) == 1
    clock.advance(0.1)
    p.tick()
    assert state(p) is State.STARTING and len(spawner.procs) == 2
    assert p.restarts == 1, "one crash, one restart counted"
    clock.advance(1)
    p.tick()
    assert state(p) is State.RUNNING


def _fail_fast(p: Process, spawner: Spawner, clock: FakeClock) -> float:
    """Let the current start die at once; return the backoff chosen (or -1 if FATAL)."""
    spawner.last.returncode = 1
    p.tick()
    if state(p) is State.FATAL:
        return -1
    assert state(p) is State.BACKOFF
    delay = p.next_start - clock.now
    clock.advance(delay)
    p.tick()
    assert state(p) is State.STARTING
    return delay


def test_repeated_fast_failures_back_off_then_go_fatal(
    spawner: Spawner, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    delays = [_fail_fast(p, spawner, clock) for _ in range(5)]
    assert delays == [0.5, 1, 2, 4, -1]
    assert state(p) is State.FATAL
    assert len(spawner.procs) == 5
    assert p.status().state == "fatal"
    assert "5 failed starts in a row (FATAL); trying again every 10s" in capsys.readouterr().out
    clock.advance(9.9)
    p.tick()
    assert state(p) is State.FATAL and len(spawner.procs) == 5, "not before fatal_retry"
    for n in range(3):  # still broken: one try every 10 s, and FATAL again at once
        clock.advance(0.1 if n == 0 else 10)
        p.tick()
        assert state(p) is State.STARTING and len(spawner.procs) == 6 + n
        spawner.last.returncode = 1
        p.tick()
        assert state(p) is State.FATAL
    assert capsys.readouterr().out.count("failed starts in a row") == 0, "said once"


def test_a_fatal_daemon_comes_back_once_its_cause_is_gone(spawner: Spawner) -> None:
    """Cyrus's binary unreadable for a minute (a broken volume): no one has to step in."""
    clock = FakeClock()
    p = proc(clock)
    spawner.fail_spawn = True
    p.start()
    for _ in range(6):
        clock.advance(60)
        p.tick()
    assert state(p) is State.FATAL and p.last_exit is None
    spawner.fail_spawn = False
    clock.advance(10)
    p.tick()
    assert state(p) is State.STARTING
    clock.advance(1)
    p.tick()
    assert state(p) is State.RUNNING and p.failed_starts == 0
    spawner.last.returncode = 1
    p.tick()
    assert state(p) is State.BACKOFF and p.next_start - clock.now == 0.5, "backoff starts over"


def test_leftovers_of_a_crash_get_time_to_finish_then_sigkill(spawner: Spawner) -> None:
    """A dead cyrmaster's lmtpd mid-delivery: SIGTERM, up to `grace` s, then SIGKILL."""
    clock = FakeClock()
    p = proc(clock, grace=5.0)
    p.start()
    clock.advance(1)
    p.tick()
    first = spawner.last
    spawner.children_ignore_term = True
    first.returncode = -9
    p.tick()
    assert spawner.group_kills == [(first.pid, signal.SIGTERM)]
    clock.advance(0.5)
    p.tick()
    assert state(p) is State.BACKOFF and len(spawner.procs) == 1, "no start beside leftovers"
    clock.advance(4.5)
    p.tick()
    assert spawner.group_kills[-1] == (first.pid, signal.SIGKILL)
    assert state(p) is State.STARTING and len(spawner.procs) == 2


def test_leftovers_that_exit_on_sigterm_do_not_delay_the_restart(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock, grace=5.0)
    p.start()
    clock.advance(1)
    p.tick()
    first = spawner.last
    first.returncode = -9
    p.tick()
    clock.advance(0.5)
    p.tick()
    assert state(p) is State.STARTING and len(spawner.procs) == 2
    assert (first.pid, signal.SIGKILL) not in spawner.group_kills


def test_reset_lets_a_fatal_daemon_start_again(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    for _ in range(5):
        _fail_fast(p, spawner, clock)
    assert state(p) is State.FATAL
    p.reset()
    assert state(p) is State.STOPPED and p.failed_starts == 0
    p.start()
    assert state(p) is State.STARTING
    assert _fail_fast(p, spawner, clock) == 0.5, "the backoff starts over"


def test_a_good_start_forgets_earlier_failures(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    for _ in range(4):
        _fail_fast(p, spawner, clock)
    clock.advance(1)
    p.tick()
    assert state(p) is State.RUNNING and p.failed_starts == 0
    spawner.last.returncode = 1
    p.tick()
    assert state(p) is State.BACKOFF and p.next_start - clock.now == 0.5


def test_spawn_error_is_a_failed_start(spawner: Spawner) -> None:
    clock = FakeClock()
    spawner.fail_spawn = True
    p = proc(clock)
    p.start()
    assert state(p) is State.BACKOFF and p.last_exit is None
    for _ in range(4):
        clock.advance(60)
        p.tick()
    assert state(p) is State.FATAL and p.failed_starts == 5


def test_stop_sends_the_stop_signal_and_waits(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    clock.advance(1)
    p.tick()
    pid = spawner.last.pid
    spawner.die_on_term = False
    p.stop(timeout=5)
    assert state(p) is State.STOPPING
    assert spawner.signals == [(pid, signal.SIGTERM)]
    clock.advance(4.9)
    p.tick()
    assert state(p) is State.STOPPING and spawner.group_kills == []
    spawner.last.returncode = 0
    spawner.groups.discard(pid)
    p.tick()
    assert state(p) is State.STOPPED and p.last_exit == 0
    clock.advance(60)
    p.tick()
    assert state(p) is State.STOPPED and len(spawner.procs) == 1, "a stopped daemon stays down"


def test_stop_kills_the_group_after_the_deadline(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.start()
    spawner.die_on_term = False
    p.stop(timeout=5)
    clock.advance(5)
    p.tick()
    assert spawner.group_kills == [(spawner.last.pid, signal.SIGKILL)]
    p.tick()
    assert state(p) is State.STOPPED and p.last_exit == -signal.SIGKILL


def test_stop_waits_for_the_children_of_an_exited_leader(spawner: Spawner) -> None:
    """cyrmaster exits on SIGTERM before its lmtpd children have finished."""
    clock = FakeClock()
    p = proc(clock)
    p.start()
    pid = spawner.last.pid
    spawner.die_on_term = False
    p.stop(timeout=5)
    spawner.last.returncode = 0
    p.tick()
    assert state(p) is State.STOPPING, "its children are still running"
    spawner.groups.discard(pid)
    p.tick()
    assert state(p) is State.STOPPED and spawner.group_kills == []


def test_stop_uses_the_stop_signal_of_the_spec(spawner: Spawner) -> None:
    clock = FakeClock()
    p = Process(spec(stop_signal=signal.SIGQUIT), clock=clock)
    p.start()
    p.stop()
    assert spawner.signals == [(spawner.last.pid, signal.SIGQUIT)]


def test_stop_of_a_dead_or_backing_off_daemon_is_immediate(spawner: Spawner) -> None:
    clock = FakeClock()
    p = proc(clock)
    p.stop()
    assert state(p) is State.STOPPED and spawner.signals == []
    p.start()
    spawner.last.returncode = 1
    p.tick()
    assert state(p) is State.BACKOFF
    p.stop()
    assert state(p) is State.STOPPED and spawner.signals == []
    clock.advance(60)
    p.tick()
    assert len(spawner.procs) == 1, "no restart after a stop during backoff"


# --- the supervisor ----------------------------------------------------------------


def test_supervisor_starts_a_daemon_only_when_its_dependency_answers(
    spawner: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    answering: set[str] = set()
    monkeypatch.setattr(probe, "answers", lambda p: p.target in answering)
    sup = Supervisor()
    sup.configure(
        [spec("sasl", probes=(Probe("unix", "/run/sasl"),)), spec("postfix", before=("sasl",))]
    )
    sup.tick()
    assert [p.argv[0] for p in spawner.procs] == ["/usr/sbin/sasl"]
    sup.tick()
    assert len(spawner.procs) == 1, "postfix waits while sasl does not answer"
    answering.add("/run/sasl")
    sup.tick()
    assert [p.argv[0] for p in spawner.procs] == ["/usr/sbin/sasl", "/usr/sbin/postfix"]


def test_supervisor_stops_in_reverse_order(
    spawner: Spawner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(probe, "answers", lambda p: True)
    sup = Supervisor()
    sup.configure([spec("a"), spec("b", before=("a",)), spec("c", before=("b",))])
    sup.tick()
    assert len(spawner.procs) == 3
    sup.stop_all(deadline=2)
    names = [spawner.by_pid(pid).argv[0].rsplit("/", 1)[1] for pid, _ in spawner.signals]
    assert names == ["c", "b", "a"]
    assert all(s.state == "stopped" for s in sup.statuses())
    sup.tick()
    assert len(spawner.procs) == 3, "nothing starts again after stop_all"


def test_supervisor_configure_reports_changed_command_lines(spawner: Spawner) -> None:
    sup = Supervisor()
    sup.configure([spec("a"), spec("b")])
    sup.tick()
    new_b = DaemonSpec(name="b", argv=("/usr/sbin/b", "--new"), reads=(), reload=Reload("restart"))
    assert sup.configure([spec("a"), new_b]) == {"b"}
    assert sup.procs["b"].spec.argv == ("/usr/sbin/b", "--new")
    assert sup.configure([spec("a")]) == set()
    b_pid = next(p.pid for p in spawner.procs if p.argv[0] == "/usr/sbin/b")
    assert state(sup.procs["b"]) is State.STOPPING, "a daemon no longer configured is stopped"
    assert spawner.signals == [(b_pid, signal.SIGTERM)]
    sup.tick()
    assert "b" not in sup.procs and sup.order == ["a"]


def test_supervisor_reloads_the_way_the_spec_says(spawner: Spawner) -> None:
    sup = Supervisor()
    sup.configure(
        [
            DaemonSpec(
                name="p",
                argv=("/usr/sbin/p",),
                reads=(),
                reload=Reload("signal", signal=signal.SIGHUP),
            )
        ]
    )
    sup.tick()
    sup.reload("p")
    assert spawner.signals == [(spawner.last.pid, signal.SIGHUP)]
    sup.reload("unknown")  # not configured: nothing to do
    assert len(spawner.signals) == 1


def test_a_reload_gives_a_fatal_daemon_a_new_start(spawner: Spawner) -> None:
    """A config that killed a daemon five times in a row may be fixed by the next one."""
    sup = Supervisor()
    sup.configure([spec("p")])
    proc = sup.procs["p"]
    proc.state = State.FATAL
    sup.reload("p")
    assert state(proc) is State.STOPPED, "reset: the next tick starts it"
    sup.tick()
    assert state(proc) is State.STARTING


# --- lines the controller reacts to ------------------------------------------------

LOST = (
    "Dec  2 21:30:01 mail postfix/lmtp[812]: 4F3A21C0A2: to=<alice@example.org>, "
    "relay=mail.example.org[/run/cyrus/socket/lmtp], delay=0.21, delays=0.01/0/0/0.2, "
    "dsn=4.4.2, status=deferred (lost connection with mail.example.org"
    "[/run/cyrus/socket/lmtp] while sending end of data -- message may be sent more than once)"
)


@pytest.mark.parametrize(
    ("line", "queue_id"),
    [
        (LOST, "4F3A21C0A2"),
        (LOST.replace("4F3A21C0A2", "4dN2xq0Yb5z9kQp"), "4dN2xq0Yb5z9kQp"),  # long queue IDs
        (
            "postfix/lmtp[9]: AB12: to=<b@example.org>, relay=none, delay=1, dsn=4.4.1, "
            "status=deferred (connect to mail.example.org[/run/cyrus/socket/lmtp]: "
            "Connection refused)",
            "AB12",
        ),
        # lmtpd answered: Postfix's own retry schedule, not ours
        (
            "postfix/lmtp[9]: AB12: to=<b@example.org>, relay=x[/run/cyrus/socket/lmtp], "
            "dsn=4.2.2, status=deferred (host x[/run/cyrus/socket/lmtp] said: 452 4.2.2 "
            "Over quota (in reply to end of DATA command))",
            None,
        ),
        (LOST.replace("status=deferred", "status=sent"), None),
        (LOST.replace("postfix/lmtp", "postfix/smtp"), None),  # mail to the internet
        ("", None),
    ],
)
def test_lmtp_connection_lost(line: str, queue_id: str | None) -> None:
    assert events.lmtp_connection_lost(line) == queue_id


def test_cyrus_service_disabled() -> None:
    line = "too many failures for service lmtpunix/unix, disabling until next SIGHUP"
    assert events.cyrus_service_disabled("cyrus/master", line) == "lmtpunix/unix"
    assert events.cyrus_service_disabled("postfix", line) is None
    assert events.cyrus_service_disabled("cyrus/master", "process type:SERVICE ...") is None


def test_a_daemon_that_runs_but_does_not_answer_is_reloaded(
    spawner: Spawner, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """cyrmaster with its LMTP service switched off: running, not answering, SIGHUP heals."""
    answering = {"yes": True}
    monkeypatch.setattr(probe, "answers", lambda p: answering["yes"])
    clock = FakeClock()
    sup = Supervisor(heal_after=30, clock=clock)
    hup = DaemonSpec(
        name="cyrus",
        argv=("/usr/sbin/cyrmaster",),
        reads=(),
        reload=Reload("signal", signal=signal.SIGHUP),
        probes=(Probe("unix", "/run/cyrus/socket/lmtp"),),
    )
    sup.configure([hup])
    sup.tick()
    sup.procs["cyrus"].state = State.RUNNING
    answering["yes"] = False
    for _ in range(29):
        sup.tick()
        clock.advance(1)
    assert spawner.signals == [], "not before heal_after"
    clock.advance(1)
    sup.tick()
    assert spawner.signals == [(spawner.last.pid, signal.SIGHUP)]
    assert "cyrus: running but not answering for 30s; reloading it" in capsys.readouterr().out
    clock.advance(29)
    sup.tick()
    assert len(spawner.signals) == 1, "one reload per heal_after"
    answering["yes"] = True
    clock.advance(5)
    sup.tick()
    answering["yes"] = False
    clock.advance(29)
    sup.tick()
    assert len(spawner.signals) == 1, "answering again starts the count over"

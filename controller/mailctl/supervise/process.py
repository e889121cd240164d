"""One supervised process as an explicit state machine (after supervisor's states.py).

STOPPED -> STARTING -> RUNNING; a start that dies within `startsecs` is a
failed start and goes to BACKOFF; after `max_retries` failed starts in a row
it is FATAL: reported, not hidden, and tried again every `fatal_retry` seconds
(a cause outside the appliance, a full disk or a broken volume, goes away on
its own, and nobody should have to restart the container for it). A reset (a
new config) starts the backoff over at once.

What a daemon leaves behind when it exits (cyrmaster's lmtpd and imapd
children) gets SIGTERM and up to `grace` seconds to finish what it is doing,
then SIGKILL, before the daemon is started again: an lmtpd that is killed
between writing a message and answering for it makes Postfix deliver it twice.

Side effects: spawns and signals processes; only this module and apply.proc do.
"""

from __future__ import annotations

import enum
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailctl.render.bundle import DaemonSpec
from mailctl.supervise import output


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FATAL = "fatal"


def backoff_delays(first: float = 0.5, factor: float = 2.0, cap: float = 30.0) -> Iterator[float]:
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)


@dataclass
class Status:
    name: str
    state: str
    pid: int | None
    restarts: int
    last_exit: int | None
    since: float


Clock = Callable[[], float]


class Process:
    def __init__(
        self,
        spec: DaemonSpec,
        *,
        startsecs: float = 1.0,
        max_retries: int = 5,
        fatal_retry: float = 10.0,
        grace: float = 5.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.spec = spec
        self.startsecs = startsecs
        self.max_retries = max_retries
        self.fatal_retry = fatal_retry
        self.grace = grace
        self.clock = clock
        self.state = State.STOPPED
        self.popen: subprocess.Popen[bytes] | None = None
        self.failed_starts = 0
        self.restarts = 0
        self.last_exit: int | None = None
        self.since = clock()
        self.started_at = 0.0
        self.next_start = 0.0
        self.stop_deadline = 0.0
        self.group_deadline = 0.0  # leftovers of an exited daemon get SIGKILL after this
        self._delays = backoff_delays()

    # --- transitions -----------------------------------------------------

    def _to(self, state: State) -> None:
        if state is not self.state:
            output.emit("mailctl", f"{self.spec.name}: {self.state.value} -> {state.value}")
        self.state = state
        self.since = self.clock()

    def start(self) -> None:
        if self.state not in (State.STOPPED, State.BACKOFF, State.FATAL):
            return
        try:
            self.popen = subprocess.Popen(
                list(self.spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            output.emit("mailctl", f"{self.spec.name}: cannot start: {exc}")
            self._failed(None)
            return
        if self.popen.stdout is None:  # cannot happen with stdout=PIPE
            raise RuntimeError(f"{self.spec.name}: no output pipe")
        output.pump(self.spec.name, self.popen.stdout)
        self.started_at = self.clock()
        self._to(State.STARTING)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            self._to(State.STOPPED)
            return
        if self.state is State.STOPPING:
            return
        self.stop_deadline = self.clock() + timeout
        self._to(State.STOPPING)
        self.signal(self.spec.stop_signal)

    def signal(self, signum: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.kill(self.popen.pid, signum)

    def reset(self) -> None:
        """Forget failed starts (a new config may fix what was FATAL)."""
        self.failed_starts = 0
        self._delays = backoff_delays()
        if self.state is State.FATAL:
            self._to(State.STOPPED)

    def _failed(self, code: int | None) -> None:
        self._kill_group()
        self.last_exit = code
        self.failed_starts += 1
        if self.failed_starts >= self.max_retries:
            if self.failed_starts == self.max_retries:
                output.emit(
                    "mailctl",
                    f"{self.spec.name}: {self.failed_starts} failed starts in a row (FATAL); "
                    f"trying again every {self.fatal_retry:.0f}s",
                )
            self.next_start = self.clock() + self.fatal_retry
            self._to(State.FATAL)
            return
        self.next_start = self.clock() + next(self._delays)
        self._to(State.BACKOFF)

    # --- the clock -------------------------------------------------------

    def tick(self) -> None:
        now = self.clock()
        code = self.popen.poll() if self.popen is not None else None
        if self.state is State.STARTING:
            if code is not None:
                output.emit("mailctl", f"{self.spec.name}: exited with {code} while starting")
                self._failed(code)
            elif now - self.started_at >= self.startsecs:
                self.failed_starts = 0
                self._delays = backoff_delays()
                self._to(State.RUNNING)
        elif self.state is State.RUNNING:
            if code is not None:
                output.emit("mailctl", f"{self.spec.name}: exited with {code}; restarting")
                self._signal_group(signal.SIGTERM)
                self.group_deadline = now + self.grace
                self.last_exit = code
                self.restarts += 1
                self.next_start = now + next(self._delays)
                self._to(State.BACKOFF)
        elif self.state is State.BACKOFF:
            if now >= self.next_start and self._leftovers_gone(now):
                self.restarts += 1 if self.failed_starts else 0
                self.start()
        elif self.state is State.FATAL:
            if now >= self.next_start:
                output.emit("mailctl", f"{self.spec.name}: FATAL; trying to start it again")
                self.start()
        elif self.state is State.STOPPING:
            # Stopped once the daemon and what it started are gone (cyrmaster passes
            # the SIGTERM on to its children); SIGKILL for whatever is left at the deadline.
            gone = code is not None and not self._group_alive()
            if not gone and now >= self.stop_deadline:
                output.emit("mailctl", f"{self.spec.name}: did not stop in time; killing it")
                self._kill_group()
                self.stop_deadline = now + 1.0
                gone = code is not None
            if gone:
                self.last_exit = code
                self._to(State.STOPPED)

    def _leftovers_gone(self, now: float) -> bool:
        """True once the exited daemon's group is empty; SIGKILL it after the grace."""
        if not self._group_alive():
            return True
        if now < self.group_deadline:
            return False
        output.emit("mailctl", f"{self.spec.name}: leftover processes did not exit; killing them")
        self._kill_group()
        return True

    def _group_alive(self) -> bool:
        try:
            self._signal_group(0, missing_ok=False)
        except ProcessLookupError:
            return False
        return True

    def _signal_group(self, signum: int, missing_ok: bool = True) -> None:
        if self.popen is None:
            if not missing_ok:
                raise ProcessLookupError
            return
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            if not missing_ok:
                raise

    def _kill_group(self) -> None:
        """SIGKILL the daemon's process group: also what a dead daemon left behind.

        A SIGKILLed cyrmaster leaves preforked imapd/lmtpd children holding
        its listening sockets; its successor could not bind them, and a probe
        would mistake the orphans' sockets for readiness.
        """
        self._signal_group(signal.SIGKILL)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def status(self) -> Status:
        return Status(
            self.spec.name,
            self.state.value,
            self.popen.pid if self.alive and self.popen else None,
            self.restarts,
            self.last_exit,
            self.since,
        )

"""The supervisor: starts daemons in dependency order, keeps them up, reloads, stops.

A daemon can run and still not answer: cyrmaster disables its LMTP service
"until next SIGHUP" after five lmtpd deaths in ten seconds. One that has not
answered its probes for `heal_after` seconds is reloaded the way its spec says
(a SIGHUP for cyrmaster), and again every `heal_after` while it stays so.

Side effects: through Process only. Driven by `tick()` from the main loop;
nothing here sleeps except `stop_all`, which waits within its deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from mailctl.errors import MailctlError
from mailctl.render.bundle import DaemonSpec
from mailctl.supervise import output, probe
from mailctl.supervise.process import Process, State, Status


class Supervisor:
    def __init__(
        self, *, heal_after: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.procs: dict[str, Process] = {}
        self.order: list[str] = []
        self.stopping = False
        self.heal_after = heal_after
        self.clock = clock
        self._unanswered: dict[str, float] = {}  # name -> since when (or the last heal)

    def configure(self, specs: Iterable[DaemonSpec]) -> set[str]:
        """Adopt new specs; returns the names whose command line changed (to restart)."""
        specs = list(specs)
        restart: set[str] = set()
        names = [s.name for s in specs]
        for name in [n for n in self.order if n not in names]:
            self.procs[name].stop()
        for spec in specs:
            proc = self.procs.get(spec.name)
            if proc is None:
                self.procs[spec.name] = Process(spec)
                continue
            if proc.spec.argv != spec.argv:
                restart.add(spec.name)
            proc.spec = spec
        self.order = names
        return restart

    def ready(self, name: str) -> bool:
        proc = self.procs.get(name)
        if proc is None or proc.state not in (State.STARTING, State.RUNNING):
            return False
        return all(probe.answers(p) for p in proc.spec.probes)

    def tick(self) -> None:
        for name in list(self.procs):
            self.procs[name].tick()
            if name not in self.order and self.procs[name].state is State.STOPPED:
                del self.procs[name]
        if self.stopping:
            return
        for name in self.order:
            proc = self.procs[name]
            if proc.state is State.STOPPED and all(self.ready(d) for d in proc.spec.before):
                proc.start()
        self._heal()

    def _heal(self) -> None:
        now = self.clock()
        for name in self.order:
            proc = self.procs[name]
            if proc.state is not State.RUNNING or not proc.spec.probes or self.ready(name):
                self._unanswered.pop(name, None)
                continue
            since = self._unanswered.setdefault(name, now)
            if now - since < self.heal_after:
                continue
            output.emit(
                "mailctl",
                f"{name}: running but not answering for {now - since:.0f}s; "
                f"{'reloading' if proc.spec.reload.kind == 'signal' else 'restarting'} it",
            )
            self._unanswered[name] = now
            try:
                self.reload(name)
            except MailctlError as exc:
                output.emit("mailctl", f"{name}: {exc}")

    def reload(self, name: str) -> None:
        """Make `name` take new config the way its spec says. A FATAL daemon gets a new
        start (the new config may be what it needed); a stopped one reads it at start."""
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.state is State.FATAL:
            proc.reset()
            return
        if not proc.alive:
            return
        how = proc.spec.reload
        if how.kind == "signal":
            proc.signal(how.signal)
        else:
            self.restart(name)

    def restart(self, name: str) -> None:
        proc = self.procs[name]
        proc.reset()
        proc.stop()
        deadline = time.monotonic() + 10
        while proc.state is State.STOPPING and time.monotonic() < deadline:
            proc.tick()
            time.sleep(0.02)
        if proc.state is State.STOPPING:
            raise MailctlError(f"{name} did not stop for a restart")

    def stop_all(self, deadline: float = 20.0) -> None:
        """Stop in reverse start order, each within what is left of the deadline."""
        self.stopping = True
        end = time.monotonic() + deadline
        for name in reversed(self.order):
            proc = self.procs[name]
            proc.stop(timeout=max(0.5, min(10.0, end - time.monotonic())))
            while proc.state is State.STOPPING:
                proc.tick()
                time.sleep(0.02)
        output.emit("mailctl", "all daemons stopped")

    def statuses(self) -> list[Status]:
        return [self.procs[n].status() for n in self.order if n in self.procs]

"""The controller's loop: notice a change, run one transaction, keep daemons and mailboxes.

What a revision changes is the transaction's (apply.transaction); this module
decides when to run one (debounced, retried with backoff after a failure),
starts and keeps the daemons (supervise), creates mailboxes once Cyrus
answers, and keeps the status the API shows. Side effects: through apply,
supervise and watch only.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailctl.apply import (
    chroot,
    dirs,
    dkim,
    inputs,
    mailboxes,
    postfix_ops,
    proc,
    queue,
    secrets,
)
from mailctl.apply.transaction import Transaction
from mailctl.errors import CommandError, MailctlError
from mailctl.layout import CYRUS_ADMIN, CYRUS_ADMIN_SOCKET, Layout
from mailctl.render import Bundle
from mailctl.render.opendkim import signed_domains
from mailctl.settings import Settings
from mailctl.settings.model import seconds
from mailctl.supervise import events, output
from mailctl.supervise.metrics import Metrics
from mailctl.supervise.process import backoff_delays
from mailctl.supervise.supervisor import Supervisor


def say(line: str) -> None:
    output.emit(output.CONTROLLER, line)


@dataclass
class ApplyStatus:
    ok: bool = False
    error: str | None = None
    revision: str | None = None
    at: float = 0.0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)
    mailbox_error: str | None = None


@dataclass
class DaemonView:
    state: str
    ready: bool
    pid: int | None
    restarts: int


class Controller:
    def __init__(
        self,
        layout: Layout,
        *,
        runner: proc.Runner = proc.run,
        supervisor: Supervisor | None = None,
        clock: Callable[[], float] = time.monotonic,
        retry_delays: Callable[[], Iterator[float]] = lambda: backoff_delays(1.0, 2.0, 300.0),
        metrics: Metrics | None = None,
    ) -> None:
        self.layout = layout
        self.metrics = metrics or Metrics()
        self._sampled: dict[str, float] = {}  # what metrics_text last polled, and when
        self._sample_lock = threading.Lock()
        self.runner = runner
        self.supervisor = supervisor or Supervisor()
        self.clock = clock
        self.status = ApplyStatus()
        self.bundle: Bundle | None = None
        self.lock = threading.RLock()  # status and the supervisor: the API thread reads them
        self.wake = threading.Event()
        self.stop_requested = False  # set by a signal handler: a plain store, nothing else
        self.dirty_at: float | None = None
        self.mailboxes_pending = False
        self.mailboxes_made = False  # the first sync after start has succeeded
        self._applied_digest: str | None = None
        self.settings: Settings | None = None  # the last applied
        self.dkim_wake = threading.Event()
        self._observe: dkim.Observe = dkim.observe
        self._retry_delays = retry_delays
        self._delays = retry_delays()
        self._retry_at: float | None = None
        self._last_chroot = 0.0
        self._mailbox_retry_at = 0.0
        self._mailbox_delays = backoff_delays(1.0, 2.0, 30.0)
        self._lmtp_was_ready: bool | None = None
        self._flushes: list[float] = []  # when to run postqueue -f after an LMTP outage
        self._lmtp_seen_ready = False  # Cyrus's first start is no outage
        # Dial-up holds outbound mail until the operator flushes: a flush of ours would
        # send it. Those deferred LMTP messages wait for Postfix's own retry instead.
        self._dialup = False
        # Messages whose LMTP connection was cut (a dying lmtpd): queue ID -> when to ask
        # Postfix for them again. Written by the log threads, read by the loop.
        self._lost: dict[tuple[str, int], float] = {}  # (queue ID, ask) -> when
        self._lost_lock = threading.Lock()
        # smtpd refuses every MAIL FROM (452) while the queue's filesystem has less free
        # than 1.5 x message_size_limit; readiness says so, or a balancer keeps sending.
        self._queue_minfree = 0
        self._cyrus_disabled: str | None = None  # a service cyrmaster switched off
        # The secret files the applied settings name, and their contents' digest then.
        self._secret_files: list[Path] = []
        self._secret_digest = ""

    # --- applying settings -----------------------------------------------------------

    def start(self) -> None:
        """Before the daemons: directories, the first apply, a queue a crash left untidy.

        Raises MailctlError when the settings cannot be applied (nothing to serve).
        The queue is repaired after the first apply (postsuper reads main.cf) and
        before master starts; what it finds is never a reason not to start."""
        dirs.ensure(runner=self.runner)
        note = dkim.repair(self.layout)
        if note:
            say(note)
        if not self.apply(first=True):
            raise MailctlError(self.status.error or "the settings were not applied")
        for note in queue.repair(self.layout.chroot, self.runner):
            say(note)

    def apply(self, first: bool = False) -> bool:
        """One transaction for the current inputs; on failure the live config stays."""
        t0 = self.clock()
        digest = inputs.digest(self.layout)
        try:
            gathered = inputs.gather(self.layout, runner=self.runner)
            txn = Transaction(
                gathered,
                self.layout,
                runner=self.runner,
                daemons=None if first else self,
                force=first,
                clock=self.clock,
            )
            outcome = txn.run()
        except MailctlError as exc:
            return self._failed(digest, str(exc))
        except Exception as exc:
            # A settings value must never take the controller down: every known cause is
            # a refusal naming the setting; one we did not foresee keeps the last good
            # config too, and says what it was (the class, not the value: it may be secret).
            return self._failed(
                digest, f"unexpected {exc.__class__.__name__} while applying the settings"
            )
        for note in outcome.notes:
            say(note)
        bundle = txn.planned().bundle
        try:
            dirs.alias_files(
                [
                    t
                    for targets in gathered.settings.maps.local_aliases.values()
                    for t in targets
                    if t.startswith("/")
                ]
            )
        except OSError as exc:
            say(f"maps.local_aliases: cannot create a target file: {exc.strerror}")
        with self.lock:
            restart = self.supervisor.configure(bundle.daemons)
        for name in sorted(restart):
            self._restart(name)
        with self.lock:
            self.bundle = bundle
            self.settings = gathered.settings
            self.status = ApplyStatus(
                ok=True,
                revision=outcome.revision.name if outcome.revision else self.status.revision,
                at=time.time(),
                seconds=self.clock() - t0,
                changed=sorted(outcome.changed),
            )
        self.metrics.record_apply(True, self.status.seconds)
        self._applied_digest = digest
        self._secret_files = secrets.files(gathered.settings)
        self._secret_digest = inputs.contents_digest(self._secret_files)
        self._record(digest, None)
        self._dialup = gathered.settings.smtp.dialup
        self._queue_minfree = gathered.settings.smtp.message_size_limit * 3 // 2
        self._retry_at = None
        self._delays = self._retry_delays()
        self.mailboxes_pending = True
        if outcome.revision is not None:
            steps = ", ".join(f"{k} {v:.3f}s" for k, v in outcome.timings.items())
            say(
                f"revision {outcome.revision.name} live ({len(outcome.changed)} files changed; "
                f"reloaded {', '.join(outcome.reloaded) or 'nothing'}; {steps})"
            )
        return True

    def _failed(self, digest: str, error: str) -> bool:
        self.metrics.record_apply(False, 0.0)
        with self.lock:
            self.status.ok = False
            self.status.error = error
            self.status.at = time.time()
        self._applied_digest = digest
        self._record(digest, error)
        delay = next(self._delays)
        self._retry_at = self.clock() + delay
        say(f"settings not applied: {error} (next try in {delay:.0f}s, or at the next change)")
        return False

    def _record(self, digest: str, error: str | None) -> None:
        try:
            inputs.record_outcome(self.layout, digest, error)
        except OSError as exc:  # a full state volume: the CLI then waits in vain, and says so
            say(f"cannot record the apply's outcome in {self.layout.applied}: {exc.strerror}")

    def reload(self, name: str) -> None:
        """The transaction's view of the supervisor (apply.transaction.Daemons)."""
        with self.lock:
            self.supervisor.reload(name)

    def _restart(self, name: str) -> None:
        try:
            with self.lock:
                self.supervisor.restart(name)
        except MailctlError as exc:
            say(f"{name}: {exc}")

    def sync_chroot(self) -> None:
        """Docker may rewrite resolv.conf or hosts at any time: keep the chroot copies."""
        try:
            changed = chroot.sync(self.layout.chroot, self.layout.root, self.layout.owners)
        except OSError as exc:
            say(f"chroot copies: {exc.strerror}")
            return
        for rel in changed:
            say(f"chroot copy of /{rel} updated")
        if any(rel.endswith("resolv.conf") for rel in changed):
            # A render input too (Facts.resolvers: OpenDKIM's name servers): apply anew.
            self._applied_digest = None
            self.settings_changed()
        if chroot.needs_reload(changed) and self.supervisor.ready("postfix"):
            try:
                self.reload("postfix")
            except MailctlError as exc:
                say(f"postfix reload after a chroot change failed: {exc}")

    def sync_mailboxes(self) -> None:
        if not self.mailboxes_pending or self.bundle is None:
            return
        if self.settings is not None and self.settings.is_edge:  # no mailboxes here
            self.mailboxes_pending = False
            self.mailboxes_made = True
            return
        if self.clock() < self._mailbox_retry_at or not self.supervisor.ready("cyrus"):
            return
        try:
            changes = mailboxes.sync(
                CYRUS_ADMIN_SOCKET,
                CYRUS_ADMIN,
                secrets.admin_password(self.layout),
                self.bundle.mailboxes,
            )
        except MailctlError as exc:
            with self.lock:
                self.status.mailbox_error = str(exc)
            say(f"mailboxes: {exc}")
            self._mailbox_retry_at = self.clock() + next(self._mailbox_delays)
            return
        for change in changes:
            say(f"mailboxes: {change}")
        with self.lock:
            self.status.mailbox_error = None
        self._mailbox_delays = backoff_delays(1.0, 2.0, 30.0)
        self.mailboxes_pending = False
        self.mailboxes_made = True

    # After Cyrus is back, qmgr keeps deferring its backlog for a second or two, so one
    # flush is not enough (measured: 614 s -> 599 s with one, 10-11 s with three).
    FLUSH_AFTER = (0.0, 3.0, 10.0)

    def flush_after_lmtp_outage(self) -> None:
        """When Cyrus answers again after an outage, have Postfix deliver at once.

        A failed LMTP delivery makes qmgr mark the destination dead and defer every
        message for it until its retry time, minutes after Cyrus is back; `postqueue -f`
        asks qmgr to forget dead destinations and to deliver the deferred mail now.
        It runs at readiness and twice more a few seconds later."""
        now = self.clock()
        ready = self.supervisor.ready("cyrus")
        was, self._lmtp_was_ready = self._lmtp_was_ready, ready
        if ready and was is False and self._lmtp_seen_ready and not self._dialup:
            self._flushes = [now + d for d in self.FLUSH_AFTER]
        if not ready:
            self._flushes = []
        self._lmtp_seen_ready = self._lmtp_seen_ready or ready
        due = [t for t in self._flushes if t <= now]
        if not due or not self.supervisor.ready("postfix"):
            return
        self._flushes = [t for t in self._flushes if t > now]
        try:
            self.runner(["postqueue", "-f"], timeout=30, openable_output=True)
        except CommandError as exc:
            say(f"postqueue -f after Cyrus came back failed: {exc}")
            return
        say("Cyrus answers again: the queue is flushed")

    def reenable_cyrus(self) -> None:
        """cyrmaster switched a service off "until next SIGHUP": send it one at once."""
        service, self._cyrus_disabled = self._cyrus_disabled, None
        if service is None:
            return
        say(f"Cyrus switched its {service} service off after repeated failures: reloading it")
        try:
            self.reload("cyrus")
        except MailctlError as exc:
            say(f"cyrus reload failed: {exc}")

    # Postfix moves a deferred message out of the active queue a moment after it logs
    # the deferral; `postqueue -i` finds only what is in the deferred queue. Two asks.
    REDELIVER_AFTER = (1.0, 5.0)
    REDELIVER_MAX = 100  # queue IDs per tick; more wait for the next one

    def saw_line(self, name: str, line: str) -> None:
        """A log listener (output.listen): a Cyrus service switched off; messages whose
        LMTP connection was lost. Plain stores only: this runs in a logging thread."""
        service = events.cyrus_service_disabled(name, line)
        if service is not None:
            self._cyrus_disabled = service
            self.wake.set()
            return
        if name != "postfix":
            return
        queue_id = events.lmtp_connection_lost(line)
        if queue_id is None:
            return
        now = self.clock()
        with self._lost_lock:
            for ask, delay in enumerate(self.REDELIVER_AFTER):
                self._lost.setdefault((queue_id, ask), now + delay)

    def redeliver_lost(self) -> None:
        """Ask Postfix at once for the messages a dying lmtpd left deferred.

        A SIGKILLed lmtpd (or a cyrmaster that takes its children along) cuts the
        deliveries in flight; Postfix defers those messages for minimal_backoff_time
        (300 s) although cyrmaster has a new lmtpd up within a second. `postqueue -i`
        moves just those messages back and lets qmgr forget the dead destination;
        mail for other destinations keeps its own retry schedule. Nothing is asked
        while Cyrus is down (its return flushes the queue), nor in dial-up mode."""
        if not self._lost:
            return
        now = self.clock()
        with self._lost_lock:
            if self._dialup:
                self._lost.clear()
                return
            if not (self.supervisor.ready("cyrus") and self.supervisor.ready("postfix")):
                return
            due = sorted(k for k, t in self._lost.items() if t <= now)[: self.REDELIVER_MAX]
            for key in due:
                del self._lost[key]
        for queue_id, ask in due:
            try:
                self.runner(["postqueue", "-i", queue_id], timeout=30, openable_output=True)
            except CommandError as exc:
                say(f"postqueue -i {queue_id} failed: {exc}")
                continue
            if ask == 0:
                say(f"{queue_id}: its LMTP connection was lost; delivering it again now")

    # --- the main loop -------------------------------------------------------------

    def settings_changed(self) -> None:
        """Called by the watcher thread: note it, let the loop debounce."""
        self.dirty_at = self.clock()
        self.wake.set()
        self.dkim_wake.set()

    # --- DKIM keys ---------------------------------------------------------------------

    def dkim_tick(self) -> float:
        """One turn of the keys' lifecycle (apply.dkim.step); seconds until the next.

        Runs on its own thread: it asks DNS and may wait for it. A change of the keys'
        states is a change of the inputs: the loop applies it like a settings edit."""
        with self.lock:
            settings = self.settings
        if settings is None or not settings.dkim.enabled:
            return 60.0
        policy = dkim.Policy(
            rotate_after=seconds(settings.dkim.rotate_after),
            retire_after=seconds(settings.dkim.retire_after),
        )
        make_key = dkim.key_maker(self.layout, self.runner)
        with dkim.locked(self.layout) as state:
            notes = dkim.step(
                state,
                signed_domains(settings),
                time.time(),
                policy,
                self._observe,
                make_key,
                settings.dkim.algorithms(),
            )
            dkim.prune_keys(state, self.layout)
        for note in notes:
            say(f"dkim: {note}")
        return float(seconds(settings.dkim.dns_check_every))

    def dkim_loop(self) -> None:
        """Until stopped: dkim_tick every dkim.dns_check_every, or at once after a change."""
        while not self.stop_requested:
            try:
                delay = self.dkim_tick()
            except (MailctlError, OSError) as exc:
                say(f"dkim: {exc}")
                delay = 60.0
            except Exception as exc:  # the thread must outlive any surprise; no key in it
                say(f"dkim: unexpected {exc.__class__.__name__}; trying again in 60s")
                delay = 60.0
            self.dkim_wake.wait(delay)
            self.dkim_wake.clear()

    def tick(self, debounce: float = 0.05) -> None:
        now = self.clock()
        with self.lock:
            self.supervisor.tick()
        if self.dirty_at is not None and now - self.dirty_at >= debounce:
            self.dirty_at = None
            if inputs.digest(self.layout) != self._applied_digest:
                self._delays = self._retry_delays()  # a new change: try it at once
                self.apply()
        elif self._retry_at is not None and now >= self._retry_at:
            self.apply()
        elif (  # a refused change retries on its own schedule (above)
            self._retry_at is None
            and self._due("secrets", self.SECRETS_EVERY)
            and self.secrets_changed()
        ):
            say("a secret file changed: applying it")
            self.apply()
        if self.mailboxes_pending:
            self.sync_mailboxes()
        self.reenable_cyrus()
        self.flush_after_lmtp_outage()
        self.redeliver_lost()
        if now - self._last_chroot >= 2.0:
            self._last_chroot = now
            self.sync_chroot()

    # Secret files live outside the watched settings directory (/run/secrets, a Secret
    # volume): they are read again this often, and a change is applied.
    SECRETS_EVERY = 5.0

    def secrets_changed(self) -> bool:
        return bool(self._secret_files) and (
            inputs.contents_digest(self._secret_files) != self._secret_digest
        )

    def run(self, debounce: float = 0.05, on_stop: Callable[[float], None] | None = None) -> None:
        """Until a stop is requested; then `on_stop` (a hard-exit timer, told how long a
        drain may take), the drain of an edge, and stop the daemons."""
        while not self.stop_requested:
            self.tick(debounce)
            timeout = 0.1
            if self.dirty_at is not None:  # wake when the debounce window closes
                timeout = max(0.0, min(timeout, self.dirty_at + debounce - self.clock()))
            self.wake.wait(timeout)
            self.wake.clear()
        say("stopping")
        drain = self.settings.edge.drain_timeout if self.settings and self.settings.is_edge else 0
        if on_stop is not None:
            on_stop(drain)
        if drain:
            self.drain(drain)
        with self.lock:
            self.supervisor.stop_all()

    DRAIN_FLUSH_EVERY = 3.0

    def drain(self, deadline: float) -> None:
        """An edge about to stop: take no new mail, send what is queued to the mailbox
        node, and wait (up to `deadline` seconds) until the queue is empty. What is left
        stays on the queue volume for the next start.

        The listeners close by an edit of the live main.cf: nothing applies settings any
        more once the loop has stopped, and every start writes a whole new revision
        (Transaction force), so the edit never outlives this stop."""
        t0 = self.clock()
        try:
            self.runner(["postconf", "-e", "master_service_disable = inet"], timeout=10)
            self.reload("postfix")
            flushed = -1e9
            left = queue.count(self.runner)
            while left and self.clock() - t0 < deadline:
                # A deferral marks the mailbox node dead for a while: one flush may find
                # it so (as after an LMTP outage); ask again every few seconds.
                if self.clock() - flushed >= self.DRAIN_FLUSH_EVERY:
                    self.runner(["postqueue", "-f"], timeout=30, openable_output=True)
                    flushed = self.clock()
                time.sleep(0.25)
                left = queue.count(self.runner)
        except MailctlError as exc:
            say(f"drain: {exc}")
            return
        took = self.clock() - t0
        if left == 0:
            say(f"drained: the queue is empty after {took:.1f}s")
        else:
            say(f"drain: {left} messages still queued after {took:.1f}s; they stay on the volume")

    def request_stop(self) -> None:
        """Safe from a signal handler: one store; the loop sees it within 0.1 s."""
        self.stop_requested = True

    # --- what the API shows ------------------------------------------------------------

    # Seconds between polls of what a scrape shows but no log line tells: a scrape every
    # second runs postqueue at most every QUEUE_EVERY seconds.
    QUEUE_EVERY = 5.0
    SLOW_EVERY = 60.0  # the certificate's expiry, the mailboxes' quota use

    def _due(self, what: str, every: float) -> bool:
        now = self.clock()
        with self._sample_lock:
            if now - self._sampled.get(what, -every) < every:
                return False
            self._sampled[what] = now
            return True

    def metrics_text(self) -> bytes:
        """Prometheus text: the log-derived counters plus what is polled here, cached."""
        with self.lock:
            daemons = [
                (st.name, self.supervisor.ready(st.name), st.restarts)
                for st in self.supervisor.statuses()
            ]
        self.metrics.set_daemons(daemons)
        if self._due("queue", self.QUEUE_EVERY) and self.supervisor.ready("postfix"):
            try:
                self.metrics.set_queue(postfix_ops.queue(run=self.runner))
            except CommandError as exc:
                say(f"metrics: postqueue -j failed: {exc}")
        if self._due("certificate", self.SLOW_EVERY):
            self.metrics.set_certificate_expiry(self._certificate_expiry())
        if self._due("quota", self.SLOW_EVERY) and self.supervisor.ready("cyrus"):
            try:
                usage = mailboxes.usage(
                    CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, secrets.admin_password(self.layout)
                )
            except MailctlError as exc:
                say(f"metrics: mailbox quotas: {exc}")
            else:
                self.metrics.set_quota(
                    {
                        a: used / limit
                        for a, (used, limit) in usage.items()
                        if used is not None and limit
                    }
                )
        return self.metrics.render()

    def _certificate_expiry(self) -> float | None:
        """notAfter of the live certificate, as seconds since the epoch."""
        import ssl

        cert = self.layout.current / "tls/cert.pem"
        try:
            done = self.runner(
                ["openssl", "x509", "-noout", "-enddate", "-in", str(cert)], timeout=10
            )
            return float(ssl.cert_time_to_seconds(done.stdout.strip().removeprefix("notAfter=")))
        except (CommandError, ValueError):
            return None

    def queue_space_problem(self) -> str | None:
        """Why Postfix refuses mail for want of queue space, or None."""
        if not self._queue_minfree:
            return None
        try:
            st = os.statvfs(self.layout.chroot)
        except OSError:
            return None
        free = st.f_bavail * st.f_frsize
        if free >= self._queue_minfree:
            return None
        return (
            f"the queue's filesystem has {free // 1024} KiB free; Postfix refuses mail "
            f"(452) below {self._queue_minfree // 1024} KiB (1.5 x smtp.message_size_limit)"
        )

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        problems: list[str] = []
        daemons: dict[str, dict[str, Any]] = {}
        with self.lock:
            for st in self.supervisor.statuses():
                # A daemon still in its start window counts once its ports answer.
                ready = st.state in ("starting", "running") and self.supervisor.ready(st.name)
                daemons[st.name] = {
                    "state": st.state,
                    "ready": ready,
                    "pid": st.pid,
                    "restarts": st.restarts,
                }
                if not ready:
                    problems.append(
                        f"{st.name} is {st.state}"
                        + ("" if st.state != "running" else " but not answering")
                    )
            status = self.status
            full = self.queue_space_problem()
            if full:
                problems.append(full)
            if not status.ok:
                problems.append(f"last settings change failed: {status.error}")
            if status.mailbox_error:
                problems.append(status.mailbox_error)
            elif not self.mailboxes_made and status.ok:
                problems.append("the users' mailboxes are being created")
            body: dict[str, Any] = {
                "ready": not problems,
                "problems": problems,
                "daemons": daemons,
                "revision": status.revision,
                "last_apply": {
                    "ok": status.ok,
                    "error": status.error,
                    "at": status.at,
                    "seconds": round(status.seconds, 4),
                    "changed": status.changed,
                },
            }
        return not problems, body

"""The fault tier's harness: a stream of messages, a mailbox watcher, a /readyz recorder.

A fault test runs one appliance, streams messages with unique Message-IDs into it,
injects one fault while the stream runs, and then proves three things:

(a) every message that got 250 after DATA is in its mailbox (IMAP, by Message-ID;
    duplicates are counted and printed, not failed: SMTP delivery is at least once),
(b) none is visible later than BOUND_S after the appliance recovered (for each
    message: first seen in the mailbox - max(accepted at, recovered at)),
(c) /readyz was honest: not 200 while the killed daemon was down (and never 200
    naming the dead pid), 200 after.

Each run prints one line `FAULT <name>: accepted=N delivered=N lost=N duplicates=N
recovery_s=X max_delay_s=Y` and adds it to RESULTS (the conftest prints a table).
"""

from __future__ import annotations

import contextlib
import imaplib
import math
import re
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker.errors

from tests.e2e.appliance import Appliance
from tests.e2e.data import ALICE, base_settings
from tests.e2e.util import wait_until

# Seconds from recovery until every accepted message is visible in its mailbox.
# Normal flow takes well under a second; Postfix's own retry (queue_run_delay,
# minimal_backoff_time: 300 s) is what this bound is meant to catch.
BOUND_S = 10.0
# /readyz may still name a killed daemon for this long (the supervisor's tick, plus one
# poll of ours); later it must not.
LAG_S = 0.5
SENDER = "stream@sender.mailctl.test"
RESULTS: list[Figures] = []


def fault_settings(**extra: Any) -> dict[str, Any]:
    """The e2e base settings without greylisting (every stranger's message is taken)."""
    settings = base_settings()
    settings["greylisting"] = {"enabled": False}
    settings.update(extra)
    return settings


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    cmd: str


PS = (
    "for p in /proc/[0-9]*; do "
    'c=$(tr "\\0" " " < $p/cmdline 2>/dev/null) || continue; '
    "s=$(cat $p/stat 2>/dev/null) || continue; "
    'set -- ${s##*) }; echo "${p#/proc/} $2 $c"; done'
)

# What each name means in the container's process table (argv joined by spaces).
ROLES: dict[str, Callable[[str], bool]] = {
    "postfix-master": lambda c: c.startswith("/usr/lib/postfix/sbin/master"),
    # port 25's smtpd: behind postscreen (the "smtpd" pass service) or on its own
    "smtpd": lambda c: c.startswith(("smtpd -t pass ", "smtpd -n smtp ")),
    "postscreen": lambda c: c.startswith("postscreen "),
    "qmgr": lambda c: c.startswith("qmgr "),
    "cleanup": lambda c: c.startswith("cleanup "),
    "cyrmaster": lambda c: c.startswith("/usr/sbin/cyrmaster"),
    "lmtpd": lambda c: c.strip() == "lmtpd",
    "saslauthd": lambda c: c.startswith("/usr/sbin/saslauthd"),
    "postgrey": lambda c: "postgrey" in c and "--inet" in c,
    "opendkim": lambda c: c.startswith("/usr/sbin/opendkim"),
    "opendmarc": lambda c: c.startswith("/usr/sbin/opendmarc"),
    "authres": lambda c: c.startswith("/usr/bin/python3 -I ") and "/mailctl/authres.py" in c,
    "controller": lambda c: c.startswith("/opt/mailctl/bin/python3 /opt/mailctl/bin/mailctl run"),
}


def processes(app: Appliance) -> list[Proc]:
    _, out = app.exec("sh", "-c", PS)
    procs = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit():
            procs.append(Proc(int(parts[0]), int(parts[1]), parts[2]))
    return procs


def pids(app: Appliance, role: str) -> list[int]:
    """The pids of `role` (a ROLES key); the oldest (lowest) first."""
    return sorted(p.pid for p in processes(app) if ROLES[role](p.cmd))


def follow(app: Appliance) -> None:
    """While an appliance restarts: learn its ports anew (Docker may publish new ones);
    fail at once if it exited for good."""
    app.container.reload()
    if app.container.status in ("exited", "dead") and not app.container.attrs["State"].get(
        "Restarting"
    ):
        policy = app.container.attrs["HostConfig"].get("RestartPolicy", {}).get("Name")
        if policy in (None, "", "no"):
            raise AssertionError("the appliance exited (no restart policy)")
    app.refresh_ports()


def kill9(app: Appliance, *pids: int) -> None:
    """SIGKILL all of `pids` with one command (as close to at once as it gets)."""
    listed = " ".join(str(p) for p in pids)
    code, out = app.exec("sh", "-c", f"kill -9 {listed}")
    assert code == 0, f"kill -9 {listed}: {out}"


# Runs inside the appliance (the image's python3): freeze every lmtpd, and if an LMTP
# session is open (a connected socket on the lmtp path in /proc/net/unix), SIGKILL
# them all, cutting that session off; else let them go on and look again. Frozen, no
# session can end between the look and the kill.
_CUT_LMTP_SESSION = r"""
import os, signal, sys, time
def lmtpds():
    found = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/cmdline", "rb").read() == b"lmtpd\0":
                found.append(int(p))
        except OSError:
            pass
    return found
def sessions():
    with open("/proc/net/unix") as f:
        return [l for l in f if l.split()[5:6] == ["03"] and l.rstrip().endswith("/socket/lmtp")]
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pids = lmtpds()
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    if pids and sessions():
        for p in pids:
            os.kill(p, signal.SIGKILL)
        sys.exit(0)
    for p in pids:
        os.kill(p, signal.SIGCONT)
    time.sleep(0.002)
sys.exit(1)
"""


def cut_lmtp_session(app: Appliance, within: float = 20.0) -> None:
    """SIGKILL the lmtpd processes at a moment when one of them is in a session."""
    code, out = app.exec("python3", "-c", _CUT_LMTP_SESSION, str(within))
    assert code == 0, f"no LMTP session to cut off within {within:g}s: {out}"


# --------------------------------------------------------------------------- threads


class Stream(threading.Thread):
    """Sends one message per new SMTP session, back to back, until stopped; records
    the Message-IDs that got 250 after DATA and counts everything else."""

    def __init__(
        self,
        app: Appliance,
        *,
        to: str = ALICE[0],
        port: int = 25,
        login: tuple[str, str] | None = None,
        interval: float = 0.02,
        body: str = "hello",
        limit: int = 300,
    ) -> None:
        super().__init__(daemon=True, name="stream")
        self.app, self.to, self.port, self.login = app, to, port, login
        self.interval, self.body, self.limit = interval, body, limit
        self.accepted: dict[str, float] = {}
        self.slowest = 0.0  # seconds of the slowest session
        self.refused: Counter[str] = Counter()
        self.stopped = threading.Event()
        self.sent = 0

    def run(self) -> None:
        sender = self.login[0] if self.login else SENDER
        while not self.stopped.is_set() and self.sent < self.limit:
            self.sent += 1
            t0 = time.monotonic()
            try:
                mid, code, text = self.app.send(
                    sender,
                    self.to,
                    port=self.port,
                    login=self.login,
                    subject=f"stream {self.sent}",
                    body=self.body,
                    timeout=10,
                )
            except (OSError, smtplib.SMTPException, KeyError) as exc:
                self.refused[type(exc).__name__] += 1
            else:
                self.slowest = max(self.slowest, time.monotonic() - t0)
                if code == 250:
                    self.accepted[mid] = time.monotonic()
                else:
                    self.refused[f"{code} {text[:40]}"] += 1
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)
        assert not self.is_alive(), "the stream did not stop"


_UID = re.compile(rb"UID (\d+)")


class Mailbox(threading.Thread):
    """Polls one INBOX over IMAP: when each Message-ID was first seen, and how often."""

    def __init__(self, app: Appliance, user: tuple[str, str], interval: float = 0.25) -> None:
        super().__init__(daemon=True, name="mailbox")
        self.app, self.user, self.interval = app, user, interval
        self.first_seen: dict[str, float] = {}
        self.copies: Counter[str] = Counter()
        self.next_uid = 1
        self.stopped = threading.Event()
        self.errors = 0

    def poll(self, client: imaplib.IMAP4) -> None:
        client.noop()
        typ, data = client.uid(
            "FETCH", f"{self.next_uid}:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"
        )
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH: {typ} {data!r}")
        now = time.monotonic()
        for part in data:
            if not isinstance(part, tuple):
                continue
            found = _UID.search(part[0])
            if not found or int(found.group(1)) < self.next_uid:
                continue  # n:* names the last message when n is beyond it
            self.next_uid = int(found.group(1)) + 1
            header = part[1].decode("utf-8", "replace")
            for mid in (w.strip() for w in header.split(":", 1)[1:] if w.strip()):
                self.copies[mid] += 1
                self.first_seen.setdefault(mid, now)

    def run(self) -> None:
        client: imaplib.IMAP4 | None = None
        while not self.stopped.is_set():
            try:
                if client is None:
                    client = self.app.imap(*self.user)
                    client.select("INBOX", readonly=True)
                self.poll(client)
            except (OSError, imaplib.IMAP4.error, KeyError, EOFError):
                self.errors += 1
                if client is not None:
                    with contextlib.suppress(Exception):
                        client.shutdown()
                client = None
            self.stopped.wait(self.interval)
        if client is not None:
            with contextlib.suppress(Exception):
                client.logout()

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)


@dataclass
class Sample:
    at: float
    code: int  # 0: no answer (controller or container down)
    pids: dict[str, int | None]
    problems: list[str]


class Readiness(threading.Thread):
    """Records /readyz every `interval` seconds: code, each daemon's pid, problems."""

    def __init__(self, app: Appliance, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="readyz")
        self.app, self.interval = app, interval
        self.samples: list[Sample] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                code, body = self.app.readyz()
                daemons = body.get("daemons", {})
                sample = Sample(
                    time.monotonic(),
                    code,
                    {name: d.get("pid") for name, d in daemons.items()},
                    list(body.get("problems", [])),
                )
            except (OSError, ValueError, KeyError):
                sample = Sample(time.monotonic(), 0, {}, [])
            self.samples.append(sample)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.join(30)

    def since(self, t: float) -> list[Sample]:
        return [s for s in list(self.samples) if s.at >= t]


# --------------------------------------------------------------------------- one run


def settle(done: Callable[[], bool], timeout: float) -> bool:
    """Wait up to `timeout` seconds for `done()`; whether it came true (no failure)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def queued_message_ids(app: Appliance) -> set[str]:
    """The Message-IDs of everything in Postfix's queue (postcat of each queue file)."""
    ids = [str(m["queue_id"]) for m in app.queue()]
    if not ids:
        return set()
    script = 'for q in "$@"; do postcat -hq "$q" 2>/dev/null; done | grep -i "^message-id:"'
    _, out = app.exec("sh", "-c", script, "sh", *ids)
    return {line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line}


@dataclass
class Figures:
    name: str
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    recovery_s: float = math.nan
    max_delay_s: float = math.nan
    notes: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"FAULT {self.name}: accepted={self.accepted} delivered={self.delivered} "
            f"lost={self.lost} duplicates={self.duplicates} recovery_s={self.recovery_s:.2f} "
            f"max_delay_s={self.max_delay_s:.2f}"
        )


class FaultRun:
    """Stream + mailbox watcher + readiness recorder around one injected fault.

    Use: ``run = FaultRun(app, name); run.start(); ...; run.inject(...)``, then
    ``run.recovered(...)``, ``run.finish()`` and the assertions ``run.check_*``.
    """

    def __init__(
        self,
        app: Appliance,
        name: str,
        *,
        user: tuple[str, str] = ALICE,
        bound_s: float = BOUND_S,
        **stream: Any,
    ) -> None:
        self.app, self.name, self.bound_s = app, name, bound_s
        self.stream = Stream(app, to=user[0], **stream)
        self.mailbox = Mailbox(app, user)
        self.readiness = Readiness(app)
        self.figures = Figures(name)
        self.t_fault = math.nan
        self.t_recovered = math.nan
        self.recovery_error = ""

    def start(self, warmup: int = 20, timeout: float = 30) -> None:
        """Start the threads; return once `warmup` messages were accepted."""
        self.readiness.start()
        self.mailbox.start()
        self.stream.start()
        wait_until(
            lambda: len(self.stream.accepted) >= warmup,
            timeout,
            lambda: f"{warmup} accepted before the fault ({self.stream.refused})",
        )

    def inject(self, fault: Callable[[], None]) -> None:
        self.t_fault = time.monotonic()
        fault()

    def recovered(
        self,
        *,
        expect_unready: bool,
        ready_also: Callable[[], bool] = lambda: True,
        timeout: float = 60,
        meanwhile: Callable[[], None] = lambda: None,
        since: float | None = None,
    ) -> bool:
        """Wait for /readyz 200 (after a not-200 when `expect_unready`) with `ready_also`
        true; that moment is the recovery (figures.recovery_s counts from the fault).
        False after `timeout`: check_recovered() then fails with what was seen. `since`:
        count recovery_s from then instead (when the cause of the fault was removed)."""
        t_fault = self.t_fault

        def back() -> bool:
            meanwhile()
            samples = self.readiness.since(t_fault)
            if expect_unready:
                down = next((i for i, s in enumerate(samples) if s.code != 200), None)
                if down is None:
                    return False
                samples = samples[down:]
            if not any(s.code == 200 for s in samples):
                return False
            return ready_also()

        try:
            wait_until(back, timeout, "", interval=0.1)
        except AssertionError as exc:
            logs = self.app.logs()
            controller = [line for line in logs.splitlines() if line.startswith("mailctl")]
            self.recovery_error = (
                f"{self.name}: not recovered in {timeout:g}s: {exc}\n"
                f"/readyz since the fault: {self.codes()}\n"
                "the controller's last lines:\n" + "\n".join(controller[-12:])
            )
            return False
        self.t_recovered = time.monotonic()
        self.figures.recovery_s = self.t_recovered - (self.t_fault if since is None else since)
        return True

    def settle_for(self, done: Callable[[], bool], timeout: float) -> bool:
        return settle(done, timeout)

    def check_recovered(self) -> None:
        assert not self.recovery_error, self.recovery_error

    def codes(self) -> str:
        """The /readyz codes since the fault, run-length encoded: '200x12 503x30 200x4'."""
        out: list[list[int]] = []
        for s in self.readiness.since(self.t_fault):
            if out and out[-1][0] == s.code:
                out[-1][1] += 1
            else:
                out.append([s.code, 1])
        return " ".join(f"{c}x{n}" for c, n in out)

    def finish(self, after: float = 1.5) -> Figures:
        """Let the stream run `after` more seconds, stop it, wait for delivery (up to the
        bound after recovery), and compute the figures."""
        time.sleep(after)
        self.stream.stop()
        accepted = dict(self.stream.accepted)
        recovered = self.t_recovered if not math.isnan(self.t_recovered) else time.monotonic()
        deadline = max(recovered, max(accepted.values(), default=recovered)) + self.bound_s + 2
        settle(lambda: set(accepted) <= set(self.mailbox.first_seen), deadline - time.monotonic())
        missing = set(accepted) - set(self.mailbox.first_seen)
        late: set[str] = set()
        reasons: set[str] = set()
        if missing:  # late or lost? What is still queued is late; flush it and look again.
            try:
                late = missing & queued_message_ids(self.app)
                reasons = {
                    str(r.get("delay_reason", ""))[:120]
                    for m in self.app.queue()
                    for r in m.get("recipients", [])
                    if r.get("delay_reason")
                }
                self.app.exec("postqueue", "-f")
                settle(lambda: not missing - set(self.mailbox.first_seen), 10)
            except docker.errors.APIError as exc:  # not running: its queue is unknown
                late = missing
                reasons = {f"cannot look into the queue: {exc.explanation}"}
        time.sleep(0.5)  # one more poll: late duplicates
        self.mailbox.stop()
        self.readiness.stop()
        seen = dict(self.mailbox.first_seen)
        f = self.figures
        f.accepted = len(accepted)
        in_time = {mid for mid in accepted if mid in seen and mid not in missing}
        f.delivered = len(in_time)  # within the bound; `late` ones are counted in the notes
        f.lost = len(set(accepted) - set(seen) - late)
        f.duplicates = sum(n - 1 for mid, n in self.mailbox.copies.items() if n > 1)
        delays = [seen[mid] - max(at, recovered) for mid, at in accepted.items() if mid in in_time]
        f.max_delay_s = math.inf if missing or self.recovery_error else max([0.0, *delays])
        if missing:
            f.notes.append(
                f"{len(missing)} not delivered {self.bound_s:g}s after recovery, "
                f"{len(late)} of them still queued; after `postqueue -f`: "
                f"{len(missing & set(seen))} delivered"
            )
            f.notes.extend(sorted(reasons)[:3])
        f.notes.append(
            f"refused/failed sessions: {dict(self.stream.refused)}; "
            f"slowest session {self.stream.slowest:.2f}s"
        )
        f.notes.append(f"/readyz since the fault: {self.codes()}")
        print(f"\n{f.line()}")
        for note in f.notes:
            print(f"    {note}")
        RESULTS.append(f)
        return f

    # --- the three proofs ---------------------------------------------------

    def check_delivery(self) -> None:
        f = self.figures
        notes = "; ".join(f.notes)
        assert f.accepted > 0, f"{self.name}: nothing was accepted ({notes})"
        assert f.lost == 0, (
            f"{self.name}: {f.lost} of {f.accepted} accepted messages neither in the "
            f"mailbox nor queued ({notes})"
        )
        assert f.max_delay_s <= self.bound_s, (
            f"{self.name}: not every accepted message was in the mailbox {self.bound_s:g}s "
            f"after recovery: max_delay_s={f.max_delay_s:.2f} ({notes})"
        )

    def check_readiness(self, daemon: str | None = None, dead_pid: int | None = None) -> None:
        """200 at the end; not 200 naming the dead pid for `daemon` later than LAG_S after
        the fault (the supervisor notices an exit at its next tick, every 0.1 s)."""
        samples = self.readiness.since(self.t_fault)
        assert samples and samples[-1].code == 200, f"{self.name}: /readyz {self.codes()}"
        if daemon and dead_pid:
            lying = [s for s in samples if s.code == 200 and s.pids.get(daemon) == dead_pid]
            late = [s.at - self.t_fault for s in lying if s.at - self.t_fault > LAG_S]
            assert not late, (
                f"{self.name}: /readyz 200 with dead {daemon} pid {dead_pid} "
                f"{max(late):.2f}s after the kill"
            )

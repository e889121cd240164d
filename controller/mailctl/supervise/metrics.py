"""Prometheus metrics of the appliance: counted from the daemons' log lines, set by the controller.

`Metrics.observe_line(name, line)` is a log listener (`output.listen`): it sees every
line as the controller does, `name` being "postfix" (postlogd's stdout, the line
starting "Mmm dd hh:mm:ss host postfix/…[pid]: "), a syslog tag ("cyrus/imap",
"saslauthd", "postgrey") or "mailctl". The setters take what the controller polls
(`postqueue -j`, the supervisor's states, apply results, the certificate, quotas), and
`render()` is the Prometheus text format of this instance's own registry.

Which line counts where, and why that line (formats as captured from this image):

- messages_received{port}: a message smtpd accepted, counted when qmgr first takes it
  in (`postfix/qmgr: QID: from=<…>, size=…, nrcpt=… (queue active)`) after smtpd
  opened it (`postfix/smtpd: QID: client=…`; the smtpd's syslog name gives the port:
  postfix/smtpd 25, postfix/submission/smtpd 587, postfix/smtps/smtpd 465). The
  client= line alone is not an acceptance: smtpd logs it at the first accepted RCPT,
  and a message too big for message_size_limit (`warning: QID: queue file size limit
  exceeded`) or a client that hangs up during DATA never gets its 250. qmgr logs
  from= again at every retry of a deferred message: only the first, paired, counts.
  Held messages count when released; discarded ones and local submissions never.
- messages_{delivered,deferred,bounced}{transport}: one per recipient, from a delivery
  agent's `QID: to=<…>, relay=…, dsn=…, status=sent|deferred|bounced (…)`; transport
  is the agent's name (lmtp, smtp, local, virtual, error, discard, pipe; else other).
  Deferrals by qmgr of a dead destination come from the error agent ("delivery
  temporarily suspended: …").
- lmtp_failures{reason}: an LMTP deferral, by postfix/lmtp or (destination marked
  dead) postfix/error naming the Cyrus socket. connect: no session (socket missing,
  refused); lost: the session broke ("lost connection with", "conversation with … timed
  out"); answered: lmtpd said 4xx ("host … said: 452 4.2.2 Over quota").
- smtpd_rejects{reason}: smtpd's `NOQUEUE: reject: …` and `QID: reject: …` lines,
  classified by the reply text (`reject_reason`); plus `queue file size limit
  exceeded` (size, at DATA), and each failed SMTP AUTH (auth). An unauthenticated
  client on 587/465 is refused with "Client host rejected: Access denied" (the
  submission services' client restrictions): auth too. Postfix does not log its
  "530 Must issue a STARTTLS command first" refusal, so tls counts only a reject line
  that carries such a text.
- auth_failures{service}: smtp from smtpd's `warning: host[ip]: SASL <MECH>
  authentication failed: …` (one per attempt; smtplib tries PLAIN then LOGIN); imap
  and pop from Cyrus's `badlogin:` (cyrus/imap[s], cyrus/pop3[s]). Not from the
  cyrus-sasl library's "SASL authentication failure:" line nor from saslauthd's "auth
  failure:" lines: those are the same failures again (saslauthd even logs each twice,
  to stderr and to syslog).
- imap_logins{result}: Cyrus imapd's `login:` (ok) and `badlogin:` (fail) on the imap
  and imaps services; the controller's own logins on the admin socket do not count.
- log_lines{daemon,known}: every line; daemon is postfix, cyrus, saslauthd, postgrey,
  fetchmail, mailctl or other (a bounded set: anyone in the container may write to
  /dev/log); known="true" when one of the rules above recognised the line.

Label values are all from fixed sets, except the supervisor's daemon names and the
top-N mailboxes. Thread-safe: one lock guards all state; parsing happens outside it.
Side effects: none (own registry, no threads; set_queue reads the clock if not given one).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from mailctl.layout import LMTP_SOCKET

# What generate_latest writes by default (names escaped to the classic charset): the
# 0.0.4 text format, which every Prometheus reads. (prometheus_client 0.22+ names
# "1.0.0" as its latest, for UTF-8 names we do not use.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PORTS = {"postfix/smtpd": "25", "postfix/submission/smtpd": "587", "postfix/smtps/smtpd": "465"}
SUBMISSION = frozenset(("postfix/submission/smtpd", "postfix/smtps/smtpd"))
REJECT_REASONS = (
    "relay",
    "unknown_user",
    "greylist",
    "rbl",
    "access",
    "helo",
    "sender",
    "size",
    "tls",
    "auth",
    "other",
)
LMTP_REASONS = ("connect", "lost", "answered")
QUEUES = ("active", "deferred", "hold", "incoming", "maildrop")
TRANSPORTS = frozenset(("lmtp", "smtp", "local", "virtual", "error", "discard", "pipe"))
CYRUS_SERVICES = {
    "cyrus/imap": "imap",
    "cyrus/imaps": "imap",
    "cyrus/pop3": "pop",
    "cyrus/pop3s": "pop",
}
DAEMONS = (
    "postfix",
    "saslauthd",
    "postgrey",
    "fetchmail",
    "mailctl",
    "opendkim",
    "opendmarc",
    "policyd-spf",
    "postsrsd",
)
DKIM_RESULTS = ("pass", "fail", "error")
DMARC_RESULTS = ("pass", "fail", "none", "other")
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "temperror", "permerror")
# Seconds (floats: repr() is then the Go form Prometheus writes, "10.0"); a
# reload-only change takes well under one, a Cyrus restart several.
APPLY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# smtpd has opened a queue file for these; qmgr has not taken them in yet. Entries of
# sessions that broke off in DATA stay until pushed out, oldest first.
PENDING_MAX = 4096

_COUNTERS: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    # name: (help, label names, label values exported from the start)
    "mailctl_messages_received": (
        "Messages accepted by smtpd (taken in by qmgr), by port.",
        ("port",),
        tuple((p,) for p in PORTS.values()),
    ),
    "mailctl_messages_delivered": (
        "Recipients delivered (status=sent), by delivery agent.",
        ("transport",),
        (("lmtp",), ("smtp",)),
    ),
    "mailctl_messages_deferred": (
        "Delivery attempts deferred (status=deferred), by delivery agent.",
        ("transport",),
        (("lmtp",), ("smtp",)),
    ),
    "mailctl_messages_bounced": (
        "Recipients bounced (status=bounced), by delivery agent.",
        ("transport",),
        (("lmtp",), ("smtp",)),
    ),
    "mailctl_smtpd_rejects": (
        "SMTP commands smtpd refused, by reason.",
        ("reason",),
        tuple((r,) for r in REJECT_REASONS),
    ),
    "mailctl_auth_failures": (
        "Failed logins, by service (smtp: SMTP AUTH; imap, pop: Cyrus).",
        ("service",),
        (("smtp",), ("imap",), ("pop",)),
    ),
    "mailctl_imap_logins": (
        "IMAP logins, by result.",
        ("result",),
        (("ok",), ("fail",)),
    ),
    "mailctl_lmtp_failures": (
        "LMTP deliveries to Cyrus deferred, by reason (connect, lost, answered).",
        ("reason",),
        tuple((r,) for r in LMTP_REASONS),
    ),
    "mailctl_log_lines": (
        "Log lines seen, by daemon and whether a metric rule recognised them.",
        ("daemon", "known"),
        (),
    ),
    "mailctl_dkim_signed": (
        "Messages OpenDKIM signed (submission and trusted networks).",
        (),
        ((),),
    ),
    "mailctl_dkim_verified": (
        "DKIM signatures of mail from outside, by result (error: no key in DNS and such).",
        ("result",),
        tuple((r,) for r in DKIM_RESULTS),
    ),
    "mailctl_dmarc_results": (
        "DMARC verdicts of OpenDMARC on mail from outside, by result.",
        ("result",),
        tuple((r,) for r in DMARC_RESULTS),
    ),
    "mailctl_spf_results": (
        "SPF results of policyd-spf for mail from outside (fail: refused or marked).",
        ("result",),
        tuple((r,) for r in SPF_RESULTS),
    ),
    "mailctl_apply": (
        "Settings applies, by result.",
        ("result",),
        (("ok",), ("failed",)),
    ),
}
RECEIVED, DELIVERED, DEFERRED, BOUNCED = (
    "mailctl_messages_received",
    "mailctl_messages_delivered",
    "mailctl_messages_deferred",
    "mailctl_messages_bounced",
)
REJECTS, AUTH_FAILURES, IMAP_LOGINS = (
    "mailctl_smtpd_rejects",
    "mailctl_auth_failures",
    "mailctl_imap_logins",
)
LMTP_FAILURES, LOG_LINES, APPLY = "mailctl_lmtp_failures", "mailctl_log_lines", "mailctl_apply"

Key = tuple[str, tuple[str, ...]]  # (counter name, label values)
_STATUS_OF = {"sent": DELIVERED, "deferred": DEFERRED, "bounced": BOUNCED}
# The fields Postfix's log_adhoc() writes after "to=<address>[, orig_to=<…>], relay=…":
# the first such run is the agent's (an address would have to be built to fake one).
# No backtracking over the rest of the line: a long hostile line costs linear time.
_STATUS = re.compile(r", dsn=\d\.\d{1,3}\.\d{1,3}, status=(sent|deferred|bounced)(?= \(|$)")
_SUSPENDED = "delivery temporarily suspended: "
_LMTP_RELAY = f"[{LMTP_SOCKET}]"


def reject_reason(program: str, reject: str) -> str:
    """The reason label of smtpd's `reject: STAGE from host[ip]: CODE X.Y.Z <who>: text;
    from=<…> …` (`program` is the smtpd's syslog name, e.g. postfix/submission/smtpd)."""
    start = reject.find("]: ")
    reply = reject[start + 3 :] if start >= 0 else reject
    cut = reply.find("; from=<")
    if cut >= 0:
        reply = reply[:cut]
    # After the last "<address>: ": text the client wrote (an address) is left behind.
    gt = reply.rfind(">: ")
    if gt >= 0:
        reply = reply[gt + 3 :]
    if " blocked using " in reply:
        return "rbl"
    if reply.startswith("Recipient address rejected: "):
        text = reply[28:]
        if text.startswith("Greylisted"):
            return "greylist"
        if text.startswith(("User unknown", "undeliverable address", "unverified address")):
            return "unknown_user"
        if text.startswith(("need fully-qualified", "Domain not found", "Malformed DNS")):
            return "other"
        return "access"  # the access maps', restriction classes' and error transports' texts
    if "Relay access denied" in reply:
        return "relay"
    if reply.startswith("Helo command rejected: "):
        return "helo"
    if reply.startswith("Sender address rejected: "):
        return "sender"
    if reply.startswith("Client host rejected: "):
        if program in SUBMISSION and reply.endswith(": Access denied"):
            return "auth"  # 587/465: permit_sasl_authenticated, reject
        if "cannot find your" in reply:
            return "other"
        return "access"
    if "size exceeds" in reply:
        return "size"
    if "STARTTLS" in reply or "Encryption required" in reply:
        return "tls"
    if "Authentication required" in reply:
        return "auth"
    return "other"


def lmtp_reason(why: str) -> str:
    """The reason label of an LMTP deferral's text (what status=deferred (…) holds)."""
    why = why.removeprefix(_SUSPENDED)
    if why.startswith("host ") and " said: " in why:
        return "answered"
    if why.startswith(("lost connection", "conversation with")):
        return "lost"
    return "connect"


def _daemon(name: str) -> str:
    if name in DAEMONS:
        return name
    return "cyrus" if name.startswith("cyrus/") else "other"


def _cyrus(name: str, line: str) -> tuple[Key, ...] | None:
    service = CYRUS_SERVICES.get(name)
    if service is None:
        return None
    if line.startswith("badlogin: "):
        failed: Key = (AUTH_FAILURES, (service,))
        return (failed, (IMAP_LOGINS, ("fail",))) if service == "imap" else (failed,)
    if line.startswith("login: ") and service == "imap":
        return ((IMAP_LOGINS, ("ok",)),)
    return None


def _opendkim(line: str) -> tuple[Key, ...] | None:
    """`QUEUEID: DKIM-Signature field added (s=.., d=..)`, `...: DKIM verification
    successful`, `...: bad signature data`, `...: key retrieval failed (...)`."""
    if "DKIM-Signature field added" in line:
        return (("mailctl_dkim_signed", ()),)
    for text, result in _DKIM_VERDICTS:
        if text in line:
            return (("mailctl_dkim_verified", (result,)),)
    return None


_DKIM_VERDICTS = (
    ("DKIM verification successful", "pass"),
    ("bad signature data", "fail"),
    ("key retrieval failed", "error"),
)


def _opendmarc(line: str) -> tuple[Key, ...] | None:
    """`QUEUEID: example.org pass` (or fail, none, ...)."""
    parts = line.split()
    if len(parts) != 3 or not parts[0].endswith(":"):
        return None
    result = parts[2] if parts[2] in DMARC_RESULTS else "other"
    return (("mailctl_dmarc_results", (result,)),)


def _policyd_spf(line: str) -> tuple[Key, ...] | None:
    """`prepend Received-SPF: Pass ...`, or the refusal `550 ... SPF fail - not ...`."""
    found = _SPF_HEADER.search(line)
    if found:
        result = found.group(1).lower()
    elif "Message rejected due to: SPF fail" in line:
        result = "fail"
    else:
        return None
    return (("mailctl_spf_results", (result if result in SPF_RESULTS else "none",)),)


_SPF_HEADER = re.compile(r"prepend Received-SPF: (\w+)")
_AUTH_CHECKS = {"opendkim": _opendkim, "opendmarc": _opendmarc, "policyd-spf": _policyd_spf}


def _delivery(agent: str, msg: str) -> tuple[Key, ...] | None:
    m = _STATUS.search(msg)
    if m is None or " to=<" not in msg[: m.start()]:
        return None
    status, rest = m.group(1), msg[m.end() :]
    why = rest[2:-1] if rest.endswith(")") else ""
    counted: Key = (_STATUS_OF[status], (agent if agent in TRANSPORTS else "other",))
    if status == "deferred" and (
        agent == "lmtp" or (why.startswith(_SUSPENDED) and _LMTP_RELAY in why)
    ):
        return (counted, (LMTP_FAILURES, (lmtp_reason(why),)))
    return (counted,)


class Metrics:
    """One appliance's metrics. Every method may be called from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[tuple[str, ...], int]] = {
            name: dict.fromkeys(initial, 0) for name, (_, _, initial) in _COUNTERS.items()
        }
        self._pending: dict[str, str] = {}  # queue ID -> port
        self._queue: dict[str, tuple[int, float]] = dict.fromkeys(QUEUES, (0, 0.0))
        self._daemons: dict[str, tuple[bool, int]] = {}
        self._apply_buckets = [0] * len(APPLY_BUCKETS)
        self._apply_sum = 0.0
        self._apply_count = 0
        self._cert_expiry: float | None = None
        self._quota: dict[str, float] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self._families))

    # --- log lines -----------------------------------------------------------------

    def observe_line(self, name: str, line: str) -> None:
        """Count one line (an `output.Listener`). Never raises on any text."""
        daemon = _daemon(name)
        keys: tuple[Key, ...] | None = None
        if daemon == "postfix":
            keys = self._postfix(line)
        elif daemon == "cyrus":
            keys = _cyrus(name, line)
        elif daemon in _AUTH_CHECKS:
            keys = _AUTH_CHECKS[daemon](line)
        with self._lock:
            counts = self._counts
            for family, labels in keys or ():
                values = counts[family]
                values[labels] = values.get(labels, 0) + 1
            lines = counts[LOG_LINES]
            key = (daemon, "false" if keys is None else "true")
            lines[key] = lines.get(key, 0) + 1

    def _postfix(self, line: str) -> tuple[Key, ...] | None:
        """`Mmm dd hh:mm:ss host postfix/<service>/<agent>[pid]: message`."""
        end = line.find("]: ")
        bracket = line.rfind("[", 0, end) if end > 0 else -1
        if bracket < 0:
            return None
        program = line[line.rfind(" ", 0, bracket) + 1 : bracket]
        agent = program[program.rfind("/") + 1 :]
        msg = line[end + 3 :]
        if agent == "smtpd":
            return self._smtpd(program, msg)
        if agent == "qmgr":
            return self._qmgr(msg)
        if "status=" in msg:
            return _delivery(agent, msg)
        return None

    def _smtpd(self, program: str, msg: str) -> tuple[Key, ...] | None:
        if msg.startswith("NOQUEUE: "):
            rest = msg[9:]
            if rest.startswith(("reject: ", "milter-reject: ")):
                return ((REJECTS, (reject_reason(program, rest),)),)
            return None
        if msg.startswith("warning: "):
            if " authentication failed" in msg and ": SASL " in msg:
                return ((AUTH_FAILURES, ("smtp",)), (REJECTS, ("auth",)))
            if msg.endswith(": queue file size limit exceeded"):
                self._forget(msg[9 : msg.find(":", 9)])
                return ((REJECTS, ("size",)),)
            return None
        colon = msg.find(": ")
        if colon <= 0 or not msg[:colon].isalnum():
            return None
        queue_id, rest = msg[:colon], msg[colon + 2 :]
        if rest.startswith("client="):
            with self._lock:
                pending = self._pending
                pending[queue_id] = PORTS.get(program, "other")
                if len(pending) > PENDING_MAX:
                    del pending[next(iter(pending))]
            return ()
        if rest.startswith(("reject: ", "milter-reject: ")):
            if not rest.startswith("reject: RCPT "):  # a refused recipient is not the message
                self._forget(queue_id)
            return ((REJECTS, (reject_reason(program, rest),)),)
        return None

    def _qmgr(self, msg: str) -> tuple[Key, ...] | None:
        colon = msg.find(": ")
        if colon <= 0:
            return None
        queue_id, rest = msg[:colon], msg[colon + 2 :]
        if rest.startswith("from=<") and rest.endswith(" (queue active)"):
            with self._lock:
                port = self._pending.pop(queue_id, None)
            return () if port is None else ((RECEIVED, (port,)),)
        if rest == "removed":
            self._forget(queue_id)
            return ()
        return None

    def _forget(self, queue_id: str) -> None:
        with self._lock:
            self._pending.pop(queue_id, None)

    # --- what the controller polls -------------------------------------------------

    def set_queue(self, entries: Iterable[Mapping[str, object]], now: float | None = None) -> None:
        """`postqueue -j`'s objects: messages and the oldest one's age per queue (0 if empty)."""
        now = time.time() if now is None else now
        count = dict.fromkeys(QUEUES, 0)
        oldest: dict[str, float] = {}
        for entry in entries:
            queue, arrival = entry.get("queue_name"), entry.get("arrival_time")
            if not isinstance(queue, str) or queue not in count:
                continue
            count[queue] += 1
            if isinstance(arrival, int | float) and not isinstance(arrival, bool):
                if math.isfinite(arrival) and arrival < oldest.get(queue, math.inf):
                    oldest[queue] = float(arrival)
        state = {
            q: (n, max(0.0, now - oldest[q]) if q in oldest else 0.0) for q, n in count.items()
        }
        with self._lock:
            self._queue = state

    def set_daemons(self, statuses: Iterable[tuple[str, bool, int]]) -> None:
        """(name, up, restarts) of every supervised daemon; daemons not named are dropped."""
        state = {name: (bool(up), int(restarts)) for name, up, restarts in statuses}
        with self._lock:
            self._daemons = state

    def record_apply(self, ok: bool, seconds: float) -> None:
        """One apply of the settings: its result and how long it took."""
        seconds = seconds if math.isfinite(seconds) and seconds > 0 else 0.0
        with self._lock:
            results = self._counts[APPLY]
            result = ("ok",) if ok else ("failed",)
            results[result] = results.get(result, 0) + 1
            for i, bound in enumerate(APPLY_BUCKETS):
                if seconds <= bound:
                    self._apply_buckets[i] += 1
            self._apply_sum += seconds
            self._apply_count += 1

    def set_certificate_expiry(self, unix_time: float | None) -> None:
        """The server certificate's notAfter (seconds since the epoch); None: no sample."""
        with self._lock:
            self._cert_expiry = unix_time if unix_time is None or math.isfinite(unix_time) else None

    def set_quota(self, used_ratio: Mapping[str, float], top: int = 10) -> None:
        """Used/limit per mailbox; only the `top` fullest are exported (the rest dropped)."""
        ranked = sorted(
            ((-ratio, box) for box, ratio in used_ratio.items() if math.isfinite(ratio)),
        )[: max(0, top)]
        with self._lock:
            self._quota = {box: -neg for neg, box in ranked}

    # --- exposition ----------------------------------------------------------------

    def render(self) -> bytes:
        """The Prometheus text format (serve it as CONTENT_TYPE)."""
        return generate_latest(self.registry)

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            counts = {name: dict(values) for name, values in self._counts.items()}
            queue, daemons, quota = self._queue, self._daemons, self._quota
            buckets, total, count = list(self._apply_buckets), self._apply_sum, self._apply_count
            cert = self._cert_expiry
        for name, (doc, labels, _) in _COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=labels)
            for values, n in sorted(counts[name].items()):
                family.add_metric(values, n)
            yield family
        messages = GaugeMetricFamily(
            "mailctl_queue_messages", "Messages in each Postfix queue.", labels=("queue",)
        )
        age = GaugeMetricFamily(
            "mailctl_queue_oldest_seconds",
            "Age of the oldest message in each Postfix queue (0 when empty).",
            labels=("queue",),
        )
        for q, (n, seconds) in queue.items():
            messages.add_metric((q,), n)
            age.add_metric((q,), seconds)
        yield messages
        yield age
        up = GaugeMetricFamily(
            "mailctl_daemon_up", "1 if the daemon is up (ready), else 0.", labels=("daemon",)
        )
        restarts = CounterMetricFamily(
            "mailctl_daemon_restarts", "Restarts by the supervisor.", labels=("daemon",)
        )
        for name, (is_up, n) in sorted(daemons.items()):
            up.add_metric((name,), 1 if is_up else 0)
            restarts.add_metric((name,), n)
        yield up
        yield restarts
        histogram = HistogramMetricFamily("mailctl_apply_seconds", "Duration of settings applies.")
        histogram.add_metric(
            (),
            [
                *((repr(b), n) for b, n in zip(APPLY_BUCKETS, buckets, strict=True)),
                ("+Inf", count),
            ],
            total,
        )
        yield histogram
        expiry = GaugeMetricFamily(
            "mailctl_tls_certificate_expiry_seconds",
            "notAfter of the server certificate, in seconds since the epoch.",
        )
        if cert is not None:
            expiry.add_metric((), cert)
        yield expiry
        ratio = GaugeMetricFamily(
            "mailctl_mailbox_quota_used_ratio",
            "Used share of the quota of the fullest mailboxes.",
            labels=("mailbox",),
        )
        for box, value in sorted(quota.items()):
            ratio.add_metric((box,), value)
        yield ratio


class _Collector(Collector):
    def __init__(self, families: Callable[[], Iterator[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return self._families()

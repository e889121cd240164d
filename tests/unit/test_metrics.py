"""The metrics module: what each real daemon line counts, the setters, the text format.

tests/unit/data/loglines.txt holds lines captured from the image (mailserver:latest)
with three throwaway e2e runs: mail on 25, 587 and 465, failed SMTP AUTH, IMAP and POP
logins, rejects (greylist, unknown user, relay, HELO, sender, access map, size at MAIL
and at DATA, unauthenticated submission, a DNS blocklist served by a test DNS peer),
an over-quota bounce and deferral, a deferral to a closed loopback port, an LMTP
session cut off, Cyrus down (connect refused, and qmgr's "delivery temporarily
suspended"). One row is `name: line` as the container's stdout shows it; the
controller's listener gets the same line unmasked (stdout replaces what follows
"password"/"pass" with ***, which no rule here looks at).
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mailctl.supervise import output
from mailctl.supervise.metrics import (
    CONTENT_TYPE,
    PENDING_MAX,
    REJECT_REASONS,
    Metrics,
    lmtp_reason,
    reject_reason,
)

DATA = Path(__file__).parent / "data" / "loglines.txt"
ROWS = DATA.read_text(encoding="utf-8").splitlines()
LINES = [(row.split(": ", 1)[0], row.split(": ", 1)[1]) for row in ROWS]

Sample = tuple[str, frozenset[tuple[str, str]]]


def s(name: str, **labels: str) -> Sample:
    return name, frozenset(labels.items())


def samples(m: Metrics) -> dict[Sample, float]:
    """Every sample of render(), parsed back by prometheus_client's own parser."""
    out: dict[Sample, float] = {}
    for family in text_string_to_metric_families(m.render().decode()):
        for sample in family.samples:
            out[s(sample.name, **sample.labels)] = sample.value
    return out


def delta(before: dict[Sample, float], after: dict[Sample, float]) -> Counter[Sample]:
    return Counter(
        {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0) and v == v}
    )


def line_counts(d: Counter[Sample]) -> Counter[Sample]:
    return Counter({k: v for k, v in d.items() if k[0] == "mailctl_log_lines_total"})


def rule_counts(d: Counter[Sample]) -> Counter[Sample]:
    return Counter({k: v for k, v in d.items() if k[0] != "mailctl_log_lines_total"})


def reject(reason: str) -> Sample:
    return s("mailctl_smtpd_rejects_total", reason=reason)


def delivered(transport: str) -> Sample:
    return s("mailctl_messages_delivered_total", transport=transport)


def deferred(transport: str) -> Sample:
    return s("mailctl_messages_deferred_total", transport=transport)


def lmtp(reason: str) -> Sample:
    return s("mailctl_lmtp_failures_total", reason=reason)


def auth(service: str) -> Sample:
    return s("mailctl_auth_failures_total", service=service)


def imap(result: str) -> Sample:
    return s("mailctl_imap_logins_total", result=result)


# (a substring of the rows it covers, what each of those rows counts on its own).
# A row no entry covers must count nothing and be known="false".
EXPECT: list[tuple[str, dict[Sample, int]]] = [
    # smtpd opened a queue file; qmgr took a message in; qmgr is done with it. Alone,
    # none counts: received pairs the first two (test_received_pairs_smtpd_and_qmgr).
    (": client=unknown[", {}),
    (" (queue active)", {}),
    (": removed", {}),
    ("Recipient address rejected: Greylisted", {reject("greylist"): 1}),
    ("User unknown in virtual mailbox table", {reject("unknown_user"): 1}),
    ("Relay access denied", {reject("relay"): 1}),
    ("Helo command rejected: go away", {reject("helo"): 1}),
    ("Sender address rejected: no spam", {reject("sender"): 1}),
    ("Recipient address rejected: not here", {reject("access"): 1}),
    ("Recipient address rejected: this mailbox is closed", {reject("access"): 1}),
    ("Message size exceeds fixed limit", {reject("size"): 1}),
    ("queue file size limit exceeded", {reject("size"): 1}),
    ("Client host rejected: Access denied", {reject("auth"): 1}),  # 587 without AUTH
    ("blocked using bl.test", {reject("rbl"): 1}),
    (" authentication failed: authentication failure", {auth("smtp"): 1, reject("auth"): 1}),
    ("dsn=2.1.5, status=sent", {delivered("lmtp"): 1}),
    ("dsn=5.2.2, status=bounced", {s("mailctl_messages_bounced_total", transport="lmtp"): 1}),
    ("to=<x@backend.test>, relay=none", {deferred("smtp"): 1}),
    ("status=deferred (lost connection with", {deferred("lmtp"): 1, lmtp("lost"): 1}),
    ("F102517C051: to=<alice@example.com>, relay=none", {deferred("lmtp"): 1, lmtp("connect"): 1}),
    ("said: 452 4.2.2 Over quota", {deferred("lmtp"): 1, lmtp("answered"): 1}),
    ("delivery temporarily suspended: connect to", {deferred("error"): 1, lmtp("connect"): 1}),
    ("cyrus/imap: login:", {imap("ok"): 1}),
    ("cyrus/imap: badlogin:", {imap("fail"): 1, auth("imap"): 1}),
    ("cyrus/imaps: badlogin:", {imap("fail"): 1, auth("imap"): 1}),
    ("cyrus/pop3s: badlogin:", {auth("pop"): 1}),
]


def expectation(row: str) -> tuple[bool, dict[Sample, int]]:
    """(known, counts) of one row, from EXPECT."""
    hits = [counts for sub, counts in EXPECT if sub in row]
    assert len(hits) <= 1, f"two EXPECT rows cover {row!r}"
    return (True, hits[0]) if hits else (False, {})


def daemon_of(name: str) -> str:
    if name.startswith("cyrus/"):
        return "cyrus"
    return name if name in ("postfix", "saslauthd", "postgrey", "mailctl") else "other"


def test_the_data_is_a_real_capture() -> None:
    assert 40 <= len(ROWS) <= 120 and len(set(ROWS)) == len(ROWS)
    names = {name for name, _ in LINES}
    assert {"postfix", "cyrus/imap", "cyrus/pop3s", "saslauthd", "postgrey", "mailctl"} <= names
    for sub, _ in EXPECT:
        assert any(sub in row for row in ROWS), f"no row for {sub!r}"


def check_row(row: str, counts: dict[Sample, int], daemon: str, known: bool) -> None:
    """One captured row ("name: line") counts `counts`, and one line of `daemon`."""
    name, line = row.split(": ", 1)
    m = Metrics()
    before = samples(m)
    m.observe_line(name, line)
    d = delta(before, samples(m))
    assert rule_counts(d) == Counter(counts)
    counted_line = s("mailctl_log_lines_total", daemon=daemon, known=str(known).lower())
    assert line_counts(d) == Counter({counted_line: 1})


@pytest.mark.parametrize("row", ROWS, ids=range(len(ROWS)))
def test_what_each_real_line_counts(row: str) -> None:
    known, counts = expectation(row)
    check_row(row, counts, daemon_of(row.split(": ", 1)[0]), known)


def test_the_whole_capture_in_order() -> None:
    """Every line in order: the per-line counts add up, and received pairs smtpd's
    client= with qmgr's first from=. Counted: 6F78317CF8D on 25; C594F17D11B on 465;
    on 587 9F54E17D0CB, 504EF17C02F, 5EB1C17C02F, A67A517C2E5, F102517C051, B474A17E3FC.
    Not: 65B7617D10D (too big: no 250), the bounce 581A417C13B (no smtpd), and the
    retries of 5EB1C17C02F and A67A517C2E5."""
    m = Metrics()
    before = samples(m)
    for name, line in LINES:
        m.observe_line(name, line)
    d = delta(before, samples(m))
    want: Counter[Sample] = Counter()
    for row in ROWS:
        want.update(expectation(row)[1])
    want.update(
        {
            s("mailctl_messages_received_total", port="25"): 1,
            s("mailctl_messages_received_total", port="587"): 6,
            s("mailctl_messages_received_total", port="465"): 1,
        }
    )
    assert rule_counts(d) == want
    assert sum(line_counts(d).values()) == len(ROWS)
    assert want[reject("auth")] == 4 and want[auth("smtp")] == 3


def test_received_pairs_smtpd_and_qmgr() -> None:
    client = next(line for _, line in LINES if "9F54E17D0CB: client=" in line)
    active = next(line for _, line in LINES if "9F54E17D0CB: from=" in line)
    m = Metrics()
    received = s("mailctl_messages_received_total", port="587")
    m.observe_line("postfix", active)  # qmgr alone: a retry, or a local submission
    assert samples(m)[received] == 0
    m.observe_line("postfix", client)
    m.observe_line("postfix", active)
    m.observe_line("postfix", active)  # the message deferred and taken in again
    assert samples(m)[received] == 1
    # an smtpd line under another name (a syslog tag) is not Postfix's stdout
    m.observe_line("postfix/submission/smtpd", client)
    m.observe_line("postfix", active)
    assert samples(m)[received] == 1


def test_a_message_smtpd_refused_after_opening_it_is_forgotten() -> None:
    """65B7617D10D was too big: smtpd refused it at DATA and never said 250. Were qmgr
    ever to log that queue ID again (IDs are reused), it would not count. A refused
    recipient (`QID: reject: RCPT`) leaves the message itself accepted, and a qmgr
    line other than "(queue active)" is not the message being taken in."""
    client = next(line for _, line in LINES if "65B7617D10D: client=" in line)
    too_big = next(line for _, line in LINES if "65B7617D10D: queue file size" in line)
    active = next(line for _, line in LINES if "9F54E17D0CB: from=" in line)
    active = active.replace("9F54E17D0CB", "65B7617D10D")
    head = client[: client.index("65B7617D10D")]
    qmgr = active[: active.index("65B7617D10D")]
    received = s("mailctl_messages_received_total", port="587")
    m = Metrics()
    for line in (client, too_big, active):
        m.observe_line("postfix", line)
    assert samples(m)[received] == 0
    rcpt = "65B7617D10D: reject: RCPT from unknown[172.18.0.1]: 550 5.1.1 <x@example.com>: "
    rcpt += "Recipient address rejected: User unknown in virtual mailbox table; from=<a@b>"
    expired = qmgr + "65B7617D10D: from=<alice@example.com>, status=expired, returned to sender"
    for line in (client, head + rcpt, expired):
        m.observe_line("postfix", line)
    assert samples(m)[received] == 0
    m.observe_line("postfix", active)
    got = samples(m)
    assert got[received] == 1 and got[reject("unknown_user")] == 1
    eom = rcpt.replace("RCPT", "END-OF-MESSAGE")
    for line in (client, head + eom, active):
        m.observe_line("postfix", line)
    assert samples(m)[received] == 1


def test_pending_queue_ids_are_bounded() -> None:
    client = next(line for _, line in LINES if "9F54E17D0CB: client=" in line)
    active = next(line for _, line in LINES if "9F54E17D0CB: from=" in line)
    m = Metrics()
    ids = [f"{n:011X}" for n in range(PENDING_MAX + 1)]
    for qid in ids:
        m.observe_line("postfix", client.replace("9F54E17D0CB", qid))
    for qid in (ids[0], ids[-1]):  # the oldest was pushed out
        m.observe_line("postfix", active.replace("9F54E17D0CB", qid))
    assert samples(m)[s("mailctl_messages_received_total", port="587")] == 1


@pytest.mark.parametrize(
    ("program", "reject_text", "reason"),
    [
        # a client-chosen address cannot choose the reason: the text after it decides
        (
            "postfix/smtpd",
            'reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <"x>: Greylisted"@example.net>: '
            "Relay access denied; from=<a@b.test> to=<x@example.net> proto=ESMTP helo=<h>",
            "relay",
        ),
        (
            "postfix/smtpd",
            "reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <unknown[192.0.2.1]>: "
            "Client host rejected: Access denied; from=<a@b.test> to=<x@example.com>",
            "access",  # on 25 that is an access map; on 587/465 no login (auth)
        ),
        (
            "postfix/smtpd",
            "reject: RCPT from unknown[192.0.2.1]: 450 4.1.2 <x@nowhere.test>: "
            "Recipient address rejected: Domain not found; from=<a@b.test>",
            "other",
        ),
        (
            "postfix/smtpd",
            "reject: MAIL from unknown[192.0.2.1]: 530 5.7.0 Must issue a STARTTLS command "
            "first; proto=ESMTP helo=<h>",
            "tls",  # Postfix 3.7 does not log this refusal; if a line says so, it is tls
        ),
        ("postfix/smtpd", "reject: CONNECT", "other"),
        ("postfix/smtpd", "", "other"),
    ],
)
def test_reject_reason(program: str, reject_text: str, reason: str) -> None:
    assert reject_reason(program, reject_text) == reason
    assert reason in REJECT_REASONS


SOCKET = "mail.example.com[/run/cyrus/socket/lmtp]"


@pytest.mark.parametrize(
    ("why", "reason"),
    [
        (f"connect to {SOCKET}: No such file or directory", "connect"),
        (f"conversation with {SOCKET} timed out while sending RCPT TO", "lost"),
        (f"delivery temporarily suspended: lost connection with {SOCKET} while sending", "lost"),
        (f"host {SOCKET} said: 451 4.3.0 System I/O error", "answered"),
        ("", "connect"),
    ],
)
def test_lmtp_reason(why: str, reason: str) -> None:
    assert lmtp_reason(why) == reason


def _hostile_lines() -> list[str]:
    real = [line for name, line in LINES if name == "postfix"]
    prefixes = [line[:cut] for line in real[::10] for cut in range(0, len(line), 7)]
    return [
        "",
        " ",
        "]: ",
        "[]: ",
        "x]: status=",
        "\x00" * 64,
        "\ufffd" * 50,
        "x" * 100_000,
        "]: " * 30_000,
        "Dec 02 21:37:45 mail postfix/smtpd[1]: NOQUEUE: reject: " + "]: " * 30_000,
        "Dec 02 21:37:45 mail postfix/lmtp[1]: Q: to=<a>" + ", dsn=2.0.0, status=sent (" * 4000,
        "Dec 02 21:37:45 mail postfix/qmgr[1]: : from=< (queue active)",
        "Dec 02 21:37:45 mail postfix/smtpd[1]: warning: : queue file size limit exceeded",
        *(line.replace(" ", "\x00", 3) for line in real[:20]),
        *(line.encode().decode("ascii", "replace") for line in real[:20]),
        *prefixes,
    ]


@pytest.mark.parametrize("name", ["postfix", "cyrus/imap", "cyrus/pop3s", "saslauthd", "", "\x00"])
def test_hostile_lines_never_raise_and_count_as_lines(name: str) -> None:
    m = Metrics()
    lines = _hostile_lines()
    started = time.monotonic()
    for line in lines:
        m.observe_line(name, line)
    assert time.monotonic() - started < 5  # linear: no regex backtracking over a long line
    got = samples(m)
    total = sum(v for (n, _), v in got.items() if n == "mailctl_log_lines_total")
    assert total == len(lines)


def test_observe_line_is_an_output_listener() -> None:
    listener: output.Listener = Metrics().observe_line
    assert callable(listener)


def test_lines_from_many_threads_all_count() -> None:
    m = Metrics()

    def feed() -> None:
        for _ in range(20):
            for name, line in LINES:
                m.observe_line(name, line)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = samples(m)
    assert sum(v for (n, _), v in got.items() if n == "mailctl_log_lines_total") == 80 * len(ROWS)
    assert got[delivered("lmtp")] == 80 * 6
    assert got[reject("greylist")] == 80


# --- setters -------------------------------------------------------------------------

# postqueue -j from the capture (Cyrus down, one message over quota)
QUEUE: list[dict[str, object]] = [
    {
        "queue_name": "deferred",
        "queue_id": "3F4B117E3B0",
        "arrival_time": 1796247591,
        "message_size": 318,
        "forced_expire": False,
        "sender": "alice@example.com",
        "recipients": [
            {
                "address": "alice@example.com",
                "delay_reason": "connect to mail.example.com[/run/cyrus/socket/lmtp]: "
                "Connection refused",
            }
        ],
    },
    {
        "queue_name": "deferred",
        "queue_id": "B474A17E3FC",
        "arrival_time": 1796247588,
        "message_size": 1502505,
        "forced_expire": False,
        "sender": "alice@example.com",
        "recipients": [
            {
                "address": "bob@example.com",
                "delay_reason": "host mail.example.com[/run/cyrus/socket/lmtp] said: 452 4.2.2 "
                "Over quota SESSIONID=<cyrus-1796247597-208-4-9545616936226494020> (in reply "
                "to RCPT TO command)",
            }
        ],
    },
]


def test_set_queue() -> None:
    m = Metrics()
    hold = {**QUEUE[0], "queue_name": "hold", "arrival_time": 1796247000}
    junk: list[dict[str, object]] = [{}, {"queue_name": "bogus", "arrival_time": 1}]
    junk.append({"queue_name": 7})
    odd = {"queue_name": "active", "arrival_time": "yesterday"}
    m.set_queue(
        [*QUEUE, hold, *junk, odd, {"queue_name": "active", "arrival_time": True}], now=1796247600
    )
    got = samples(m)
    for queue, n, age in [
        ("deferred", 2, 12),
        ("hold", 1, 600),
        ("active", 2, 0),  # counted; no usable arrival time
        ("incoming", 0, 0),
        ("maildrop", 0, 0),
    ]:
        assert got[s("mailctl_queue_messages", queue=queue)] == n, queue
        assert got[s("mailctl_queue_oldest_seconds", queue=queue)] == age, queue
    m.set_queue([], now=0)
    assert samples(m)[s("mailctl_queue_messages", queue="deferred")] == 0
    m.set_queue(QUEUE, now=1796247000)  # a clock behind the queue: no negative age
    assert samples(m)[s("mailctl_queue_oldest_seconds", queue="deferred")] == 0


def test_set_daemons_mirrors_the_supervisor_and_drops_the_gone() -> None:
    m = Metrics()
    m.set_daemons([("postfix", True, 0), ("cyrus", False, 3), ("fetchmail", True, 1)])
    got = samples(m)
    assert got[s("mailctl_daemon_up", daemon="postfix")] == 1
    assert got[s("mailctl_daemon_up", daemon="cyrus")] == 0
    assert got[s("mailctl_daemon_restarts_total", daemon="cyrus")] == 3
    m.set_daemons([("postfix", True, 0), ("cyrus", True, 4)])
    got = samples(m)
    assert got[s("mailctl_daemon_restarts_total", daemon="cyrus")] == 4
    assert s("mailctl_daemon_up", daemon="fetchmail") not in got
    assert s("mailctl_daemon_restarts_total", daemon="fetchmail") not in got


def test_record_apply() -> None:
    m = Metrics()
    m.record_apply(True, 0.386)
    m.record_apply(True, 0.05)
    m.record_apply(False, 7.0)
    m.record_apply(False, math.nan)  # counted, as 0 s
    got = samples(m)
    assert got[s("mailctl_apply_total", result="ok")] == 2
    assert got[s("mailctl_apply_total", result="failed")] == 2
    assert got[s("mailctl_apply_seconds_count")] == 4
    assert got[s("mailctl_apply_seconds_sum")] == pytest.approx(7.436)
    assert got[s("mailctl_apply_seconds_bucket", le="0.1")] == 2
    assert got[s("mailctl_apply_seconds_bucket", le="0.5")] == 3
    assert got[s("mailctl_apply_seconds_bucket", le="10.0")] == 4
    assert got[s("mailctl_apply_seconds_bucket", le="+Inf")] == 4


def test_certificate_expiry() -> None:
    m = Metrics()
    name = s("mailctl_tls_certificate_expiry_seconds")
    assert name not in samples(m)
    m.set_certificate_expiry(1_830_000_000.0)
    assert samples(m)[name] == 1_830_000_000.0
    m.set_certificate_expiry(None)
    assert name not in samples(m)
    m.set_certificate_expiry(math.inf)
    assert name not in samples(m)


def test_quota_keeps_the_top_n_and_drops_the_rest() -> None:
    m = Metrics()
    m.set_quota({"a@example.com": 0.5, "b@example.com": 0.9, "c@example.com": 1.2}, top=2)
    boxes = {
        dict(labels)["mailbox"]: v
        for (n, labels), v in samples(m).items()
        if n == "mailctl_mailbox_quota_used_ratio"
    }
    assert boxes == {"b@example.com": 0.9, "c@example.com": 1.2}
    m.set_quota({"d@example.com": 0.1, "e@example.com": math.nan})
    boxes = {
        dict(labels)["mailbox"]: v
        for (n, labels), v in samples(m).items()
        if n == "mailctl_mailbox_quota_used_ratio"
    }
    assert boxes == {"d@example.com": 0.1}
    m.set_quota({"d@example.com": 0.1}, top=0)
    assert not [n for (n, _) in samples(m) if n == "mailctl_mailbox_quota_used_ratio"]


# --- exposition ----------------------------------------------------------------------


def test_render_is_the_text_format_with_every_family() -> None:
    m = Metrics()
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    families = {f.name: f.type for f in text_string_to_metric_families(m.render().decode())}
    assert families == {
        "mailctl_messages_received": "counter",
        "mailctl_messages_delivered": "counter",
        "mailctl_messages_deferred": "counter",
        "mailctl_messages_bounced": "counter",
        "mailctl_smtpd_rejects": "counter",
        "mailctl_auth_failures": "counter",
        "mailctl_imap_logins": "counter",
        "mailctl_lmtp_failures": "counter",
        "mailctl_log_lines": "counter",
        "mailctl_apply": "counter",
        "mailctl_dkim_signed": "counter",
        "mailctl_dkim_verified": "counter",
        "mailctl_dmarc_results": "counter",
        "mailctl_spf_results": "counter",
        "mailctl_queue_messages": "gauge",
        "mailctl_queue_oldest_seconds": "gauge",
        "mailctl_daemon_up": "gauge",
        "mailctl_daemon_restarts": "counter",
        "mailctl_apply_seconds": "histogram",
        "mailctl_tls_certificate_expiry_seconds": "gauge",
        "mailctl_mailbox_quota_used_ratio": "gauge",
    }
    got = samples(m)
    # every reason is there from the start (rate() needs the zero), and no _created series
    assert all(got[reject(r)] == 0 for r in REJECT_REASONS)
    assert not [n for n, _ in got if n.endswith("_created")]


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe_line(*LINES[0])
    assert b"mailctl_" not in generate_latest(REGISTRY)
    line_total = "mailctl_log_lines_total"
    assert sum(v for (n, _), v in samples(a).items() if n == line_total) == 1
    assert sum(v for (n, _), v in samples(b).items() if n == line_total) == 0


# Real lines of this image's OpenDKIM, OpenDMARC and policyd-spf (tests/e2e/test_dmarc.py's
# messages, a signed, a tampered and a submitted one), as the controller logs them (the
# masker's "***" included); each row counts what the first matching entry says, or nothing.
AUTH_ROWS = (DATA.parent / "authlines.txt").read_text().splitlines()
AUTH_EXPECT: list[tuple[str, Sample]] = [
    ("DKIM verification successful", s("mailctl_dkim_verified_total", result="pass")),
    ("bad signature data", s("mailctl_dkim_verified_total", result="fail")),
    ("key retrieval failed", s("mailctl_dkim_verified_total", result="error")),
    ("DKIM-Signature field added", s("mailctl_dkim_signed_total")),
    ("good.example pass", s("mailctl_dmarc_results_total", result="pass")),
    ("bad.example fail", s("mailctl_dmarc_results_total", result="fail")),
    ("nospf.example none", s("mailctl_dmarc_results_total", result="none")),
    ("Received-SPF: Pass", s("mailctl_spf_results_total", result="pass")),
    ("Received-SPF: Softfail", s("mailctl_spf_results_total", result="softfail")),
    ("Received-SPF: None", s("mailctl_spf_results_total", result="none")),
    ("due to: SPF fail", s("mailctl_spf_results_total", result="fail")),
]


@pytest.mark.parametrize("row", AUTH_ROWS, ids=range(len(AUTH_ROWS)))
def test_deliverability_lines_count_once_or_not_at_all(row: str) -> None:
    counted = {sample: 1 for sub, sample in AUTH_EXPECT if sub in row}
    check_row(row, counted, row.split(": ", 1)[0], bool(counted))

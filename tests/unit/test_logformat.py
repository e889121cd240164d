"""The log formats (text, json), what a line is parsed into, and the ring buffer of recent lines."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailctl.supervise import output, syslog

RFC3339_MS_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
KEYS = ["time", "daemon", "pid", "level", "queue_id", "message"]

LMTP = (
    "Dec 02 21:32:07 mail postfix/lmtp[112]: 4DF90176D0C: to=<alice@example.com>, "
    "relay=mail[/run/cyrus/socket/lmtp], delay=0.05, delays=0.01/0.01/0.01/0.02, "
    "dsn=2.1.5, status=sent (250 2.1.5 Ok SESSIONID=<cyrus-1-1>)"
)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    output._ring.clear()
    yield
    output._ring.clear()
    output._listeners.clear()
    output.setup(fmt="text")  # back to whatever sys.stdout is, for the other tests


def capture(fmt: output.Format) -> io.StringIO:
    out = io.StringIO()
    output.setup(out, fmt=fmt)
    return out


def objects(out: io.StringIO) -> list[dict[str, Any]]:
    text = out.getvalue()
    assert text.endswith("\n")
    lines = text.split("\n")[:-1]
    parsed = [json.loads(line) for line in lines]
    for obj in parsed:
        assert list(obj) == KEYS
        assert RFC3339_MS_UTC.fullmatch(obj["time"])
    return parsed


# --- text: as it always was ---------------------------------------------------------


def test_text_is_name_colon_line_and_the_default() -> None:
    out = io.StringIO()
    output.setup(out)
    output.emit("postfix", LMTP)
    output.emit("cyrus/imap", "login: host [192.0.2.1] alice plaintext", pid=5)
    output.emit(output.CONTROLLER, "the password of alice@example.com changed", level="warning")
    assert out.getvalue() == (
        f"postfix: {LMTP}\n"
        "cyrus/imap: login: host [192.0.2.1] alice plaintext\n"
        "mailctl: the password of alice@example.com changed\n"
    )


@pytest.mark.parametrize(
    "line",
    [
        LMTP,
        "Dec 02 21:32:07 mail postfix/smtp[5]: 4DF90176D0C: SASL login: password=hunter2 x",
        # a host name that masking catches: the text shows what it always showed
        "Dec 02 21:32:07 compass postfix/smtpd[5]: connect from unknown[192.0.2.1]",
        "Dec 02 21:32:07 mail postfix/smtpd[5]: token: abc, pass=x",
        "postfix/postfix-script: fatal: the Postfix mail system is already running",
    ],
)
def test_text_of_a_postfix_line_is_the_whole_line_masked(line: str) -> None:
    out = capture("text")
    output.emit("postfix", line)
    assert out.getvalue() == f"postfix: {output.mask(line)}\n"


# --- json: Postfix --------------------------------------------------------------------


def test_a_postfix_delivery_in_json() -> None:
    out = capture("json")
    before = time.time()
    output.emit("postfix", LMTP)
    [obj] = objects(out)
    assert obj | {"time": None} == {
        "time": None,
        "daemon": "postfix/lmtp",
        "pid": 112,
        "level": "info",
        "queue_id": "4DF90176D0C",
        "message": LMTP.split("4DF90176D0C: ")[1],
    }
    assert obj["time"] == output._rfc3339(output.recent(1)[0].time)
    assert before - 1 <= output.recent(1)[0].time <= time.time()


POSTFIX = "Dec 02 21:32:07 mail "


@pytest.mark.parametrize(
    ("line", "daemon", "pid", "level", "queue_id", "message"),
    [
        (
            "postfix/smtpd[98]: connect from unknown[192.0.2.1]",
            "postfix/smtpd",
            98,
            "info",
            None,
            "connect from unknown[192.0.2.1]",
        ),
        (
            "postfix/qmgr[9]: 3Pt2mN2VXxznjll: from=<bob@example.org>, size=512, nrcpt=1",
            "postfix/qmgr",
            9,
            "info",
            "3Pt2mN2VXxznjll",
            "from=<bob@example.org>, size=512, nrcpt=1",
        ),
        (
            "postfix/smtpd[98]: NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 Relay denied",
            "postfix/smtpd",
            98,
            "info",
            None,
            "NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 Relay denied",
        ),
        (
            "postfix/smtpd[98]: warning: hostname x.example does not resolve to 192.0.2.1",
            "postfix/smtpd",
            98,
            "warning",
            None,
            "warning: hostname x.example does not resolve to 192.0.2.1",
        ),
        (
            "postfix/cleanup[7]: warning: 4DF90176D0C: milter unix:/run/m: can't read reply",
            "postfix/cleanup",
            7,
            "warning",
            "4DF90176D0C",
            "warning: milter unix:/run/m: can't read reply",
        ),
        (
            "postfix/cleanup[7]: 4DF90176D0C: warning: header Subject: hi from x[192.0.2.1]",
            "postfix/cleanup",
            7,
            "warning",
            "4DF90176D0C",
            "warning: header Subject: hi from x[192.0.2.1]",
        ),
        (
            "postfix/trivial-rewrite[3]: error: open database /etc/postfix/virtual.lmdb: gone",
            "postfix/trivial-rewrite",
            3,
            "error",
            None,
            "error: open database /etc/postfix/virtual.lmdb: gone",
        ),
        (
            "postfix/master[1]: fatal: bind 0.0.0.0 port 25: Address already in use",
            "postfix/master",
            1,
            "critical",
            None,
            "fatal: bind 0.0.0.0 port 25: Address already in use",
        ),
        (
            "postfix/qmgr[9]: panic: myfree: corrupt or unallocated memory block",
            "postfix/qmgr",
            9,
            "critical",
            None,
            "panic: myfree: corrupt or unallocated memory block",
        ),
        (
            "postfix/submission/smtpd[77]: 1A2B3C4D5E: client=x[192.0.2.1], sasl_method=PLAIN",
            "postfix/submission/smtpd",
            77,
            "info",
            "1A2B3C4D5E",
            "client=x[192.0.2.1], sasl_method=PLAIN",
        ),
        (  # five hex digits are not a queue ID: Postfix's have at least six
            "postfix/smtpd[98]: ABCDE: something",
            "postfix/smtpd",
            98,
            "info",
            None,
            "ABCDE: something",
        ),
        (  # a long ID needs its "z" and no vowels
            "postfix/smtpd[98]: statistics: max connection rate 1/60s",
            "postfix/smtpd",
            98,
            "info",
            None,
            "statistics: max connection rate 1/60s",
        ),
        (
            "postfix/smtp[5]: 4DF90176D0C: SASL authentication failed; password=hunter2",
            "postfix/smtp",
            5,
            "info",
            "4DF90176D0C",
            "SASL authentication failed; password=***",
        ),
    ],
    ids=[
        "no-queue-id",
        "long-queue-id",
        "noqueue",
        "warning",
        "warning-queue-id",
        "queue-id-warning",
        "error",
        "fatal",
        "panic",
        "syslog-name",
        "too-short",
        "word",
        "masked",
    ],
)
def test_postfix_lines_in_json(
    line: str, daemon: str, pid: int, level: str, queue_id: str | None, message: str
) -> None:
    out = capture("json")
    output.emit("postfix", POSTFIX + line)
    [obj] = objects(out)
    assert obj | {"time": None} == {
        "time": None,
        "daemon": daemon,
        "pid": pid,
        "level": level,
        "queue_id": queue_id,
        "message": message,
    }


@pytest.mark.parametrize(
    "line",
    [
        "postfix/postfix-script: starting the Postfix mail system",
        "Dec 02 21:32:07 mail postfix/smtpd: no pid",
        "",
    ],
)
def test_a_postfix_line_of_another_shape_is_the_message(line: str) -> None:
    out = capture("json")
    output.emit("postfix", line)
    [obj] = objects(out)
    assert (obj["daemon"], obj["pid"], obj["queue_id"], obj["message"]) == (
        "postfix",
        None,
        None,
        line,
    )


def test_a_host_name_that_looks_like_a_secret_keeps_the_json_fields() -> None:
    out = capture("json")
    output.emit("postfix", "Dec 02 21:32:07 compass postfix/smtpd[5]: connect from x[192.0.2.1]")
    [obj] = objects(out)
    assert (obj["daemon"], obj["pid"], obj["message"]) == (
        "postfix/smtpd",
        5,
        "connect from x[192.0.2.1]",
    )


# --- json: syslog daemons, the controller, stdout of others -----------------------------


@pytest.mark.parametrize(
    ("datagram", "daemon", "pid", "level", "message"),
    [
        (
            b"<11>Dec  2 21:32:07 cyrus/master[1]: unable to open database /var/lib/x.db",
            "cyrus/master",
            1,
            "error",
            "unable to open database /var/lib/x.db",
        ),
        (
            b"<22>Dec  2 21:32:07 cyrus/imap[5]: login: localhost [127.0.0.1] alice@example.com"
            b" plaintext User logged in SESSIONID=<cyrus-5-1>",
            "cyrus/imap",
            5,
            "info",
            "login: localhost [127.0.0.1] alice@example.com plaintext User logged in"
            " SESSIONID=<cyrus-5-1>",
        ),
        (
            b"<20>Dec  2 21:32:07 cyrus/lmtp[55]: IOERROR: opening /var/spool/cyrus/mail: Perm",
            "cyrus/lmtp",
            55,
            "warning",
            "IOERROR: opening /var/spool/cyrus/mail: Perm",
        ),
        (
            b"<37>Dec  2 21:32:07 saslauthd[77]: do_auth         : auth failure:"
            b" [user=alice] [service=smtp] [realm=example.com] [mech=sasldb] [reason=Unknown]",
            "saslauthd",
            77,
            "info",
            "do_auth         : auth failure: [user=alice] [service=smtp] [realm=example.com]"
            " [mech=sasldb] [reason=Unknown]",
        ),
        (
            b"<22>Dec  2 21:32:07 postgrey[9]: action=greylist, reason=new,"
            b" client_name=mx.example.org, sender=bob@example.org, recipient=alice@example.com",
            "postgrey",
            9,
            "info",
            "action=greylist, reason=new, client_name=mx.example.org, sender=bob@example.org,"
            " recipient=alice@example.com",
        ),
        (
            b"<23>Dec  2 21:32:07 cyrus/imap[5]: debug line",
            "cyrus/imap",
            5,
            "debug",
            "debug line",
        ),
        (
            b"<22>Dec  2 21:32:07 postfix/smtpd[123]: 4DF90176D0C: client=x[192.0.2.1]",
            "postfix/smtpd",
            123,
            "info",
            "client=x[192.0.2.1]",
        ),
        (
            b"<14>Dec  2 21:32:07 saslauthd[77]: password=hunter2 given",
            "saslauthd",
            77,
            "info",
            "password=*** given",
        ),
    ],
    ids=["cyrus-error", "cyrus-login", "cyrus-warning", "saslauthd", "postgrey", "debug",
         "postfix-by-syslog", "masked"],
)  # fmt: skip
def test_syslog_lines_in_json(
    datagram: bytes, daemon: str, pid: int, level: str, message: str
) -> None:
    out = capture("json")
    tag, msg, p, lv = syslog.parse(datagram)
    output.emit(tag, msg, pid=p, level=lv)
    [obj] = objects(out)
    assert (obj["daemon"], obj["pid"], obj["level"], obj["message"]) == (
        daemon,
        pid,
        level,
        message,
    )
    assert "hunter2" not in out.getvalue()


def test_controller_lines_are_info_unmasked_unless_told() -> None:
    out = capture("json")
    output.emit(output.CONTROLLER, "the password of alice@example.com changed")
    output.emit(output.CONTROLLER, "cyrus: exited with 75; restarting", level="error")
    first, second = objects(out)
    assert first | {"time": None} == {
        "time": None,
        "daemon": "mailctl",
        "pid": None,
        "level": "info",
        "queue_id": None,
        "message": "the password of alice@example.com changed",
    }
    assert second["level"] == "error"


def test_pumped_lines_carry_the_pid_given() -> None:
    out = capture("json")
    output.pump("fetchmail", io.BytesIO(b"fetchmail: 2 messages for bob\r\n"), pid=41).join(5)
    [obj] = objects(out)
    assert (obj["daemon"], obj["pid"], obj["message"]) == (
        "fetchmail",
        41,
        "fetchmail: 2 messages for bob",
    )


def test_a_record_logged_straight_to_a_logger_is_parsed_and_masked() -> None:
    out = capture("json")
    output.logger("saslauthd").warning("secret %s given", "hunter2")
    [obj] = objects(out)
    assert (obj["daemon"], obj["level"], obj["message"]) == (
        "saslauthd",
        "warning",
        "secret *** given",
    )


def test_the_listener_failure_is_a_warning() -> None:
    out = capture("json")

    def broken(name: str, line: str) -> None:
        raise RuntimeError(line)

    output.listen(broken)
    output.emit("cyrus/imap", "x")
    _, second = objects(out)
    assert (second["daemon"], second["level"], second["message"]) == (
        "mailctl",
        "warning",
        "a log listener failed: RuntimeError",
    )


def test_each_line_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = output._parse

    def counted(*args: Any) -> tuple[output.Line, str]:
        calls.append(args[1])
        return real(*args)

    monkeypatch.setattr(output, "_parse", counted)
    out = capture("json")
    output.emit("postfix", LMTP)
    assert calls == [LMTP]
    assert objects(out)[0]["queue_id"] == "4DF90176D0C"


def test_rfc3339() -> None:
    assert output._rfc3339(0.5) == "1970-01-01T00:00:00.500Z"
    assert output._rfc3339(1733175127.9999) == "2024-12-02T21:32:07.999Z"
    assert output._rfc3339(1733175128.001) == "2024-12-02T21:32:08.001Z"


# --- hostile input -------------------------------------------------------------------

HOSTILE = [
    "".join(map(chr, range(32))) + "\x7f",
    'quote " backslash \\ slash / {"message": "forged"}',
    "\u2028 line and paragraph separators \u2029, BOM \ufeff, NUL \x00",
    "non-BMP \U0001f4e7 and caf\u00e9",
    "lone surrogates \ud800 \udcff",
    "x" * 100_000,
    "password=" + "y" * 100_000,
    "pass " + " " * 100_000,
    "%s %(name)s %d {} {0}",
]


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("name", ["postfix", "cyrus/imap", "mailctl"])
def test_any_line_is_one_line_and_valid_json(fmt: output.Format, name: str) -> None:
    out = capture(fmt)
    for line in HOSTILE:
        output.emit(name, line)
        output.emit(name, POSTFIX + "postfix/smtpd[1]: 4DF90176D0C: " + line)
    text = out.getvalue()
    assert text.count("\n") == 2 * len(HOSTILE)
    assert text.isascii() or fmt == "text"
    if fmt == "json":
        objs = objects(out)
        assert objs[0]["message"] == HOSTILE[0].replace("\n", "\\n")
        assert objs[2]["message"] == HOSTILE[1]
        assert objs[8]["message"] == "lone surrogates \ufffd \ufffd"
        assert len(objs[10]["message"]) == 100_000


def test_non_utf8_daemon_output_is_replaced() -> None:
    out = capture("json")
    output.pump("postgrey", io.BytesIO(b"caf\xc3\xa9 \xff\xfe \xc3\n")).join(5)
    [obj] = objects(out)
    assert obj["message"] == "caf\u00e9 \ufffd\ufffd \ufffd"


# --- the environment variable ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt"),
    [(None, "text"), ("", "text"), ("text", "text"), ("json", "json"), (" JSON\n", "json")],
)
def test_the_format_from_the_environment(
    value: str | None, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is not None:
        monkeypatch.setenv("MAILCTL_LOG_FORMAT", value)
    out = io.StringIO()
    output.setup(out)
    assert out.getvalue() == ""
    output.emit("cyrus/imap", "hello")
    if fmt == "text":
        assert out.getvalue() == "cyrus/imap: hello\n"
    else:
        assert json.loads(out.getvalue())["message"] == "hello"


def test_an_unknown_format_is_text_and_said_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCTL_LOG_FORMAT", "xml")
    out = io.StringIO()
    output.setup(out)
    output.emit("cyrus/imap", "hello")
    assert out.getvalue() == (
        "mailctl: MAILCTL_LOG_FORMAT='xml' is unknown (text or json): logging as text\n"
        "cyrus/imap: hello\n"
    )


def test_setup_refuses_an_unknown_format_argument() -> None:
    with pytest.raises(ValueError, match="yaml"):
        output.setup(io.StringIO(), fmt="yaml")  # type: ignore[arg-type]


def test_the_handler_writes_to_whatever_stdout_is(capsys: pytest.CaptureFixture[str]) -> None:
    output.setup(fmt="json")
    output.emit("postgrey", "action=pass")
    assert json.loads(capsys.readouterr().out)["message"] == "action=pass"


# --- the ring buffer -----------------------------------------------------------------


def test_recent_lines_oldest_first_limited_and_masked() -> None:
    capture("text")
    for i in range(150):
        output.emit("cyrus/imap", f"line {i} password=hunter{i}")
    default = output.recent()
    assert [ln.message for ln in default] == [f"line {i} password=***" for i in range(50, 150)]
    assert [ln.message for ln in output.recent(3)] == [
        f"line {i} password=***" for i in (147, 148, 149)
    ]
    assert output.recent(0) == [] and output.recent(-1) == []
    line = default[-1]
    assert (line.daemon, line.pid, line.level, line.queue_id) == ("cyrus/imap", None, "info", None)
    with pytest.raises(AttributeError):
        line.message = "changed"  # type: ignore[misc]
    assert list(vars(line)) == KEYS  # the admin API's /logs builds its reply with vars()


def test_the_ring_keeps_the_last_ring_size_lines() -> None:
    capture("text")
    for i in range(output.RING_SIZE + 500):
        output.emit("postgrey", str(i))
    kept = output.recent(10 * output.RING_SIZE)
    assert len(kept) == output.RING_SIZE
    assert kept[0].message == "500" and kept[-1].message == str(output.RING_SIZE + 499)


def test_recent_by_daemon_exactly_or_below() -> None:
    capture("json")
    output.emit("postfix", POSTFIX + "postfix/smtpd[1]: connect from x[192.0.2.1]")
    output.emit("postfix", POSTFIX + "postfix/submission/smtpd[2]: connect from y")
    output.emit("postfix", "not a postlogd line")
    output.emit("postfixadmin", "another program")
    output.emit("cyrus/imap", "login")
    output.emit("cyrus/master", "process started")
    output.emit(output.CONTROLLER, "controller running")

    def daemons(name: str | None) -> list[str]:
        return [ln.daemon for ln in output.recent(daemon=name)]

    assert daemons("postfix") == ["postfix/smtpd", "postfix/submission/smtpd", "postfix"]
    assert daemons("postfix/submission") == ["postfix/submission/smtpd"]
    assert daemons("postfix/smtpd") == ["postfix/smtpd"]
    assert daemons("cyrus") == ["cyrus/imap", "cyrus/master"]
    assert daemons("mailctl") == ["mailctl"]
    assert daemons("post") == []
    assert len(daemons(None)) == 7
    assert [ln.daemon for ln in output.recent(1, "postfix")] == ["postfix"]


def test_concurrent_emits_lose_and_mix_nothing() -> None:
    out = capture("json")
    threads, each = 8, 400
    start = threading.Barrier(threads)

    def run(n: int) -> None:
        start.wait()
        for i in range(each):
            output.emit("postfix", f"{POSTFIX}postfix/smtpd[{n}]: 4DF90176D0{n}: line {i}")

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    objs = objects(out)
    assert len(objs) == threads * each
    for n in range(threads):
        mine = [o["message"] for o in objs if o["pid"] == n]
        assert mine == [f"line {i}" for i in range(each)]
        assert {o["queue_id"] for o in objs if o["pid"] == n} == {f"4DF90176D0{n}"}
    kept = output.recent(output.RING_SIZE)
    assert len(kept) == output.RING_SIZE
    for n in range(threads):
        # a thread's lines kept are its last ones (all of them evicted, if it ran first)
        numbers = [int(ln.message.split()[1]) for ln in kept if ln.pid == n]
        assert numbers == list(range(each - len(numbers), each))


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        # postscreen's verdicts stay readable: they are what an operator greps for
        ("postfix/postscreen[9]: PASS NEW [192.0.2.1]:4711", "PASS NEW [192.0.2.1]:4711"),
        ("postfix/postscreen[9]: PASS OLD [192.0.2.1]:4711", "PASS OLD [192.0.2.1]:4711"),
        # a POP3 or IMAP password is still hidden, whatever it is
        ("pop3[9]: C: PASS NEW", "PASS ***"),
        ("pop3[9]: C: PASS hunter2", "PASS ***"),
        ("imap[9]: password=NEW [x]", "password=*** [x]"),
    ],
)
def test_postscreen_verdicts_are_not_taken_for_passwords(line: str, shown: str) -> None:
    assert output.mask(line).endswith(shown)

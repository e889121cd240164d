"""Every daemon's lines, and the controller's own, on the container's stdout.

Stdlib `logging`: one logger per daemon name under our root, one handler on
stdout. Two formats, chosen by `setup` (MAILCTL_LOG_FORMAT): `text`, the
default, prints `name: line`; `json` prints one object a line with the keys
time, daemon, pid, level, queue_id and message (see `_Json`).

Each line is parsed once, where it enters (`_record`): Postfix's lines come
through postlogd as `Mmm dd hh:mm:ss host postfix/lmtp[112]: QUEUEID: text`
and yield the daemon, pid, level and queue ID; syslog lines bring their pid and
severity along (`syslog.parse`). The result, a `Line`, goes to a ring buffer of
the last RING_SIZE lines (`recent`, for the admin API) and rides on the log
record to the JSON formatter.

Daemon lines that look like they carry a password are masked, in both formats
and in the ring buffer; the controller's own lines never hold a secret, and
masking them garbled words like "the password of alice@…". Listeners
(`listen`) see every line unmasked: the controller reacts to some daemon lines
(an LMTP delivery cut off).

Handler locks, like the ring buffer's, are reentrant, so a log call that a
signal interrupts cannot deadlock another (the handlers only record anyway).
This runs for every log line of every message: keep the path short.

Side effects: writes to stdout; `setup` configures the root of our loggers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Literal

CONTROLLER = "mailctl"
RING_SIZE = 2000  # lines `recent` can return: minutes of a busy server's log
_ROOT = "out"  # parent of every logger here, so nothing else's logging is touched
_ENV = "MAILCTL_LOG_FORMAT"

Level = Literal["debug", "info", "warning", "error", "critical"]
Format = Literal["text", "json"]
_LEVELNO: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


@dataclass(frozen=True)
class Line:
    """One logged line, parsed; `message` is masked already."""

    time: float  # seconds since the epoch, when the controller saw the line
    daemon: str  # "postfix/lmtp", "cyrus/imap", "saslauthd", "mailctl", ...
    pid: int | None
    level: Level
    queue_id: str | None  # Postfix's, when the line names one
    message: str


# --- masking -------------------------------------------------------------------

# postscreen's verdicts ("PASS NEW [192.0.2.1]:25", "PASS OLD ...") are not secrets.
_SECRETISH = re.compile(
    r"""(?i)(pass(?:word|wd|phrase)?|secret|token)(?!\s(?-i:NEW|OLD)\s\[)"""
    r"""(["']?\s*[=:]\s*["']?|\s+)[^\s"',]+"""
)


def mask(line: str) -> str:
    """`line` with what follows "password", "secret", "token" and the like as ***."""
    # The regex costs microseconds a line; a line without its keywords needs none of it.
    # Exact for ASCII only: under (?i), U+017F (long s) matches "s" and lower() keeps it.
    if line.isascii():
        low = line.lower()
        if "pass" not in low and "secret" not in low and "token" not in low:
            return line
    return _SECRETISH.sub(r"\1\2***", line)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _valid(text: str) -> str:
    """`text` with what UTF-8 cannot carry (lone surrogates, from a str caller) replaced."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


# --- parsing ---------------------------------------------------------------------

# msg_logger(3) through postlogd to maillog_file: "Dec 02 21:32:07 mail postfix/lmtp[112]: "
# (pids stay short: int() refuses thousands of digits, and a hostile line must not raise)
_POSTLOGD = re.compile(
    r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ (?P<daemon>[^\s\[\]:]+)\[(?P<pid>\d{1,10})\]: "
)
# After the pid: msg_warn() & co. put "warning: " first; then a queue ID, if any. Short
# IDs are upper-case hex (5 digits of microseconds, then the inode number); long ones
# (enable_long_queue_ids) are seconds and microseconds in a 52-letter alphabet without
# vowels, "z", and the inode number in 51 letters (no "z"): see Postfix's mail_queue.h.
# Neither can spell "warning" or "NOQUEUE". A severity after the ID is the message's
# own (cleanup's header_checks WARN: "4DF90176D0C: warning: header Subject: ...").
_HEAD = re.compile(
    r"(?:(?P<severity>warning|error|fatal|panic): )?"
    r"(?:(?P<queue_id>[0-9A-F]{6,}"
    r"|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}z[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-y]+): "
    r"(?:(?=(?P<then>warning|error|fatal|panic): ))?)?"
)
_SEVERITY: dict[str, Level] = {
    "warning": "warning",
    "error": "error",
    "fatal": "critical",
    "panic": "critical",
}


def _parse(name: str, line: str, pid: int | None, level: Level, now: float) -> tuple[Line, str]:
    """The parsed line, and what the text format prints after "name: " (masked)."""
    if not line.isascii():
        line = _valid(line)
    if name == CONTROLLER:
        return Line(now, name, pid, level, None, line), line
    daemon, queue_id, head = name, None, ""
    if name == "postfix":
        m = _POSTLOGD.match(line)
        if m is not None:
            daemon, pid = m["daemon"], int(m["pid"])
            # No mask match can cross "[pid]: ", so masking the parts is masking the line.
            head, line = mask(line[: m.end()]), line[m.end() :]
    message = mask(line)
    shown = head + message if head else message
    if daemon == "postfix" or daemon.startswith("postfix/"):
        h = _HEAD.match(message)  # always matches, perhaps nothing; masking spared it
        if h is not None and h.end():
            severity, queue_id = h["severity"], h["queue_id"]
            if severity is not None or h["then"] is not None:
                level = _SEVERITY[severity or h["then"]]
            if queue_id is not None:
                rest = message[h.end() :]
                message = f"{severity}: {rest}" if severity is not None else rest
    return Line(now, daemon, pid, level, queue_id, message), shown


# --- the ring buffer -------------------------------------------------------------

_ring: deque[Line] = deque(maxlen=RING_SIZE)
_ring_lock = threading.RLock()  # reentrant: a signal handler may log while we hold it


def recent(limit: int = 100, daemon: str | None = None) -> list[Line]:
    """The last `limit` lines, oldest first; only `daemon`'s if given, where "postfix"
    also means "postfix/smtpd" and every other "postfix/…"."""
    if limit <= 0:
        return []
    with _ring_lock:
        lines = list(_ring)
    if daemon is not None:
        below = f"{daemon}/"
        lines = [ln for ln in lines if ln.daemon == daemon or ln.daemon.startswith(below)]
    return lines[-limit:]


# --- formats and the handler -----------------------------------------------------

_LINE_ATTR = "mailctl_line"  # the LogRecord attribute that carries the parsed Line


def _line_of(record: logging.LogRecord) -> Line:
    line: Line = record.__dict__[_LINE_ATTR]
    return line


class _Prepare(logging.Filter):
    """Parses and masks a record logged through `logger(name)` rather than `emit`;
    those from `emit` come parsed and masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _LINE_ATTR not in record.__dict__:
            no = record.levelno
            level: Level = (
                "critical" if no >= logging.CRITICAL
                else "error" if no >= logging.ERROR
                else "warning" if no >= logging.WARNING
                else "info" if no >= logging.INFO
                else "debug"
            )  # fmt: skip
            name = record.name.removeprefix(f"{_ROOT}.")
            line, shown = _parse(name, record.getMessage(), None, level, record.created)
            record.msg, record.args = shown, None
            record.__dict__[_LINE_ATTR] = line
        return True


class _Text(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        name = record.name.removeprefix(f"{_ROOT}.")
        return f"{name}: {record.getMessage()}"


_json_str = json.JSONEncoder().encode  # a str in, a JSON string (ASCII only) out
_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text


def _rfc3339(t: float) -> str:
    global _second
    # to whole microseconds first, as datetime does: 1733175128.001 is 1733175128.000999…
    whole, us = divmod(round(t * 1_000_000), 1_000_000)
    cached = _second
    if cached[0] != whole:  # a new second: strftime once for all its lines
        cached = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
        _second = cached
    return f"{cached[1]}.{us // 1000:03d}Z"


class _Json(logging.Formatter):
    """{"time":"2024-12-02T21:32:07.123Z","daemon":"postfix/lmtp","pid":112,"level":"info",
    "queue_id":"4DF90176D0C","message":"to=<alice@example.com>, ..."}

    Written by hand, not json.dumps: a quarter of the time, for every line. Strings go
    through the json module's own encoder; pid is an int and level one of five words."""

    def format(self, record: logging.LogRecord) -> str:
        ln = _line_of(record)
        pid = "null" if ln.pid is None else f"{ln.pid:d}"
        queue_id = "null" if ln.queue_id is None else _json_str(ln.queue_id)
        return (
            f'{{"time":"{_rfc3339(ln.time)}","daemon":{_json_str(ln.daemon)},"pid":{pid},'
            f'"level":"{ln.level}","queue_id":{queue_id},"message":{_json_str(ln.message)}}}'
        )


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


_setup_lock = threading.Lock()
_root = logging.getLogger(_ROOT)


def setup(stream: IO[str] | None = None, fmt: Format | None = None) -> logging.Handler:
    """One handler (stdout unless told) under our root logger; a new call replaces it.

    `fmt` None: MAILCTL_LOG_FORMAT's, text unless it says json (an unknown value is
    said on the log, once, and means text)."""
    unknown = ""
    if fmt is None:
        value = os.environ.get(_ENV, "")
        asked = value.strip().lower()
        fmt = "json" if asked == "json" else "text"
        if asked not in ("", "text", "json"):
            unknown = value
    elif fmt not in ("text", "json"):
        raise ValueError(f"log format {fmt!r}: text or json")
    with _setup_lock:
        for old in list(_root.handlers):
            _root.removeHandler(old)
        handler: logging.Handler = (
            logging.StreamHandler(stream) if stream is not None else _Stdout()
        )
        handler.setFormatter(_Json() if fmt == "json" else _Text())
        handler.addFilter(_Prepare())
        _root.addHandler(handler)
        _root.setLevel(logging.DEBUG)  # every daemon line is printed, debug ones included
        _root.propagate = False
    if unknown:
        emit(
            CONTROLLER,
            f"{_ENV}={unknown[:40]!r} is unknown (text or json): logging as text",
            level="warning",
        )
    return handler


_loggers: dict[str, logging.Logger] = {}  # getLogger takes logging's module lock


def logger(name: str) -> logging.Logger:
    if not _root.handlers:
        setup()
    log = _loggers.get(name)
    if log is None:
        log = _loggers[name] = logging.getLogger(f"{_ROOT}.{name}")
    return log


# --- where every line enters -------------------------------------------------------


def _record(name: str, line: str, pid: int | None, level: Level) -> None:
    """Parse `line` once, keep it in the ring buffer, and log it."""
    levelno = _LEVELNO.get(level)
    if levelno is None:  # a caller the type checker did not see
        level, levelno = "info", logging.INFO
    parsed, shown = _parse(name, line, pid, level, time.time())
    with _ring_lock:
        _ring.append(parsed)
    log = logger(name)
    if log.isEnabledFor(levelno):
        # makeRecord + handle, not log.log: that would walk the stack for a caller
        # nobody prints, the largest cost of a line.
        record = log.makeRecord(log.name, levelno, "", 0, shown, (), None)
        record.__dict__[_LINE_ATTR] = parsed
        log.handle(record)


Listener = Callable[[str, str], None]  # (daemon name, line); called from the logging threads
_listeners: list[Listener] = []


def listen(fn: Listener) -> None:
    """Call `fn` with every line from now on. It must be quick and must not log."""
    _listeners.append(fn)


def unlisten(fn: Listener) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _tell(name: str, line: str) -> None:
    for fn in list(_listeners):
        try:
            fn(name, line)
        except Exception as exc:  # a listener's bug must not stop a daemon's output
            # not emit: a listener that fails on every line must not be told of this one
            _record(CONTROLLER, f"a log listener failed: {exc.__class__.__name__}", None, "warning")


def emit(name: str, line: str, *, pid: int | None = None, level: Level = "info") -> None:
    """One line from `name` (a daemon, or "mailctl" for the controller itself).

    `pid` and `level` as the line's source knows them (syslog's); a Postfix line
    (name "postfix") carries its own, and they win."""
    line = line.rstrip("\r\n").replace("\n", "\\n")
    _record(name, line, pid, level)
    _tell(name, line)


def pump(name: str, stream: IO[bytes], *, pid: int | None = None) -> threading.Thread:
    """Copy `stream` line by line to the log in a daemon thread until EOF."""

    def _run() -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            _record(name, line, pid, "info")
            _tell(name, line)
        stream.close()

    t = threading.Thread(target=_run, name=f"out-{name}", daemon=True)
    t.start()
    return t

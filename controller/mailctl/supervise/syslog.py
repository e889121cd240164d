"""Own /dev/log: every syslog line of Cyrus, saslauthd and postgrey goes to stdout.

There is no syslog daemon in the container, and Cyrus dies on a bad config
with nothing on stderr; this listener is where its reasons show up.
Side effects: binds a unix datagram socket, starts a daemon thread.
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path
from typing import NamedTuple

from mailctl.supervise import output

# <PRI>[timestamp ]tag[pid]: message  (RFC 3164 as glibc's syslog(3) sends it)
_LINE = re.compile(
    r"^<(?P<pri>\d+)>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?"
    r"(?P<tag>[^\s:\[]+)(?:\[(?P<pid>\d{1,10})\])?:? ?(?P<msg>.*)$",
    re.DOTALL,
)
# PRI is facility * 8 + severity; syslog(3)'s severities 0-7 (emerg .. debug) as ours
_SEVERITY: tuple[output.Level, ...] = (
    "critical",  # emerg
    "critical",  # alert
    "critical",  # crit
    "error",
    "warning",
    "info",  # notice
    "info",
    "debug",
)


class Message(NamedTuple):
    tag: str
    message: str
    pid: int | None = None
    level: output.Level = "info"


def parse(datagram: bytes) -> Message:
    text = datagram.decode("utf-8", "replace").rstrip("\x00\n")
    m = _LINE.match(text)
    if not m:
        return Message("syslog", text)
    pid = m.group("pid")
    # PRI & 7 from its last three digits (1000 is a multiple of 8): a hostile PRI of
    # thousands of digits is more than int() converts.
    severity = _SEVERITY[int(m.group("pri")[-3:]) & 7]
    return Message(m.group("tag"), m.group("msg"), int(pid) if pid else None, severity)


def listen(path: Path = Path("/dev/log")) -> threading.Thread:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)  # noqa: S103 (/dev/log: every daemon user must be able to log)

    def _run() -> None:
        while True:
            data = sock.recv(65536)
            tag, msg, pid, level = parse(data)
            for line in msg.splitlines() or [""]:
                output.emit(tag, line, pid=pid, level=level)

    t = threading.Thread(target=_run, name="syslog", daemon=True)
    t.start()
    return t

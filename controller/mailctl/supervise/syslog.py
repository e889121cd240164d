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

from mailctl.supervise import output

# <PRI>[timestamp ]tag[pid]: message  (RFC 3164 as glibc's syslog(3) sends it)
_LINE = re.compile(
    r"^<\d+>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?"
    r"(?P<tag>[^\s:\[]+)(?:\[\d+\])?:? ?(?P<msg>.*)$",
    re.DOTALL,
)


def parse(datagram: bytes) -> tuple[str, str]:
    text = datagram.decode("utf-8", "replace").rstrip("\x00\n")
    m = _LINE.match(text)
    if not m:
        return "syslog", text
    return m.group("tag"), m.group("msg")


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
            tag, msg = parse(data)
            for line in msg.splitlines() or [""]:
                output.emit(tag, line)

    t = threading.Thread(target=_run, name="syslog", daemon=True)
    t.start()
    return t

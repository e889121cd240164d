"""Every daemon's lines on the container's stdout, prefixed with its name.

Side effects: writes to stdout. Lines that look like they carry a password
are masked here, the last place before a log.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import IO

_lock = threading.Lock()
_SECRETISH = re.compile(
    r"""(?i)(pass(?:word|wd|phrase)?|secret|token)(["']?\s*[=:]\s*["']?|\s+)[^\s"',]+"""
)


def emit(name: str, line: str) -> None:
    line = _SECRETISH.sub(r"\1\2***", line.rstrip("\r\n"))
    with _lock:
        sys.stdout.write(f"{name}: {line}\n")
        sys.stdout.flush()


def pump(name: str, stream: IO[bytes]) -> threading.Thread:
    """Copy `stream` line by line to stdout in a daemon thread until EOF."""

    def _run() -> None:
        for raw in iter(stream.readline, b""):
            emit(name, raw.decode("utf-8", "replace"))
        stream.close()

    t = threading.Thread(target=_run, name=f"out-{name}", daemon=True)
    t.start()
    return t

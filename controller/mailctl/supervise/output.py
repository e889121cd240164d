"""Every daemon's lines, and the controller's own, on the container's stdout.

Stdlib `logging`: one logger per daemon name, one handler on stdout with the
format `name: message`. Handler locks are reentrant, so a log call that a
signal interrupts cannot deadlock another (the handlers only record anyway).
Daemon lines that look like they carry a password are masked by a filter; the
controller's own lines never hold a secret, and masking them garbled words
like "the password of alice@…".

Side effects: writes to stdout; `setup` configures the root of our loggers.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import IO

CONTROLLER = "mailctl"
_ROOT = "out"  # parent of every logger here, so nothing else's logging is touched
_SECRETISH = re.compile(
    r"""(?i)(pass(?:word|wd|phrase)?|secret|token)(["']?\s*[=:]\s*["']?|\s+)[^\s"',]+"""
)


def mask(line: str) -> str:
    return _SECRETISH.sub(r"\1\2***", line)


class _MaskDaemons(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != f"{_ROOT}.{CONTROLLER}":
            record.msg = mask(record.getMessage())
            record.args = None
        return True


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        name = record.name.removeprefix(f"{_ROOT}.")
        return f"{name}: {record.getMessage()}"


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is at the time (tests swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


_setup_lock = threading.Lock()


def setup(stream: IO[str] | None = None) -> logging.Handler:
    """One handler (stdout unless told) under our root logger; a new call replaces it."""
    root = logging.getLogger(_ROOT)
    with _setup_lock:
        for old in list(root.handlers):
            root.removeHandler(old)
        handler: logging.Handler = (
            logging.StreamHandler(stream) if stream is not None else _Stdout()
        )
        handler.setFormatter(_Format())
        handler.addFilter(_MaskDaemons())
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False
    return handler


def logger(name: str) -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        setup()
    return logging.getLogger(f"{_ROOT}.{name}")


def emit(name: str, line: str) -> None:
    """One line from `name` (a daemon, or "mailctl" for the controller itself)."""
    logger(name).info("%s", line.rstrip("\r\n").replace("\n", "\\n"))


def pump(name: str, stream: IO[bytes]) -> threading.Thread:
    """Copy `stream` line by line to the log in a daemon thread until EOF."""
    log = logger(name)

    def _run() -> None:
        for raw in iter(stream.readline, b""):
            log.info("%s", raw.decode("utf-8", "replace").rstrip("\r\n"))
        stream.close()

    t = threading.Thread(target=_run, name=f"out-{name}", daemon=True)
    t.start()
    return t

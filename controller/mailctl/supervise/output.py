"""Every daemon's lines, and the controller's own, on the container's stdout.

Stdlib `logging`: one logger per daemon name, one handler on stdout with the
format `name: message`. Handler locks are reentrant, so a log call that a
signal interrupts cannot deadlock another (the handlers only record anyway).
Daemon lines that look like they carry a password are masked by a filter; the
controller's own lines never hold a secret, and masking them garbled words
like "the password of alice@…".

Listeners (`listen`) see every line after it is logged, unmasked: the
controller reacts to some daemon lines (an LMTP delivery cut off).

Side effects: writes to stdout; `setup` configures the root of our loggers.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable
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
            logging.getLogger(f"{_ROOT}.{CONTROLLER}").warning(
                "a log listener failed: %s", exc.__class__.__name__
            )


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
    line = line.rstrip("\r\n").replace("\n", "\\n")
    logger(name).info("%s", line)
    _tell(name, line)


def pump(name: str, stream: IO[bytes]) -> threading.Thread:
    """Copy `stream` line by line to the log in a daemon thread until EOF."""
    log = logger(name)

    def _run() -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            log.info("%s", line)
            _tell(name, line)
        stream.close()

    t = threading.Thread(target=_run, name=f"out-{name}", daemon=True)
    t.start()
    return t

"""The one subprocess wrapper: argv lists only, always a timeout, typed errors.

Side effects: runs commands. Input (e.g. a password) goes on stdin, never argv.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Sequence

from mailctl.errors import CommandError

DEFAULT_TIMEOUT = 30.0

Done = subprocess.CompletedProcess[str]
# The seam: what runs a command. Code that runs commands takes one (default `run`),
# so the unit tests hand in a fake instead of patching this module.
Runner = Callable[..., Done]


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: dict[str, str] | None = None,
    openable_output: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (no shell) and return it; CommandError on failure or timeout.

    `openable_output`: stdout and stderr share one pipe that any user may open.
    Postfix's postsuper logs to `maillog_file` (/dev/stdout here) itself when
    master is down, after dropping to the postfix user; reopening a root-only
    pipe then fails ("open logfile '/dev/stdout': Permission denied").
    """
    args = [str(a) for a in argv]
    if openable_output:
        return _run_openable(args, input_text, timeout, check, env)
    try:
        done = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise CommandError(args, None, out) from None
    except OSError as exc:
        raise CommandError(args, 127, str(exc)) from None
    if check and done.returncode != 0:
        raise CommandError(args, done.returncode, done.stdout + done.stderr)
    return done


def _run_openable(
    args: list[str], input_text: str | None, timeout: float, check: bool, env: dict[str, str] | None
) -> Done:
    read_fd, write_fd = os.pipe()
    os.fchmod(write_fd, 0o666)
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            text=True,
            env=env,
        )
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        raise CommandError(args, 127, str(exc)) from None
    os.close(write_fd)
    chunks: list[str] = []
    reader = threading.Thread(target=_drain, args=(read_fd, chunks), daemon=True)
    reader.start()
    if input_text is not None and proc.stdin is not None:
        proc.stdin.write(input_text)
        proc.stdin.close()
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise CommandError(args, None, "".join(chunks)) from None
    reader.join(timeout=5)  # whatever it forked may hold the pipe open a little longer
    out = "".join(chunks)
    if check and code != 0:
        raise CommandError(args, code, out)
    return subprocess.CompletedProcess(args, code, out, "")


def _drain(fd: int, chunks: list[str]) -> None:
    with os.fdopen(fd, "r", encoding="utf-8", errors="replace") as reader:
        for line in reader:
            chunks.append(line)

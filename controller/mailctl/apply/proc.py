"""The one subprocess wrapper: argv lists only, always a timeout, typed errors.

Side effects: runs commands. Input (e.g. a password) goes on stdin, never argv.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from mailctl.errors import CommandError

DEFAULT_TIMEOUT = 30.0


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` (no shell) and return it; CommandError on failure or timeout."""
    args = [str(a) for a in argv]
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

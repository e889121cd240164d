"""A throwaway saslauthd to check what the login stores hold, as Postfix would ask it.

In-image only: starts /usr/sbin/saslauthd in the foreground on a private socket.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def saslauthd(mechanism: str) -> Iterator[str]:
    """saslauthd -a `mechanism` with the flags render.sasl gives it; yields its socket."""
    realm = [] if mechanism == "sasldb" else ["-r"]
    with tempfile.TemporaryDirectory(prefix="saslauthd-") as run_dir:
        mux = Path(run_dir) / "mux"
        argv = ["/usr/sbin/saslauthd", "-d", "-a", mechanism, *realm, "-n", "0", "-m", run_dir]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 10
            while not mux.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    raise RuntimeError(f"saslauthd did not start: {out}")
                time.sleep(0.02)
            yield str(mux)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()

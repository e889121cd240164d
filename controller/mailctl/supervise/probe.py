"""Readiness probes: is a TCP port or unix socket listening?

Reads the kernel's socket tables in /proc/net instead of connecting, so a
probe never shows up in a daemon's log as a dropped connection. Side effects:
reads /proc.
"""

from __future__ import annotations

from pathlib import Path

from mailctl.render.bundle import Probe

_TCP_LISTEN = "0A"
_SO_ACCEPTCON = 0x10000


def tcp_listening(port: int, proc: Path = Path("/proc/net")) -> bool:
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def unix_listening(path: str, proc: Path = Path("/proc/net")) -> bool:
    try:
        lines = (proc / "unix").read_text().splitlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and fields[7] == path and int(fields[3], 16) & _SO_ACCEPTCON:
            return True
    return False


def answers(probe: Probe) -> bool:
    if probe.kind == "tcp":
        return tcp_listening(int(probe.target.rsplit(":", 1)[1]))
    return unix_listening(probe.target)

"""Readiness probes: does a TCP port or unix socket accept a connection? Side effects: connects."""

from __future__ import annotations

import socket

from mailctl.render.bundle import Probe


def answers(probe: Probe, timeout: float = 0.5) -> bool:
    try:
        if probe.kind == "tcp":
            host, port = probe.target.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=timeout):
                return True
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(probe.target)
            return True
    except OSError:
        return False

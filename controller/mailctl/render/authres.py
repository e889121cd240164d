"""The milter that folds our verdicts into one Authentication-Results (mailctl.authres).
Pure.

It runs last on port 25 (and the PROXY port behind it), after OpenDKIM and OpenDMARC,
with default_action=accept: if it fails, the verdicts stay in their own headers.
Trusted clients (loopback, `networks`) and submission never reach it: nothing of
theirs is verified, so there is nothing to fold.
"""

from __future__ import annotations

from pathlib import Path

from mailctl import authres
from mailctl.layout import AUTHRES_MILTER, AUTHRES_SOCKET
from mailctl.render import opendkim, opendmarc
from mailctl.render.bundle import DaemonSpec, Probe, Reload
from mailctl.settings import Settings

USER = "authres"
MILTER = f"{{ {AUTHRES_MILTER}, default_action=accept }}"
# Debian's python3, which has python3-milter; -I: nothing from the environment, and
# not the script's own directory on the path (the controller's modules are there).
PYTHON = "/usr/bin/python3"
SCRIPT = str(Path(authres.__file__).resolve())


def active(settings: Settings) -> bool:
    """It runs where something writes a verdict: OpenDKIM verifies or OpenDMARC runs."""
    return opendkim.active(settings) or opendmarc.active(settings)


def daemon(settings: Settings) -> DaemonSpec:
    return DaemonSpec(
        name="authres",
        argv=(PYTHON, "-I", SCRIPT, f"unix:{AUTHRES_SOCKET}", settings.hostname, USER),
        reads=(),  # it reads nothing but its argv
        reload=Reload("restart"),
        probes=(Probe("unix", AUTHRES_SOCKET),),
    )

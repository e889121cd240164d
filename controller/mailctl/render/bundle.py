"""What a render produces: files of one revision and how to run each daemon.

Pure data, no I/O. Paths are relative to the revision directory, which goes
live as /etc/mailctl/current (layout.LIVE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mailctl.layout import LIVE

__all__ = ["LIVE", "Bundle", "DaemonSpec", "File", "Probe", "Reload", "text"]


@dataclass(frozen=True)
class File:
    content: bytes
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


@dataclass(frozen=True)
class Reload:
    """How a daemon takes new config: a signal, or a restart."""

    kind: Literal["signal", "restart"]
    signal: int = 0


@dataclass(frozen=True)
class Probe:
    """What must answer for a daemon to count as ready: a TCP port or a unix socket."""

    kind: Literal["tcp", "unix"]
    target: str  # "host:port" or a socket path


@dataclass(frozen=True)
class DaemonSpec:
    name: str
    argv: tuple[str, ...]
    reads: tuple[str, ...]  # revision paths (or prefixes) whose change needs `reload`
    reload: Reload
    probes: tuple[Probe, ...] = ()
    stop_signal: int = 15
    before: tuple[str, ...] = ()  # daemons that must be ready before this one starts


@dataclass(frozen=True)
class Bundle:
    """One revision: every generated file, and the daemons that use them."""

    files: dict[str, File]
    daemons: tuple[DaemonSpec, ...]
    postmap: tuple[str, ...] = ()  # revision paths to compile with postmap (db_type)
    postalias: tuple[str, ...] = ()  # revision paths to compile with postalias
    mailboxes: dict[str, int | None] = field(default_factory=dict)  # user -> quota (KiB)
    db_type: str = "hash"  # of the compiled tables: hash or lmdb

    def daemon(self, name: str) -> DaemonSpec:
        return next(d for d in self.daemons if d.name == name)


def text(content: str, mode: int = 0o644, owner: str = "root", group: str = "root") -> File:
    return File(content.encode("utf-8"), mode, owner, group)

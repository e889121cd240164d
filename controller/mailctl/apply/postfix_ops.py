"""Postfix operations for the CLI and API: table lookups and the queue (P15, P17).

Side effects: runs postmap/postalias/postqueue/postsuper/postcat via apply.proc.
Arguments are checked here, then passed as argv (never through a shell).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mailctl.apply import proc
from mailctl.errors import MailctlError, NotFound

CONFIG = Path("/etc/postfix")
_QUEUE_ID = re.compile(r"^[0-9A-Za-z]{6,32}$")
_TABLE = re.compile(r"[a-z_]+(\.(cidr|pcre|regexp))?")


def tables(config: Path = CONFIG) -> dict[str, str]:
    """Every table in the live config, name -> `type:path` as Postfix reads it.
    Root-only tables (relay passwords) are left out: a lookup would print secrets."""
    out = {}
    for path in sorted(config.iterdir()):
        if path.suffix in (".db", ".cf", ".lmdb") or not path.is_file():
            continue
        if not path.stat().st_mode & 0o004:
            continue
        if path.suffix in (".cidr", ".pcre", ".regexp"):
            kind = path.suffix[1:]
        else:
            kind = "lmdb" if path.with_name(path.name + ".lmdb").exists() else "hash"
        out[path.name] = f"{kind}:{path}"
    return out


def lookup(table: str, key: str, config: Path = CONFIG, run: proc.Runner = proc.run) -> str | None:
    """`postmap -q` (or `postalias -q`) against a live table; None when not found."""
    known = tables(config)
    if not _TABLE.fullmatch(table) or table not in known:
        raise NotFound(f"no table named {table!r}; tables: {', '.join(known)}")
    if "\n" in key or not key:
        raise MailctlError("the key must be one non-empty line")
    tool = "postalias" if table == "aliases" else "postmap"
    done = run([tool, "-q", key, known[table]], check=False)
    if done.returncode == 1:
        return None
    if done.returncode != 0:
        raise MailctlError(f"{tool} -q failed: {done.stderr.strip()}")
    return done.stdout.rstrip("\n")


def queue(run: proc.Runner = proc.run) -> list[dict[str, Any]]:
    """`postqueue -j`: one JSON object per queued message."""
    done = run(["postqueue", "-j"])
    out = []
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a warning of postqueue's own, not a message
    return out


def _target(queue_id: str) -> str:
    if queue_id != "ALL" and not _QUEUE_ID.match(queue_id):
        raise MailctlError(f"{queue_id!r} is not a queue ID (or ALL)")
    return queue_id


def show(queue_id: str, full: bool = False, run: proc.Runner = proc.run) -> str:
    """The message as postcat prints it: envelope and headers, or everything (`full`)."""
    if queue_id == "ALL":
        raise MailctlError("show takes one queue ID")
    parts = [] if full else ["-e", "-h"]
    done = run(["postcat", *parts, "-q", _target(queue_id)], check=False)
    if done.returncode != 0:
        raise NotFound(f"no message {queue_id} in the queue")
    return done.stdout


_SUPER = {"hold": "-h", "release": "-H", "requeue": "-r", "delete": "-d"}


def act(action: str, queue_id: str, run: proc.Runner = proc.run) -> str:
    """hold, release, requeue or delete one message or ALL (postsuper)."""
    if action not in _SUPER:
        raise MailctlError(f"unknown queue action {action!r}")
    # postsuper logs as user postfix to maillog_file (/dev/stdout) when master is down.
    done = run(["postsuper", _SUPER[action], _target(queue_id)], openable_output=True)
    return (done.stdout + done.stderr).strip()


def flush(run: proc.Runner = proc.run) -> None:
    run(["postqueue", "-f"], openable_output=True)

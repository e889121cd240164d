"""Repair the Postfix queue at start, before master runs: what a crash leaves behind.

A kill while cleanup(8) writes a message leaves its temporary file
(`incoming/<microseconds>.<pid>`; postdrop's in `maildrop/`). The client never
got a 250 for it (cleanup renames the file to its queue ID and fsyncs before it
answers), so it is no mail anybody would miss. `postsuper -p` would remove it
only once it is old, because a live cleanup may be writing it; before master
starts no cleanup runs, so every such file is a leftover. Then `postsuper`
(-s -p: queue file names that match their inodes, old temporary files) does
what `postfix start` does.

This is the queue's state, not the settings: nothing here can refuse a start.
What it finds is logged. Side effects: removes files, runs postsuper.
"""

from __future__ import annotations

import re
from pathlib import Path

from mailctl.apply import proc
from mailctl.errors import CommandError

_TEMP = re.compile(r"^\d+\.\d+$")
_TEMP_DIRS = ("incoming", "maildrop")


def leftover_temp_files(spool: Path) -> list[Path]:
    found = []
    for name in _TEMP_DIRS:
        directory = spool / name
        if not directory.is_dir():
            continue
        found += [p for p in directory.iterdir() if _TEMP.match(p.name) and p.is_file()]
    return sorted(found)


def repair(spool: Path, runner: proc.Runner = proc.run) -> list[str]:
    """Remove crash leftovers and let postsuper fix the rest; return what was done."""
    notes = []
    for path in leftover_temp_files(spool):
        try:
            path.unlink()
        except OSError as exc:
            notes.append(f"queue: cannot remove the leftover {path.name}: {exc.strerror}")
            continue
        notes.append(
            f"queue: removed {path.parent.name}/{path.name}, a message a crash cut off "
            "before it was accepted"
        )
    # A fresh volume lacks the queue directories (`postfix start` makes them, and the
    # controller starts master itself); then the names and leftovers, as start does.
    for argv in (["postfix", "post-install", "create-missing"], ["postsuper"]):
        try:
            done = runner(argv, timeout=300, check=False, openable_output=True)
        except CommandError as exc:  # the tool is missing or hung: start anyway, and say so
            notes.append(f"queue: {argv[0]} did not run: {exc}")
            continue
        notes += [f"queue: {line}" for line in done.stdout.splitlines() if line.strip()]
        if done.returncode != 0:
            notes.append(f"queue: {' '.join(argv)} exited with status {done.returncode}")
    return notes


def count(runner: proc.Runner = proc.run) -> int:
    """Messages in the queue now (postqueue -j: one JSON object a message)."""
    done = runner(["postqueue", "-j"], timeout=30, openable_output=True)
    return sum(1 for line in done.stdout.splitlines() if line.strip().startswith("{"))

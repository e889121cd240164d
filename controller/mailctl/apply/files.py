"""Atomic file writes and the revision directories. Side effects: the filesystem.

Layout: /etc/mailctl/revs/<id>/... holds each revision; /etc/mailctl/current
is a symlink to the live one, swapped with one rename. /etc/postfix,
/etc/imapd.conf, /etc/cyrus.conf and the PAM services are symlinks into it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import time
from pathlib import Path

from mailctl.render.bundle import File

KEEP = 3  # revisions kept for rollback and inspection


def atomic_write(
    path: Path,
    data: bytes,
    mode: int = 0o644,
    owner: str = "root",
    group: str = "root",
    chown: bool = True,
) -> None:
    """Write via a temp file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        if chown and os.geteuid() == 0:
            os.fchown(fd, pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# Postfix re-reads a config file until its mtime is a second or two old (it
# guards against half-written files), sleeping 300 ms a turn: a fresh revision
# would cost ~2 s per command. Ours are complete when renamed, so backdate them.
BACKDATE = 10.0


def write_tree(base: Path, files: dict[str, File], chown: bool = True) -> None:
    stamp = time.time() - BACKDATE
    for rel, f in files.items():
        atomic_write(base / rel, f.content, f.mode, f.owner, f.group, chown)
        os.utime(base / rel, (stamp, stamp))
    dir_fd = os.open(base, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_link(root: Path) -> Path:
    return root / "current"


def live_revision(root: Path) -> Path | None:
    link = current_link(root)
    return link.resolve() if link.is_symlink() else None


def new_revision_dir(root: Path) -> Path:
    revs = root / "revs"
    revs.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name) for p in revs.iterdir() if p.name.isdigit()]
    path = revs / f"{max(numbers, default=0) + 1:06d}"
    path.mkdir(mode=0o755)
    return path


def swap(target: Path, root: Path) -> None:
    """Point `current` at `target` in one rename (all files go live together)."""
    link = current_link(root)
    tmp = root / ".current.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, root), tmp)
    os.replace(tmp, link)


def retire(revision: Path) -> None:
    """Touch the lookup tables of a revision that is no longer live.

    An idle smtpd of the old generation keeps its tables open, and Postfix lets it
    serve one more session after a reload. Before each session it checks whether a
    table it holds has changed (a new mtime) and exits if so: touched, the old tables
    send every such connection to a process of the new generation.
    """
    tables = revision / "postfix"
    if not tables.is_dir():
        return
    for path in tables.iterdir():
        if path.is_file():
            os.utime(path)


def prune(root: Path, keep: int = KEEP) -> None:
    revs = root / "revs"
    live = live_revision(root)
    dirs = sorted(p for p in revs.iterdir() if p.name.isdigit())
    for path in dirs[:-keep]:
        if path != live:
            shutil.rmtree(path, ignore_errors=True)


def read_tree(base: Path, names: list[str]) -> dict[str, bytes]:
    out = {}
    for rel in names:
        try:
            out[rel] = (base / rel).read_bytes()
        except FileNotFoundError:
            pass
    return out

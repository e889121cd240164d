"""Revision trees and the atomic `current` swap (the transaction: test_transaction.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from mailctl.apply import files
from mailctl.render.bundle import Bundle, File


def bundle(**contents: str) -> Bundle:
    return Bundle(
        files={k.replace("__", "/"): File(v.encode(), 0o640) for k, v in contents.items()},
        daemons=(),
    )


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "main.cf"
    files.atomic_write(path, b"old\n", 0o600)
    inode = path.stat().st_ino
    files.atomic_write(path, b"new\n", 0o640)
    assert path.read_bytes() == b"new\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert path.stat().st_ino != inode, "renamed over, not rewritten in place"
    assert [p.name for p in path.parent.iterdir()] == ["main.cf"], "no temp file left"


def test_atomic_write_sets_the_mode_despite_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        files.atomic_write(tmp_path / "f", b"x", 0o644)
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644


def test_write_tree_writes_every_file_backdated(tmp_path: Path) -> None:
    rev = tmp_path / "rev"
    rev.mkdir()
    b = bundle(postfix__main_cf="a = b\n", cyrus__imapd_conf="x: y\n")
    files.write_tree(rev, b.files)
    assert (rev / "postfix/main_cf").read_text() == "a = b\n"
    assert (rev / "cyrus/imapd_conf").stat().st_mode & 0o777 == 0o640
    age = time.time() - (rev / "postfix/main_cf").stat().st_mtime
    assert age >= files.BACKDATE - 1, "Postfix would wait for a fresh file to settle"


def test_revision_dirs_are_numbered(tmp_path: Path) -> None:
    assert files.new_revision_dir(tmp_path).name == "000001"
    assert files.new_revision_dir(tmp_path).name == "000002"


def test_swap_points_current_at_the_revision(tmp_path: Path) -> None:
    one, two = files.new_revision_dir(tmp_path), files.new_revision_dir(tmp_path)
    assert files.live_revision(tmp_path) is None
    files.swap(one, tmp_path)
    assert files.live_revision(tmp_path) == one.resolve()
    link = files.current_link(tmp_path)
    assert link.is_symlink() and not os.path.isabs(os.readlink(link)), "relative: movable"
    files.swap(two, tmp_path)
    assert files.live_revision(tmp_path) == two.resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "revs"]


def test_prune_keeps_the_newest_and_the_live_one(tmp_path: Path) -> None:
    revs = [files.new_revision_dir(tmp_path) for _ in range(6)]
    files.swap(revs[1], tmp_path)  # rolled back to an old one
    files.prune(tmp_path, keep=3)
    assert sorted(p.name for p in (tmp_path / "revs").iterdir()) == [
        "000002",
        "000004",
        "000005",
        "000006",
    ]


def test_retire_touches_the_old_revision_tables(tmp_path: Path) -> None:
    old = tmp_path / "000001"
    (old / "postfix").mkdir(parents=True)
    table = old / "postfix" / "virtual.db"
    table.write_bytes(b"x")
    os.utime(table, (1000, 1000))
    files.retire(old)
    assert table.stat().st_mtime > 1000  # smtpd sees a changed table and restarts
    assert table.read_bytes() == b"x"
    files.retire(tmp_path / "no-such-revision")  # nothing to touch is fine

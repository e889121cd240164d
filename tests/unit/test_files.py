"""Revision trees, the atomic `current` swap, and the apply transaction (validation faked)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailctl.apply import files, transaction, validate
from mailctl.errors import ApplyError, ValidationError
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


# --- the transaction ------------------------------------------------------------


class FakeValidate:
    def __init__(self) -> None:
        self.calls: list[tuple[Path, frozenset[str] | None]] = []
        self.error: Exception | None = None

    def last(self) -> tuple[Path, frozenset[str] | None]:
        return self.calls[-1]

    def __call__(
        self,
        stage: Path,
        b: Bundle,
        changed: frozenset[str] | None = None,
        live: Path | None = None,
    ) -> None:
        # The staged tree is complete when the checker runs.
        for rel, f in b.files.items():
            assert (stage / rel).read_bytes() == f.content
        self.calls.append((stage, changed))
        if self.error:
            raise self.error


@pytest.fixture
def checker(monkeypatch: pytest.MonkeyPatch) -> FakeValidate:
    fake = FakeValidate()
    monkeypatch.setattr(validate, "stage", fake)
    return fake


def live_text(root: Path, rel: str) -> str:
    return (files.current_link(root) / rel).read_text()


def test_first_apply_goes_live(tmp_path: Path, checker: FakeValidate) -> None:
    result = transaction.apply(bundle(a="1", b="2"), root=tmp_path)
    assert result.previous is None and result.revision is not None
    assert result.changed == {"a", "b"}
    assert files.live_revision(tmp_path) == result.revision.resolve()
    assert live_text(tmp_path, "a") == "1"
    assert checker.calls == [(result.revision, None)], "nothing live yet: check everything"


def test_unchanged_settings_make_no_revision(tmp_path: Path, checker: FakeValidate) -> None:
    first = transaction.apply(bundle(a="1"), root=tmp_path)
    again = transaction.apply(bundle(a="1"), root=tmp_path)
    assert again.revision is None and again.previous == first.revision
    assert len(list((tmp_path / "revs").iterdir())) == 1
    assert len(checker.calls) == 1


def test_a_change_is_checked_as_a_change(tmp_path: Path, checker: FakeValidate) -> None:
    first = transaction.apply(bundle(a="1", b="2"), root=tmp_path)
    second = transaction.apply(bundle(a="1", b="3"), root=tmp_path)
    assert second.changed == {"b"} and second.previous == first.revision
    assert checker.last() == (second.revision, frozenset({"b"}))
    assert live_text(tmp_path, "b") == "3"
    forced = transaction.apply(bundle(a="1", b="3"), root=tmp_path, force=True)
    assert forced.revision is not None and checker.last() == (forced.revision, None)


@pytest.mark.parametrize(
    "error",
    [ValidationError("postconf -n (main.cf): warning: something"), OSError(28, "No space")],
    ids=["refused", "disk-full"],
)
def test_a_refused_revision_leaves_the_live_one(
    tmp_path: Path, checker: FakeValidate, error: Exception
) -> None:
    good = transaction.apply(bundle(a="1"), root=tmp_path)
    checker.error = error
    with pytest.raises(ApplyError, match="not applied"):
        transaction.apply(bundle(a="2"), root=tmp_path)
    assert good.revision is not None
    assert files.live_revision(tmp_path) == good.revision.resolve()
    assert live_text(tmp_path, "a") == "1"
    assert [p.name for p in (tmp_path / "revs").iterdir()] == [good.revision.name]


def test_rollback_restores_the_previous_revision(tmp_path: Path, checker: FakeValidate) -> None:
    transaction.apply(bundle(a="1"), root=tmp_path)
    result = transaction.apply(bundle(a="2"), root=tmp_path)
    assert live_text(tmp_path, "a") == "2"
    transaction.rollback(result, root=tmp_path)
    assert live_text(tmp_path, "a") == "1"
    assert result.revision is not None and not result.revision.exists()


def test_many_applies_keep_a_few_revisions(tmp_path: Path, checker: FakeValidate) -> None:
    for i in range(8):
        transaction.apply(bundle(a=str(i)), root=tmp_path)
    names = sorted(p.name for p in (tmp_path / "revs").iterdir())
    assert names == ["000006", "000007", "000008"]
    assert live_text(tmp_path, "a") == "7"


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

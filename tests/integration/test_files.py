"""files.* (revisions, the `current` link) read back by postconf, and chroot.sync."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import time
from pathlib import Path

from mailctl.apply import chroot, files
from mailctl.render import File
from tests.integration.revision import bundle_for, realistic


def postconf(config: Path, name: str) -> str:
    done = subprocess.run(
        ["postconf", "-c", str(config), "-h", name], capture_output=True, text=True, check=True
    )
    assert not done.stderr, done.stderr
    return done.stdout.strip()


def revision(root: Path, hostname: str) -> Path:
    path = files.new_revision_dir(root)
    files.write_tree(path, bundle_for(realistic(hostname=hostname)).files)
    return path


def test_write_tree_gives_each_file_its_mode_owner_and_an_old_mtime(root: Path) -> None:
    tree = {
        "postfix/main.cf": File(b"myhostname = a.example\n"),
        "fetchmail/fetchmailrc": File(b"set daemon 60\n", 0o600, "fetchmail", "nogroup"),
        "tls/key.pem": File(b"key", 0o640, "root", "ssl-cert"),
    }
    base = root / "rev"
    base.mkdir()
    files.write_tree(base, tree)
    for rel, f in tree.items():
        st = (base / rel).stat()
        assert (base / rel).read_bytes() == f.content
        assert stat.S_IMODE(st.st_mode) == f.mode, rel
        assert pwd.getpwuid(st.st_uid).pw_name == f.owner, rel
        assert grp.getgrgid(st.st_gid).gr_name == f.group, rel
        assert st.st_mtime < time.time() - files.BACKDATE + 5, rel
    assert sorted(p.name for p in base.rglob("*") if p.is_file()) == [
        "fetchmailrc",
        "key.pem",
        "main.cf",
    ], "no temp files left"
    assert files.read_tree(base, ["postfix/main.cf", "missing"]) == {
        "postfix/main.cf": b"myhostname = a.example\n"
    }


def test_postconf_reads_the_revision_current_points_at(root: Path) -> None:
    live = files.current_link(root) / "postfix"
    assert files.live_revision(root) is None
    first = revision(root, "one.example.com")
    second = revision(root, "two.example.com")
    assert (first.name, second.name) == ("000001", "000002")

    files.swap(first, root)
    assert files.live_revision(root) == first
    assert postconf(live, "myhostname") == "one.example.com"
    files.swap(second, root)
    assert files.live_revision(root) == second
    assert postconf(live, "myhostname") == "two.example.com"
    assert os.readlink(files.current_link(root)) == "revs/000002", "relative: survives a move"
    files.swap(first, root)  # a rollback
    assert postconf(live, "myhostname") == "one.example.com"
    assert sorted(p.name for p in root.iterdir()) == ["current", "revs"]


def test_prune_keeps_the_newest_and_the_live_revision(root: Path) -> None:
    revs = [files.new_revision_dir(root) for _ in range(6)]
    files.swap(revs[1], root)
    files.prune(root, keep=3)
    assert sorted(p.name for p in (root / "revs").iterdir()) == [
        "000002",
        "000004",
        "000005",
        "000006",
    ]
    assert files.new_revision_dir(root).name == "000007"


def test_retire_touches_the_old_tables(root: Path) -> None:
    old = revision(root, "one.example.com")
    before = (old / "postfix/virtual").stat().st_mtime
    files.retire(old)
    assert (old / "postfix/virtual").stat().st_mtime > before + files.BACKDATE / 2


def test_chroot_copies_follow_their_sources(root: Path) -> None:
    src, jail = root / "src", root / "spool"
    (src / "etc").mkdir(parents=True)
    (src / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (src / "etc/sasldb2").write_bytes(b"db")
    (jail / "etc").mkdir(parents=True)
    (jail / "etc/resolv.conf").symlink_to("/etc/resolv.conf")

    changed = chroot.sync(jail, src)
    assert sorted(changed) == ["etc/hosts", "etc/resolv.conf", "etc/sasldb2"]
    assert not (jail / "etc/resolv.conf").exists(), "a copy whose source is gone is removed"
    assert (jail / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
    st = (jail / "etc/sasldb2").stat()
    assert (stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name) == (0o640, "sasl")
    assert chroot.sync(jail, src) == [], "equal copies are left alone"
    assert not chroot.needs_reload(["etc/sasldb2"])

    (src / "etc/hosts").write_text("127.0.0.1 localhost\n10.0.0.1 db\n")
    (src / "etc/sasldb2").unlink()
    assert sorted(chroot.sync(jail, src)) == ["etc/hosts", "etc/sasldb2"]
    assert not (jail / "etc/sasldb2").exists(), "a deleted sasldb2 keeps no passwords working"
    assert chroot.needs_reload(["etc/hosts"])

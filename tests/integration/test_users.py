"""users.* and logins.LoginChanges against saslpasswd2, sasldblistusers2, useradd, usermod,
userdel; what they write is checked by a real saslauthd, as Postfix's logins are."""

from __future__ import annotations

import grp
import pwd
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailctl.apply import logins, proc, secrets, users
from mailctl.errors import MailctlError
from mailctl.layout import Layout
from tests.integration.daemons import saslauthd

# saslauthd -a sasldb reads /etc/sasldb2, which the image links to the users volume.
IMAGE_USERS = Path("/var/lib/mailctl/users")


def owner(path: Path) -> tuple[str, str, int]:
    st = path.stat()
    return (
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
        stat.S_IMODE(st.st_mode),
    )


@pytest.fixture
def image_users() -> Iterator[Path]:
    """The image's users directory (so /etc/sasldb2 is what we write), emptied after."""
    assert Path("/etc/sasldb2").resolve() == IMAGE_USERS / "sasldb2"
    IMAGE_USERS.mkdir(parents=True, exist_ok=True)
    yield IMAGE_USERS
    for path in IMAGE_USERS.iterdir():
        path.unlink()


def test_sasldb_entries_are_set_listed_and_deleted(root: Path) -> None:
    db = root / "sasldb2"
    assert users.sasldb_users(db) == set()
    users.sasldb_set(db, "alice@example.com", "alice-pw-1")
    users.sasldb_set(db, "bob@example.org", "bob pw: with spaces")
    assert users.sasldb_users(db) == {"alice@example.com", "bob@example.org"}
    assert owner(db) == ("root", "sasl", 0o640)
    users.sasldb_delete(db, "alice@example.com")
    assert users.sasldb_users(db) == {"bob@example.org"}
    users.sasldb_delete(db, "nobody@example.com")  # absent: no error
    assert users.sasldb_users(db) == {"bob@example.org"}


def test_a_failed_saslpasswd2_names_the_user_not_the_password(root: Path) -> None:
    with pytest.raises(MailctlError, match=r"alice@example\.com") as exc:
        users.sasldb_set(root / "missing-dir/sasldb2", "alice@example.com", "sekrit-pw-77")
    assert "sekrit-pw-77" not in str(exc.value)


def test_saslauthd_accepts_what_sasldb_set_wrote(image_users: Path) -> None:
    db = image_users / "sasldb2"
    users.sasldb_set(db, "alice@example.com", "alice-pw-1")
    users.sasldb_set(db, "bob@example.com", "bob-pw-2")
    with saslauthd("sasldb") as mux:
        assert users.check_login(mux, "alice@example.com", "alice-pw-1")
        assert not users.check_login(mux, "alice@example.com", "bob-pw-2")
        assert not users.check_login(mux, "alice@example.org", "alice-pw-1"), "another realm"
        users.sasldb_set(db, "alice@example.com", "alice-pw-new")
        assert users.check_login(mux, "alice@example.com", "alice-pw-new")
        assert not users.check_login(mux, "alice@example.com", "alice-pw-1")
        users.sasldb_delete(db, "bob@example.com")
        assert not users.check_login(mux, "bob@example.com", "bob-pw-2")


def test_the_cyrus_admin_entry_is_written_once_and_only_cyrus_reads_it(root: Path) -> None:
    db = root / "cyrus-admin.sasldb"
    assert users.admin_sasldb(db, "mail.example.com", "admin-pw-1") is True
    assert users.sasldb_users(db) == {"cyrus@mail.example.com"}
    assert owner(db) == ("cyrus", "mail", 0o600)
    before = db.read_bytes()
    assert users.admin_sasldb(db, "mail.example.com", "admin-pw-2") is False
    assert db.read_bytes() == before
    assert users.admin_sasldb(db, "mx.example.com", "admin-pw-1") is True
    assert users.sasldb_users(db) == {"cyrus@mail.example.com", "cyrus@mx.example.com"}


def test_login_changes_swap_sasldb_and_undo_puts_the_old_one_back(
    root: Path, image_users: Path
) -> None:
    layout = Layout(etc=root / "etc", state=root / "state", users=image_users)
    key = secrets.state_key(layout)
    everyone = frozenset({"alice@example.com", "bob@example.com"})

    first = logins.LoginChanges(layout, proc.run, key)
    first.sasldb({"alice@example.com": "a-1", "bob@example.com": "b-1"}, everyone)
    first.commit()
    assert users.sasldb_users(layout.sasldb) == set(everyone)
    assert owner(layout.sasldb) == ("root", "sasl", 0o640)
    committed = layout.sasldb.read_bytes()

    second = logins.LoginChanges(layout, proc.run, key)
    second.sasldb({"alice@example.com": "a-2"}, frozenset({"alice@example.com"}))
    assert users.sasldb_users(layout.sasldb) == {"alice@example.com"}
    assert second.notes == ["sasldb: bob@example.com removed"]
    with saslauthd("sasldb") as mux:
        assert users.check_login(mux, "alice@example.com", "a-2")
        assert not users.check_login(mux, "bob@example.com", "b-1")
        second.undo()
        assert layout.sasldb.read_bytes() == committed
        assert users.check_login(mux, "alice@example.com", "a-1")
        assert users.check_login(mux, "bob@example.com", "b-1")

    unchanged = logins.LoginChanges(layout, proc.run, key)
    unchanged.sasldb({"alice@example.com": "a-1", "bob@example.com": "b-1"}, everyone)
    assert layout.sasldb.read_bytes() == committed, "equal passwords: nothing rewritten"


@pytest.fixture
def clean_accounts() -> Iterator[None]:
    yield
    for name in users.ours() | ({"localuser"} & {p.pw_name for p in pwd.getpwall()}):
        subprocess.run(["userdel", name], check=True)


def test_accounts_are_added_changed_and_removed_only_if_marked(
    root: Path, clean_accounts: None
) -> None:
    subprocess.run(["useradd", "-M", "-c", "not ours", "localuser"], check=True)
    layout = Layout(etc=root / "etc", state=root / "state", users=root / "users")
    alice_1, alice_2 = secrets.hash_password("alice-1"), secrets.hash_password("alice-2")
    bob = secrets.hash_password("bob-1")

    changes = logins.LoginChanges(layout, proc.run, b"k")
    changes.accounts({"alice@example.com": alice_1, "bob@example.com": bob})
    assert changes.notes == [
        "shadow: account alice@example.com added",
        "shadow: account bob@example.com added",
    ]
    entry = pwd.getpwnam("alice@example.com")
    assert (entry.pw_gecos, entry.pw_shell, entry.pw_dir) == (
        users.SHADOW_MARK,
        "/usr/sbin/nologin",
        "/nonexistent",
    )
    assert users.shadow_hashes()["alice@example.com"] == alice_1
    changes.commit()

    again = logins.LoginChanges(layout, proc.run, b"k")
    again.accounts({"alice@example.com": alice_2})
    assert again.notes == [
        "shadow: account alice@example.com password changed",
        "shadow: account bob@example.com removed",
    ]
    assert users.ours() == {"alice@example.com"}
    assert "localuser" in {p.pw_name for p in pwd.getpwall()}, "not ours: left alone"
    with saslauthd("shadow") as mux:
        assert users.check_login(mux, "alice@example.com", "alice-2")
        assert not users.check_login(mux, "alice@example.com", "alice-1")
        assert not users.check_login(mux, "bob@example.com", "bob-1")
        again.undo()
        assert users.ours() == {"alice@example.com", "bob@example.com"}
        assert users.check_login(mux, "alice@example.com", "alice-1")
        assert users.check_login(mux, "bob@example.com", "bob-1")

    with pytest.raises(MailctlError, match="postfix is a system account"):
        logins.LoginChanges(layout, proc.run, b"k").accounts({"postfix": bob})
    with pytest.raises(MailctlError, match="localuser is a system account"):
        logins.LoginChanges(layout, proc.run, b"k").accounts({"localuser": bob})
    assert pwd.getpwnam("localuser").pw_gecos == "not ours"

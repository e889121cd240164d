"""The whole apply transaction with the real tools: gather -> plan -> stage -> validate ->
swap -> logins -> reload -> commit, in a temp layout. Only the supervisor is a stand-in
(it records which daemons would reload)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailctl.apply import files, inputs, users
from mailctl.apply.transaction import Transaction
from mailctl.errors import ApplyError
from mailctl.layout import Layout
from mailctl.render import Facts
from tests.integration import revision
from tests.unit import factory


class Daemons:
    def __init__(self) -> None:
        self.reloads: list[str] = []

    def reload(self, name: str) -> None:
        self.reloads.append(name)


@pytest.fixture
def layout(root: Path) -> Layout:
    (root / "sysroot/etc").mkdir(parents=True)
    (root / "sysroot/etc/hosts").write_text("127.0.0.1 localhost\n")
    (root / "secrets").mkdir()
    (root / "secrets/bob.pw").write_text("bob-secret-2\n")
    (root / "secrets/carol.pw").write_text("carol-secret-3\n")
    (root / "secrets/pop.pw").write_text(revision.FETCHMAIL_PASSWORD + "\n")
    return Layout(
        etc=root / "etc",
        state=root / "state",
        users=root / "state/users",
        chroot=root / "spool",
        root=root / "sysroot",
        settings_dir=root / "config",
    )


def write_settings(layout: Layout, **extra: Any) -> None:
    secret = layout.root.parent / "secrets"
    data = factory.base_data(
        users=[
            {"address": "bob@example.com", "password_file": str(secret / "bob.pw")},
            {"address": "carol@example.com", "password_file": str(secret / "carol.pw")},
        ],
        sasl={"mechanism": "sasldb"},
        tls=revision.tls_files(secret),
        access={"patterns": [{"stage": "helo", "pattern": r"\.dyn\.example$", "action": "REJECT"}]},
        fetchmail={
            "accounts": [
                {
                    "server": "pop.provider.example",
                    "user": "bob.provider",
                    "password_file": str(secret / "pop.pw"),
                    "deliver_to": "bob@example.com",
                }
            ]
        },
    )
    data.update(extra)
    layout.settings_dir.mkdir(exist_ok=True)
    layout.settings_file.write_text(yaml.safe_dump(data))


def transaction(layout: Layout, daemons: Daemons | None = None, force: bool = False) -> Transaction:
    gathered = inputs.gather(layout, found=Facts())
    return Transaction(gathered, layout, daemons=daemons, force=force)


def postconf(layout: Layout, name: str) -> str:
    conf = files.current_link(layout.etc) / "postfix"
    argv = ["postconf", "-c", str(conf), "-h", name]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def test_a_first_apply_then_a_refused_one_then_a_change(layout: Layout) -> None:
    write_settings(layout)
    first = transaction(layout, force=True).run()
    assert first.revision is not None and files.live_revision(layout.etc) == first.revision
    assert postconf(layout, "myhostname") == "mail.example.com"
    assert users.sasldb_users(layout.sasldb) == {"bob@example.com", "carol@example.com"}
    assert users.sasldb_users(layout.admin_sasldb) == {"cyrus@mail.example.com"}
    assert (layout.chroot / "etc/hosts").read_text() == "127.0.0.1 localhost\n"
    assert (first.revision / "postfix/virtual.db").is_file()
    sasldb = layout.sasldb.read_bytes()

    # A key that is not the certificate's: only openssl can tell, at validate.
    secret = layout.root.parent / "secrets"
    _, other_key = revision.openssl_pair("other.example.com")
    (secret / "other.key").write_bytes(other_key)
    tls = {"cert_file": str(secret / "cert.pem"), "key_file": str(secret / "other.key")}
    write_settings(layout, tls=tls, users=[])
    daemons = Daemons()
    with pytest.raises(ApplyError, match=r"\(validate\): tls: the key does not belong"):
        transaction(layout, daemons).run()
    with pytest.raises(ApplyError, match=r"\(validate\): tls: the key does not belong"):
        transaction(layout).check()
    assert files.live_revision(layout.etc) == first.revision
    assert sorted(p.name for p in layout.revs.iterdir()) == [first.revision.name]
    assert daemons.reloads == []
    assert layout.sasldb.read_bytes() == sasldb, "no login changes before validation passes"

    write_settings(layout, smtp={"message_size_limit": 1_000_000})
    daemons = Daemons()
    second = transaction(layout, daemons).run()
    assert second.revision is not None and second.changed == {"postfix/main.cf"}
    assert daemons.reloads == ["postfix"]
    assert postconf(layout, "message_size_limit") == "1000000"
    assert (second.revision / "postfix/virtual.db").is_file(), "copied from the live revision"

    again = transaction(layout, Daemons()).run()
    assert again.revision is None and files.live_revision(layout.etc) == second.revision

"""secrets.*: crypt hashes that openssl (and so the crypt(3) of PAM and saslauthd) verifies,
the hash cache, the self-signed certificate, and resolve() on real secret files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailctl.apply import secrets, validate
from mailctl.errors import SettingsError
from mailctl.layout import Layout
from tests.integration.revision import bundle_for, realistic, rewrite, stage, tls_files
from tests.unit import factory

PASSWORDS = ["alice-secret-1", "pässwörd with spaces", "$6$looks$like-a-hash", "x"]


def openssl_crypt(password: str, salt: str) -> str:
    done = subprocess.run(
        ["openssl", "passwd", "-6", "-salt", salt, "-stdin"],
        input=password + "\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def verifies(hashed: str, password: str) -> bool:
    _, scheme, salt, _ = hashed.split("$")
    assert scheme == "6", hashed
    return openssl_crypt(password, salt) == hashed


@pytest.mark.parametrize("password", PASSWORDS)
def test_hash_password_makes_a_sha512_crypt_that_openssl_verifies(password: str) -> None:
    hashed = secrets.hash_password(password)
    assert hashed.startswith("$6$") and len(hashed.split("$")[3]) == 86
    assert verifies(hashed, password)
    assert not verifies(hashed, password + "x")
    assert secrets.hash_password(password) != hashed, "a new random salt each time"


def test_the_hash_cache_is_stable_per_login_and_password(root: Path) -> None:
    layout = Layout(etc=root / "etc", state=root / "state", users=root / "users")
    cache = secrets.HashCache(layout)
    alice = cache.crypt("alice@example.com", "pw-1")
    assert verifies(alice, "pw-1")
    assert cache.crypt("alice@example.com", "pw-1") == alice
    bob = cache.crypt("bob@example.com", "pw-1")
    assert bob != alice and verifies(bob, "pw-1")
    cache.save()
    assert layout.hash_cache.stat().st_mode & 0o077 == 0
    assert "pw-1" not in layout.hash_cache.read_text()

    again = secrets.HashCache(layout)
    assert again.crypt("alice@example.com", "pw-1") == alice, "stable across renders"
    changed = again.crypt("alice@example.com", "pw-2")
    assert changed != alice and verifies(changed, "pw-2")
    again.save()  # keeps only what this render used: bob's hash goes
    assert secrets.HashCache(layout).crypt("bob@example.com", "pw-1") != bob


def test_the_self_signed_certificate_passes_the_tls_check(root: Path) -> None:
    layout = Layout(etc=root / "etc", state=root / "state", users=root / "users")
    settings = realistic()
    cert, key = secrets.tls_material(settings, layout)
    assert secrets.tls_material(settings, layout) == (cert, key), "made once, then reused"
    key_file = layout.tls / "selfsigned-mail.example.com.key"
    assert key_file.stat().st_mode & 0o077 == 0
    san = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName"],
        input=cert,
        capture_output=True,
        check=True,
    ).stdout.decode()
    assert "DNS:mail.example.com" in san

    bundle = bundle_for(settings)
    rev = stage(root, bundle)
    rewrite(rev, bundle, "tls/cert.pem", cert)
    rewrite(rev, bundle, "tls/key.pem", key)
    validate.tls(rev)


def test_resolve_reads_the_secret_files_and_hashes_their_passwords(root: Path) -> None:
    layout = Layout(etc=root / "etc", state=root / "state", users=root / "users")
    (root / "bob.pw").write_text("bob-secret-2\n")
    (root / "pop.pw").write_text("pop-secret\n")
    settings = factory.settings(
        tls=tls_files(root),
        users=[
            {"address": "alice@example.com", "password_hash": factory.HASH},
            {"address": "bob@example.com", "password_file": str(root / "bob.pw")},
        ],
        fetchmail={
            "accounts": [
                {
                    "server": "pop.provider.example",
                    "user": "alice.provider",
                    "password_file": str(root / "pop.pw"),
                    "deliver_to": "alice@example.com",
                }
            ]
        },
    )
    resolved = secrets.resolve(settings, layout)
    assert resolved.user_hashes["alice@example.com"] == factory.HASH
    assert verifies(resolved.user_hashes["bob@example.com"], "bob-secret-2")
    assert resolved.fetchmail_passwords == {0: "pop-secret"}
    assert resolved.user_passwords == {}
    again = secrets.resolve(settings, layout)
    assert again.user_hashes == resolved.user_hashes, "an unchanged file: the same hash"

    (root / "pop.pw").write_text("")
    with pytest.raises(SettingsError, match=r"fetchmail\.accounts\.0\.password_file"):
        secrets.resolve(settings, layout)

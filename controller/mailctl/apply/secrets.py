"""Resolve secrets before rendering: password files -> crypt hashes, TLS material.

Side effects: reads secret files, runs openssl, creates the self-signed
certificate and the Cyrus admin secret on the state volume on first start.
Clear-text passwords go to openssl on stdin and are never logged.
"""

from __future__ import annotations

import hashlib
import os
import secrets as pysecrets
from pathlib import Path

from mailctl.apply.files import atomic_write
from mailctl.apply.proc import run
from mailctl.errors import CommandError, SettingsError
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings

STATE = Path(os.environ.get("MAILCTL_STATE", "/var/lib/mailctl"))

_hash_cache: dict[tuple[str, str], str] = {}


def crypt_sha512(login: str, password: str) -> str:
    """SHA-512 crypt with a salt derived from login and password: stable across renders."""
    digest = hashlib.sha256(f"{login}\0{password}".encode()).hexdigest()
    key = (login, hashlib.sha256(password.encode()).hexdigest())
    if key not in _hash_cache:
        done = run(
            ["openssl", "passwd", "-6", "-salt", digest[:16], "-stdin"], input_text=password + "\n"
        )
        _hash_cache[key] = done.stdout.strip()
    return _hash_cache[key]


def hash_password(password: str) -> str:
    """SHA-512 crypt with a random salt, for passwords the user store keeps."""
    return run(["openssl", "passwd", "-6", "-stdin"], input_text=password + "\n").stdout.strip()


def read_secret(path: Path, setting: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{setting}: cannot read secret file {path}: {exc.__class__.__name__}"
        ) from None
    if not value or "\n" in value or "\x00" in value:
        raise SettingsError(f"{setting}: secret file {path} must hold one non-empty line")
    return value


def admin_password(state: Path = STATE) -> str:
    path = state / "cyrus-admin.secret"
    if not path.exists():
        atomic_write(path, pysecrets.token_urlsafe(32).encode(), 0o600)
    return path.read_text().strip()


def tls_material(settings: Settings, state: Path = STATE) -> tuple[bytes, bytes]:
    if settings.tls.cert_file and settings.tls.key_file:
        try:
            return settings.tls.cert_file.read_bytes(), settings.tls.key_file.read_bytes()
        except OSError as exc:
            raise SettingsError(f"tls: cannot read the certificate or key: {exc}") from None
    tls_dir = state / "tls"
    cert = tls_dir / f"selfsigned-{settings.hostname}.crt"
    key = tls_dir / f"selfsigned-{settings.hostname}.key"
    if not (cert.exists() and key.exists()):
        tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "3650",
                    "-subj",
                    f"/CN={settings.hostname}",
                    "-addext",
                    f"subjectAltName=DNS:{settings.hostname}",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                ],
                timeout=60,
            )
        except CommandError as exc:
            raise SettingsError(f"tls: cannot make a self-signed certificate: {exc}") from None
        os.chmod(key, 0o600)
    return cert.read_bytes(), key.read_bytes()


def resolve(
    settings: Settings, cli_users: frozenset[str] = frozenset(), state: Path = STATE
) -> Secrets:
    """Read what the settings point to. `cli_users` came from the user store: under
    mechanism sasldb their passwords are already in sasldb2."""
    hashes: dict[str, str] = {}
    clear_by_user: dict[str, str] = {}
    sasldb = settings.sasl.mechanism == "sasldb"
    for i, user in enumerate(settings.users):
        if sasldb and user.address not in cli_users and user.password_file is None:
            raise SettingsError(
                f"users.{i}: sasl.mechanism sasldb keeps passwords, not "
                "hashes: give password_file (or add the user with the CLI)"
            )
        if user.password_hash:
            hashes[user.address] = user.password_hash
        elif user.password_file:
            clear = read_secret(user.password_file, f"users.{i}.password_file")
            hashes[user.address] = crypt_sha512(user.address, clear)
            if sasldb:
                clear_by_user[user.address] = clear
    fetch = {
        i: read_secret(acc.password_file, f"fetchmail.accounts.{i}.password_file")
        for i, acc in enumerate(settings.fetchmail.accounts)
    }
    bind = settings.sasl.ldap.bind_password_file
    bind_pw = read_secret(bind, "sasl.ldap.bind_password_file") if bind else ""
    relay = settings.relay
    logins = [(relay.host, relay.password_file, "relay.password_file")] if relay.host else []
    logins += [
        (k, v.password_file, f"relay.senders.{k}.password_file") for k, v in relay.senders.items()
    ]
    relay_pw = {key: read_secret(path, setting) for key, path, setting in logins if path}
    cert, key = tls_material(settings, state)
    return Secrets(
        user_hashes=hashes,
        user_passwords=clear_by_user,
        tls_cert=cert,
        tls_key=key,
        fetchmail_passwords=fetch,
        ldap_bind_password=bind_pw,
        relay_passwords=relay_pw,
    )

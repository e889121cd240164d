"""Resolve secrets before rendering: password files -> crypt hashes, TLS material.

Side effects: reads secret files, runs openssl, creates the self-signed
certificate, the Cyrus admin secret and the state key on the state volume on
first start, and keeps the hash cache there. Clear-text passwords go to
openssl on stdin and are never logged.

Crypt salts are random. A render must still be stable (an unchanged password
file must not make a new revision), so each hash is cached on the state volume
under an HMAC of login and password keyed with a secret that lives there too:
reading the cache or the hash files tells nothing faster than sha512-crypt does.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets as pysecrets
from pathlib import Path

from mailctl.apply import proc
from mailctl.apply.files import atomic_write
from mailctl.errors import CommandError, SettingsError
from mailctl.layout import Layout
from mailctl.render import edge
from mailctl.render.secrets import Secrets
from mailctl.settings import Settings
from mailctl.settings.mechanisms import mechanism


def hash_password(password: str, runner: proc.Runner = proc.run) -> str:
    """SHA-512 crypt with a random salt (openssl draws it)."""
    try:
        done = runner(["openssl", "passwd", "-6", "-stdin"], input_text=password + "\n")
    except CommandError:
        raise SettingsError("cannot hash a password: openssl passwd failed") from None
    return done.stdout.strip()


def state_key(layout: Layout) -> bytes:
    """A random key on the state volume, made on first use (0600, root)."""
    path = layout.state_key
    if not path.exists():
        atomic_write(path, pysecrets.token_bytes(32).hex().encode(), 0o600)
    return bytes.fromhex(path.read_text().strip())


def srs_key(layout: Layout) -> None:
    """postsrsd's secret (it signs the SRS addresses), made on first use: 0600, root."""
    path = layout.srs_key
    if not path.exists():
        atomic_write(path, pysecrets.token_urlsafe(32).encode() + b"\n", 0o600)


class HashCache:
    """Crypt hashes of clear passwords, stable across renders, with random salts."""

    def __init__(self, layout: Layout, runner: proc.Runner = proc.run) -> None:
        self.path = layout.hash_cache
        self.runner = runner
        self.key = state_key(layout)
        try:
            loaded = json.loads(self.path.read_text())
            self.entries: dict[str, str] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.entries = {}  # a lost or damaged cache costs new hashes, nothing else
        self.used: set[str] = set()

    def _id(self, login: str, password: str) -> str:
        return hmac.new(self.key, f"{login}\0{password}".encode(), hashlib.sha256).hexdigest()

    def crypt(self, login: str, password: str) -> str:
        ident = self._id(login, password)
        self.used.add(ident)
        if ident not in self.entries:
            self.entries[ident] = hash_password(password, self.runner)
        return self.entries[ident]

    def save(self) -> None:
        """Keep only what this render used (old passwords' hashes go)."""
        kept = {k: v for k, v in self.entries.items() if k in self.used}
        try:
            old = json.loads(self.path.read_text())
        except (OSError, ValueError):
            old = None
        if kept != old:
            atomic_write(self.path, json.dumps(kept, sort_keys=True).encode(), 0o600)


def read_secret(path: Path, setting: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SettingsError(
            f"{setting}: cannot read secret file {str(path)!r}: {exc.__class__.__name__}"
        ) from None
    if not value or "\n" in value or "\x00" in value:
        raise SettingsError(f"{setting}: secret file {str(path)!r} must hold one non-empty line")
    return value


def admin_password(layout: Layout) -> str:
    path = layout.admin_secret
    if not path.exists():
        atomic_write(path, pysecrets.token_urlsafe(32).encode(), 0o600)
    return path.read_text().strip()


def tls_material(
    settings: Settings, layout: Layout, runner: proc.Runner = proc.run
) -> tuple[bytes, bytes]:
    if settings.tls.cert_file and settings.tls.key_file:
        try:
            return settings.tls.cert_file.read_bytes(), settings.tls.key_file.read_bytes()
        except (OSError, ValueError) as exc:
            raise SettingsError(
                f"tls: cannot read the certificate or key: {exc.__class__.__name__}"
            ) from None
    tls_dir = layout.tls
    cert = tls_dir / f"selfsigned-{settings.hostname}.crt"
    key = tls_dir / f"selfsigned-{settings.hostname}.key"
    if not (cert.exists() and key.exists()):
        tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            runner(
                [
                    "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-days", "3650", "-subj", f"/CN={settings.hostname}",
                    "-addext", f"subjectAltName=DNS:{settings.hostname}",
                    "-keyout", str(key), "-out", str(cert),
                ],
                timeout=60,
            )  # fmt: skip
        except CommandError as exc:
            raise SettingsError(f"tls: cannot make a self-signed certificate: {exc}") from None
        os.chmod(key, 0o600)
    return cert.read_bytes(), key.read_bytes()


def resolve(
    settings: Settings,
    layout: Layout,
    cli_users: frozenset[str] = frozenset(),
    runner: proc.Runner = proc.run,
    *,
    save: bool = True,
) -> Secrets:
    """Read what the settings point to. `cli_users` came from the user store: under
    mechanism sasldb their passwords are already in sasldb2."""
    hashes: dict[str, str] = {}
    clear_by_user: dict[str, str] = {}
    mech = mechanism(settings.sasl.mechanism)
    cache = HashCache(layout, runner)
    for i, user in enumerate(settings.users):
        needs_clear = mech.keeps_clear and user.address not in cli_users
        if needs_clear and user.password_file is None:
            raise SettingsError(
                f"users.{i}: sasl.mechanism {mech.name} keeps passwords, not "
                "hashes: give password_file (or add the user with the CLI)"
            )
        if user.password_hash:
            hashes[user.address] = user.password_hash
        elif user.password_file:
            clear = read_secret(user.password_file, f"users.{i}.password_file")
            if mech.keeps_clear:
                clear_by_user[user.address] = clear
            else:
                hashes[user.address] = cache.crypt(user.address, clear)
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
    if settings.is_edge and settings.edge.password_file:
        hop = edge.login_key(settings)
        logins.append((hop, settings.edge.password_file, "edge.password_file"))
    relay_pw = {key: read_secret(path, setting) for key, path, setting in logins if path}
    cert, key = tls_material(settings, layout, runner)
    if save:
        cache.save()
    return Secrets(
        user_hashes=hashes,
        user_passwords=clear_by_user,
        tls_cert=cert,
        tls_key=key,
        fetchmail_passwords=fetch,
        ldap_bind_password=bind_pw,
        relay_passwords=relay_pw,
    )


def files(settings: Settings) -> list[Path]:
    """Every secret file the settings name: a change of one (a rotated Kubernetes
    Secret, a new Docker secret) is a change of the inputs, as the settings file's is."""
    paths = [u.password_file for u in settings.users]
    paths += [a.password_file for a in settings.fetchmail.accounts]
    paths += [settings.sasl.ldap.bind_password_file, settings.relay.password_file]
    paths += [v.password_file for v in settings.relay.senders.values()]
    paths += [settings.tls.cert_file, settings.tls.key_file, settings.edge.password_file]
    return [p for p in dict.fromkeys(paths) if p is not None]

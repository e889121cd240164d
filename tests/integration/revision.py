"""Realistic settings rendered and staged as a revision, as the controller does it.

Runs openssl (for a real certificate) and writes files; in-image only.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mailctl.apply import files
from mailctl.render import Bundle, postfix, render
from mailctl.settings import Settings
from tests.unit import factory

FETCHMAIL_PASSWORD = "pop-secret-Zq7"
RELAY_PASSWORD = "relay-secret-Xk4"
RELAY_HOST = "[smtp.provider.example]:587"


def realistic(**extra: Any) -> Settings:
    """factory.settings plus every kind of table, a relay host, greylisting and fetchmail.
    A group given in `extra` is merged into this one (maps={"table_type": "lmdb"})."""
    data: dict[str, Any] = {
        "alias_domains": ["example.org"],
        "aliases": {
            "postmaster@example.com": "alice@example.com",
            "team@example.com": ["alice@example.com", "bob@example.com"],
            "@example.org": "alice@example.com",
        },
        "maps": {
            "local_aliases": {"root": ["alice@example.com"]},
            "canonical": {"u1234@example.com": "alice@example.com"},
            "relocated": {"carol@example.com": "carol@example.net"},
            "transports": {"closed@example.com": "error:5.2.1 this mailbox is closed"},
            "sender_logins": {"info@example.com": ["alice@example.com"]},
        },
        "access": {
            "clients": {"192.0.2.0/24": "REJECT no mail from here", "spam.example": "REJECT no"},
            "helo": {"evil.example": "REJECT go away"},
            "senders": {"spammer@bad.example": "REJECT no spam", "trusted.example": "OK"},
            "patterns": [
                {
                    "stage": "helo",
                    "type": "pcre",
                    "pattern": r"^[0-9.-]+\.dyn\.example$",
                    "action": "REJECT dynamic address",
                },
                {
                    "stage": "sender",
                    "type": "regexp",
                    "pattern": "@spam[.]example$",
                    "action": "REJECT no spam",
                },
            ],
        },
        "relay": {
            "host": RELAY_HOST,
            "username": "account@provider.example",
            "password_file": "/run/secrets/relay",
        },
        "greylisting": {"enabled": True, "delay": 60},
        "cyrus": {"admins": ["alice@example.com"]},
        "fetchmail": {
            "accounts": [
                {
                    "server": "pop.provider.example",
                    "user": "alice.provider",
                    "password_file": "/run/secrets/pop",
                    "deliver_to": "alice@example.com",
                }
            ]
        },
    }
    for key, value in extra.items():
        old = data.get(key)
        data[key] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) else value
    return factory.settings(**data)


def openssl_pair(cn: str = "mail.example.com") -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (EC: quick to make; secrets.tls_material's
    own RSA one is tested in test_secrets)."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-nodes", "-days", "30", "-subj", f"/CN={cn}"),
                *("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"),
                *("-keyout", str(key), "-out", str(cert)),
            ],
            check=True,
            capture_output=True,
        )
        return cert.read_bytes(), key.read_bytes()


@functools.cache
def tls_pair() -> tuple[bytes, bytes]:
    return openssl_pair()


def tls_files(directory: Path) -> dict[str, str]:
    """tls_pair() as files, for the tls setting (so no self-signed one is made)."""
    cert, key = tls_pair()
    (directory / "cert.pem").write_bytes(cert)
    (directory / "key.pem").write_bytes(key)
    return {"cert_file": str(directory / "cert.pem"), "key_file": str(directory / "key.pem")}


def bundle_for(settings: Settings) -> Bundle:
    cert, key = tls_pair()
    secrets = dataclasses.replace(
        factory.secrets_for(settings, FETCHMAIL_PASSWORD),
        tls_cert=cert,
        tls_key=key,
        relay_passwords={key: RELAY_PASSWORD for key in postfix.relay_logins(settings)},
    )
    return render(settings, secrets)


def stage(root: Path, bundle: Bundle) -> Path:
    """A new revision directory under `root` holding the bundle's files (not validated)."""
    path = files.new_revision_dir(root)
    files.write_tree(path, bundle.files)
    return path


def rewrite(stage_dir: Path, bundle: Bundle, rel: str, content: bytes) -> None:
    """Replace one staged file, keeping the mode and owner the bundle gives it, and
    backdated as write_tree does (Postfix waits for a fresh main.cf to age)."""
    f = bundle.files[rel]
    files.atomic_write(stage_dir / rel, content, f.mode, f.owner, f.group)
    stamp = time.time() - files.BACKDATE
    os.utime(stage_dir / rel, (stamp, stamp))


def append(stage_dir: Path, bundle: Bundle, rel: str, text: str) -> None:
    rewrite(stage_dir, bundle, rel, (stage_dir / rel).read_bytes() + text.encode())

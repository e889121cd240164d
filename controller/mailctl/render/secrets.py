"""Secrets resolved before rendering, so renderers stay pure. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Secrets:
    """What the reconcile step read or made: password hashes and TLS material."""

    user_hashes: dict[str, str] = field(default_factory=dict, repr=False)
    user_passwords: dict[str, str] = field(default_factory=dict, repr=False)  # sasldb only
    tls_cert: bytes = field(default=b"", repr=False)
    tls_key: bytes = field(default=b"", repr=False)
    fetchmail_passwords: dict[int, str] = field(default_factory=dict, repr=False)
    ldap_bind_password: str = field(default="", repr=False)
    relay_passwords: dict[str, str] = field(default_factory=dict, repr=False)

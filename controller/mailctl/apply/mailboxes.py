"""Cyrus mailboxes follow the users (FEATURES C4): create them, set quotas.

Side effects: talks IMAP to Cyrus as its admin over a unix socket (Cyrus
treats it as secure, so PLAIN works without TLS and nothing crosses a network).
A user removed from the settings keeps the mailbox: nothing is deleted here.
"""

from __future__ import annotations

import imaplib
import re
import socket

from mailctl.errors import MailctlError

_QUOTA = re.compile(rb"STORAGE \d+ (\d+)")


class _UnixIMAP(imaplib.IMAP4):
    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        super().__init__()

    def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self._timeout)
        self.sock.connect(self._path)
        self.file = self.sock.makefile("rb")


def mailbox_name(address: str) -> str:
    return f"user/{address}"


def sync(socket_path: str, admin: str, password: str, wanted: dict[str, int | None],
         timeout: float = 10.0) -> list[str]:
    """Create missing mailboxes and set quotas; return a list of what changed."""
    changes: list[str] = []
    try:
        imap = _UnixIMAP(socket_path, timeout)
    except OSError as exc:
        raise MailctlError(f"cannot reach Cyrus's admin socket {socket_path}: {exc}") from None
    try:
        imap.login(admin, password)
        for address, quota_kib in sorted(wanted.items()):
            name = mailbox_name(address)
            typ, data = imap.list('""', name)
            exists = typ == "OK" and any(d for d in data if d)
            if not exists:
                typ, data = imap.create(name)
                if typ != "OK":
                    raise MailctlError(f"Cyrus refused to create {name}: {data!r}")
                changes.append(f"created {name}")
            typ, data = imap.getquotaroot(name)
            current = None
            for item in data[1] if len(data) > 1 else []:
                m = _QUOTA.search(item) if isinstance(item, bytes) else None
                if m:
                    current = int(m.group(1))
            if current != quota_kib:
                limits = f"(STORAGE {quota_kib})" if quota_kib else "()"
                typ, data = imap.setquota(name, limits)
                if typ != "OK":
                    raise MailctlError(f"Cyrus refused the quota of {name}: {data!r}")
                changes.append(f"quota {name} {quota_kib or 'none'}")
    except imaplib.IMAP4.error as exc:
        raise MailctlError(f"Cyrus admin session failed: {exc}") from None
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return changes

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
_USAGE = re.compile(rb"STORAGE (\d+) (\d+)")


class _UnixIMAP(imaplib.IMAP4):
    def __init__(self, path: str, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        super().__init__()

    def open(self, host: str = "", port: int = 0, timeout: float | None = None) -> None:
        self.host, self.port = host, port
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self._timeout)
        try:
            self.sock.connect(self._path)
        except OSError:
            self.sock.close()
            raise
        self.file = self.sock.makefile("rb")


def mailbox_name(address: str) -> str:
    return f"user/{address}"


def _session(socket_path: str, admin: str, password: str, timeout: float) -> _UnixIMAP:
    try:
        imap = _UnixIMAP(socket_path, timeout)
    except OSError as exc:
        raise MailctlError(f"cannot reach Cyrus's admin socket {socket_path}: {exc}") from None
    try:
        imap.login(admin, password)
    except imaplib.IMAP4.error as exc:
        imap.shutdown()
        raise MailctlError(f"Cyrus admin login failed: {exc}") from None
    return imap


def existing(socket_path: str, admin: str, password: str, timeout: float = 10.0) -> list[str]:
    """Addresses that have a mailbox (whether or not they are in the settings)."""
    imap = _session(socket_path, admin, password, timeout)
    try:
        typ, data = imap.list('""', "user/%")
        names = []
        for item in data if typ == "OK" else []:
            if isinstance(item, bytes):
                name = item.rsplit(b" ", 1)[-1].strip(b'"').decode()
                names.append(name.removeprefix("user/"))
        return sorted(names)
    finally:
        imap.logout()


def usage(
    socket_path: str, admin: str, password: str, timeout: float = 10.0
) -> dict[str, tuple[int | None, int | None]]:
    """address -> (KiB used, KiB allowed or None) of every mailbox, from GETQUOTAROOT."""
    out: dict[str, tuple[int | None, int | None]] = {}
    imap = _session(socket_path, admin, password, timeout)
    try:
        typ, data = imap.list('""', "user/%")
        for item in data if typ == "OK" else []:
            if not isinstance(item, bytes):
                continue
            name = item.rsplit(b" ", 1)[-1].strip(b'"').decode()
            used: int | None = None
            limit: int | None = None
            typ, quota = imap.getquotaroot(name)
            for line in (quota[1] or []) if typ == "OK" and len(quota) > 1 else []:
                m = _USAGE.search(line) if isinstance(line, bytes) else None
                if m:
                    used, limit = int(m.group(1)), int(m.group(2))
            out[name.removeprefix("user/")] = (used, limit)
    except imaplib.IMAP4.error as exc:
        raise MailctlError(f"Cyrus admin session failed: {exc}") from None
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    return out


def purge(socket_path: str, admin: str, password: str, address: str, timeout: float = 10.0) -> None:
    """Delete a mailbox and all its mail: only ever on an explicit request."""
    name = mailbox_name(address)
    imap = _session(socket_path, admin, password, timeout)
    try:
        typ, data = imap.setacl(name, admin, "lrswipkxtecda")
        if typ != "OK":
            raise MailctlError(f"no mailbox {name}: {data!r}")
        typ, data = imap.delete(name)
        if typ != "OK":
            raise MailctlError(f"Cyrus refused to delete {name}: {data!r}")
    finally:
        imap.logout()


def sync(
    socket_path: str,
    admin: str,
    password: str,
    wanted: dict[str, int | None],
    timeout: float = 10.0,
) -> list[str]:
    """Create missing mailboxes and set quotas; return a list of what changed."""
    changes: list[str] = []
    imap = _session(socket_path, admin, password, timeout)
    try:
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
            for item in (data[1] or []) if len(data) > 1 else []:
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

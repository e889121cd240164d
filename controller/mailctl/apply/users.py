"""Where logins live besides the settings file (FEATURES S1, S4).

- the user store: users added with `mailctl user add`, as `address:crypt-hash`
  lines on the users volume; the controller watches it like the settings;
- the SASL database (sasldb2) for mechanism sasldb, written with saslpasswd2;
- system accounts for mechanism shadow, made with useradd and marked so that
  only ours are ever changed or removed;
- the Cyrus admin's own SASL database (see render.cyrus.admin_conf);
- a login check against the running saslauthd, spoken over its socket.

Side effects: all of the above. Clear-text passwords go to saslpasswd2 on
stdin and over saslauthd's socket, never into argv or a log line.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from mailctl.apply import proc
from mailctl.apply.files import atomic_write
from mailctl.errors import CommandError, MailctlError
from mailctl.render.sasl import pwdfile

SHADOW_MARK = "mailctl user"


@contextlib.contextmanager
def locked(base: Path) -> Iterator[None]:
    """One writer of the user store and sasldb2 at a time: the CLI and the controller's
    transaction both hold this for as long as they change either."""
    base.mkdir(parents=True, exist_ok=True, mode=0o750)
    with open(base / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read_store(path: Path) -> dict[str, str]:
    """address -> crypt hash of the users added with the CLI."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise MailctlError(f"cannot read the user store {path}: {exc.__class__.__name__}") from None
    entries = {}
    for line in lines:
        address, sep, hashed = line.partition(":")
        if sep and address and not line.startswith("#"):
            entries[address] = hashed  # "" for mechanisms that check elsewhere
    return entries


def write_store(entries: dict[str, str], path: Path) -> None:
    body = pwdfile(dict(sorted(entries.items())))  # pam_pwdfile's format, checked there
    atomic_write(path, body.encode(), 0o600)


def read_aliases(path: Path) -> dict[str, list[str]]:
    """address -> targets of the aliases added with the CLI or the API."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MailctlError(
            f"cannot read the alias store {path}: {exc.__class__.__name__}"
        ) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(t, str) for t in v)
        for k, v in data.items()
    ):
        raise MailctlError(f"the alias store {path} is not a mapping of address -> [targets]")
    return data


def write_aliases(entries: dict[str, list[str]], path: Path) -> None:
    body = json.dumps(dict(sorted(entries.items())), indent=1) + "\n"
    atomic_write(path, body.encode(), 0o600)


# --- sasldb2 -----------------------------------------------------------------


def _split(address: str) -> tuple[str, str]:
    local, _, domain = address.partition("@")
    return local, domain


def sasldb_users(db: Path, runner: proc.Runner = proc.run) -> set[str]:
    if not db.exists():
        return set()
    out = runner(["sasldblistusers2", "-f", str(db)], check=False).stdout
    return {line.split(":", 1)[0] for line in out.splitlines() if ": userPassword" in line}


def sasldb_set(
    db: Path, address: str, password: str, runner: proc.Runner = proc.run, chown: bool = True
) -> None:
    local, domain = _split(address)
    try:
        runner(["saslpasswd2", "-p", "-c", "-u", domain, "-f", str(db), local], input_text=password)
    except CommandError:
        raise MailctlError(f"saslpasswd2 could not set the password of {address}") from None
    set_sasldb_owner(db, chown)


def set_sasldb_owner(db: Path, chown: bool = True) -> None:
    """root:sasl 0640: saslauthd (root) and smtpd's auxprop (group sasl) read it."""
    os.chmod(db, 0o640)
    if chown and os.geteuid() == 0:
        os.chown(db, 0, grp.getgrnam("sasl").gr_gid)


def sasldb_delete(db: Path, address: str, runner: proc.Runner = proc.run) -> None:
    local, domain = _split(address)
    runner(["saslpasswd2", "-d", "-u", domain, "-f", str(db), local], check=False)


def admin_sasldb(
    db: Path, realm: str, password: str, runner: proc.Runner = proc.run, chown: bool = True
) -> bool:
    """The Cyrus admin's entry, readable by Cyrus only; True if it had to be written.

    Additive: an entry for an old realm (hostname) does no harm, so no undo."""
    wrote = False
    if "cyrus@" + realm not in sasldb_users(db, runner):
        try:
            runner(
                ["saslpasswd2", "-p", "-c", "-u", realm, "-f", str(db), "cyrus"],
                input_text=password,
            )
        except CommandError:
            raise MailctlError("saslpasswd2 could not write the Cyrus admin entry") from None
        wrote = True
    if chown and os.geteuid() == 0:
        cyrus = pwd.getpwnam("cyrus")
        os.chown(db, cyrus.pw_uid, cyrus.pw_gid)
    os.chmod(db, 0o600)
    return wrote


# --- system accounts (mechanism shadow) ---------------------------------------


def shadow_hashes(path: Path = Path("/etc/shadow")) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            out[parts[0]] = parts[1]
    return out


def ours() -> set[str]:
    return {p.pw_name for p in pwd.getpwall() if p.pw_gecos == SHADOW_MARK}


def account_steps(
    wanted: dict[str, str], mine: set[str], others: set[str], current: dict[str, str]
) -> list[tuple[str, list[str], list[str]]]:
    """Pure: (what, argv, undo argv) that make the marked accounts exactly `wanted`."""
    clash = sorted(set(wanted) & others)
    if clash:
        raise MailctlError(f"users: {clash[0]} is a system account of the image")
    add = [
        "useradd", "--badname", "-M", "-N", "-g", "nogroup", "-d", "/nonexistent",
        "-s", "/usr/sbin/nologin", "-c", SHADOW_MARK, "-p",
    ]  # fmt: skip
    steps = []
    for address, hashed in sorted(wanted.items()):
        if address not in mine:
            steps.append(
                (f"account {address} added", [*add, hashed, address], ["userdel", address])
            )
        elif current.get(address) != hashed:
            old = current.get(address, "!")
            steps.append(
                (
                    f"account {address} password changed",
                    ["usermod", "-p", hashed, address],
                    ["usermod", "-p", old, address],
                )
            )
    for address in sorted(mine - set(wanted)):
        old = current.get(address, "!")
        steps.append((f"account {address} removed", ["userdel", address], [*add, old, address]))
    return steps


# --- saslauthd ---------------------------------------------------------------


def check_login(
    socket_path: str, login: str, password: str, service: str = "smtp", timeout: float = 15.0
) -> bool:
    """Ask saslauthd as Postfix would: four length-prefixed strings, answer OK or NO."""
    local, _, realm = login.partition("@")
    fields = [local, password, service, realm]
    payload = b"".join(struct.pack("!H", len(f.encode())) + f.encode() for f in fields)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(socket_path)
            sock.sendall(payload)
            size = struct.unpack("!H", _recv(sock, 2))[0]
            answer = _recv(sock, size)
        except OSError as exc:
            raise MailctlError(f"cannot ask saslauthd: {exc}") from None
    return answer.startswith(b"OK")


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("saslauthd closed the connection")
        data += chunk
    return data

"""The login stores a revision changes besides its files, each change with its undo.

- sasldb2 (mechanism sasldb): copied, changed with saslpasswd2 -f on the copy,
  and swapped in by one rename, the previous file kept until commit; undo puts
  it back. Which entries need writing is read from a digest file beside it
  (HMACs under the state key), not remembered in memory.
- system accounts (mechanism shadow): useradd/usermod/userdel, each with the
  inverse command recorded; undo runs them in reverse.
- the Cyrus admin's entry: additive, no undo needed.

Side effects: all of the above. Callers hold `users.locked` throughout.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pwd
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mailctl.apply import proc, users
from mailctl.apply.files import atomic_write
from mailctl.errors import CommandError, MailctlError
from mailctl.layout import Layout


@dataclass(frozen=True)
class LoginPlan:
    """What the login stores must hold after this revision."""

    sasldb: dict[str, str] | None = field(default=None, repr=False)  # address -> clear
    keep: frozenset[str] = frozenset()  # every user: sasldb entries that may stay
    accounts: dict[str, str] = field(default_factory=dict, repr=False)  # address -> hash
    admin_realm: str = ""


class LoginChanges:
    """Applied changes of one transaction: `undo` reverts them, `commit` makes them final."""

    def __init__(self, layout: Layout, runner: proc.Runner, key: bytes) -> None:
        self.layout = layout
        self.runner = runner
        self.key = key
        self.notes: list[str] = []
        self._undo: list[list[str]] = []
        self._sasldb_prev: Path | None = None
        self._sasldb_swapped = False
        self._digests: dict[str, str] | None = None

    # --- sasldb2 ---------------------------------------------------------------

    def _digest(self, address: str, password: str) -> str:
        msg = f"{address}\0{password}".encode()
        return hmac.new(self.key, msg, hashlib.sha256).hexdigest()

    def _read_digests(self) -> dict[str, str]:
        try:
            data = json.loads(self.layout.login_state.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def sasldb(self, wanted: dict[str, str], keep: frozenset[str]) -> None:
        db = self.layout.sasldb
        old = self._read_digests() if db.exists() else {}
        present = users.sasldb_users(db, self.runner)
        digests = {a: self._digest(a, p) for a, p in wanted.items()}
        upserts = [a for a in sorted(wanted) if old.get(a) != digests[a] or a not in present]
        deletes = sorted(present - keep)
        self._digests = {a: d for a, d in {**old, **digests}.items() if a in keep}
        if not upserts and not deletes:
            return
        staged = db.with_name(db.name + ".new")
        staged.unlink(missing_ok=True)
        try:
            if db.exists():
                shutil.copy2(db, staged)
            for address in upserts:
                users.sasldb_set(staged, address, wanted[address], self.runner, self.layout.owners)
            for address in deletes:
                users.sasldb_delete(staged, address, self.runner)
            if staged.exists():
                users.set_sasldb_owner(staged, self.layout.owners)
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        self.notes += [f"sasldb: {address} removed" for address in deletes]
        prev = db.with_name(db.name + ".prev")
        prev.unlink(missing_ok=True)
        if db.exists():
            os.link(db, prev)
            self._sasldb_prev = prev
        if staged.exists():
            os.replace(staged, db)
        self._sasldb_swapped = True

    # --- system accounts ---------------------------------------------------------

    def accounts(self, wanted: dict[str, str]) -> None:
        mine = users.ours()
        others = {p.pw_name for p in pwd.getpwall()} - mine
        steps = users.account_steps(wanted, mine, others, users.shadow_hashes())
        for what, argv, undo in steps:
            try:
                self.runner(argv)
            except CommandError as exc:
                raise MailctlError(f"users: {what.split(' ', 2)[1]}: {argv[0]} failed") from exc
            self._undo.append(undo)
            self.notes.append(f"shadow: {what}")

    # --- the transaction's calls ------------------------------------------------

    def apply(self, plan: LoginPlan, admin_password: str) -> None:
        if plan.admin_realm:
            users.admin_sasldb(
                self.layout.admin_sasldb,
                plan.admin_realm,
                admin_password,
                self.runner,
                self.layout.owners,
            )
        if plan.sasldb is not None:
            self.sasldb(plan.sasldb, plan.keep)
        self.accounts(plan.accounts)

    def undo(self) -> None:
        """Best effort, in reverse; what cannot be undone is said in `notes`."""
        for argv in reversed(self._undo):
            try:
                self.runner(argv)
            except CommandError as exc:
                self.notes.append(f"rollback: {argv[0]} {argv[-1]} failed: {exc}")
        self._undo.clear()
        if self._sasldb_swapped:
            db = self.layout.sasldb
            if self._sasldb_prev is not None:
                os.replace(self._sasldb_prev, db)
            else:
                db.unlink(missing_ok=True)
            self._sasldb_swapped = False
            self._sasldb_prev = None
        self._digests = None

    def commit(self) -> None:
        if self._sasldb_prev is not None:
            self._sasldb_prev.unlink(missing_ok=True)
        if self._digests is not None and self._digests != self._read_digests():
            atomic_write(
                self.layout.login_state, json.dumps(self._digests, sort_keys=True).encode(), 0o600
            )
        self._undo.clear()

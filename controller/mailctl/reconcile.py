"""Reconcile: settings -> secrets -> render -> apply -> reload -> mailboxes, and the main loop.

This is where the layers meet. Side effects through apply, supervise and
watch only. Failures of a live change leave the last good config serving
and are reported in `status`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailctl.apply import chroot, dirs, mailboxes, netinfo, secrets, transaction, users
from mailctl.errors import MailctlError, SettingsError
from mailctl.render import Bundle, Secrets, render
from mailctl.render.cyrus import ADMIN, ADMIN_SASLDB, ADMIN_SOCKET
from mailctl.settings import Settings, load_settings
from mailctl.settings.loader import with_cli_users
from mailctl.supervise import output
from mailctl.supervise.supervisor import Supervisor


@dataclass
class ApplyStatus:
    ok: bool = False
    error: str | None = None
    revision: str | None = None
    at: float = 0.0
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)
    mailbox_error: str | None = None


def with_runtime(settings: Settings) -> Settings:
    """The settings checked against this container's facts, and completed by them:
    never trust our own Docker network; refuse a HELO that claims our own address."""
    own = netinfo.local_ipv4()
    for i, net in enumerate(settings.networks):
        inside = sorted(str(a) for a in own if net.version == 4 and a in net)
        if inside:
            raise SettingsError(
                f"networks.{i}: {net} contains this container's own address {inside[0]}; "
                "clients on a published port arrive from that network through Docker's "
                "proxy, so trusting it would make this server an open relay"
            )
    if not settings.access.reject_own_helo or not own:
        return settings
    text = "REJECT do not use my address as HELO"
    helo = {k: text for ip in sorted(own) for k in (str(ip), f"[{ip}]")}
    helo.update(settings.access.helo)
    access = settings.access.model_copy(update={"helo": helo})
    return settings.model_copy(update={"access": access})


class Controller:
    def __init__(self, settings_file: Path) -> None:
        self.settings_file = settings_file
        self.supervisor = Supervisor()
        self.status = ApplyStatus()
        self.settings: Settings | None = None
        self.bundle: Bundle | None = None
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.stop_requested = False
        self.dirty_at: float | None = None
        self.mailboxes_pending = False
        self.mailboxes_made = False  # the first sync after start has succeeded
        self._file_digest: str | None = None
        self._last_chroot = 0.0
        self._mailbox_retry_at = 0.0
        self._sasldb_digests: dict[str, str] = {}
        self._admin_realm: str | None = None  # the realm the admin entry was written for

    # --- applying settings -------------------------------------------------

    def _digest(self) -> str:
        """The inputs a change of which means a new apply: settings file and user store."""
        h = hashlib.sha256()
        for path in (self.settings_file, users.store_path()):
            try:
                h.update(path.read_bytes())
            except OSError:
                h.update(b"-")
        return h.hexdigest()

    def build(self) -> tuple[Settings, Bundle, Secrets]:
        store = users.read_store()
        settings = with_runtime(with_cli_users(load_settings(self.settings_file), store))
        resolved = secrets.resolve(settings, frozenset(store))
        return settings, render(settings, resolved), resolved

    def _sync_logins(self, settings: Settings, resolved: Secrets) -> None:
        """What saslauthd's mechanism reads besides the revision: sasldb2, accounts."""
        if self._admin_realm != settings.hostname or not Path(ADMIN_SASLDB).exists():
            users.admin_sasldb(Path(ADMIN_SASLDB), settings.hostname, secrets.admin_password())
            self._admin_realm = settings.hostname
        if settings.sasl.mechanism == "sasldb":
            db = users.sasldb_path()
            for address, password in resolved.user_passwords.items():
                digest = hashlib.sha256(password.encode()).hexdigest()
                if self._sasldb_digests.get(address) != digest or not db.exists():
                    users.sasldb_set(db, address, password)
                    self._sasldb_digests[address] = digest
            for address in users.sasldb_users(db) - {u.address for u in settings.users}:
                users.sasldb_delete(db, address)
                self._sasldb_digests.pop(address, None)
                output.emit("mailctl", f"sasldb: {address} removed")
        shadow = settings.sasl.mechanism == "shadow"
        for change in users.sync_accounts(
            {a: h for a, h in resolved.user_hashes.items() if shadow}
        ):
            output.emit("mailctl", f"shadow: {change}")
        self.sync_chroot()

    def sync_chroot(self) -> None:
        """Refresh Postfix's chroot copies; running smtpd/smtp processes keep the resolver
        and host files they read at start, so a changed one means a (graceful) reload."""
        changed = chroot.sync()
        for rel in changed:
            output.emit("mailctl", f"chroot copy of /{rel} updated")
        if any(rel != "etc/sasldb2" for rel in changed) and self.supervisor.ready("postfix"):
            try:
                self.supervisor.reload("postfix")
            except MailctlError as exc:
                output.emit("mailctl", f"postfix reload after a chroot change failed: {exc}")

    def apply(self, first: bool = False) -> bool:
        """Load, render and apply the settings; on any failure keep the live config."""
        t0 = time.monotonic()
        digest = self._digest()
        try:
            if first:
                dirs.ensure()
            settings, bundle, resolved = self.build()
            result = transaction.apply(bundle, force=first)
            self._sync_logins(settings, resolved)  # and the chroot copies
            if result.revision is not None and not first:
                self._post_actions(bundle, result)
        except MailctlError as exc:
            with self.lock:
                self.status.ok = False
                self.status.error = str(exc)
                self.status.at = time.time()
            output.emit("mailctl", f"settings not applied: {exc}")
            if first:
                raise
            self._file_digest = digest
            return False
        try:
            dirs.alias_files(
                [
                    t
                    for targets in settings.maps.local_aliases.values()
                    for t in targets
                    if t.startswith("/")
                ]
            )
        except OSError as exc:
            output.emit("mailctl", f"maps.local_aliases: cannot create a target file: {exc}")
        restart = self.supervisor.configure(bundle.daemons)
        for name in restart:
            self.supervisor.restart(name)
        with self.lock:
            self.settings, self.bundle = settings, bundle
            self.status = ApplyStatus(
                ok=True,
                revision=result.revision.name if result.revision else self.status.revision,
                at=time.time(),
                seconds=time.monotonic() - t0,
                changed=sorted(result.changed),
            )
        self._file_digest = digest
        self.mailboxes_pending = True
        if result.revision is not None:
            steps = ", ".join(f"{k} {v:.3f}s" for k, v in result.timings.items())
            output.emit(
                "mailctl",
                f"revision {result.revision.name} live "
                f"({len(result.changed)} files changed; {steps}; "
                f"with reload {time.monotonic() - t0:.3f}s)",
            )
        return True

    def _post_actions(self, bundle: Bundle, result: transaction.Result) -> None:
        """Reload exactly the daemons whose files changed; roll back if one refuses."""
        names = [
            d.name
            for d in bundle.daemons
            if any(c.startswith(r) for r in d.reads for c in result.changed)
        ]
        try:
            for name in names:
                self.supervisor.reload(name)
        except MailctlError as exc:
            transaction.rollback(result)
            for name in names:
                try:
                    self.supervisor.reload(name)
                except MailctlError:
                    pass
            raise MailctlError(f"reload failed, previous config restored: {exc}") from exc

    def sync_mailboxes(self) -> None:
        if not self.mailboxes_pending or self.bundle is None:
            return
        if time.monotonic() < self._mailbox_retry_at or not self.supervisor.ready("cyrus"):
            return
        try:
            changes = mailboxes.sync(
                ADMIN_SOCKET, ADMIN, secrets.admin_password(), self.bundle.mailboxes
            )
        except MailctlError as exc:
            with self.lock:
                self.status.mailbox_error = str(exc)
            output.emit("mailctl", f"mailboxes: {exc}")
            self._mailbox_retry_at = time.monotonic() + 5.0
            return
        for change in changes:
            output.emit("mailctl", f"mailboxes: {change}")
        with self.lock:
            self.status.mailbox_error = None
        self.mailboxes_pending = False
        self.mailboxes_made = True

    # --- the main loop -----------------------------------------------------

    def settings_changed(self) -> None:
        """Called by the watcher thread: note it, let the loop debounce."""
        self.dirty_at = time.monotonic()
        self.wake.set()

    def tick(self, debounce: float = 0.05) -> None:
        now = time.monotonic()
        self.supervisor.tick()
        if self.dirty_at is not None and now - self.dirty_at >= debounce:
            self.dirty_at = None
            if self._digest() != self._file_digest:
                self.apply()
        if self.mailboxes_pending:
            self.sync_mailboxes()
        if now - self._last_chroot >= 2.0:
            self._last_chroot = now
            self.sync_chroot()

    def run(self, debounce: float = 0.05) -> None:
        while not self.stop_requested:
            self.tick(debounce)
            timeout = 0.1
            if self.dirty_at is not None:  # wake when the debounce window closes
                timeout = max(0.0, self.dirty_at + debounce - time.monotonic())
            self.wake.wait(timeout)
            self.wake.clear()
        self.supervisor.stop_all()

    def request_stop(self) -> None:
        self.stop_requested = True
        self.wake.set()

    # --- what the API shows ------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        problems: list[str] = []
        daemons = {}
        for st in self.supervisor.statuses():
            # A daemon still in its start window counts once its ports answer.
            ready = st.state in ("starting", "running") and self.supervisor.ready(st.name)
            daemons[st.name] = {
                "state": st.state,
                "ready": ready,
                "pid": st.pid,
                "restarts": st.restarts,
            }
            if not ready:
                problems.append(
                    f"{st.name} is {st.state}"
                    + ("" if st.state != "running" else " but not answering")
                )
        with self.lock:
            status = self.status
            if not status.ok:
                problems.append(f"last settings change failed: {status.error}")
            if status.mailbox_error:
                problems.append(status.mailbox_error)
            elif not self.mailboxes_made and status.ok:
                problems.append("the users' mailboxes are being created")
            body = {
                "ready": not problems,
                "problems": problems,
                "daemons": daemons,
                "revision": status.revision,
                "last_apply": {
                    "ok": status.ok,
                    "error": status.error,
                    "at": status.at,
                    "seconds": round(status.seconds, 4),
                    "changed": status.changed,
                },
            }
        return not problems, body

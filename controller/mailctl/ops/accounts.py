"""Users, aliases, domains and mailboxes: what the CLI and the admin API do with them.

Entries of the settings file are listed, never changed here (the file is the
operator's). Entries added here live on the state volume (the user store and
the alias store); the controller watches both and applies a change like a
settings edit, through the same transaction and the same rules, which these
functions also check first so that a refusal comes back to the caller.

Side effects: write the stores (under the users lock), sasldb2 for mechanism
sasldb, talk to saslauthd and to Cyrus's admin socket, run postmap -q.
"""

from __future__ import annotations

from mailctl.apply import inputs, mailboxes, secrets, users
from mailctl.errors import Conflict, MailctlError, NotFound
from mailctl.layout import CYRUS_ADMIN, CYRUS_ADMIN_SOCKET, SASLAUTHD_MUX, Layout
from mailctl.ops.models import (
    AliasEntry,
    DomainEntry,
    DomainKind,
    LoginResult,
    MailboxEntry,
    NewAlias,
    NewUser,
    Service,
    UserEntry,
)
from mailctl.settings import Settings, load_settings
from mailctl.settings.loader import with_cli_users, with_store_aliases
from mailctl.settings.mechanisms import mechanism

MAX_PASSWORD = 1024


def _settings(layout: Layout) -> Settings:
    return load_settings(layout.settings_file)


def _password(value: str) -> str:
    if not value or len(value) > MAX_PASSWORD or any(c in value for c in "\0\r\n"):
        raise MailctlError(
            f"password: one line of 1 to {MAX_PASSWORD} characters, without NUL or line breaks"
        )
    return value


# --- users ---------------------------------------------------------------------------


def list_users(layout: Layout) -> list[UserEntry]:
    in_file = {u.address for u in _settings(layout).users}
    store = users.read_store(layout.store)
    return [
        UserEntry(address=a, source="settings" if a in in_file else "api")
        for a in sorted(in_file | set(store))
    ]


def add_user(layout: Layout, new: NewUser, wait: bool = True) -> UserEntry:
    settings = _settings(layout)
    mech = mechanism(settings.sasl.mechanism)
    address = new.address.strip().lower()
    if address in {u.address for u in settings.users}:
        raise Conflict(f"{address} is a user of the settings file")
    # Passwords of rimap and ldap users live on those servers: only the mailbox here.
    password = _password(new.password.get_secret_value()) if mech.local_passwords else ""
    with users.locked(layout.users):  # the controller's transaction holds it too
        store = users.read_store(layout.store)
        if address in store:
            raise Conflict(f"{address} exists; change its password instead")
        store[address] = secrets.hash_password(password) if password else ""
        with_cli_users(settings, store)  # the rules of the settings file, before writing
        if mech.store == "sasldb":
            users.sasldb_set(layout.sasldb, address, password)
        users.write_store(store, layout.store)
    if wait:
        inputs.wait_applied(layout)
    return UserEntry(address=address, source="api")


def set_password(layout: Layout, address: str, password: str, wait: bool = True) -> None:
    settings = _settings(layout)
    mech = mechanism(settings.sasl.mechanism)
    address = address.lower()
    if address in {u.address for u in settings.users}:
        raise Conflict(f"{address} is a user of the settings file; change it there")
    if not mech.local_passwords:
        raise Conflict(f"sasl.mechanism {mech.name} checks passwords on another server")
    password = _password(password)
    with users.locked(layout.users):
        store = users.read_store(layout.store)
        if address not in store:
            raise NotFound(f"{address} is not a user added with mailctl or the API")
        store[address] = secrets.hash_password(password)
        if mech.store == "sasldb":
            users.sasldb_set(layout.sasldb, address, password)
        users.write_store(store, layout.store)
    if wait:  # auxprop reads the chroot copy of sasldb2, which the transaction makes
        inputs.wait_applied(layout)


def delete_user(layout: Layout, address: str, purge: bool = False, wait: bool = True) -> str:
    settings = _settings(layout)
    address = address.lower()
    if address in {u.address for u in settings.users}:
        raise Conflict(f"{address} is a user of the settings file; change it there")
    with users.locked(layout.users):
        store = users.read_store(layout.store)
        if address not in store:
            raise NotFound(f"{address} is not a user added with mailctl or the API")
        del store[address]
        if mechanism(settings.sasl.mechanism).store == "sasldb":
            users.sasldb_delete(layout.sasldb, address)
        users.write_store(store, layout.store)
    if wait:
        inputs.wait_applied(layout)
    if purge:
        mailboxes.purge(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, secrets.admin_password(layout), address)
        return f"deleted {address} and its mail"
    return f"deleted {address} (mail kept; a mailbox purge removes it)"


def test_login(layout: Layout, address: str, password: str, service: Service) -> LoginResult:
    """Ask saslauthd as Postfix or Cyrus would; the answer, never the password."""
    mech = mechanism(_settings(layout).sasl.mechanism)
    ok = users.check_login(SASLAUTHD_MUX, address.lower(), _password(password), service)
    return LoginResult(address=address.lower(), service=service, mechanism=mech.name, ok=ok)


# --- aliases -------------------------------------------------------------------------


def list_aliases(layout: Layout) -> list[AliasEntry]:
    settings = _settings(layout)
    from_file = settings.alias_targets()
    stored = users.read_aliases(layout.alias_store)
    out = [AliasEntry(address=k, targets=v, source="settings") for k, v in from_file.items()]
    out += [
        AliasEntry(address=k, targets=v, source="api")
        for k, v in stored.items()
        if k not in from_file
    ]
    return sorted(out, key=lambda e: e.address)


def add_alias(layout: Layout, new: NewAlias, wait: bool = True) -> AliasEntry:
    settings = _settings(layout)
    address = new.address.strip().lower()
    targets = list(dict.fromkeys(t.strip() for t in new.targets))
    if address in settings.aliases:
        raise Conflict(f"{address} is an alias of the settings file")
    with users.locked(layout.users):
        stored = users.read_aliases(layout.alias_store)
        if address in stored:
            raise Conflict(f"{address} exists; delete it first")
        stored[address] = targets
        with_store_aliases(with_cli_users(settings, users.read_store(layout.store)), stored)
        users.write_aliases(stored, layout.alias_store)
    if wait:
        inputs.wait_applied(layout)
    return AliasEntry(address=address, targets=targets, source="api")


def delete_alias(layout: Layout, address: str, wait: bool = True) -> None:
    settings = _settings(layout)
    address = address.lower()
    if address in settings.aliases:
        raise Conflict(f"{address} is an alias of the settings file; change it there")
    with users.locked(layout.users):
        stored = users.read_aliases(layout.alias_store)
        if address not in stored:
            raise NotFound(f"{address} is not an alias added with mailctl or the API")
        del stored[address]
        users.write_aliases(stored, layout.alias_store)
    if wait:
        inputs.wait_applied(layout)


# --- domains and mailboxes -----------------------------------------------------------


def list_domains(layout: Layout) -> list[DomainEntry]:
    s = _settings(layout)
    kinds: tuple[tuple[DomainKind, list[str]], ...] = (
        ("mailbox", s.domains),
        ("alias", s.alias_domains),
        ("relay", s.relay_domains),
        ("local", s.local_domains),
    )
    return [DomainEntry(name=d, kind=kind) for kind, names in kinds for d in names]


def list_mailboxes(layout: Layout) -> list[MailboxEntry]:
    password = secrets.admin_password(layout)
    settings = _settings(layout)
    known = {u.address for u in settings.users} | set(users.read_store(layout.store))
    usage = mailboxes.usage(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, password)
    out = []
    for address, (used, limit) in sorted(usage.items()):
        ratio = round(used / limit, 4) if used is not None and limit else None
        out.append(
            MailboxEntry(
                address=address,
                user=address in known,
                used_kib=used,
                limit_kib=limit,
                used_ratio=ratio,
            )
        )
    return out


def purge_mailbox(layout: Layout, address: str) -> None:
    """Delete the mail of a user that is gone; a user's own mailbox is refused."""
    address = address.lower()
    known = {u.address for u in _settings(layout).users} | set(users.read_store(layout.store))
    if address in known:
        raise Conflict(f"{address} is still a user; delete the user first")
    password = secrets.admin_password(layout)
    if address not in mailboxes.existing(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, password):
        raise NotFound(f"no mailbox for {address}")
    mailboxes.purge(CYRUS_ADMIN_SOCKET, CYRUS_ADMIN, password, address)

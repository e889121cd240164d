"""Gather every input of a render: settings, secrets, this container's facts, the user store.

Side effects: reads the settings file, the user store, secret files and /proc;
may create the state key, the hash cache and the self-signed certificate on
the state volume (first start). Every refusal is a SettingsError naming the
setting; `mailctl check` and the controller share this, so they refuse alike.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mailctl.apply import dkim, netinfo, proc, secrets, users
from mailctl.apply.files import atomic_write
from mailctl.errors import MailctlError, SettingsError
from mailctl.layout import Layout
from mailctl.render import Secrets, SigningKey, srs
from mailctl.render.facts import Facts
from mailctl.render.facts import check as check_facts
from mailctl.render.opendkim import signed_domains
from mailctl.settings import Settings, load_settings
from mailctl.settings.loader import with_cli_users, with_store_aliases
from mailctl.settings.published import is_published


@dataclass(frozen=True)
class Inputs:
    settings: Settings
    secrets: Secrets = field(repr=False)
    facts: Facts
    store: dict[str, str] = field(repr=False)  # the CLI's users: address -> crypt hash
    aliases: dict[str, list[str]] = field(default_factory=dict)  # the CLI's and API's
    dkim: tuple[SigningKey, ...] = ()  # the active keys, one a domain


def digest(layout: Layout, settings_file: Path | None = None) -> str:
    """What a change of means a new apply: the settings file, the user and alias stores,
    and the DKIM keys' states."""
    sources = (settings_file or layout.settings_file, layout.store, layout.alias_store)
    return contents_digest([*sources, dkim.state_file(layout)])


def contents_digest(paths: Iterable[Path]) -> str:
    """A digest of the files' contents, in order (one that cannot be read counts as such)."""
    h = hashlib.sha256()
    for path in paths:
        try:
            h.update(path.read_bytes())
        except OSError as exc:
            h.update(f"-{exc.__class__.__name__}".encode())
        h.update(b"\0")
    return h.hexdigest()


def record_outcome(layout: Layout, digest_: str, error: str | None) -> None:
    """What the controller made of the inputs with `digest_`: live, or refused and why."""
    body = json.dumps({"digest": digest_, "ok": error is None, "error": error})
    atomic_write(layout.applied, body.encode(), 0o644)


def wait_applied(layout: Layout, within: float = 30.0, poll: float = 0.1) -> None:
    """Until the controller has applied the current inputs; MailctlError if it refused them.

    A caller that changed a store calls this so that its answer means "live":
    the change, and any made meanwhile, went through the controller's transaction."""
    deadline = time.monotonic() + within
    while True:
        try:
            seen = json.loads(layout.applied.read_text())
        except (OSError, ValueError):
            seen = {}
        if seen.get("digest") == digest(layout):
            if not seen.get("ok"):
                raise MailctlError(f"the change is stored, but not applied: {seen.get('error')}")
            return
        if time.monotonic() > deadline:
            raise MailctlError(
                "the change is stored, but the controller has not applied it yet; "
                "see `mailctl status` for why"
            )
        time.sleep(poll)


def facts() -> Facts:
    return Facts(own_ipv4=frozenset(netinfo.local_ipv4()), resolvers=netinfo.resolvers())


def gather(
    layout: Layout,
    settings_file: Path | None = None,
    runner: proc.Runner = proc.run,
    *,
    found: Facts | None = None,
    save: bool = True,
) -> Inputs:
    """Read and check every input; SettingsError (naming the setting) if one is wrong."""
    try:
        store = users.read_store(layout.store)
    except MailctlError as exc:
        raise SettingsError(f"user store: {exc}") from None
    try:
        alias_store = users.read_aliases(layout.alias_store)
    except MailctlError as exc:
        raise SettingsError(f"alias store: {exc}") from None
    settings = with_cli_users(load_settings(settings_file or layout.settings_file), store)
    settings = with_store_aliases(settings, alias_store)
    for i, user in enumerate(settings.users):
        if user.password_hash and is_published(user.password_hash):
            where = f"users.{i}.password_hash" if user.address not in store else "user store"
            raise SettingsError(
                f"{where}: the hash of {user.address} is a published example whose password "
                "everyone knows; set a password of your own (mailctl user passwd, or a new hash)"
            )
    here = found if found is not None else facts()
    check_facts(settings, here)
    resolved = secrets.resolve(settings, layout, frozenset(store), runner, save=save)
    if save and srs.active(settings):
        secrets.srs_key(layout)
    signing: tuple[SigningKey, ...] = ()
    if settings.dkim.enabled:
        try:
            keys = dkim.load(layout)
        except MailctlError as exc:  # the controller sets a broken file aside at start
            raise SettingsError(f"dkim: {exc}") from None
        wanted = settings.dkim.algorithms()
        signing = dkim.signing_keys(keys, layout, signed_domains(settings), wanted)
    return Inputs(settings, resolved, here, store, alias_store, signing)

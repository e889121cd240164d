"""DKIM keys and their lifecycle: pending -> active -> retiring -> retired (or revoked).

Each domain that sends mail has keys; each key has a selector that is never used
twice. A key is made pending; it signs (active) only once its TXT record matches
our public key on every authoritative name server of the domain, and has done so
for at least the record's TTL, so that no resolver anywhere still caches an older
answer. The key it replaces retires after `dkim.retire_after`, long enough for
mail signed with it to be delivered and checked. `rotate` starts a new key early;
`revoke` stops signing with a key at once and publishes it empty (`p=`).

State: state/dkim/state.json (selectors, states, times, public keys) and
state/dkim/keys/<domain>/<selector>.pem (0600, owned by opendkim). A private key
is read by OpenDKIM only: never logged, never in an error, never in the API.

Side effects: `make_key` runs openssl and writes key files; `observe` asks DNS;
`load`/`save` read and write the state under a lock. `step` is pure given them.
"""

from __future__ import annotations

import base64
import fcntl
import grp
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from mailctl.apply import proc
from mailctl.apply.files import atomic_write
from mailctl.errors import CommandError, Conflict, MailctlError, NotFound
from mailctl.layout import Layout
from mailctl.render.opendkim import SigningKey

KeyState = Literal["pending", "active", "retiring", "revoked", "retired"]
Algorithm = Literal["rsa", "ed25519"]
# Selector prefixes: an RSA and an Ed25519 key of the same day never share a name.
PREFIX: dict[Algorithm, str] = {"rsa": "mc", "ed25519": "me"}
PUBLISHED: tuple[KeyState, ...] = ("pending", "active", "retiring", "revoked")
OPENDKIM_USER = "opendkim"
GENKEY: dict[Algorithm, tuple[str, ...]] = {
    "rsa": ("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"),
    "ed25519": ("openssl", "genpkey", "-algorithm", "ed25519"),
}


@dataclass(frozen=True)
class Key:
    selector: str
    state: KeyState
    created: float
    public: str  # the p= of the TXT record: RSA's DER SubjectPublicKeyInfo, Ed25519's 32 bytes
    seen: float | None = None  # since when its TXT has matched on every name server
    activated: float | None = None
    retiring_since: float | None = None  # also: when it was revoked
    retired: float | None = None
    algorithm: Algorithm = "rsa"

    def record(self) -> str:
        """The TXT record's text; a revoked key is published empty."""
        p = "" if self.state == "revoked" else self.public
        return f"v=DKIM1; k={self.algorithm}; p={p}"


@dataclass(frozen=True)
class Observation:
    """What the domain's authoritative servers answer for a selector's TXT record."""

    matches: bool | None  # None: could not tell (no name server answered, SERVFAIL, ...)
    ttl: int = 0
    detail: str = ""


@dataclass(frozen=True)
class Policy:
    rotate_after: float
    retire_after: float


@dataclass
class State:
    domains: dict[str, list[Key]] = field(default_factory=dict)

    def keys(self, domain: str) -> list[Key]:
        return self.domains.get(domain, [])

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "domains": {d: [asdict(k) for k in ks] for d, ks in self.domains.items()},
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> State:
        data = json.loads(text)
        return cls({d: [Key(**k) for k in ks] for d, ks in data.get("domains", {}).items()})


Observe = Callable[[str, Key], Observation]
# (domain, selector, algorithm) -> the public key; writes the private one
MakeKey = Callable[[str, str, Algorithm], str]


# --- the lifecycle, pure given observe and make_key ------------------------------------


def new_selector(keys: list[Key], now: float, algorithm: Algorithm = "rsa") -> str:
    """mcYYYYMMDD (meYYYYMMDD for Ed25519), then ...b, c: never one this domain has had."""
    base = PREFIX[algorithm] + time.strftime("%Y%m%d", time.gmtime(now))
    used = {k.selector for k in keys}
    suffixes: list[str] = ["", *"bcdefghijklmnopqrstuvwxyz"]
    for suffix in suffixes:
        if base + suffix not in used:
            return base + suffix
    n = 2
    while f"{base}n{n}" in used:
        n += 1
    return f"{base}n{n}"


def _add_pending(
    domain: str, keys: list[Key], now: float, make_key: MakeKey, algorithm: Algorithm = "rsa"
) -> Key:
    selector = new_selector(keys, now, algorithm)
    public = make_key(domain, selector, algorithm)
    key = Key(selector, "pending", now, public, algorithm=algorithm)
    keys.append(key)
    return key


def step(
    state: State,
    domains: list[str],
    now: float,
    policy: Policy,
    observe: Observe,
    make_key: MakeKey,
    algorithms: tuple[Algorithm, ...] = ("rsa",),
) -> list[str]:
    """Move every domain's keys through their gates; what changed, one line each.

    Each algorithm's keys have a lifecycle of their own. A domain no longer in the
    settings (or an algorithm no longer wanted) keeps its keys but gets no new ones."""
    notes: list[str] = []
    for domain in sorted(set(domains) | set(state.domains)):
        keys = state.domains.setdefault(domain, [])
        for i, key in enumerate(keys):
            if key.state in ("retiring", "revoked") and key.retiring_since is not None:
                if now - key.retiring_since >= policy.retire_after:
                    keys[i] = replace(key, state="retired", retired=now)
                    notes.append(f"{domain}: key {key.selector} retired; remove its TXT record")
        for algorithm in dict.fromkeys([*algorithms, *(k.algorithm for k in keys)]):
            wanted = domain in domains and algorithm in algorithms
            notes += _step_keys(domain, keys, algorithm, wanted, now, policy, observe, make_key)
    return notes


def _step_keys(
    domain: str,
    keys: list[Key],
    algorithm: Algorithm,
    wanted: bool,
    now: float,
    policy: Policy,
    observe: Observe,
    make_key: MakeKey,
) -> list[str]:
    """One domain's keys of one algorithm: activate the published, make the due."""
    notes: list[str] = []
    for key in [k for k in keys if k.state == "pending" and k.algorithm == algorithm]:
        seen = observe(domain, key)
        i = keys.index(key)
        if seen.matches is False:
            keys[i] = replace(key, seen=None)
            continue
        if seen.matches is None:
            continue  # no answer is no evidence either way: wait
        since = key.seen if key.seen is not None else now
        if now - since < seen.ttl:
            keys[i] = replace(key, seen=since)
            continue
        for j, old in enumerate(keys):
            if old.state == "active" and old.algorithm == algorithm:
                keys[j] = replace(old, state="retiring", retiring_since=now)
                notes.append(f"{domain}: key {old.selector} retiring (still published)")
        keys[i] = replace(key, state="active", seen=since, activated=now)
        notes.append(f"{domain}: key {key.selector} active: its TXT record is published")
    mine = [k for k in keys if k.algorithm == algorithm]
    if not wanted or any(k.state == "pending" for k in mine):
        return notes
    active = [k for k in mine if k.state == "active"]
    if not active:
        key = _add_pending(domain, keys, now, make_key, algorithm)
        notes.append(f"{domain}: new key {key.selector}; publish it (mailctl dns)")
    elif now - (active[0].activated or active[0].created) >= policy.rotate_after:
        key = _add_pending(domain, keys, now, make_key, algorithm)
        notes.append(f"{domain}: key {active[0].selector} is due; new key {key.selector}")
    return notes


def rotate(
    state: State,
    domain: str,
    now: float,
    make_key: MakeKey,
    algorithms: tuple[Algorithm, ...] = ("rsa",),
) -> list[Key]:
    """A new pending key of each algorithm now; each replaces its active one once published."""
    keys = state.domains.setdefault(domain, [])
    if any(k.state == "pending" and k.algorithm in algorithms for k in keys):
        raise Conflict(f"{domain}: a new key is already waiting for its TXT record")
    return [_add_pending(domain, keys, now, make_key, a) for a in algorithms]


def revoke(state: State, domain: str, selector: str, now: float, make_key: MakeKey) -> str:
    """Stop signing with a key at once and publish it empty; make a successor if needed."""
    keys = state.domains.get(domain, [])
    found = [i for i, k in enumerate(keys) if k.selector == selector]
    if not found:
        raise NotFound(f"{domain} has no DKIM key {selector!r}")
    i = found[0]
    key = keys[i]
    if key.state in ("revoked", "retired"):
        raise Conflict(f"{domain}: key {selector} is already {key.state}")
    keys[i] = replace(key, state="revoked", retiring_since=now)
    note = f"{domain}: key {selector} revoked; publish its empty record (mailctl dns)"
    same = [k for k in keys if k.algorithm == key.algorithm]
    if not any(k.state in ("pending", "active") for k in same):
        new = _add_pending(domain, keys, now, make_key, key.algorithm)
        note += f"; new key {new.selector} waits for its TXT record"
    return note


def signing_keys(
    state: State, layout: Layout, domains: list[str], algorithms: tuple[Algorithm, ...] = ("rsa",)
) -> tuple[SigningKey, ...]:
    return tuple(
        SigningKey(d, k.selector, str(key_file(layout, d, k.selector)), k.algorithm)
        for d in sorted(domains)
        for k in state.keys(d)
        if k.state == "active" and k.algorithm in algorithms
    )


def records(state: State, domains: list[str]) -> list[tuple[str, str, KeyState]]:
    """(name, TXT text, key state) of every key of `domains` that must be published now."""
    return [
        (f"{k.selector}._domainkey.{d}", k.record(), k.state)
        for d in sorted(domains)
        for k in state.keys(d)
        if k.state in PUBLISHED
    ]


def observe(
    domain: str, key: Key, timeout: float = 3.0, runner: proc.Runner = proc.run
) -> Observation:
    """Does every authoritative server of `domain` publish `key`, and with what TTL?

    Asked in a child process (apply.dnsquery's main): dnspython would stay in the
    resident controller for good, about 6 MB, for a question asked every few minutes
    and only while a key waits for its record."""
    name = f"{key.selector}._domainkey.{domain}"
    argv = [sys.executable, "-m", "mailctl.apply.dnsquery", domain, name, str(timeout)]
    try:
        done = runner(argv, input_text=key.public, timeout=timeout * 10 + 10)
        data = json.loads(done.stdout)
        return Observation(data["matches"], int(data["ttl"]), str(data["detail"]))
    except (CommandError, ValueError, KeyError, TypeError) as exc:
        return Observation(None, detail=f"the DNS check gave no answer ({exc.__class__.__name__})")


# --- files ----------------------------------------------------------------------------


def state_file(layout: Layout) -> Path:
    return layout.dkim / "state.json"


def key_file(layout: Layout, domain: str, selector: str) -> Path:
    return layout.dkim / "keys" / domain / f"{selector}.pem"


@contextmanager
def locked(layout: Layout) -> Iterator[State]:
    """The state, for one writer at a time (controller or CLI); saved when changed."""
    layout.dkim.mkdir(parents=True, exist_ok=True, mode=0o750)
    # Beside the watched directory, not in it: taking the lock is no change to apply.
    with open(layout.state / "dkim.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            state = load(layout)
            before = state.to_json()
            yield state
            after = state.to_json()
            if after != before:
                atomic_write(state_file(layout), after.encode(), 0o640)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(layout: Layout) -> State:
    try:
        return State.from_json(state_file(layout).read_text())
    except FileNotFoundError:
        return State()
    except (OSError, ValueError, TypeError) as exc:
        why = exc.__class__.__name__
        raise MailctlError(f"{state_file(layout)} is unreadable ({why})") from None


def repair(layout: Layout) -> str | None:
    """At start: a state file that cannot be read is set aside (kept for a human), and the
    keys start afresh; never a reason not to start. What was done, or None."""
    try:
        load(layout)
    except MailctlError as exc:
        broken = state_file(layout).with_name(f"state.broken-{int(time.time())}.json")
        state_file(layout).replace(broken)
        return f"{exc}: kept as {broken.name}; new DKIM keys will be made"
    return None


def key_maker(layout: Layout, runner: proc.Runner = proc.run) -> MakeKey:
    """RSA-2048 or Ed25519 with openssl; the private key goes to a 0600 file of opendkim."""

    def make(domain: str, selector: str, algorithm: Algorithm = "rsa") -> str:
        path = key_file(layout, domain, selector)
        for directory in (layout.dkim, layout.dkim / "keys", path.parent):
            directory.mkdir(exist_ok=True, mode=0o750)
            if layout.owners:  # opendkim walks down to its keys; nobody else may
                os.chown(directory, 0, grp.getgrnam(OPENDKIM_USER).gr_gid)
        done = runner(GENKEY[algorithm])
        atomic_write(
            path, done.stdout.encode(), 0o600, OPENDKIM_USER, OPENDKIM_USER, chown=layout.owners
        )
        pem = runner(["openssl", "pkey", "-pubout"], input_text=done.stdout).stdout
        body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
        der = base64.b64decode(body, validate=True)  # not base64 would be openssl's fault
        if algorithm == "ed25519":  # RFC 8463: p= is the bare 32-byte key, not the SPKI
            return base64.b64encode(der[-32:]).decode()
        return body

    return make


def prune_keys(state: State, layout: Layout) -> None:
    """Private keys of retired and revoked keys: deleted (their job is over)."""
    for domain, keys in state.domains.items():
        for key in keys:
            if key.state in ("retired", "revoked"):
                key_file(layout, domain, key.selector).unlink(missing_ok=True)

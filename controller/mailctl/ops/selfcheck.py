"""The DNS self-check: does the world see this server as a good sender?

Six checks, each ok, warn, fail or unknown with its reason: every mail domain's MX
points at us; the address mail leaves from has forward-confirmed reverse DNS; SPF,
evaluated for that address by pyspf (never string matching), lets it send; every
DKIM record we publish serves our key; DMARC is present and parses; the address and
the domains are on none of the configured blocklists. A lookup that gets no usable
answer (SERVFAIL, REFUSED, a timeout) makes its check unknown, never ok. A blocklist
is believed only once its RFC 5782 test entries answer as they must, and its error
codes (Spamhaus's 127.255.255.x, anything outside 127.0.0.0/8) are unknown too.

`run` is pure given a `Resolver` (the clock comes in as `now`); `DnsResolver` is the
one that asks DNS (dnspython, the system's resolver). `checks` is the operation of
`mailctl selfcheck` and GET /checks: it keeps the last result for each question in
a file on the state volume, shared by the CLI and the API, and asks DNS again only
when that result is older than `selfcheck.every`, or on a refresh at most once a
minute: blocklists answer busy askers with error codes. Readiness never calls this.

pyspf looks names up through its module-level `spf.DNSLookup`; the first SPF check
points it at a dispatcher that sends the lookups of a check to that check's resolver
(a context variable, so each thread has its own) and any other use of pyspf in the
process to pyspf's own lookup.

Side effects: DNS queries; `checks` reads the settings and the DKIM state, and reads
and writes state/selfcheck.json under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, cast

import dns.exception
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
from pydantic import ValidationError

from mailctl.apply import dkim, dnsquery
from mailctl.apply.files import atomic_write
from mailctl.errors import MailctlError
from mailctl.layout import Layout
from mailctl.ops.models import CheckName, CheckState, SelfCheck, SelfCheckReport
from mailctl.render.opendkim import signed_domains
from mailctl.settings import Settings, load_settings
from mailctl.settings.model import seconds

with warnings.catch_warnings():
    # pyspf 2.0.14 (the newest; Debian's python3-spf too) has invalid escape sequences
    # in its docstrings: compiling it warns, through no fault of ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    warnings.simplefilter("ignore", SyntaxWarning)
    import spf  # type: ignore[import-untyped]

MIN_INTERVAL = 60.0  # seconds between two runs of the same question, refresh or not
BUDGET = 20.0  # seconds for a whole run; lookups after that are not made (unknown)
WORKERS = 32  # checks run side by side: a dead resolver costs one timeout, not twenty
CACHE_FILE = "selfcheck.json"
KEEP = 8  # questions (sets of inputs) whose last result the cache file keeps

IP: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_ORDER: dict[CheckState, int] = {"ok": 0, "warn": 1, "unknown": 2, "fail": 3}

# --- the resolver seam ----------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One lookup's outcome. records: each record in presentation format, as dig shows
    it ("192.0.2.1", "10 mail.example.com.", TXT as quoted strings '"v=DKIM1; " "p=..."').
    failure: no usable answer (SERVFAIL, REFUSED, timeout, no resolver); reason says which."""

    kind: Literal["records", "nxdomain", "noanswer", "failure"]
    records: tuple[str, ...] = ()
    reason: str = ""

    @classmethod
    def found(cls, records: Sequence[str]) -> Reply:
        return cls("records", tuple(records))

    @classmethod
    def failed(cls, reason: str) -> Reply:
        return cls("failure", reason=reason)


NXDOMAIN = Reply("nxdomain")
NOANSWER = Reply("noanswer")


class Resolver(Protocol):
    def query(self, name: str, rtype: str) -> Reply:
        """name (lower case, no final dot) and rtype (upper case); never raises."""
        ...

    def describe(self) -> str:
        """Which resolver this is, for the report."""
        ...


class DnsResolver:
    """dnspython through the system's resolver (/etc/resolv.conf), or the nameservers
    given. Each server gets `timeout` seconds and a lookup `lifetime`; no cache: the
    self-check wants today's answers."""

    def __init__(
        self,
        nameservers: Sequence[str] | None = None,
        *,
        port: int = 53,
        timeout: float = 2.0,
        lifetime: float = 4.0,
    ) -> None:
        origin = "given nameservers" if nameservers else "system resolver (/etc/resolv.conf)"
        self._broken = ""
        self._where = origin
        try:
            resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.exception.DNSException as exc:
            self._broken = f"no resolver is configured in /etc/resolv.conf ({exc})"
            return
        if nameservers:
            resolver.nameservers = list(nameservers)
        resolver.port = port
        resolver.timeout = timeout
        resolver.lifetime = lifetime
        resolver.cache = None
        self._resolver = resolver
        self._where = f"{origin}: {', '.join(str(n) for n in resolver.nameservers)} port {port}"

    def describe(self) -> str:
        return self._where

    def query(self, name: str, rtype: str) -> Reply:
        if self._broken:
            return Reply.failed(self._broken)
        try:
            answer = self._resolver.resolve(name + ".", rtype, search=False)
        except dns.resolver.NXDOMAIN:
            return NXDOMAIN
        except dns.resolver.NoAnswer:
            return NOANSWER
        except dns.resolver.LifetimeTimeout:
            return Reply.failed(f"no answer within {self._resolver.lifetime:g} s")
        except dns.exception.DNSException as exc:  # NoNameservers: SERVFAIL, REFUSED, ...
            return Reply.failed(str(exc) or type(exc).__name__)
        return Reply.found([rdata.to_text() for rdata in answer])


class _Budget:
    """A resolver that stops asking once the run's time is up: a dead resolver must not
    hold a request for minutes."""

    def __init__(self, resolver: Resolver, seconds: float) -> None:
        self._resolver, self._seconds = resolver, seconds
        self._until = time.monotonic() + seconds

    def describe(self) -> str:
        return self._resolver.describe()

    def query(self, name: str, rtype: str) -> Reply:
        if time.monotonic() > self._until:
            return Reply.failed(f"not asked: the self-check's {self._seconds:g} s were used up")
        return self._resolver.query(name, rtype)


def _ask(resolver: Resolver, name: str, rtype: str) -> Reply:
    return resolver.query(_norm(name), rtype.upper())


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


def txt_strings(record: str) -> list[bytes]:
    """The character-strings of a TXT record in presentation format (ValueError if bad)."""
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, record)
    except dns.exception.DNSException as exc:
        raise ValueError(f"the TXT record {record!r} does not parse: {exc}") from exc
    return list(cast(Any, rdata).strings)


def _texts(records: Sequence[str]) -> list[str]:
    """Each TXT record's strings joined without a separator (RFC 7208 3.3, RFC 6376 3.6.2.2)."""
    return [b"".join(txt_strings(r)).decode("utf-8", "replace") for r in records]


def _addr(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


# --- the inputs and a run ----------------------------------------------------------------


@dataclass(frozen=True)
class Inputs:
    hostname: str  # our MX and HELO name
    domains: tuple[str, ...]
    address: str | None = None  # where mail leaves from; None: not known
    dkim: tuple[tuple[str, str, str], ...] = ()  # (record name, TXT text, key state)
    blocklists: tuple[str, ...] = ()  # DNSBL zones, e.g. zen.spamhaus.org
    domain_blocklists: tuple[str, ...] = ()  # domain lists, e.g. dbl.spamhaus.org

    def key(self) -> str:
        """The question these inputs ask, for the cache."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def inputs_for(settings: Settings, keys: dkim.State, address: str | None = None) -> Inputs:
    """The question the settings ask; `address` (checked) overrides selfcheck.address."""
    chosen = address.strip() if address else None
    if chosen is not None and _addr(chosen) is None:
        raise MailctlError(f"address: {chosen[:64]!r} is not an IP address")
    bind = settings.smtp.bind_address
    if chosen is None and settings.selfcheck.address is not None:
        chosen = str(settings.selfcheck.address)
    elif chosen is None and bind is not None and bind.is_global:
        chosen = str(bind)
    domains = signed_domains(settings)
    # The records `mailctl dns` asks for: those of the domains in the settings.
    published = dkim.records(keys, domains)
    return Inputs(
        hostname=_norm(settings.hostname),
        domains=tuple(domains),
        address=str(_addr(chosen)) if chosen else None,
        dkim=tuple(published),
        blocklists=tuple(settings.selfcheck.blocklists),
        domain_blocklists=tuple(settings.selfcheck.domain_blocklists),
    )


def worst(found: Sequence[SelfCheck]) -> CheckState:
    return max((c.state for c in found), key=_ORDER.__getitem__, default="ok")


def run(inputs: Inputs, resolver: Resolver, now: float, budget: float = BUDGET) -> SelfCheckReport:
    """Every check of inputs through resolver, side by side; checked_at is now."""
    asker = _Budget(resolver, budget)
    host = _norm(inputs.hostname)
    ip = _addr(inputs.address) if inputs.address else None
    no_ip = (
        "the address mail leaves from is not known: set selfcheck.address"
        if inputs.address is None
        else f"{inputs.address!r} is not an IP address"
    )
    tasks = [_one(check_mx, asker, d, host, ip) for d in inputs.domains]
    tasks.append(_one(check_fcrdns, asker, ip, host, no_ip))
    tasks += [_one(check_spf, asker, d, ip, host, no_ip) for d in inputs.domains]
    tasks += [_one(check_dkim, asker, *record) for record in inputs.dkim]
    tasks += [_one(check_dmarc, asker, d) for d in inputs.domains]
    tasks += [_one(check_ip_blocklist, asker, z, ip, no_ip) for z in inputs.blocklists]
    tasks += [
        partial(check_domain_blocklist, asker, z, inputs.domains) for z in inputs.domain_blocklists
    ]
    with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="selfcheck") as pool:
        found = [c for done in pool.map(lambda task: task(), tasks) for c in done]
    return SelfCheckReport(
        state=worst(found),
        checked_at=now,
        cached=False,
        next_run_after=now + MIN_INTERVAL,
        address=inputs.address,
        resolver=resolver.describe(),
        checks=found,
    )


def _one(check: Callable[..., SelfCheck], *args: Any) -> Callable[[], list[SelfCheck]]:
    return lambda: [check(*args)]


def _out(check: CheckName, subject: str) -> Callable[[CheckState, str], SelfCheck]:
    def out(state: CheckState, reason: str) -> SelfCheck:
        return SelfCheck(check=check, subject=subject, state=state, reason=reason)

    return out


# --- MX ------------------------------------------------------------------------------------


def check_mx(resolver: Resolver, domain: str, host: str, ip: IP | None) -> SelfCheck:
    """ok: the best MX is ours (our hostname, or a host whose address is ours)."""
    out = _out("mx", domain)
    answer = _ask(resolver, domain, "MX")
    if answer.kind == "failure":
        return out("unknown", f"the MX lookup of {domain} failed: {answer.reason}")
    if answer.kind != "records":
        why = "does not exist (NXDOMAIN)" if answer.kind == "nxdomain" else "has no MX record"
        return out("fail", f"{domain} {why}: publish MX 10 {host}.")
    exchanges: list[tuple[int, str]] = []
    for record in answer.records:
        parts = record.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return out("fail", f"the MX record {record!r} of {domain} does not parse")
        exchanges.append((int(parts[0]), _norm(parts[1])))
    exchanges.sort()
    shown = ", ".join(f"{pref} {name or '.'}" for pref, name in exchanges)
    if any(not name for _, name in exchanges):
        return out("fail", f"{domain} publishes a null MX ({shown}): it takes no mail at all")
    ours: set[str] = {name for _, name in exchanges if name == host}
    failed: list[str] = []
    if ip is not None:
        rtype = "A" if ip.version == 4 else "AAAA"
        for name in {name for _, name in exchanges} - ours:
            forward = _ask(resolver, name, rtype)
            if forward.kind == "failure":
                failed.append(f"{name}: {forward.reason}")
            elif ip in {_addr(r) for r in forward.records}:
                ours.add(name)
    if not ours:
        if failed:
            return out("unknown", f"MX of {domain} is {shown}; lookups failed: {'; '.join(failed)}")
        also = f" nor a host with the address {ip}" if ip else ""
        return out("fail", f"MX of {domain} is {shown}: not {host}{also}")
    best = exchanges[0][0]
    if not any(pref == best and name in ours for pref, name in exchanges):
        return out("warn", f"MX of {domain} is {shown}: mail goes to another server first")
    return out("ok", f"MX of {domain}: {shown}")


# --- forward-confirmed reverse DNS ------------------------------------------------------------


def check_fcrdns(resolver: Resolver, ip: IP | None, host: str, no_ip: str) -> SelfCheck:
    """ok: PTR of the address -> our hostname -> A/AAAA holding the address again."""
    out = _out("fcrdns", str(ip) if ip else "outbound address")
    if ip is None:
        return out("unknown", no_ip)
    ptr = _ask(resolver, ip.reverse_pointer, "PTR")
    if ptr.kind == "failure":
        return out("unknown", f"the PTR lookup of {ip} failed: {ptr.reason}")
    if not ptr.records:
        return out("fail", f"{ip} has no PTR record: ask its provider for PTR {ip} -> {host}")
    rtype = "A" if ip.version == 4 else "AAAA"
    confirmed: list[str] = []
    failures: list[str] = []
    others: list[str] = []
    for name in dict.fromkeys(_norm(r) for r in ptr.records):
        forward = _ask(resolver, name, rtype)
        if forward.kind == "failure":
            failures.append(f"{name}: {forward.reason}")
        elif ip in {_addr(r) for r in forward.records}:
            confirmed.append(name)
        else:
            seen = ", ".join(forward.records) or forward.kind.upper()
            others.append(f"{name} has {rtype} {seen}")
    if host in confirmed:
        return out("ok", f"{ip} -> PTR {host} -> {rtype} {ip}")
    if confirmed:
        return out(
            "warn",
            f"{ip} -> PTR {', '.join(confirmed)} confirms, but it is not our hostname {host}, "
            "the name we greet with: receivers prefer the two equal",
        )
    if failures:
        return out("unknown", f"the lookup of the PTR name failed: {'; '.join(failures)}")
    return out("fail", f"the PTR of {ip} does not lead back to it: {'; '.join(others)}")


# --- SPF, evaluated by pyspf -------------------------------------------------------------------

_SPF_STATES: dict[str, CheckState] = {
    "pass": "ok",
    "neutral": "warn",
    "softfail": "warn",
    "fail": "fail",
    "none": "fail",
    "permerror": "fail",
    "temperror": "unknown",
}
_spf_resolver: ContextVar[Resolver | None] = ContextVar("selfcheck_spf", default=None)
_spf_hook = threading.Lock()
_pyspf_lookup: list[Callable[..., Any]] = []  # pyspf's own DNSLookup, once replaced


def _spf_lookup(name: str, qtype: str, strict: object = True, timeout: object = 20) -> list[Any]:
    """pyspf's DNSLookup contract: [((name, type), value), ...]; TempError when DNS fails."""
    resolver = _spf_resolver.get()
    if resolver is None:
        return cast(list[Any], _pyspf_lookup[0](name, qtype, strict, timeout))
    answer = _ask(resolver, name, qtype)
    if answer.kind == "failure":
        raise spf.TempError(f"DNS {answer.reason}")
    try:
        return [((name, qtype), _spf_value(qtype, r)) for r in answer.records]
    except ValueError as exc:
        raise spf.TempError(f"DNS: an unreadable {qtype} record of {name}: {exc}") from exc


def _spf_value(qtype: str, record: str) -> object:
    """The shapes pyspf's own dnspython lookup gives."""
    if qtype in ("TXT", "SPF"):
        return tuple(txt_strings(record))
    if qtype == "MX":
        pref, exchange = record.split()
        return (int(pref), exchange.rstrip("."))
    if qtype == "PTR":
        return record.rstrip(".")
    return record.strip()


@contextlib.contextmanager
def _spf_through(resolver: Resolver) -> Iterator[None]:
    with _spf_hook:
        if not _pyspf_lookup:
            _pyspf_lookup.append(spf.DNSLookup)
            spf.DNSLookup = _spf_lookup
    token = _spf_resolver.set(resolver)
    try:
        yield
    finally:
        _spf_resolver.reset(token)


def check_spf(resolver: Resolver, domain: str, ip: IP | None, host: str, no_ip: str) -> SelfCheck:
    """ok: the domain's SPF policy, evaluated for the address, says pass."""
    out = _out("spf", domain)
    if ip is None:
        return out("unknown", no_ip)
    try:
        with _spf_through(resolver):
            # querytime: RFC 7208 4.6.4's 20 s for the whole evaluation
            query = spf.query(i=str(ip), s=f"postmaster@{domain}", h=host, querytime=20)
            result, _code, explanation = query.check()
    except Exception as exc:  # a pyspf bug must not take the other checks down
        return out("unknown", f"SPF evaluation for {ip} failed: {type(exc).__name__}: {exc}")
    result = str(result)
    state = _SPF_STATES.get(result, "unknown")
    if result == "pass":
        return out(state, f"SPF pass: {ip} may send mail for {domain}")
    if result == "none":
        return out(state, f"{domain} publishes no SPF record (v=spf1): receivers cannot tell")
    return out(state, f"SPF {result} for {ip} sending as {domain}: {explanation}")


# --- DKIM ----------------------------------------------------------------------------------------


def check_dkim(resolver: Resolver, name: str, text: str, key_state: str) -> SelfCheck:
    """ok: the TXT record at name serves the p= of `text`, the record we publish there."""
    out = _out("dkim", name)
    ours = dnsquery.tags(text).get("p", "")
    answer = _ask(resolver, name, "TXT")
    if answer.kind == "failure":
        return out("unknown", f"the TXT lookup of {name} failed: {answer.reason}")
    if answer.kind != "records":
        if key_state == "revoked":
            return out("ok", f"no record at {name}: the revoked key verifies nothing")
        if key_state == "pending":
            return out("warn", f"the new key is not published at {name} yet (mailctl dns)")
        return out("fail", f"no TXT record at {name}: mail signed with this key fails DKIM")
    try:
        texts = _texts(answer.records)
    except ValueError as exc:
        return out("fail", str(exc))
    if len(texts) > 1:
        return out("fail", f"{len(texts)} TXT records at {name}: verifiers may take any one")
    tags = dnsquery.tags(texts[0])
    if "v" in tags and (next(iter(tags)) != "v" or tags["v"] != "DKIM1"):
        return out("fail", f"the record at {name} has a v= other than DKIM1 first")
    if "p" not in tags:
        return out("fail", f"the record at {name} is not a DKIM key record (no p=)")
    published = tags["p"]
    if published == ours:
        if not ours:
            return out("ok", f"the key at {name} is revoked (empty p=), as it should be")
        if "y" in tags.get("t", "").split(":"):
            return out("warn", f"the key at {name} is ours, but t=y: verifiers treat it as a test")
        return out("ok", f"the key at {name} matches ours")
    if not ours:
        return out("fail", f"{name} still serves a key we revoked: publish it empty (p=)")
    if not published:
        return out("fail", f"{name} serves an empty (revoked) key, not ours")
    return out("fail", f"the key at {name} (...{published[-12:]}) is not ours (...{ours[-12:]})")


# --- DMARC ---------------------------------------------------------------------------------------

_TAG = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_DMARC_START = re.compile(r"\s*v\s*=\s*DMARC1\s*(;|\Z)")
_POLICIES = ("none", "quarantine", "reject")


def parse_tags(text: str) -> dict[str, str]:
    """A tag=value list (RFC 7489 6.4), strictly: ValueError when malformed."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue  # a final ";" is allowed
        tag, sep, value = part.partition("=")
        tag = tag.strip()
        if not sep or not _TAG.match(tag):
            raise ValueError(f"{part.strip()!r} is not tag=value")
        if tag in tags:
            raise ValueError(f"the tag {tag} appears twice")
        tags[tag] = value.strip()
    return tags


def check_dmarc(resolver: Resolver, domain: str) -> SelfCheck:
    """ok: one record at _dmarc.<domain>, v=DMARC1 first, a valid p= other than none."""
    name = f"_dmarc.{domain}"
    out = _out("dmarc", domain)
    answer = _ask(resolver, name, "TXT")
    if answer.kind == "failure":
        return out("unknown", f"the TXT lookup of {name} failed: {answer.reason}")
    if answer.kind != "records":
        return out("fail", f"no DMARC record at {name}")
    try:
        texts = [t for t in _texts(answer.records) if _DMARC_START.match(t)]
    except ValueError as exc:
        return out("fail", str(exc))
    if not texts:
        return out("fail", f"no TXT record at {name} starts with v=DMARC1")
    if len(texts) > 1:
        return out("fail", f"{len(texts)} DMARC records at {name}: receivers ignore them all")
    try:
        tags = parse_tags(texts[0])
    except ValueError as exc:
        return out("fail", f"the DMARC record at {name} does not parse: {exc}")
    if "p" not in tags:
        return out("fail", f"the DMARC record at {name} has no p= (policy)")
    for tag in ("p", "sp"):
        if tag in tags and tags[tag].lower() not in _POLICIES:
            return out("fail", f"{tag}={tags[tag]} at {name} is not none, quarantine or reject")
    pct = tags.get("pct", "100")
    if not pct.isdigit() or int(pct) > 100:
        return out("fail", f"pct={pct} at {name} is not a number from 0 to 100")
    policy = tags["p"].lower()
    if policy == "none":
        return out("warn", f"p=none at {name}: monitoring only, receivers act on nothing")
    return out("ok", f"DMARC p={policy} at {name}")


# --- blocklists ----------------------------------------------------------------------------------

# Answers about the query, never about the address (spamhaus.org news article 788;
# .252 from third-party tables; 127.0.1.255 is the DBL's answer to an IP address).
_ERROR_CODES = {
    "127.0.1.255": "the list was asked about an IP address, which it does not list",
    "127.255.255.252": "a typing error in the blocklist's name",
    "127.255.255.254": "asked through a public or open resolver, which Spamhaus refuses: "
    "use a local recursive resolver or a DQS key",
    "127.255.255.255": "too many queries: rate-limited; use a DQS key",
}
_SPAMHAUS = {
    "127.0.0.2": "SBL",
    "127.0.0.3": "SBL CSS",
    "127.0.0.4": "XBL",
    "127.0.0.5": "XBL",
    "127.0.0.6": "XBL",
    "127.0.0.7": "XBL",
    "127.0.0.9": "SBL DROP",
    "127.0.0.10": "PBL (ISP)",
    "127.0.0.11": "PBL (Spamhaus)",
    "127.0.1.2": "DBL spam domain",
    "127.0.1.4": "DBL phish domain",
    "127.0.1.5": "DBL malware domain",
    "127.0.1.6": "DBL botnet C&C domain",
}
_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_ERRORS = ipaddress.ip_network("127.255.255.0/24")

Verdict: TypeAlias = Literal["listed", "clear", "error", "failed"]


def classify(record: str, zone: str) -> tuple[Literal["listed", "error"], str]:
    """One A record a blocklist answered: a listing (its code) or an error (its meaning)."""
    addr = _addr(record)
    if addr is None or addr.version != 4:
        return "error", f"the answer {record} is not an IPv4 address"
    if addr not in _LOOPBACK:
        return "error", (
            f"the answer {addr} is outside 127.0.0.0/8, so no blocklist answer"
            " (does the resolver rewrite NXDOMAIN?)"
        )
    if addr in _ERRORS or str(addr) in _ERROR_CODES:
        return "error", f"error code {addr}: {_ERROR_CODES.get(str(addr), 'not a listing')}"
    if str(addr) in ("127.0.0.0", "127.0.0.1"):
        return "error", f"the answer {addr} is not a listing code (RFC 5782)"
    named = _SPAMHAUS.get(str(addr)) if "spamhaus" in zone else None
    return "listed", f"{addr} ({named})" if named else str(addr)


def _listing(answer: Reply, zone: str) -> tuple[Verdict, str]:
    if answer.kind == "failure":
        return "failed", answer.reason
    if answer.kind != "records":
        return "clear", answer.kind.upper()
    verdicts = [classify(r, zone) for r in answer.records]
    errors = [why for kind, why in verdicts if kind == "error"]
    if errors or not verdicts:
        return "error", "; ".join(errors) or "an empty answer"
    return "listed", ", ".join(why for _, why in verdicts)


def _distrust(resolver: Resolver, zone: str, listed: str, unlisted: str) -> str:
    """Why the zone's RFC 5782 test entries say not to believe it; "" if they say it works.
    listed must be listed there, unlisted must not (e.g. 127.0.0.2 and 127.0.0.1)."""
    rule = f"{listed} must be listed and {unlisted} must not"
    for entry, want in ((listed, "listed"), (unlisted, "clear")):
        query = ".".join(reversed(entry.split("."))) if entry[0].isdigit() else entry.lower()
        kind, why = _listing(_ask(resolver, f"{query}.{zone}", "A"), zone)
        if kind == "failed":
            return f"the RFC 5782 test entry {entry} of {zone} could not be looked up: {why}"
        if kind != want:
            said = {"listed": f"listed ({why})", "clear": f"not listed ({why})"}.get(kind, why)
            return f"{zone} does not answer as RFC 5782 says ({rule}): {entry} is {said}"
    return ""


def _on_list(resolver: Resolver, zone: str, subject: str, query: str, distrust: str) -> SelfCheck:
    out = _out("blocklist", f"{subject} on {zone}")
    if distrust:
        return out("unknown", distrust)
    kind, why = _listing(_ask(resolver, f"{query}.{zone}", "A"), zone)
    if kind == "clear":
        return out("ok", f"{subject} is not listed on {zone}")
    if kind == "listed":
        return out("fail", f"{subject} is listed on {zone}: {why}")
    if kind == "failed":
        return out("unknown", f"the lookup of {subject} on {zone} failed: {why}")
    return out("unknown", f"{zone} gave no verdict on {subject}: {why}")


def check_ip_blocklist(resolver: Resolver, zone: str, ip: IP | None, no_ip: str) -> SelfCheck:
    zone = _norm(zone)
    if ip is None:
        return _on_list(resolver, zone, "outbound address", "", no_ip)
    # The test entries are IPv4 ones for IPv6 lists too: they show the zone answers.
    distrust = _distrust(resolver, zone, "127.0.0.2", "127.0.0.1")
    reverse = ip.reverse_pointer.rsplit(".", 2)[0]  # without in-addr.arpa / ip6.arpa
    return _on_list(resolver, zone, str(ip), reverse, distrust)


def check_domain_blocklist(
    resolver: Resolver, zone: str, domains: Sequence[str]
) -> list[SelfCheck]:
    zone = _norm(zone)
    distrust = _distrust(resolver, zone, "TEST", "INVALID")
    return [_on_list(resolver, zone, _norm(d), _norm(d), distrust) for d in domains]


# --- the cache, and the operation ------------------------------------------------------------


class Cache:
    """The last report of each question (up to KEEP of them) in one JSON file, shared by
    the CLI and the API. A run holds the file's lock, so callers asking at once wait for
    one run and get its result. A cache file that does not parse is no cache."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_suffix(".lock"), "a")
        except OSError as exc:
            raise MailctlError(f"cannot lock {self.path} ({exc.__class__.__name__})") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, SelfCheckReport]:
        try:
            data = json.loads(self.path.read_text())
            return {k: SelfCheckReport.model_validate(v) for k, v in data["reports"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError, ValidationError):
            return {}

    def _write(self, reports: dict[str, SelfCheckReport]) -> None:
        newest = sorted(reports.items(), key=lambda kv: kv[1].checked_at, reverse=True)[:KEEP]
        data = {"version": 1, "reports": {k: r.model_dump() for k, r in newest}}
        try:
            atomic_write(self.path, json.dumps(data, indent=1).encode(), mode=0o640)
        except OSError as exc:
            raise MailctlError(f"cannot write {self.path} ({exc.__class__.__name__})") from None

    def get(
        self,
        inputs: Inputs,
        resolver: Callable[[], Resolver],
        *,
        max_age: float,
        refresh: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> SelfCheckReport:
        """The last report for inputs if it is younger than max_age (or than MIN_INTERVAL
        on a refresh); else a new run's, which is then kept."""
        key = inputs.key()
        with self._locked():
            now = clock()
            reports = self._read()
            last = reports.get(key)
            if last is not None:
                age = now - last.checked_at
                if 0 <= age < (MIN_INTERVAL if refresh else max(max_age, MIN_INTERVAL)):
                    return last.model_copy(update={"cached": True})
            report = run(inputs, resolver(), now)
            reports[key] = report
            self._write(reports)
            return report


def checks(
    layout: Layout,
    *,
    address: str | None = None,
    refresh: bool = False,
    resolver: Callable[[], Resolver] | None = None,
    clock: Callable[[], float] = time.time,
) -> SelfCheckReport:
    """The self-check for the live settings and DKIM keys (`mailctl selfcheck`, GET /checks);
    resolver: what makes the resolver of a run (DnsResolver)."""
    settings = load_settings(layout.settings_file)
    keys = dkim.load(layout) if settings.dkim.enabled else dkim.State()
    question = inputs_for(settings, keys, address)
    cache = Cache(layout.state / CACHE_FILE)
    max_age = float(seconds(settings.selfcheck.every))
    make = resolver or DnsResolver
    return cache.get(question, make, max_age=max_age, refresh=refresh, clock=clock)


def text(report: SelfCheckReport) -> str:
    """The report for a terminal: one line a check, then when and through what."""
    width = max((len(c.subject) for c in report.checks), default=0)
    lines = [f"{c.state:<8} {c.check:<9} {c.subject:<{width}}  {c.reason}" for c in report.checks]
    counts = ", ".join(
        f"{sum(c.state == s for c in report.checks)} {s}" for s in ("ok", "warn", "fail", "unknown")
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report.checked_at))
    again = " (an earlier result; --refresh asks again)" if report.cached else ""
    lines.append(f"{report.state}: {counts}; checked {when}{again} via {report.resolver}")
    return "\n".join(lines) + "\n"

"""Postfix lookup tables from the settings (FEATURES P2, P5-P8, P12). Pure.

Each table is (path in the revision, type, text). hash/lmdb tables are compiled
by postmap (aliases by postalias); cidr, pcre and regexp tables are read as
text by Postfix.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailctl.render import edge, postscreen, spf
from mailctl.render import quoting as q
from mailctl.render.bundle import HEADER
from mailctl.render.facts import Facts, own_helo
from mailctl.settings import Settings

# The guide's sender_mx_blocked: senders whose MX sits in such a network are refused.
BOGON_MX = (
    ("0.0.0.0/8", "IP address of MX host is a bogus address RFC5735"),
    ("127.0.0.0/8", "IP address of MX host is a loopback address RFC1700"),
    ("224.0.0.0/4", "IP address of MX host is a multicast address RFC1112"),
    ("255.0.0.0/8", "IP address of MX host is a bogus address"),
    ("10.0.0.0/8", "IP address of MX host is a IANA reserved address RFC1918"),
    ("172.16.0.0/12", "IP address of MX host is a IANA reserved address RFC1918"),
    ("192.168.0.0/16", "IP address of MX host is a IANA reserved address RFC1918"),
    ("169.254.0.0/16", "IP address of MX host is a IANA reserved APIPA address RFC3927"),
    ("240.0.0.0/4", "IP address of MX host is a IANA reserved address RFC1112"),
    ("192.0.2.0/24", "IP address of MX host is a IANA reserved address RFC5737"),
    ("198.51.100.0/24", "IP address of MX host is a IANA reserved address RFC5737"),
    ("203.0.113.0/24", "IP address of MX host is a IANA reserved address RFC5737"),
    ("192.88.99.0/24", "IP address of MX host is a IANA reserved 6to4 anycast address RFC3068"),
    ("198.18.0.0/15", "IP address of MX host is a IANA reserved testing network address RFC2544"),
    ("255.255.255.255/32", "MX in RFC 5735 limited broadcast destination address"),
)


@dataclass(frozen=True)
class Table:
    name: str  # file name under postfix/
    kind: str  # hash | cidr
    text: str

    @property
    def path(self) -> str:
        return f"postfix/{self.name}"

    @property
    def ref(self) -> str:
        return f"{self.kind}:${{config_directory}}/{self.name}"


def _table(name: str, kind: str, entries: dict[str, str], setting: str) -> Table:
    lines = [q.map_line(k, v, f"{setting}.{k}") + "\n" for k, v in sorted(entries.items())]
    return Table(name, kind, HEADER + "".join(lines))


def _is_network(key: str) -> bool:
    try:
        ipaddress.ip_network(key, strict=False)
    except ValueError:
        return False
    return True


def aliases(settings: Settings) -> Table:
    entries = {"postmaster": "root", "mailer-daemon": "postmaster", "abuse": "postmaster"}
    entries.update({k: ", ".join(v) for k, v in settings.maps.local_aliases.items()})
    lines = []
    for name, value in sorted(entries.items()):
        q.map_value(value, f"maps.local_aliases.{name}")
        lines.append(f"{q.map_key(name, 'maps.local_aliases')}:\t{value}\n")
    return Table("aliases", settings.maps.table_type, HEADER + "".join(lines))


STAGES = ("client", "helo", "sender", "recipient")
PATTERN_TYPES = ("pcre", "regexp")


def pattern_tables(settings: Settings) -> list[Table]:
    """access.patterns as <stage>_access.pcre / .regexp tables (only those with lines)."""
    out = []
    for stage in STAGES:
        for kind in PATTERN_TYPES:
            lines = [
                q.pattern_line(p.pattern, _action(settings, p.action), f"access.patterns.{i}")
                for i, p in enumerate(settings.access.patterns)
                if p.stage == stage and p.type == kind
            ]
            if lines:
                out.append(
                    Table(
                        f"{stage}_access.{kind}",
                        kind,
                        HEADER + "".join(line + "\n" for line in lines),
                    )
                )
    return out


# The setting each generated Postfix table is made from, by file name under postfix/,
# so that a refusal by Postfix's own checker (postmap, the pcre/regexp probe) can name
# what the user wrote instead of a generated file.
_SETTING_OF = {
    "aliases": "maps.local_aliases",
    "milter_header_checks.pcre": "dmarc.policy",
    "canonical": "maps.canonical",
    "sender_canonical": "maps.sender_canonical",
    "recipient_canonical": "maps.recipient_canonical",
    "relocated": "maps.relocated",
    "transport": "maps.transports",
    "sender_login": "maps.sender_logins",
    "client_access.cidr": "access.clients",
    "client_access": "access.clients",
    "helo_access": "access.helo",
    "sender_access": "access.senders",
    "recipient_access": "access.recipients",
    "rbl_whitelist.cidr": "rbl.whitelist",
    "rbl_whitelist": "rbl.whitelist",
    "sender_relay": "relay.senders",
    "sender_mx_bogons.cidr": "access.sender_mx_bogons",
    # Made from rbl.whitelist and access.clients; a network there is checked already.
    "postscreen_access.cidr": "rbl.whitelist",
    "edges.cidr": "edges",
    # Which milters trusted clients meet (render.postfix.trusted_milters)
    "trusted_milters.cidr": "networks",
    **{f"{stage}_access.{kind}": "access.patterns" for stage in STAGES for kind in PATTERN_TYPES},
    # Written by render.postfix: the alias map, the mailbox list, the relay logins.
    "virtual": "aliases",
    "vmailbox": "users",
    "relay_passwords": "relay",
}
_COMPILED = (".db", ".lmdb")


def setting_of(rel_path: str) -> str | None:
    """The setting a generated Postfix table comes from, by its path in the revision:
    'postfix/helo_access.pcre' -> 'access.patterns'. A compiled table (.db, .lmdb)
    counts as its source. None for a file made from many settings (main.cf) or from
    none. Pure data: the validation layer uses it to name the setting in a refusal."""
    if not rel_path.startswith("postfix/"):
        return None
    name = rel_path.removeprefix("postfix/")
    for suffix in _COMPILED:
        if name not in _SETTING_OF:
            name = name.removesuffix(suffix)
    return _SETTING_OF.get(name)


def class_param(name: str) -> str:
    """The main.cf parameter of restriction class `name`. A prefix no Postfix parameter
    has: a class named smtpd_relay_restrictions must not replace the relay guard."""
    return f"mailctl_class_{name}"


def _action(settings: Settings, action: str) -> str:
    """An access-map value, a restriction-class name as its parameter name."""
    return class_param(action) if action in settings.restrictions.classes else action


def _actions(settings: Settings, table: dict[str, str]) -> dict[str, str]:
    return {k: _action(settings, v) for k, v in table.items()}


def tables(settings: Settings, facts: Facts | None = None) -> dict[str, Table]:
    """Every lookup table. `facts` only adds entries (our own addresses as HELO), never
    a table, so main.cf's lists do not depend on them."""
    m, a = settings.maps, settings.access
    db = m.table_type
    clients = _actions(settings, a.clients)
    clients_cidr = {k: v for k, v in clients.items() if _is_network(k)}
    clients_host = {k: v for k, v in clients.items() if not _is_network(k)}
    helo = {**own_helo(settings, facts or Facts()), **_actions(settings, a.helo)}
    if a.reject_own_helo:
        helo.setdefault(settings.hostname, "REJECT do not use my hostname as HELO")
    owners: dict[str, list[str]] = {u.address: [u.address] for u in settings.users}
    for address, users in m.sender_logins.items():
        owners[address] = list(dict.fromkeys([*owners.get(address, []), *users]))
    logins = {address: ", ".join(users) for address, users in owners.items()}
    out = [
        aliases(settings),
        _table("canonical", db, dict(m.canonical), "maps.canonical"),
        _table("sender_canonical", db, dict(m.sender_canonical), "maps.sender_canonical"),
        _table("recipient_canonical", db, dict(m.recipient_canonical), "maps.recipient_canonical"),
        _table("relocated", db, dict(m.relocated), "maps.relocated"),
        _table("transport", db, dict(m.transports), "maps.transports"),
        _table("sender_login", db, logins, "maps.sender_logins"),
        _table("client_access.cidr", "cidr", clients_cidr, "access.clients"),
        _table("client_access", db, clients_host, "access.clients"),
        _table("helo_access", db, helo, "access.helo"),
        _table("sender_access", db, _actions(settings, a.senders), "access.senders"),
        _table("recipient_access", db, _actions(settings, a.recipients), "access.recipients"),
        _table(
            "rbl_whitelist.cidr",
            "cidr",
            {k: "OK" for k in settings.rbl.whitelist if _is_network(k)},
            "rbl.whitelist",
        ),
        _table(
            "rbl_whitelist",
            db,
            {k: "OK" for k in settings.rbl.whitelist if not _is_network(k)},
            "rbl.whitelist",
        ),
        _table(
            "sender_relay",
            db,
            {k: v.host for k, v in settings.relay.senders.items()},
            "relay.senders",
        ),
        *pattern_tables(settings),
        Table(
            "sender_mx_bogons.cidr",
            "cidr",
            HEADER + "".join(f"{net}\tREJECT {text}\n" for net, text in BOGON_MX),
        ),
    ]
    return {t.name: t for t in out}


POLICY = "inet:127.0.0.1:10023"

DEFAULTS: dict[str, dict[str, list[str]]] = {
    "basic": {
        "client": ["check_client_access", "rbl"],
        "helo": ["check_helo_access"],
        "sender": [
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "check_sender_access",
            "check_sender_mx_access",
        ],
        "recipient": [
            "check_recipient_access",
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "reject_unauth_destination",
            "reject_unlisted_recipient",
            "spf",
            "greylist",
        ],
        "data": [],
    },
    # The guide's "Mailserver im INet" example, with trusted clients let through first.
    "internet": {
        "client": ["check_client_access", "rbl"],
        "helo": [
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "check_helo_access",
            "reject_non_fqdn_helo_hostname",
            "reject_invalid_helo_hostname",
            "reject_unknown_helo_hostname",
        ],
        "sender": [
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "check_sender_access",
            "check_sender_mx_access",
            "reject_non_fqdn_sender",
            "reject_unknown_sender_domain",
        ],
        "recipient": [
            "check_recipient_access",
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "reject_unauth_destination",
            "reject_non_fqdn_recipient",
            "reject_unknown_recipient_domain",
            "reject_unlisted_recipient",
            "spf",
            "greylist",
        ],
        "data": [],
    },
}


def _pattern_checks(t: dict[str, Table], stage: str) -> list[str]:
    return [
        f"check_{stage}_access {t[name].ref}"
        for name in (f"{stage}_access.{kind}" for kind in PATTERN_TYPES)
        if name in t
    ]


def expand(settings: Settings, t: dict[str, Table], tok: str) -> list[str]:
    """One settings token -> the main.cf restrictions it stands for."""
    match tok:
        case "check_client_access":
            return [
                f"check_client_access {t['client_access.cidr'].ref}",
                f"check_client_access {t['client_access'].ref}",
                *_pattern_checks(t, "client"),
            ]
        case "check_helo_access" | "check_sender_access" | "check_recipient_access":
            stage = tok.removeprefix("check_").removesuffix("_access")
            return [f"{tok} {t[tok.removeprefix('check_')].ref}", *_pattern_checks(t, stage)]
        case "check_sender_mx_access":
            bogons = settings.access.sender_mx_bogons
            return [f"check_sender_mx_access {t['sender_mx_bogons.cidr'].ref}"] if bogons else []
        case "greylist":
            return [f"check_policy_service {POLICY}"] if settings.greylisting.enabled else []
        case "spf":
            return [spf.CHECK] if settings.spf.enabled else []
        case "rbl":
            if not settings.rbl.lists or postscreen.dnsbl(settings):
                return []
            return [
                f"check_client_access {t['rbl_whitelist.cidr'].ref}",
                f"check_client_access {t['rbl_whitelist'].ref}",
                *(f"reject_rbl_client {zone}" for zone in settings.rbl.lists),
            ]
    if tok in settings.restrictions.classes:
        return [class_param(tok)]
    return [tok]


def restriction_lists(settings: Settings) -> dict[str, list[str]]:
    """Each SMTP stage's main.cf list: the preset's, or the settings' own."""
    t = tables(settings)
    r = settings.restrictions
    out = {}
    for stage, default in DEFAULTS[r.preset].items():
        chosen = getattr(r, stage)
        tokens = default if chosen is None else chosen
        out[stage] = [x for tok in tokens for x in expand(settings, t, tok)]
    rcpt = out["recipient"]
    if edge.verifies(settings) and "reject_unverified_recipient" not in rcpt:
        # an edge asks the mailbox node about each recipient
        at = (
            rcpt.index("reject_unauth_destination") + 1
            if "reject_unauth_destination" in rcpt
            else len(rcpt)
        )
        rcpt.insert(at, "reject_unverified_recipient")
    # Smuggling/pipelining guard first, whatever the data list says (SECURITY.md).
    out["data"] = [
        "reject_unauth_pipelining",
        *[x for x in out["data"] if x != "reject_unauth_pipelining"],
    ]
    out["classes"] = [class_param(name) for name in r.classes]
    for name, tokens in r.classes.items():
        out[f"class:{class_param(name)}"] = [x for tok in tokens for x in expand(settings, t, tok)]
    return out

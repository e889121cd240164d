"""Small builders and daemon-file parsers shared by the unit tests. Pure."""

from __future__ import annotations

import itertools
import re
from typing import Any

from mailctl.render import Secrets
from mailctl.render.postfix import master_cf, relay_logins
from mailctl.settings import Settings
from mailctl.settings.loader import build_settings

# A crypt(3) hash of the shape names.crypt_hash accepts (not a real password's).
HASH = "$6$unitsalt$" + "Ab1./" * 17 + "x"
CERT = b"-----BEGIN CERTIFICATE-----\nTUlJ\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nTUlJ\n-----END PRIVATE KEY-----\n"


def base_data(**extra: Any) -> dict[str, Any]:
    """A small valid settings mapping: one domain, two users, one alias."""
    data: dict[str, Any] = {
        "hostname": "mail.example.com",
        "domains": ["example.com"],
        "users": [
            {"address": "alice@example.com", "password_hash": HASH},
            {"address": "bob@example.com", "password_hash": HASH, "quota_mb": 100},
        ],
        "aliases": {"postmaster@example.com": "alice@example.com"},
    }
    data.update(extra)
    return data


def settings(**extra: Any) -> Settings:
    return build_settings(base_data(**extra))


def full_data() -> dict[str, Any]:
    """A valid settings mapping that sets every field of the model (checked by
    test_settings_hostile), each string in its own place, so a sweep can change each."""
    return base_data(
        domain="example.com",
        alias_domains=["alias.example"],
        local_domains=["local.example"],
        relay_domains=["relay.example"],
        networks=["192.0.2.0/24"],
        users=[
            {"address": "alice@example.com", "password_hash": HASH, "quota_mb": 5},
            {"address": "bob@example.com", "password_file": "/run/secrets/bob"},
        ],
        aliases={
            "postmaster@example.com": "alice@example.com",
            "@alias.example": ["bob@example.com", "alice@example.com"],
        },
        maps={
            "local_aliases": {"root": ["alice@example.com", "/var/log/x", ":include:/etc/y"]},
            "canonical": {"old@example.com": "alice@example.com"},
            "sender_canonical": {"@old.example": "alice@example.com"},
            "recipient_canonical": {"x@example.com": "bob@example.com"},
            "relocated": {"gone@example.com": "alice@example.com"},
            "transports": {
                "example.net": "smtp:[relay.example.net]:25",
                "a@example.org": "error:5.1.1 gone",
            },
            "sender_login": True,
            "sender_logins": {"shared@example.com": ["alice@example.com"]},
            "table_type": "hash",
        },
        access={
            "clients": {"192.0.2.1": "REJECT no", "bad.example": "OK"},
            "helo": {"evil.example": "REJECT"},
            "senders": {"spam@example.org": "REJECT spam", "example.org": "myclass"},
            "recipients": {"alice@example.com": "DUNNO"},
            "reject_own_helo": True,
            "patterns": [
                {"stage": "helo", "type": "pcre", "pattern": "^x", "action": "REJECT x"},
                {"stage": "sender", "type": "regexp", "pattern": "^y", "action": "OK"},
            ],
            "sender_mx_bogons": True,
        },
        restrictions={
            "preset": "internet",
            "client": ["permit_mynetworks", "reject_rbl_client zen.example"],
            "helo": ["check_helo_access"],
            "sender": ["check_sender_access"],
            "recipient": ["permit_mynetworks", "reject_unauth_destination", "myclass"],
            "data": ["reject_unauth_pipelining"],
            "classes": {"myclass": ["reject"]},
        },
        rbl={"lists": ["zen.example"], "whitelist": ["192.0.2.9", "ok.example"]},
        postscreen={
            "enabled": True,
            "greet_wait": 3,
            "protocol_tests": True,
            "dnsbl_threshold": 2,
            "dnsbl_weights": {"zen.example": 2},
        },
        proxy_protocol={"smtp": True, "submission": True},
        role="mailbox",
        edge={
            "mailbox_host": "mailbox.internal",
            "mailbox_port": 10026,
            "tls": "encrypt",
            "username": "edge@example.com",
            "password_file": "/run/secrets/edge",
            "recipients": "settings",
            "drain_timeout": 15,
        },
        edges=["198.51.100.0/28"],
        smtp={
            "banner": "ESMTP hi",
            "message_size_limit": 10_000_000,
            "recipient_limit": 100,
            "disable_vrfy": True,
            "delay_reject": True,
            "inet_protocols": "ipv4",
            "masquerade_domains": ["example.com"],
            "inet_interfaces": ["all"],
            "bind_address": "192.0.2.5",
            "bind_address6": "2001:db8::5",
            "verbose": ["smtp"],
            "tls_level": "may",
            "outbound_tls": "encrypt",
            "tls_loglevel": 1,
            "dialup": False,
        },
        sasl={
            "mechanism": "ldap",
            "pwcheck_method": "saslauthd",
            "rimap_server": "imap.example.net:143",
            "ldap": {
                "servers": ["ldap://ldap.example.com/"],
                "search_base": "dc=example,dc=com",
                "filter": "(mail=%u)",
                "bind_dn": "cn=mail,dc=example,dc=com",
                "bind_password_file": "/run/secrets/ldap",
                "start_tls": True,
            },
            "mech_list": ["plain", "login"],
            "noplaintext": True,
            "broken_clients": False,
            "local_domain": "example.com",
            "on_port_25": False,
        },
        relay={
            "host": "[smtp.example.net]:587",
            "username": "me",
            "password_file": "/run/secrets/relay",
            "senders": {
                "@example.com": {
                    "host": "[smtp2.example.net]:587",
                    "username": "u2",
                    "password_file": "/run/secrets/r2",
                }
            },
        },
        greylisting={
            "enabled": True,
            "delay": 60,
            "whitelist_clients": ["ok.example", "192.0.2.0/24"],
            "whitelist_recipients": ["@example.com"],
        },
        dkim={
            "enabled": True,
            "rotate_after": "90d",
            "retire_after": "8d",
            "dns_check_every": "10m",
            "ed25519": True,
        },
        spf={"enabled": True, "fail": "mark"},
        srs={"enabled": False},
        dmarc={
            "enabled": True,
            "policy": "quarantine",
        },  # full_data has sender_canonical, which SRS refuses
        cyrus={
            "admins": ["alice@example.com"],
            "quota_warn": 80,
            "allow_plaintext": False,
            "timeout": 30,
            "pop_timeout": 10,
            "over_quota_perm_failure": False,
            "pop3": True,
        },
        fetchmail={
            "interval": 60,
            "accounts": [
                {
                    "server": "pop.example.net",
                    "protocol": "pop3",
                    "port": 995,
                    "user": "me",
                    "password_file": "/run/secrets/pop",
                    "deliver_to": "alice@example.com",
                    "ssl": True,
                    "verify_certificate": True,
                    "keep": False,
                }
            ],
        },
        tls={"cert_file": "/certs/cert.pem", "key_file": "/certs/key.pem"},
        selfcheck={
            "address": "198.51.100.25",
            "blocklists": ["bl.example"],
            "domain_blocklists": ["dbl.example"],
            "every": "30m",
        },
    )


def secrets_for(s: Settings, fetchmail_password: str = "pop-secret") -> Secrets:
    """What reading the secret files of `s` would give: a password for every login."""
    return Secrets(
        user_hashes={u.address: HASH for u in s.users},
        tls_cert=CERT,
        tls_key=KEY,
        fetchmail_passwords={i: fetchmail_password for i in range(len(s.fetchmail.accounts))},
        ldap_bind_password="bind-secret" if s.sasl.ldap.bind_dn else "",
        relay_passwords={key: "relay-secret" for key in relay_logins(s)},
    )


# --- Postfix main.cf / master.cf (readllines(3) and mail_conf semantics) ------------

_WS = " \t\r\v\f"


def postfix_logical_lines(text: str) -> list[str]:
    """Logical lines as Postfix's readllines() builds them.

    Lines whose first non-blank character is `#`, and blank lines, are dropped
    even inside a multi-line entry; a line starting with a blank continues the
    previous logical line (the newline is dropped, the blanks kept).
    """
    out: list[str] = []
    for raw in text.split("\n"):
        body = raw.lstrip(_WS)
        if not body or body.startswith("#"):
            continue
        if raw[0] in _WS:
            assert out, f"continuation line without a preceding entry: {raw!r}"
            out[-1] += raw
        else:
            out.append(raw)
    return out


def parse_main_cf(text: str) -> list[tuple[str, str]]:
    """Every `name = value` definition of a main.cf, in file order (last one wins)."""
    assert "\x00" not in text, "Postfix ignores text after a NUL"
    defs = []
    for line in postfix_logical_lines(text):
        name, eq, value = line.partition("=")
        assert eq, f"not a parameter definition: {line!r}"
        name = name.strip(_WS)
        assert name and not any(c in name for c in _WS), f"bad parameter name {name!r}"
        defs.append((name, value.strip(_WS)))
    return defs


def main_cf_params(text: str) -> dict[str, str]:
    """The parameters Postfix would use: the last definition of each name wins."""
    return dict(parse_main_cf(text))


def postfix_literal(value: str) -> str:
    """The text of a main.cf value with `$$` made `$`; any other `$` would expand."""
    out = []
    i = 0
    while i < len(value):
        if value[i] == "$":
            assert value[i + 1 : i + 2] == "$", f"{value!r} expands a parameter at {i}"
            out.append("$")
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def postfix_list(value: str) -> list[str]:
    """A main.cf list: elements separated by commas and/or blanks."""
    return [x for x in re.split(r"[,\s]+", value) if x]


def master_cf_services(text: str) -> dict[str, list[str]]:
    """service name -> its argv tokens (after the 7 fixed columns)."""
    out = {}
    for line in postfix_logical_lines(text):
        fields = line.split()
        out[fields[0]] = fields[7:]
    return out


def master_rows(s: Settings) -> dict[tuple[str, str], list[str]]:
    """(service, type) -> argv of the master.cf that `s` renders (smtp inet and smtp unix
    apart, as master_cf_services cannot keep them)."""
    out = {}
    for line in postfix_logical_lines(master_cf(s)):
        fields = line.split()
        out[(fields[0], fields[1])] = fields[7:]
    return out


def master_options(argv: list[str]) -> dict[str, str]:
    opts = {}
    for flag, arg in itertools.pairwise(argv):
        if flag == "-o":
            name, _, value = arg.partition("=")
            opts[name] = value
    return opts


# --- Postfix lookup tables (postmap input) ------------------------------------------


def parse_table(text: str) -> list[tuple[str, str]]:
    """(key, value) of each entry, as postmap reads a source file: the key ends at
    the first blank, the value is the rest with edge blanks trimmed."""
    entries = []
    for line in postfix_logical_lines(text):
        key, *rest = re.split(r"[ \t\r\v\f]+", line, maxsplit=1)
        entries.append((key, rest[0].strip(_WS) if rest else ""))
    return entries


# --- fetchmailrc (fetchmail's rcfile_l.l) -------------------------------------------

_HEX = "0123456789abcdefABCDEF"


def fetchmail_unescape(raw: bytes) -> bytes:
    """fetchmail's escapes(): \\xHH (at most two digits), \\ddd, C escapes; stops at NUL."""
    out = bytearray()
    i = 0
    while i < len(raw) and raw[i] != 0:
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw) and chr(raw[i + 1]) in "0123456789xX":
            i += 1
            val = 0
            if chr(raw[i]) in "xX":
                i += 1
                n = 0
                while i < len(raw) and n < 2 and chr(raw[i]) in _HEX:
                    val = val * 16 + int(chr(raw[i]), 16)
                    i += 1
                    n += 1
            else:
                base, digits = (8, "01234567") if raw[i] == 0x30 else (10, "0123456789")
                n = 0
                while i < len(raw) and n < 3 and chr(raw[i]) in digits:
                    val = val * base + int(chr(raw[i]))
                    i += 1
                    n += 1
            out.append(val & 0xFF)
        elif c == 0x5C:
            i += 1
            if i >= len(raw):
                break
            nxt = chr(raw[i])
            if nxt == "\n":
                i += 1
                continue
            out.append(ord({"\\": "\\", "n": "\n", "t": "\t", "b": "\b", "r": "\r"}.get(nxt, nxt)))
            i += 1
        else:
            out.append(c)
            i += 1
    return bytes(out)


_FM_TOKEN = re.compile(
    rb'(?P<dq>"[^"]*")|(?P<sq>\'[^\']*\')|(?P<nl>(#[^\n]*)?\\?\n)|(?P<ws>[ \t\r]+)'
    rb"|(?P<noise>[;:,])|(?P<word>[^=;:, \t\r\n]+)|(?P<eq>=)"
)


def fetchmail_tokens(rc: bytes) -> list[tuple[str, str]]:
    """('string', text) for quoted strings, ('word', text) for bare words, in order."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(rc):
        m = _FM_TOKEN.match(rc, pos)
        assert m is not None, f"fetchmail cannot lex {rc[pos : pos + 20]!r}"
        pos = m.end()
        kind = m.lastgroup
        if kind in ("dq", "sq"):
            text = fetchmail_unescape(m.group()[1:-1])
            out.append(("string", text.decode("utf-8")))
        elif kind == "word":
            out.append(("word", m.group().decode("utf-8")))
    return out

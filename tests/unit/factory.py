"""Small builders and daemon-file parsers shared by the unit tests. Pure."""

from __future__ import annotations

import itertools
import re
from typing import Any

from mailctl.render import Secrets
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


def secrets_for(s: Settings, fetchmail_password: str = "pop-secret") -> Secrets:
    return Secrets(
        user_hashes={u.address: HASH for u in s.users},
        tls_cert=CERT,
        tls_key=KEY,
        fetchmail_passwords={i: fetchmail_password for i in range(len(s.fetchmail.accounts))},
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

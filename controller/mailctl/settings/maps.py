"""Settings for Postfix's lookup tables: aliases, rewriting, routing, access.

Pure data and validation. Keys and values that reach a table are checked
here for shape, and again by the table escaper when rendered.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from mailctl.settings import names
from mailctl.settings.base import Group

AliasKey = Annotated[str, AfterValidator(names.address_or_catchall)]
Address = Annotated[str, AfterValidator(names.address)]

_LOCAL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ACTION = re.compile(
    r"^(OK|DUNNO|REJECT|WARN|HOLD|DISCARD)(?: [\x20-\x7e]{1,200})?$|^[45]\d\d [\x20-\x7e]{1,200}$"
)
# The delivery services of the appliance's master.cf (render.postfix): a transport
# naming any other service would keep the mail deferred ("unknown mail transport").
TRANSPORTS = ("smtp", "relay", "lmtp", "error", "retry", "discard", "local", "virtual")
# Their nexthop is free text: the reason given in the bounce or the log.
_TEXT_TRANSPORTS = ("error", "retry", "discard")
MAX_TRANSPORT_TEXT = 500


def local_name(value: str) -> str:
    text = value.lower()
    if not _LOCAL_NAME.fullmatch(text):
        raise ValueError(f"{value!r} is not a local name (letters, digits, . _ -)")
    return text


def alias_target(value: str) -> str:
    """An /etc/aliases target: address, local name, /file, or :include:/file. Never |command."""
    if value.startswith("|") or value.startswith('"|'):
        raise ValueError("delivery to commands is not allowed")
    if value.startswith(":include:"):
        _path(value[len(":include:") :])
        return value
    if value.startswith("/"):
        return _path(value)
    if "@" in value:
        return names.address(value)
    return local_name(value)


def _path(value: str) -> str:
    if not re.fullmatch(r"/[A-Za-z0-9_./-]{1,200}", value) or "/../" in value + "/":
        raise ValueError(f"{value!r} is not an absolute path of plain characters")
    return value


def action(value: str) -> str:
    """An access-map action: OK, DUNNO, REJECT/WARN/HOLD/DISCARD [text], 4xx/5xx text,
    or the name of a restriction class (checked against restrictions.classes)."""
    text = value.strip()
    if not _ACTION.fullmatch(text) and not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", text):
        raise ValueError(
            f"{value!r} is not an access action (OK, DUNNO, REJECT text, WARN text, "
            "HOLD text, DISCARD text, or a 4xx/5xx code with text)"
        )
    return text


def transport(value: str) -> str:
    """A transport_maps result, `transport:nexthop`, as Postfix reads it.

    smtp, relay, lmtp: no nexthop, host, host:port, [host], [host]:port, or an IP
    address in brackets ([192.0.2.1], [2001:db8::1], [ipv6:2001:db8::1]); lmtp also
    unix:/path and inet:host:port. error, retry, discard: one line of free text.
    local, virtual: no nexthop or a host name.
    """
    name, sep, nexthop = value.partition(":")
    if not sep or name not in TRANSPORTS:
        raise ValueError(
            f"{value!r} is not a transport: write transport:nexthop with a transport "
            f"of this server ({', '.join(TRANSPORTS)}), e.g. smtp:[relay.example.net]:587"
        )
    if name in _TEXT_TRANSPORTS:
        if nexthop != nexthop.strip() or not nexthop.isprintable():
            raise ValueError(
                f"{value!r}: the text after '{name}:' must be one line of "
                "printable text without blanks at its ends"
            )
        if len(nexthop) > MAX_TRANSPORT_TEXT:
            raise ValueError(
                f"the text after '{name}:' is longer than {MAX_TRANSPORT_TEXT} characters"
            )
        return value
    if not nexthop:
        return value
    if not nexthop.isprintable() or " " in nexthop:
        raise ValueError(f"{value!r}: the nexthop after '{name}:' cannot hold blanks")
    if name in ("local", "virtual"):
        names.domain(nexthop)
        return value
    if name == "lmtp" and nexthop.startswith("unix:"):
        _path(nexthop.removeprefix("unix:"))
        return value
    if name == "lmtp" and nexthop.startswith("inet:"):
        nexthop = nexthop.removeprefix("inet:")
    _smtp_nexthop(nexthop, value)
    return value


def _smtp_nexthop(nexthop: str, value: str) -> None:
    """host, host:port, [host], [host]:port; an IP address only in brackets (a bare
    one would be looked up as a domain name's MX)."""
    port = ""
    if nexthop.startswith("["):
        inner, sep, rest = nexthop[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: a '[' needs its ']', then nothing or :port")
        port = rest[1:]
        bare = inner[5:] if inner.lower().startswith("ipv6:") else inner
        try:
            ipaddress.ip_address(bare)
        except ValueError:
            if bare is not inner:
                raise ValueError(f"{value!r}: {inner!r} is not an IPv6 address") from None
            names.domain(inner)
    else:
        host, _, port = nexthop.partition(":")
        if ":" in port:
            raise ValueError(f"{value!r}: write an IPv6 address in brackets, like [2001:db8::1]")
        names.domain(host)
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    if nexthop.endswith(":"):
        raise ValueError(f"{value!r}: a ':' must be followed by the port")


def pattern_text(value: str) -> str:
    """A regex for a /pattern/ table line: one line, no '/', no trailing backslash."""
    if (
        not value
        or value != value.strip()
        or not value.isprintable()
        or "/" in value
        or value.endswith("\\")
        or len(value) > 500
    ):
        raise ValueError(
            f"{value!r} cannot be a table pattern (one line of up to 500 characters, no "
            "blanks at the ends, no trailing backslash, and no '/': match a slash with '.')"
        )
    return value


def pattern_syntax(pattern: str, kind: str) -> None:
    """Refuse the clear syntax errors of a pcre (PCRE) or regexp (POSIX ERE) pattern:
    an unbalanced '(' (or ')' in pcre), an unterminated '[...]', a quantifier with
    nothing before it. Postfix would skip such a rule with only a warning in the log.

    Deliberately not a full parser: anything this cannot judge (PCRE's (?x) mode,
    verbs, POSIX classes...) is left to Postfix's own check, so no valid pattern is
    refused here. Python's `re` is used only for the common subset both agree on.
    """
    pcre = kind == "pcre"
    if pcre and re.search(r"\(\?[a-zA-Z^-]*x", pattern):
        return  # extended mode: '#' starts a comment that may hold anything
    depth = 0
    i, n = 0, len(pattern)
    if pattern[:1] in ("*", "+", "?"):
        raise ValueError(f"{pattern!r}: '{pattern[0]}' at the start has nothing to repeat")
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            if pcre and pattern.startswith("\\Q", i):
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            i += 2
            continue
        if ch == "[":
            i = _class_end(pattern, i, pcre)
            if i < 0:
                raise ValueError(f"{pattern!r}: a '[' is never closed by ']'")
            continue
        if ch == "(":
            if pcre and pattern.startswith("(?#", i):
                end = pattern.find(")", i)
                if end < 0:
                    raise ValueError(f"{pattern!r}: a '(?#' comment is never closed")
                i = end + 1
                continue
            depth += 1
        elif ch == ")" and (pcre or depth > 0):  # glibc's ERE reads a lone ')' as itself
            depth -= 1
            if depth < 0:
                raise ValueError(f"{pattern!r}: a ')' at position {i} closes no '('")
        i += 1
    if depth > 0:
        raise ValueError(f"{pattern!r}: {depth} '(' never closed by ')'")
    if pcre and _COMMON_SUBSET.fullmatch(pattern):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                re.compile(pattern)
            except re.error as exc:
                before = pattern[: exc.pos or 0]
                if exc.msg == "nothing to repeat" and before.endswith(_ANCHORS):
                    return  # a repeated anchor: PCRE's verdict may differ, leave it to Postfix
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None


# Patterns without PCRE-only syntax ((?..., (*VERB), \Q, letters escapes other than the
# usual ones, POSIX classes, {...} quantifiers) read the same to Python's re and PCRE.
_COMMON_SUBSET = re.compile(
    r"(?:[^\\({\[]|\\[^A-Za-z0-9]|\\[dDwWsSbBnrtf]|\((?![?*])|\[(?![:.=]))*"
)


_ANCHORS = ("^", "$", "\\b", "\\B")


def _class_end(pattern: str, start: int, pcre: bool) -> int:
    """The index after the ']' that closes the class opened at `start`, or -1."""
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1  # a ']' first in the class is itself
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and pcre:  # POSIX: a backslash in a class is itself
            i += 2
            continue
        if ch == "[" and pattern[i + 1 : i + 2] in (":", ".", "="):
            end = pattern.find(pattern[i + 1] + "]", i + 2)
            if end >= 0:
                i = end + 2
                continue
        if ch == "]":
            return i + 1
        i += 1
    return -1


def client_key(value: str) -> str:
    """An IP, a network (CIDR) or a host/domain name."""
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        return names.domain(value)


def address_or_domain(value: str) -> str:
    if "@" in value:
        return names.address_or_catchall(value)
    return names.domain(value)


ClientKey = Annotated[str, AfterValidator(client_key)]
Action = Annotated[str, AfterValidator(action)]
AliasTarget = Annotated[str, AfterValidator(alias_target)]
Transport = Annotated[str, AfterValidator(transport)]
AddressOrDomain = Annotated[str, AfterValidator(address_or_domain)]
LocalName = Annotated[str, AfterValidator(local_name)]
HeloKey = Annotated[str, AfterValidator(client_key)]


class Pattern(Group):
    """One line of a pcre or regexp access table (FEATURES P8, P15)."""

    stage: Literal["client", "helo", "sender", "recipient"] = Field(
        description="What is matched: the client's name or IP, the HELO name, the sender "
        "or the recipient address."
    )
    type: Literal["pcre", "regexp"] = Field(default="pcre", description="Table type.")
    pattern: Annotated[str, AfterValidator(pattern_text)] = Field(
        description="The regular expression, without the surrounding slashes; matched "
        "case-insensitively. Checked by Postfix before it goes live."
    )
    action: Action = Field(description="What to do on a match, as in the access maps.")

    @model_validator(mode="after")
    def _syntax(self) -> Pattern:
        try:
            pattern_syntax(self.pattern, self.type)
        except ValueError as exc:
            raise ValueError(f"pattern {exc}") from None
        return self


class Access(Group):
    """Access maps (FEATURES P8): key -> action, checked at each SMTP stage."""

    clients: dict[ClientKey, Action] = Field(
        default_factory=dict,
        description="Client IP, network (cidr table) or host name (hash table) -> action.",
    )
    helo: dict[HeloKey, Action] = Field(default_factory=dict, description="HELO name -> action.")
    senders: dict[AddressOrDomain, Action] = Field(
        default_factory=dict, description="Envelope sender address or domain -> action."
    )
    recipients: dict[AddressOrDomain, Action] = Field(
        default_factory=dict, description="Recipient address or domain -> action."
    )
    reject_own_helo: bool = Field(
        default=True, description="Refuse clients that greet with this server's name (a forgery)."
    )
    patterns: list[Pattern] = Field(
        default_factory=list,
        description="Regular-expression entries (pcre or regexp tables), checked after the "
        "exact ones of the same stage.",
    )
    sender_mx_bogons: bool = Field(
        default=True,
        description="Refuse senders whose domain's MX is in a private or reserved network "
        "(the guide's sender_mx_blocked list).",
    )


class Maps(Group):
    """Rewriting and routing tables (FEATURES P2, P5, P6, P7, P12)."""

    local_aliases: dict[LocalName, list[AliasTarget]] = Field(
        default_factory=dict,
        description="/etc/aliases for local names (root, postmaster...): addresses, local "
        "names, /file (appended to) or :include:/file. Commands are refused.",
    )
    canonical: dict[AliasKey, Address] = Field(
        default_factory=dict, description="Rewrite sender and recipient, envelope and header."
    )
    sender_canonical: dict[AliasKey, Address] = Field(
        default_factory=dict, description="Rewrite senders only."
    )
    recipient_canonical: dict[AliasKey, Address] = Field(
        default_factory=dict, description="Rewrite recipients only."
    )
    relocated: dict[AliasKey, Address] = Field(
        default_factory=dict, description="Old address -> new one: mail is refused naming it."
    )
    transports: dict[AddressOrDomain, Transport] = Field(
        default_factory=dict, description="Route a domain or address (transport_maps)."
    )
    sender_login: bool = Field(
        default=True,
        description="Logged-in users may send only as their own address (or one aliased to "
        "them in sender_logins).",
    )
    sender_logins: dict[AliasKey, list[Address]] = Field(
        default_factory=dict, description="Extra sender address -> logins allowed to use it."
    )
    table_type: Literal["hash", "lmdb"] = Field(
        default="hash",
        description="Type of the compiled lookup tables (default_database_type): hash "
        "(Berkeley DB) or lmdb.",
    )

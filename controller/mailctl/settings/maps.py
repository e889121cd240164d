"""Settings for Postfix's lookup tables: aliases, rewriting, routing, access.

Pure data and validation. Keys and values that reach a table are checked
here for shape, and again by the table escaper when rendered.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from mailctl.settings import names
from mailctl.settings.base import Group

AliasKey = Annotated[str, AfterValidator(names.address_or_catchall)]
Address = Annotated[str, AfterValidator(names.address)]

_LOCAL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_ACTION = re.compile(
    r"^(OK|DUNNO|REJECT|WARN|HOLD|DISCARD)(?: [\x20-\x7e]{1,200})?$|^[45]\d\d [\x20-\x7e]{1,200}$"
)
_TRANSPORT = re.compile(
    r"^(smtp|relay|lmtp|error|discard|local|virtual|retry):"
    r"(\[[a-z0-9.-]+\](?::\d{1,5})?|[a-z0-9.-]+(?::\d{1,5})?|unix:/[A-Za-z0-9_./-]+"
    r"|[45]\.\d\.\d [\x20-\x7e]{1,200}|[\x20-\x7e]{0,200})?$"
)


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
    if not _TRANSPORT.fullmatch(value):
        raise ValueError(f"{value!r} is not a transport (e.g. smtp:[host]:587, error:text)")
    return value


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

"""Validators for the names that reach daemon configs: domains, addresses, hosts.

Pure functions, no side effects. They are deliberately narrower than the RFCs:
what passes here is safe in every file format the appliance writes (no blanks,
quotes, commas, `$`, `%`, `!`, `:` or control characters) and means one thing
to Postfix and Cyrus alike.
"""

import ipaddress
import re
from pathlib import Path

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN_RE = re.compile(rf"^(?:{_LABEL}\.)*{_LABEL}$")
_LOCAL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._+-]{0,62}[a-z0-9_+-])?$")
_HASH_RE = re.compile(r"^\$(?:1|5|6|y|gy|2[aby]|7)\$[./A-Za-z0-9$=,]{8,}$")
# Linux limits: a whole path (with its final NUL) and one name in it, in bytes.
PATH_MAX = 4096
NAME_MAX = 255


def printable(text: str) -> str:
    """`text` as it may be shown in a message or a log line: every character that is not
    printable (line breaks, NUL, other controls, broken UTF-8) as its Python escape, so a
    user-given key can neither start a forged log line nor hide part of itself."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def domain(value: str) -> str:
    """A DNS domain name, lower-cased; no trailing dot, no IP literal."""
    text = value.strip().lower()
    if len(text) > 253 or not _DOMAIN_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a domain name (letters, digits, '-' and dots only)")
    if text.replace(".", "").isdigit():
        raise ValueError(f"{value!r} is an IP address, not a domain name")
    return text


def host_or_ipv4(value: str) -> str:
    """A host name or an IPv4 address, the two things Postfix's [host]:port takes."""
    text = value.strip()
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    try:
        return domain(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a host name nor an IPv4 address") from None


def hostname(value: str) -> str:
    """A fully qualified host name (at least two labels)."""
    text = domain(value)
    if "." not in text:
        raise ValueError(
            f"{value!r} is not fully qualified (it needs a dot, like mail.example.com)"
        )
    return text


def local_part(value: str) -> str:
    """The part before '@': no quotes, '%', '!', blanks or other routing tricks."""
    text = value.lower()
    if not _LOCAL_RE.fullmatch(text) or ".." in text:
        raise ValueError(
            f"{value!r} is not an allowed local part "
            "(letters, digits and . _ + - only, not at the start or end)"
        )
    return text


def address(value: str) -> str:
    """A mail address local@domain, lower-cased."""
    if value.count("@") != 1:
        raise ValueError(f"{value!r} is not a mail address (it needs exactly one '@')")
    local, dom = value.split("@")
    return f"{local_part(local)}@{domain(dom)}"


def address_or_catchall(value: str) -> str:
    """A mail address, or '@domain' for every address of a domain."""
    if value.startswith("@"):
        return "@" + domain(value[1:])
    return address(value)


def crypt_hash(value: str) -> str:
    """A crypt(3) hash of a kind libxcrypt verifies ($6$, $5$, $y$, $2b$ ...)."""
    if not _HASH_RE.fullmatch(value):
        raise ValueError(
            "is not a crypt hash of a known kind; make one with "
            "`openssl passwd -6` or `mkpasswd -m yescrypt`"
        )
    return value


def host_port(value: str) -> str:
    """host or host:port (a DNS name or IPv4 address, port 1-65535)."""
    if not value or any(ch.isspace() for ch in value):
        raise ValueError(f"{value!r} is not a host (blanks are not allowed)")
    host, sep, port = value.partition(":")
    if sep and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"{value!r}: the port must be a number from 1 to 65535")
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        domain(host)
    return value.lower()


def ldap_url(value: str) -> str:
    """ldap://host[:port][/] or ldaps://..., nothing more."""
    m = re.fullmatch(r"(ldaps?)://([^/\s]+)/?", value)
    if not m:
        raise ValueError(f"{value!r} is not an LDAP URL like ldap://ldap.example.com/")
    host_port(m.group(2))
    return f"{m.group(1)}://{m.group(2).lower()}/"


def one_line(value: str) -> str:
    """Free text for a `key: value` line: printable, no line breaks, no edge blanks."""
    if not value or value != value.strip() or not value.isprintable() or len(value) > 1000:
        raise ValueError(
            "must be one line of printable text (up to 1000 characters) "
            "without leading or trailing blanks"
        )
    return value


def next_hop(value: str) -> str:
    """A Postfix next hop: host, host:port, [host] or [host]:port (brackets: no MX lookup)."""
    text = value.strip().lower()
    host, port = text, ""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r} is not a host like [smtp.example.net]:587")
        port = rest[1:]
    elif ":" in text:
        host, _, port = text.partition(":")
    host_port(f"{host}:{port}" if port else host)
    return text


def file_path(value: Path) -> Path:
    """An absolute path to a file the controller reads (a secret, a certificate).

    A NUL or a line break would only fail (ValueError) when the file is opened, long after
    the settings were accepted; a relative path would depend on the controller's working
    directory. The path is not shown: the setting's name is enough to find it.
    """
    text = str(value)
    if not text.isprintable():
        raise ValueError(
            "must be a path of printable characters (no NUL, line break or other "
            "control character, and valid UTF-8)"
        )
    if not value.is_absolute():
        raise ValueError("must be an absolute path, like /run/secrets/name")
    if len(text.encode()) >= PATH_MAX or any(len(p.encode()) > NAME_MAX for p in value.parts):
        raise ValueError(
            f"is too long (at most {PATH_MAX - 1} bytes, and {NAME_MAX} bytes per name)"
        )
    return value

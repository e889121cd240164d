"""One escaper per output format. Pure; each refuses what it cannot write safely.

Every value that reaches a generated file passes through exactly one of these
for that file's syntax (see SECURITY.md for what each format does with hostile
text). They raise RenderError naming the setting, and never echo a value that
could be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mailctl.errors import RenderError
from mailctl.settings.names import printable

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Lone surrogates: what Python makes of broken UTF-8; no file can hold them.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BLANK = re.compile(r"\s")


def _where(setting: str) -> str:
    """The setting's name for a message: it may hold a user-given key."""
    return printable(setting)


def _no_control(value: str, setting: str, secret: bool = False) -> None:
    shown = "the value" if secret else repr(value)
    if _CONTROL.search(value):
        raise RenderError(
            f"{_where(setting)}: {shown} contains a control character (newline, tab, NUL...)"
        )
    if _SURROGATE.search(value):
        raise RenderError(f"{_where(setting)}: {shown} is not valid UTF-8 text")


def _no_edge_blanks(value: str, setting: str) -> None:
    if value != value.strip():
        raise RenderError(
            f"{_where(setting)}: {value!r} starts or ends with blanks, which would be lost"
        )


# --- Postfix main.cf -------------------------------------------------------


def main_cf_text(value: str, setting: str) -> str:
    """A free-text main.cf value: one line, `$` made literal (`$$`)."""
    _no_control(value, setting)
    _no_edge_blanks(value, setting)
    return value.replace("$", "$$")


def main_cf_list(items: Iterable[str], setting: str) -> str:
    """A main.cf list of names: no blanks, commas, braces or `$` inside an item."""
    out = []
    for item in items:
        _no_control(item, setting)
        if (
            not item
            or _BLANK.search(item)
            or any(c in item for c in ",{}$")
            or item.startswith("#")
        ):
            raise RenderError(f"{_where(setting)}: {item!r} cannot be a list element in main.cf")
        out.append(item)
    return ", ".join(out)


# Parameters holding free text: never folded (Postfix would keep the indent of a
# continuation line, and drop one that starts with '#').
FREE_TEXT = frozenset({"smtpd_banner"})


def fold(name: str, value: str, width: int = 78) -> str:
    """`name = value`, long lists continued on indented lines (the Postfix way)."""
    line = f"{name} = {value}" if value else f"{name} ="
    if len(line) <= width or ", " not in value or name in FREE_TEXT:
        return line
    parts = value.split(", ")
    lines = [f"{name} ="]
    current = ""
    for part in parts:
        piece = f"{part},"
        if current and len(current) + 1 + len(piece) > width - 4:
            lines.append("    " + current)
            current = piece
        else:
            current = f"{current} {piece}" if current else piece
    lines.append("    " + current.rstrip(","))
    return "\n".join(lines)


# --- Postfix lookup tables (postmap/postalias input) -------------------------


def map_key(value: str, setting: str) -> str:
    """A lookup-table key: no blanks, no control characters, not a comment."""
    _no_control(value, setting)
    if not value or _BLANK.search(value) or value.startswith("#") or value.endswith(":"):
        raise RenderError(f"{_where(setting)}: {value!r} cannot be a lookup-table key")
    return value


def map_value(value: str, setting: str, secret: bool = False) -> str:
    """A lookup-table value: one line, no leading/trailing blanks."""
    _no_control(value, setting, secret)
    if not value or value != value.strip():
        shown = "the value" if secret else repr(value)
        raise RenderError(f"{_where(setting)}: {shown} is empty or has leading/trailing blanks")
    return value


def pattern_line(pattern: str, value: str, setting: str) -> str:
    """`/pattern/ value` for a pcre or regexp table. Postfix ends the pattern at the
    first unescaped '/', so '/' and a trailing backslash are refused."""
    _no_control(pattern, setting)
    if not pattern or "/" in pattern or pattern.endswith("\\") or pattern != pattern.strip():
        raise RenderError(f"{_where(setting)}: {pattern!r} cannot be written as /pattern/")
    return f"/{pattern}/\t{pattern_value(value, setting)}"


def pattern_value(value: str, setting: str) -> str:
    """The result of a pcre or regexp table line. Postfix reads `$1` there as a matched
    group and skips the whole rule on any other `$`; `$$` is a literal `$`."""
    return map_value(value, setting).replace("$", "$$")


def map_line(key: str, value: str, setting: str) -> str:
    return f"{map_key(key, setting)}\t{map_value(value, setting)}"


# --- Postfix master.cf -----------------------------------------------------


def master_option(name: str, value: str, setting: str) -> str:
    """One `-o name=value` for master.cf: blanks would split it into two arguments, and
    the value is expanded like main.cf's, so `$` is made literal."""
    _no_control(value, setting)
    value = value.replace("$", "$$")
    if not value or _BLANK.search(value) or value.startswith("{"):
        raise RenderError(f"{_where(setting)}: {value!r} cannot be a master.cf option value")
    return f"-o {name}={value}"


# --- Cyrus imapd.conf ------------------------------------------------------


def imapd_value(value: str, setting: str) -> str:
    """An imapd.conf value: one line, not empty (Cyrus stops on an empty value), no
    trailing backslash (it joins the next line)."""
    _no_control(value, setting)
    _no_edge_blanks(value, setting)
    if not value:
        raise RenderError(f"{_where(setting)}: an empty value would stop Cyrus")
    if value.endswith("\\"):
        raise RenderError(f"{_where(setting)}: {value!r} ends with a backslash")
    return value


def imapd_list(items: Iterable[str], setting: str) -> str:
    """A blank-separated imapd.conf list (admins, ...): items may not hold blanks."""
    out = []
    for item in items:
        if not item or _BLANK.search(item):
            raise RenderError(
                f"{_where(setting)}: {item!r} cannot be an element of an imapd.conf list"
            )
        out.append(imapd_value(item, setting))
    return " ".join(out)


# --- fetchmailrc -----------------------------------------------------------

_FETCHMAIL_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@._+-:/=,"
)


def fetchmail_string(value: str, setting: str, secret: bool = False) -> str:
    """A double-quoted fetchmailrc string; every byte outside a safe set as \\xHH.

    A backslash does not protect a quote in fetchmailrc, so nothing but the
    safe characters is ever written literally.
    """
    shown = "the value" if secret else repr(value)
    if "\x00" in value:
        raise RenderError(f"{_where(setting)}: {shown} contains NUL")
    if _SURROGATE.search(value):
        raise RenderError(f"{_where(setting)}: {shown} is not valid UTF-8 text")
    out = []
    for ch in value:
        if ch in _FETCHMAIL_SAFE:
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8"))
    return '"' + "".join(out) + '"'


# --- postgrey whitelists ---------------------------------------------------


def postgrey_entry(value: str, setting: str) -> str:
    """A literal postgrey whitelist line: never a /regex/, no blanks, no `#` (a comment)."""
    _no_control(value, setting)
    if not value or _BLANK.search(value) or value.startswith("/") or "#" in value:
        raise RenderError(f"{_where(setting)}: {value!r} cannot be a postgrey whitelist entry")
    return value


# --- saslauthd.conf --------------------------------------------------------


def saslauthd_value(value: str, setting: str, secret: bool = False) -> str:
    """A `key: value` line of saslauthd.conf: the value runs to the end of the line and
    loses blanks at its edges, so line breaks and edge blanks are refused."""
    _no_control(value, setting, secret)
    # saslauthd reads the file in 4 KiB pieces: a longer line would start a new option.
    if not value or value != value.strip() or len(value.encode()) > 1000:
        shown = "the value" if secret else repr(value)
        raise RenderError(
            f"{_where(setting)}: {shown} is empty, longer than 1000 bytes, "
            "or starts or ends with blanks"
        )
    return value

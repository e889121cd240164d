"""The escapers (render/quoting.py and the files written with them) against hostile values.

Each value must either come back with exactly its meaning, read the way the
daemon reads the file (SECURITY.md), or be refused with a RenderError that
names the setting. The second half feeds hostile values through the settings
model: refused with an error naming the field, or rendered safely.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from mailctl.errors import RenderError, SettingsError
from mailctl.render import postfix_maps, render, sasl
from mailctl.render import quoting as q
from mailctl.render.fetchmail import RC
from mailctl.settings import Settings
from mailctl.settings import names as settings_names
from mailctl.settings import restrictions as settings_restrictions
from mailctl.settings.loader import build_settings
from mailctl.settings.maps import local_name, transport
from mailctl.settings.model import User
from tests.unit.factory import (
    HASH,
    base_data,
    fetchmail_tokens,
    main_cf_params,
    parse_main_cf,
    parse_table,
    postfix_list,
    postfix_literal,
    secrets_for,
    settings,
)

SETTING = "the.setting"

HOSTILE: dict[str, str] = {
    "plain": "value-1.example",
    "newline": "a\nmynetworks = 0.0.0.0/0",
    "cr": "a\rb",
    "crlf": "a\r\nb",
    "nul": "a\x00b",
    "tab": "a\tb",
    "del": "a\x7fb",
    "dollar": "a$mynetworks",
    "dollar_brace": "a${mynetworks}",
    "dollar_bang": "a$!b",
    "hash_start": "#a",
    "hash_mid": "a#b",
    "comma": "a,b",
    "comma_space": "a, b",
    "equals": "a=b",
    "dquote": 'a"b',
    "squote": "a'b",
    "backslash": "a\\b",
    "trailing_backslash": "a\\",
    "leading_blank": " a",
    "trailing_blank": "a ",
    "inner_blank": "a b",
    "brace": "{a}",
    "slash_regex": "/.*/",
    "colon_end": "a:",
    "long": "x" * 10_000,
    "long_with_commas": "Welcome, " * 12 + "#1 mail server, no spam please",
    "umlaut": "grüße",
    "emoji": "mail📧",
    "nbsp": "a\u00a0b",
    "line_separator": "a\u2028b",
    "empty": "",
    "fetchmail_inject": 'x" preconnect "touch /tmp/pwned',
    # A byte that is not UTF-8 (in an env var, say) as Python decodes it: no file can
    # hold it, so every escaper must refuse it rather than fail when the file is written.
    "broken_utf8": "a\udcffb",
}


# --- how each daemon reads its file back ---------------------------------------------


def _single_param(text: str, name: str) -> str:
    defs = parse_main_cf(text + "\n")
    assert [n for n, _ in defs] == [name], f"main.cf holds {defs!r}, not one {name}"
    return defs[0][1]


def _single_entry(text: str) -> tuple[str, str]:
    entries = parse_table(text + "\n")
    assert len(entries) == 1, f"the table holds {entries!r}, not one entry"
    return entries[0]


def _master_value(text: str, name: str) -> str:
    assert "\n" not in text and "\r" not in text
    tokens = text.split()
    assert len(tokens) == 2 and tokens[0] == "-o", f"master.cf reads {tokens!r}"
    key, eq, value = tokens[1].partition("=")
    assert key == name and eq
    return postfix_literal(value)


def cyrus_options(text: str) -> dict[str, str]:
    """imapd.conf as Cyrus's config_read_file() reads it (fatal errors as assertions)."""
    out: dict[str, str] = {}
    lines = text.split("\n")
    for line in lines:
        line = line.split("\x00", 1)[0]
        body = line.lstrip()
        if not body or body.startswith("#"):
            continue
        assert not line.rstrip().endswith("\\"), "a trailing backslash joins the next line"
        m = re.match(r"([A-Za-z0-9_-]+):", body)
        assert m, f"invalid option name: {body!r}"
        value = body[m.end() :].strip()
        assert value, f"empty option value for {m.group(1)} (Cyrus exits)"
        assert m.group(1).lower() not in out, "Cyrus exits on a repeated option"
        out[m.group(1).lower()] = value
    return out


def _cyrus_value(text: str, name: str) -> str:
    opts = cyrus_options(text)
    assert list(opts) == [name], f"imapd.conf holds {opts!r}"
    return opts[name]


def _fetchmail_value(text: str) -> str:
    tokens = fetchmail_tokens(text.encode("utf-8"))
    assert len(tokens) == 2 and tokens[0] == ("word", "password"), f"fetchmail reads {tokens!r}"
    kind, value = tokens[1]
    assert kind == "string"
    return value


def postgrey_entries(text: str) -> list[str]:
    """A postgrey whitelist as postgrey reads it: `#` starts a comment anywhere."""
    out = []
    for line in text.split("\n"):
        line = re.sub(r"#.*$", "", line).strip()
        if line:
            assert not re.match(r"^/(\S+)/$", line), f"{line!r} is read as a regex"
            out.append(line.lower())
    return out


def saslauthd_options(text: str) -> list[tuple[str, str]]:
    """saslauthd.conf as saslauthd's cfile_read() reads it: fgets() into a 4096-byte
    buffer (a longer line goes on as a line of its own), `key: value`, no trailing trim;
    the first of two equal keys wins."""
    raw = text.encode("utf-8")
    chunks = []
    while raw:
        cut = raw.find(b"\n")
        n = 4095 if cut < 0 or cut >= 4095 else cut + 1
        chunks.append(raw[:n])
        raw = raw[n:]
    out = []
    for chunk in chunks:
        line = chunk.decode("utf-8", "replace").removesuffix("\n").split("\x00", 1)[0]
        body = line.lstrip()
        if not body or body.startswith("#"):
            continue
        m = re.match(r"([A-Za-z0-9_-]+):", body)
        assert m, f"no colon separator: {body[:40]!r}"
        value = body[m.end() :].lstrip()
        assert value, f"keyword {m.group(1)}: no value"
        out.append((m.group(1).lower(), value))
    return out


def pwdfile_entries(text: str) -> dict[str, str]:
    """pam_pwdfile's user file: `user:hash` per line, read as C strings."""
    out = {}
    for line in text.split("\n"):
        line = line.split("\x00", 1)[0]
        if not line:
            continue
        user, sep, hashed = line.partition(":")
        assert sep, f"line without ':' is not an entry: {line!r}"
        out[user] = hashed.split(":", 1)[0]
    return out


def _pwdfile_with_user(value: str) -> str:
    # Bypass the settings validators on purpose: the renderer must hold by itself.
    base = settings()
    users = [User.model_construct(address=value, password_hash=HASH)]
    s = base.model_copy(update={"users": users})
    return sasl.files(s, secrets_for(s))["sasl/users"].content.decode("utf-8")


@dataclass(frozen=True)
class Format:
    name: str
    encode: Callable[[str], str]  # value -> the text written into the file
    decode: Callable[[str], Any]  # that text -> what the daemon understands
    expect: Callable[[str], Any] = lambda v: v
    setting: str = SETTING
    must_accept: frozenset[str] = frozenset()
    bugs: dict[str, str] = field(default_factory=dict)


FORMATS = [
    Format(
        "main_cf_text",
        lambda v: q.fold("smtpd_banner", q.main_cf_text(v, SETTING)),
        lambda t: postfix_literal(_single_param(t, "smtpd_banner")),
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "dollar_brace",
                "dollar_bang",
                "hash_start",
                "hash_mid",
                "comma",
                "comma_space",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "trailing_backslash",
                "inner_blank",
                "brace",
                "slash_regex",
                "colon_end",
                "long",
                "umlaut",
                "emoji",
                "empty",
                "fetchmail_inject",
                "long_with_commas",
            }
        ),
    ),
    Format(
        "main_cf_list",
        lambda v: q.fold("mydestination", q.main_cf_list([v, "b.example"], SETTING)),
        lambda t: postfix_list(postfix_literal(_single_param(t, "mydestination"))),
        expect=lambda v: [v, "b.example"],
        must_accept=frozenset(
            {
                "plain",
                "hash_mid",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "colon_end",
                "long",
                "umlaut",
                "emoji",
            }
        ),
    ),
    Format(
        "map_key",
        lambda v: q.map_line(v, "OK", SETTING),
        lambda t: _single_entry(t),
        expect=lambda v: (v, "OK"),
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "dollar_brace",
                "hash_mid",
                "comma",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "trailing_backslash",
                "brace",
                "slash_regex",
                "long",
                "umlaut",
                "emoji",
            }
        ),
    ),
    Format(
        "map_value",
        lambda v: q.map_line("key@example.com", v, SETTING),
        lambda t: _single_entry(t),
        expect=lambda v: ("key@example.com", v),
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "hash_start",
                "hash_mid",
                "comma",
                "comma_space",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "trailing_backslash",
                "inner_blank",
                "brace",
                "slash_regex",
                "colon_end",
                "long",
                "long_with_commas",
                "umlaut",
                "emoji",
                "fetchmail_inject",
            }
        ),
    ),
    Format(
        "master_option",
        lambda v: q.master_option("smtpd_banner", v, SETTING),
        lambda t: _master_value(t, "smtpd_banner"),
        must_accept=frozenset(
            {
                "plain",
                "hash_mid",
                "comma",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "colon_end",
                "long",
                "umlaut",
                "emoji",
            }
        ),
    ),
    Format(
        "imapd_value",
        lambda v: f"servername: {q.imapd_value(v, SETTING)}\n",
        lambda t: _cyrus_value(t, "servername"),
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "hash_start",
                "hash_mid",
                "comma",
                "comma_space",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "inner_blank",
                "brace",
                "slash_regex",
                "colon_end",
                "long",
                "umlaut",
                "emoji",
                "fetchmail_inject",
            }
        ),
    ),
    Format(
        "imapd_list",
        lambda v: f"admins: {q.imapd_list([v, 'cyrus'], SETTING)}\n",
        lambda t: _cyrus_value(t, "admins").split(),
        expect=lambda v: [v, "cyrus"],
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "hash_mid",
                "comma",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "colon_end",
                "long",
                "umlaut",
                "emoji",
            }
        ),
    ),
    Format(
        "saslauthd_value",
        lambda v: f"ldap_filter: {q.saslauthd_value(v, SETTING, secret=True)}\n",
        saslauthd_options,
        expect=lambda v: [("ldap_filter", v)],
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "hash_start",
                "hash_mid",
                "comma",
                "comma_space",
                "equals",
                "dquote",
                "squote",
                "backslash",
                "trailing_backslash",
                "inner_blank",
                "brace",
                "slash_regex",
                "colon_end",
                "long_with_commas",
                "umlaut",
                "emoji",
                "fetchmail_inject",
            }
        ),
    ),
    Format(
        "fetchmail_string",
        lambda v: f"  password {q.fetchmail_string(v, SETTING, secret=True)}\n",
        _fetchmail_value,
        # Every byte but NUL can be written as \xHH: nothing is ever refused.
        must_accept=frozenset(HOSTILE) - {"nul", "broken_utf8"},
    ),
    Format(
        "postgrey_entry",
        lambda v: q.postgrey_entry(v, SETTING) + "\n",
        postgrey_entries,
        expect=lambda v: [v.lower()],
        must_accept=frozenset(
            {
                "plain",
                "dollar",
                "comma",
                "equals",
                "backslash",
                "long",
                "umlaut",
                "emoji",
            }
        ),
    ),
    Format(
        "pam_pwdfile_user",
        _pwdfile_with_user,
        pwdfile_entries,
        expect=lambda v: {v: HASH},
        setting="users",
        must_accept=frozenset({"plain", "dollar", "hash_mid", "equals", "long", "umlaut"}),
    ),
]


def _cases() -> list[Any]:
    cases = []
    for fmt in FORMATS:
        for vid, value in HOSTILE.items():
            marks = (
                [pytest.mark.xfail(strict=True, reason=fmt.bugs[vid])] if vid in fmt.bugs else []
            )
            cases.append(pytest.param(fmt, vid, value, id=f"{fmt.name}-{vid}", marks=marks))
    return cases


@pytest.mark.parametrize(("fmt", "vid", "value"), _cases())
def test_escaper_round_trips_or_refuses(fmt: Format, vid: str, value: str) -> None:
    try:
        out = fmt.encode(value)
    except RenderError as exc:
        assert vid not in fmt.must_accept, f"{fmt.name} refused a writable value: {exc}"
        assert fmt.setting in str(exc), "the error must name the setting"
        return
    assert fmt.decode(out) == fmt.expect(value)


@pytest.mark.parametrize("fmt", FORMATS, ids=[f.name for f in FORMATS])
def test_every_format_refuses_a_line_break(fmt: Format) -> None:
    """A newline is the one injection every format shares: refused or escaped, never raw."""
    try:
        out = fmt.encode("a\nb")
    except RenderError:
        return
    assert "\n" not in out.rstrip("\n"), f"{fmt.name} wrote a raw newline"


def test_fetchmail_quote_cannot_smuggle_a_keyword() -> None:
    value = 'x" preconnect "touch /tmp/pwned'
    out = q.fetchmail_string(value, SETTING)
    assert '"' not in out[1:-1]
    assert fetchmail_tokens(f"password {out}\n".encode()) == [
        ("word", "password"),
        ("string", value),
    ]


def test_fetchmail_string_writes_utf8_bytes_as_two_digit_hex() -> None:
    assert q.fetchmail_string("ü", SETTING) == '"\\xc3\\xbc"'
    assert q.fetchmail_string("a\nb", SETTING) == '"a\\x0ab"'
    # A hex digit right after an escape must not be swallowed by it.
    assert q.fetchmail_string("\nA", SETTING) == '"\\x0aA"'


@pytest.mark.parametrize(
    "call",
    [
        lambda v: q.map_value(v, "relay.password", secret=True),
        lambda v: q.fetchmail_string(v, "relay.password", secret=True),
    ],
    ids=["map_value", "fetchmail_string"],
)
def test_refused_secret_is_not_echoed(call: Callable[[str], str]) -> None:
    for bad in ("hunter2-secret\n", "hunter2-secret\x00", " hunter2-secret"):
        try:
            call(bad)
        except RenderError as exc:
            assert "hunter2" not in str(exc) and "hunter2" not in repr(exc)
            assert "relay.password" in str(exc)


def test_refused_non_secret_value_is_shown() -> None:
    with pytest.raises(RenderError, match=r"smtp\.banner: 'a\\nb'"):
        q.main_cf_text("a\nb", "smtp.banner")


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([f"d{i}.example.com" for i in range(40)], id="plain"),
        # Items just short of a line: the one after each starts a continuation line.
    ],
)
def test_main_cf_list_survives_folding(items: list[str]) -> None:
    text = q.fold("mydestination", q.main_cf_list(items, SETTING))
    assert "\n" in text, "long enough to be folded"
    assert postfix_list(_single_param(text, "mydestination")) == items


def test_fold_keeps_short_values_on_one_line() -> None:
    assert q.fold("a", "x, y") == "a = x, y"
    assert q.fold("a", "") == "a ="
    assert q.fold("a", "y" * 200) == "a = " + "y" * 200


# --- through the settings model ----------------------------------------------------


def _fetch(**acc: Any) -> dict[str, Any]:
    account = {
        "server": "pop.provider.example",
        "user": "me",
        "password_file": "/run/secrets/pop",
        "deliver_to": "alice@example.com",
    }
    account.update(acc)
    return {"accounts": [account]}


# (id, settings changes, field the error must name, or None: must render safely)
THROUGH_SETTINGS: list[Any] = [
    ("hostname-newline", {"hostname": "mail.example.com\nmynetworks = 0.0.0.0/0"}, "hostname"),
    ("hostname-dollar", {"hostname": "mail$x.example.com"}, "hostname"),
    ("hostname-blank", {"hostname": "mail example.com"}, "hostname"),
    ("hostname-trailing-dot", {"hostname": "mail.example.com."}, "hostname"),
    ("hostname-umlaut", {"hostname": "mail.exämple.com"}, "hostname"),
    ("hostname-upper", {"hostname": "MAIL.Example.COM"}, None),
    ("domains-comma", {"domains": ["example.com, evil.org"]}, "domains.0"),
    ("domains-newline", {"domains": ["example.com\nmynetworks=0.0.0.0/0"]}, "domains.0"),
    (
        "user-percent-hack",
        {"users": [{"address": "a%evil.org@example.com", "password_hash": HASH}]},
        "users.0.address",
    ),
    (
        "user-bang-path",
        {"users": [{"address": "evil.org!a@example.com", "password_hash": HASH}]},
        "users.0.address",
    ),
    (
        "user-quoted-local",
        {"users": [{"address": '"a@evil.org"@example.com', "password_hash": HASH}]},
        "users.0.address",
    ),
    (
        "user-source-route",
        {"users": [{"address": "@example.com:a@evil.org", "password_hash": HASH}]},
        "users.0.address",
    ),
    (
        "user-ip-literal",
        {"users": [{"address": "a@[192.0.2.1]", "password_hash": HASH}]},
        "users.0.address",
    ),
    pytest.param(
        "user-newline-local",
        {"users": [{"address": "alice\n@example.com", "password_hash": HASH}]},
        "users.0.address",
    ),
    (
        "user-hash-cleartext",
        {"users": [{"address": "a@example.com", "password_hash": "hunter2"}]},
        "users.0.password_hash",
    ),
    (
        "alias-target-injection",
        {"aliases": {"x@example.com": "y@example.org\nmynetworks=0/0"}},
        "aliases",
    ),
    ("alias-key-newline", {"aliases": {"x\n@example.com": "alice@example.com"}}, "aliases"),
    ("alias-target-pipe", {"aliases": {"x@example.com": '"|/bin/sh"@example.com'}}, "aliases"),
    (
        "local-alias-command",
        {"maps": {"local_aliases": {"root": ["|/bin/sh -c id"]}}},
        "maps.local_aliases",
    ),
    (
        "local-alias-include-dotdot",
        {"maps": {"local_aliases": {"root": [":include:/etc/../etc/shadow"]}}},
        "maps.local_aliases",
    ),
    (
        "local-alias-key-newline",
        {"maps": {"local_aliases": {"root\n": ["alice@example.com"]}}},
        "maps.local_aliases",
    ),
    (
        "transport-injection",
        {
            "maps": {
                "transports": {"example.net": "smtp:[relay.example.net]:25\nmynetworks = 0.0.0.0/0"}
            }
        },
        "maps.transports",
    ),
    (
        "transport-trailing-newline",
        {"maps": {"transports": {"example.net": "smtp:relay.example.net\n"}}},
        "maps.transports",
    ),
    (
        "transport-dollar-text",
        {"maps": {"transports": {"example.net": "error:5.1.1 gone, see $url"}}},
        None,
    ),
    (
        "access-action-newline",
        {"access": {"clients": {"192.0.2.0/24": "REJECT go\nOK"}}},
        "access.clients",
    ),
    (
        "access-action-text",
        {"access": {"senders": {"spam@example.org": "REJECT no $spam, #1"}}},
        None,
    ),
    ("access-helo-blank", {"access": {"helo": {"evil host": "REJECT"}}}, "access.helo"),
    (
        "restriction-newline",
        {"restrictions": {"recipient": ["permit\nmynetworks = 0.0.0.0/0"]}},
        "restrictions.recipient",
    ),
    (
        "restriction-comma-list",
        {"restrictions": {"client": ["reject_rbl_client zen.spamhaus.org, permit"]}},
        "restrictions.client",
    ),
    (
        "restriction-class-bad-name",
        {"restrictions": {"classes": {"Bad-Name": ["permit"]}}},
        "restrictions.classes",
    ),
    (
        "rbl-injection",
        {"rbl": {"lists": ["zen.spamhaus.org\nmynetworks=0.0.0.0/0"]}},
        "rbl.lists.0",
    ),
    (
        "greylist-regex",
        {"greylisting": {"whitelist_clients": ["/.*/"]}},
        "greylisting.whitelist_clients",
    ),
    (
        "greylist-recipient-regex",
        {"greylisting": {"whitelist_recipients": ["/.*/"]}},
        "greylisting.whitelist_recipients",
    ),
    ("networks-everything", {"networks": ["0.0.0.0/0"]}, "networks.0"),
    ("networks-too-wide", {"networks": ["10.0.0.0/7"]}, "networks.0"),
    ("sasl-local-domain", {"sasl": {"local_domain": "example.com\nx=y"}}, "sasl.local_domain"),
    (
        "cyrus-admins-blank",
        {"cyrus": {"admins": ["alice@example.com bob@example.com"]}},
        "cyrus.admins.0",
    ),
    ("banner-newline", {"smtp": {"banner": "ESMTP\nmynetworks = 0.0.0.0/0"}}, "smtp.banner"),
    ("banner-dollar", {"smtp": {"banner": "ESMTP $mynetworks ${x} $!"}}, None),
    (
        "fetchmail-server-quote",
        {"fetchmail": _fetch(server='pop.example.com" pre "x')},
        "fetchmail.accounts.0.server",
    ),
    (
        "fetchmail-user-newline",
        {"fetchmail": _fetch(user="me\npreconnect x")},
        "fetchmail.accounts.0.user",
    ),
    ("fetchmail-user-quote", {"fetchmail": _fetch(user='me" preconnect "touch /tmp/pwned')}, None),
    ("fetchmail-user-unicode", {"fetchmail": _fetch(user="jürgen@provider.example 📧")}, None),
]

FETCHMAIL_COMMANDS = {
    "preconnect",
    "pre",
    "postconnect",
    "post",
    "mda",
    "plugin",
    "plugout",
    "bsmtp",
    "lmtp",
}


@functools.cache
def _base_main_cf() -> dict[str, str]:
    base = settings()
    return main_cf_params(render(base, secrets_for(base)).files["postfix/main.cf"].content.decode())


def assert_bundle_sane(s: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Render `s`; check no file gained a parameter, entry or keyword it should not have
    (main.cf compared with `base`, the parameters of the settings `s` was made from)."""
    bundle = render(s, secrets_for(s))
    files = {
        p: f.content.decode("utf-8")
        for p, f in bundle.files.items()
        if p.startswith(("postfix/", "cyrus/", "postgrey/", "fetchmail/"))
    }
    defs = parse_main_cf(files["postfix/main.cf"])
    names = [n for n, _ in defs]
    assert len(names) == len(set(names)), "a main.cf parameter is defined twice"
    params = dict(defs)
    base = _base_main_cf() if base is None else base
    assert set(params) - set(base) <= {postfix_maps.class_param(c) for c in s.restrictions.classes}
    for key in (
        "mynetworks",
        "smtpd_relay_restrictions",
        "compatibility_level",
        "smtpd_tls_auth_only",
        "smtpd_forbid_unauth_pipelining",
    ):
        assert params[key] == base[key], key
    tables = ["postfix/virtual", "postfix/vmailbox"] + [
        t.path for t in postfix_maps.tables(s).values() if t.name != "aliases"
    ]
    for path in tables:
        for key, value in parse_table(files[path]):
            assert key and value and not re.search(r"\s", key), (path, key, value)
    for path in ("cyrus/imapd.conf", "cyrus/imapd-admin.conf"):
        cyrus_options(files[path])
    for path in ("postgrey/whitelist_clients", "postgrey/whitelist_recipients"):
        postgrey_entries(files[path])
    if RC in files:
        words = [t for kind, t in fetchmail_tokens(files[RC].encode()) if kind == "word"]
        assert not FETCHMAIL_COMMANDS & set(words)
        assert words.count("poll") == len(s.fetchmail.accounts)
    return files


def _through_settings_cases() -> list[Any]:
    out = []
    for case in THROUGH_SETTINGS:
        marks = getattr(case, "marks", ())
        vid, changes, name = getattr(case, "values", case)  # a plain tuple or a pytest.param
        out.append(pytest.param(changes, name, id=str(vid), marks=marks))
    return out


@pytest.mark.parametrize(("changes", "field_name"), _through_settings_cases())
def test_hostile_setting_is_refused_naming_the_field_or_rendered_safely(
    changes: dict[str, Any], field_name: str | None
) -> None:
    data = base_data(**changes)
    try:
        s = build_settings(data)
        files = assert_bundle_sane(s)
    except (SettingsError, RenderError) as exc:
        assert field_name is not None, f"a safe value was refused: {exc}"
        assert field_name in str(exc), f"the error does not name {field_name!r}: {exc}"
        return
    assert field_name is None, f"{field_name} was accepted and rendered"
    if "fetchmail" in changes:
        user = changes["fetchmail"]["accounts"][0]["user"]
        tokens = fetchmail_tokens(files[RC].encode())
        at = tokens.index(("word", "user"))
        assert tokens[at + 1] == ("string", user)
    if "smtp" in changes:
        banner = main_cf_params(files["postfix/main.cf"])["smtpd_banner"]
        assert banner.startswith("$myhostname ")
        assert postfix_literal(banner.removeprefix("$myhostname ")) == changes["smtp"]["banner"]
    if "maps" in changes:
        assert ("example.net", "error:5.1.1 gone, see $url") in parse_table(
            files["postfix/transport"]
        )
    if "access" in changes:
        assert ("spam@example.org", "REJECT no $spam, #1") in parse_table(
            files["postfix/sender_access"]
        )
    if "hostname" in changes:
        assert main_cf_params(files["postfix/main.cf"])["myhostname"] == "mail.example.com"


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (settings_names.address, "alice\n@example.com"),
        (settings_names.local_part, "alice\n"),
        (local_name, "root\n"),
        (transport, "smtp:relay.example.net\n"),
        (settings_restrictions.class_name, "myclass\n"),
    ],
    ids=["address", "local_part", "local_name", "transport", "class_name"],
)
def test_validators_refuse_a_trailing_newline(validator: Callable[[str], str], value: str) -> None:
    with pytest.raises(ValueError):
        validator(value)


def test_fetchmail_deliver_to_with_newline_is_refused() -> None:
    data = base_data(fetchmail=_fetch(deliver_to="alice\n@example.com"))
    with pytest.raises(SettingsError, match=r"fetchmail\.accounts\.0\.deliver_to"):
        build_settings(data)


def _ldap(**ldap: Any) -> dict[str, Any]:
    conf = {"servers": ["ldap://ldap.example.com/"], "search_base": "dc=example,dc=com"}
    conf.update(ldap)
    return {"mechanism": "ldap", "ldap": conf}


def _saslauthd_conf(s: Settings) -> list[tuple[str, str]]:
    conf = render(s, secrets_for(s)).files[sasl.SASLAUTHD_CONF].content.decode("utf-8")
    return saslauthd_options(conf)


def test_saslauthd_conf_means_what_the_settings_say() -> None:
    flt = '(&(mail=%u)(objectClass=inetOrgPerson)) # "quoted" $x'
    opts = _saslauthd_conf(settings(sasl=_ldap(filter=flt)))
    assert [k for k, _ in opts] == [
        "ldap_servers",
        "ldap_search_base",
        "ldap_filter",
        "ldap_start_tls",
        "ldap_timeout",
    ]
    assert dict(opts)["ldap_filter"] == flt


def test_a_long_ldap_filter_cannot_add_a_saslauthd_option() -> None:
    # fgets() hands saslauthd 4095 bytes at a time: what follows becomes a line of its own.
    head = "ldap_filter: (uid=%u)"
    flt = "(uid=%u)" + "x" * (4095 - len(head)) + "ldap_tls_check_peer: no"
    try:
        opts = _saslauthd_conf(settings(sasl=_ldap(filter=flt)))
    except (SettingsError, RenderError) as exc:
        assert "sasl.ldap.filter" in str(exc)
        return
    assert "ldap_tls_check_peer" not in dict(opts)
    assert dict(opts)["ldap_filter"] == flt


@pytest.mark.parametrize(
    ("validator", "value"),
    [
        (settings_names.ldap_url, "ldap:// ldap.example.com"),
        (settings_names.ldap_url, "ldap://ldap.example.com\n"),
        (settings_names.host_port, " imap.example.com"),
        (settings_names.host_port, "imap.example.com\n"),
    ],
    ids=["ldap-inner-blank", "ldap-newline", "host-leading-blank", "host-newline"],
)
def test_host_validators_refuse_or_drop_blanks(validator: Callable[[str], str], value: str) -> None:
    try:
        out = validator(value)
    except ValueError:
        return
    assert not re.search(r"\s", out), f"{value!r} -> {out!r}"

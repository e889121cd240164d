"""Values that pass a field's type but that the daemon would refuse or misread, and
settings files YAML would read differently from what was written: each is refused,
naming the setting (or the file and line), without echoing values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mailctl.errors import SettingsError
from mailctl.settings import loader
from mailctl.settings.loader import build_settings, load_settings
from mailctl.settings.maps import transport
from mailctl.settings.model import alias_loop
from tests.unit.factory import HASH, base_data, full_data

SECRET = "hunter2-Correct-Horse"


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as info:
        build_settings(data)
    msg = str(info.value)
    assert msg.isprintable(), msg
    return msg


# --- maps.transports: transport:nexthop as Postfix reads it --------------------------


@pytest.mark.parametrize(
    "value",
    [
        "smtp:",
        "smtp:[relay.example.net]",
        "smtp:[relay.example.net]:587",
        "smtp:relay.example.net",
        "smtp:relay.example.net:2525",
        "relay:[192.0.2.10]:25",
        "smtp:[2001:db8::1]:25",
        "smtp:[ipv6:2001:db8::1]",
        "lmtp:unix:/run/cyrus/socket/lmtp",
        "lmtp:inet:backend.example.net:24",
        "lmtp:[192.0.2.7]:24",
        "error:5.1.1 this mailbox is closed",
        "error:gone, see $url {x} #1",
        "retry:4.3.0 try later",
        "discard:",
        "local:",
        "virtual:",
    ],
)
def test_transports_postfix_reads_are_accepted(value: str) -> None:
    assert transport(value) == value
    s = build_settings(base_data(maps={"transports": {"example.net": value}}))
    assert s.maps.transports == {"example.net": value}


@pytest.mark.parametrize(
    "value",
    [
        "smtp:[host",
        "smtp:[relay.example.net",
        "smtp:relay.example.net]",
        "smtp:[relay.example.net]x",
        "smtp:[relay.example.net]:",
        "smtp:[relay.example.net]:0",
        "smtp:[relay.example.net]:65536",
        "smtp:relay.example.net:port",
        "smtp:192.0.2.10",  # a bare IP is looked up as a domain name's MX
        "smtp:2001:db8::1",
        "smtp:[ipv6:not-an-address]",
        "smtp:[]",
        "smtp:relay example.net",
        "smtp:relay_host.example.net",
        "smtp",
        "relay.example.net",
        ":[relay.example.net]",
        "SMTP:[relay.example.net]",
        "pipe:argv=/bin/sh",
        "nosuchservice:relay.example.net",
        "error:two\nlines",
        "error: leading blank",
        "error:" + "x" * 600,
        "local:not a host",
        "lmtp:unix:relative/socket",
    ],
)
def test_a_transport_postfix_would_misread_is_refused_naming_the_key(value: str) -> None:
    msg = refused(base_data(maps={"transports": {"example.net": value}}))
    assert "'maps.transports.example.net'" in msg


# --- aliases: loops --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aliases", "loop"),
    [
        ({"a@example.com": "a@example.com"}, "a@example.com -> a@example.com"),
        ({"a@example.com": "b@example.com", "b@example.com": "a@example.com"}, None),
        (
            {
                "a@example.com": "b@example.com",
                "b@example.com": ["x@example.org", "c@example.com"],
                "c@example.com": "a@example.com",
            },
            "a@example.com -> b@example.com -> c@example.com -> a@example.com",
        ),
        (
            {"a@example.com": ["a@example.com", "b@example.com"], "b@example.com": "a@example.com"},
            "a@example.com -> b@example.com -> a@example.com",
        ),
    ],
    ids=["self", "two", "three", "self-copy-in-a-cycle"],
)
def test_an_alias_loop_is_refused_naming_its_addresses(
    aliases: dict[str, Any], loop: str | None
) -> None:
    msg = refused(base_data(aliases=aliases))
    expected = loop or "a@example.com -> b@example.com -> a@example.com"
    assert f"aliases.a@example.com: {expected} is a loop" in msg


@pytest.mark.parametrize(
    "aliases",
    [
        # A chain that ends at a mailbox.
        {"a@example.com": "b@example.com", "b@example.com": "alice@example.com"},
        # Postfix's documented way to keep a copy and forward.
        {"a@example.com": ["a@example.com", "x@example.org"]},
        # A catch-all pointing into an address that points back: whether the catch-all
        # applies depends on what else matches, so it is not a definite loop.
        {"@example.com": "a@example.com", "a@example.com": "x@example.org"},
        {"a@example.com": "b@example.com", "@example.com": "a@example.com"},
        # Two keys pointing at the same target: a diamond, not a cycle.
        {"a@example.com": ["b@example.com", "c@example.com"], "b@example.com": "alice@example.com"},
    ],
    ids=["chain", "keep-a-copy", "catch-all-in", "catch-all-back", "diamond"],
)
def test_aliases_without_a_definite_loop_are_accepted(aliases: dict[str, Any]) -> None:
    build_settings(base_data(aliases=aliases))


def test_a_loop_in_local_aliases_is_refused() -> None:
    msg = refused(base_data(maps={"local_aliases": {"root": ["admin"], "admin": ["root"]}}))
    assert "maps.local_aliases.admin: admin -> root -> admin is a loop" in msg


def test_alias_loop_finds_long_cycles_without_recursion() -> None:
    chain = {f"a{i}@example.com": [f"a{i + 1}@example.com"] for i in range(5000)}
    chain["a5000@example.com"] = ["a0@example.com"]
    loop = alias_loop(chain)
    assert loop is not None and len(loop) == 5002 and loop[0] == loop[-1]


# --- relay logins only over TLS ------------------------------------------------------------


def _relay(**changes: Any) -> dict[str, Any]:
    relay: dict[str, Any] = {
        "host": "[smtp.example.net]:587",
        "username": "me",
        "password_file": "/run/secrets/relay",
    }
    relay.update(changes)
    return relay


def test_a_relay_login_without_tls_is_refused() -> None:
    msg = refused(base_data(relay=_relay(), smtp={"outbound_tls": "none"}))
    assert "relay.username" in msg and "smtp.outbound_tls" in msg


def test_a_sender_relay_login_without_tls_is_refused() -> None:
    senders = {
        "@example.com": {
            "host": "[smtp2.example.net]:587",
            "username": "u2",
            "password_file": "/run/secrets/r2",
        }
    }
    msg = refused(
        base_data(relay={"senders": senders}, smtp={"outbound_tls": "none"})  # no relayhost
    )
    assert "relay.senders.@example.com.username" in msg


@pytest.mark.parametrize("level", ["may", "encrypt"])
def test_a_relay_login_with_tls_is_accepted(level: str) -> None:
    build_settings(base_data(relay=_relay(), smtp={"outbound_tls": level}))


def test_a_relay_without_login_may_go_without_tls() -> None:
    build_settings(
        base_data(relay={"host": "[smtp.example.net]:25"}, smtp={"outbound_tls": "none"})
    )


# --- the settings file: duplicate keys, size ---------------------------------------------


def _load(tmp_path: Path, text: str) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    msg = str(info.value)
    assert msg.isprintable(), msg
    return msg


GOOD = (
    "hostname: mail.example.com\n"
    "domains: [example.com]\n"
    "users:\n"
    f"  - address: alice@example.com\n    password_hash: '{HASH}'\n"
)


def test_the_plain_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(GOOD)
    assert load_settings(path).users[0].address == "alice@example.com"


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        (GOOD + "hostname: mx.example.com\n", 6, "hostname", 1),
        (GOOD + "smtp:\n  banner: a\n  banner: b\n", 8, "smtp.banner", 7),
        (
            GOOD.replace("    password_hash", "    password_hash: x\n    password_hash", 1),
            6,
            "users.0.password_hash",
            5,
        ),
        (
            GOOD + "aliases:\n  a@example.com: b@example.com\n  a@example.com: c@example.com\n",
            8,
            "aliases.a@example.com",
            7,
        ),
        # Different spellings of one key: YAML makes both the same Python value.
        (GOOD + "smtp:\n  dialup: true\n  'dialup': false\n", 8, "smtp.dialup", 7),
        (GOOD + "x:\n  1: a\n  0x1: b\n", 8, "x.0x1", 7),
        # A duplicated top-level list would silently drop every user above it.
        (GOOD + "users: []\n", 6, "users", 3),
    ],
    ids=["top", "nested", "in-list", "map-key", "quoted", "int-spellings", "users"],
)
def test_a_key_given_twice_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, key: str, first: int
) -> None:
    msg = _load(tmp_path, text)
    assert f"line {line}: key '{key}' is given twice (first at line {first})" in msg


def test_a_key_given_twice_does_not_echo_values(tmp_path: Path) -> None:
    text = GOOD + f"relay:\n  username: {SECRET}\n  username: {SECRET}2\n"
    assert SECRET not in _load(tmp_path, text)


def test_a_duplicate_key_is_shown_escaped(tmp_path: Path) -> None:
    text = GOOD + 'aliases:\n  "x\\nforged@example.com": a\n  "x\\nforged@example.com": b\n'
    msg = _load(tmp_path, text)
    assert "aliases.x\\nforged@example.com" in msg


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    text = GOOD + "base: &b {recipient_limit: 5, banner: x}\nsmtp:\n  <<: *b\n  banner: y\n"
    msg = _load(tmp_path, text)  # refused for the unknown `base`, not for a duplicate
    assert "given twice" not in msg and "'base': is not a known setting" in msg


def test_anchors_are_walked_once(tmp_path: Path) -> None:
    # A billion-laughs shape: without memory of visited nodes the walk would never end.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    msg = _load(tmp_path, GOOD + "\n".join(lines) + "\n")
    assert "is not a known setting" in msg


def test_a_settings_file_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    text = GOOD + "#" + "x" * loader.MAX_FILE_BYTES + "\n"
    msg = _load(tmp_path, text)
    assert "larger than 1024 KiB" in msg


def test_a_settings_file_at_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(GOOD + "#" * (loader.MAX_FILE_BYTES - len(GOOD) - 1) + "\n")
    assert path.stat().st_size == loader.MAX_FILE_BYTES
    load_settings(path)


# --- user-given keys are shown escaped in every message ------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"aliases": {"x\n2026-01-01 mailctl: ok@example.com": "alice@example.com"}},
        {"maps": {"canonical": {"a\r\nb@example.com": "alice@example.com"}}},
        {"access": {"helo": {"evil\x1b[2K.example": "REJECT"}}},
        {"relay": {"senders": {"x\x00@example.com": {"host": "[smtp.example.net]"}}}},
        {"restrictions": {"classes": {"c\nx": ["reject"]}}},
    ],
    ids=["aliases", "canonical", "helo-escape-sequence", "relay-nul", "class"],
)
def test_a_control_character_in_a_key_is_escaped_in_the_message(changes: dict[str, Any]) -> None:
    msg = refused(base_data(**changes))
    assert "\\" in msg  # shown as an escape, e.g. \n or \x1b


def test_full_settings_with_a_bad_pattern_name_the_pattern(tmp_path: Path) -> None:
    data = full_data()
    data["access"]["patterns"][0]["pattern"] = "^(unclosed"
    msg = refused(data)
    assert "'access.patterns.0': pattern '^(unclosed'" in msg


def test_a_fetchmail_user_that_is_not_utf8_is_refused_by_the_settings() -> None:
    # Broken UTF-8 in an env var arrives as a lone surrogate, which no file can hold.
    data = full_data()
    data["fetchmail"]["accounts"][0]["user"] = "me\udcff"
    assert "'fetchmail.accounts.0.user'" in refused(data)


def test_every_mechanism_the_settings_accept_is_in_the_table() -> None:
    from typing import get_args

    from mailctl.settings.mechanisms import MECHANISMS
    from mailctl.settings.model import Sasl

    accepted = get_args(Sasl.model_fields["mechanism"].annotation)
    assert set(accepted) == set(MECHANISMS)

"""Every value a settings file can hold ends in a clean refusal or a safe render.

A sweep, not a list of known bugs: each string in a settings tree that sets every
field (factory.full_data), each map key, and each secret the renderers take, is
replaced in turn by hostile text. The only exceptions allowed out are the
refusals (SettingsError, RenderError), one line each, never echoing a secret;
anything else (ValueError from a NUL in a path, UnicodeEncodeError from broken
UTF-8, KeyError, RecursionError) is a bug of the kind this file exists to find.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mailctl.errors import RenderError, SettingsError
from mailctl.render import Secrets, render
from mailctl.settings.loader import build_settings, load_settings
from mailctl.settings.model import Settings
from tests.unit.factory import full_data, main_cf_params, secrets_for
from tests.unit.test_quoting import assert_bundle_sane

HOSTILE: dict[str, str] = {
    "nul": "a\x00b",
    "cr": "a\rb",
    "lf": "a\nb",
    "crlf_injection": "x\r\nmynetworks = 0.0.0.0/0",
    "tab": "a\tb",
    "esc": "a\x1b[31mb",
    "del": "a\x7fb",
    "nel": "a\x85b",
    "line_separator": "a\u2028b",
    "bom": "\ufeffa",
    "zero_width": "a\u200bb",
    "lone_surrogate": "\ud800",
    "surrogate_escape": "a\udcffb",  # what Python makes of a non-UTF-8 byte in env
    "long": "x" * 5000,
    "non_ascii": "grüße",
    "dollar": "$",
    "dollar_name": "a$mynetworks",
    "dollar_brace": "${x}",
    "brace_open": "{",
    "brace_close": "}",
    "braces": "{a}",
    "hash": "#a",
    "comma": "a,b",
    "equals": "a=b",
    "dquote": 'a"b',
    "squote": "a'b",
    "backslash": "a\\b",
    "trailing_backslash": "a\\",
    "empty": "",
    "blank": " ",
    "inner_blank": "a b",
    "colon": "a:b",
    "slash": "/a/",
    "punctuation": "a#b,c=d\"e'f\\g:h/i",
}

# One of each kind for the sweep (build + render per value is not free).
SWEEP = (
    "nul",
    "crlf_injection",
    "line_separator",
    "surrogate_escape",
    "long",
    "non_ascii",
    "dollar_name",
    "braces",
    "punctuation",
    "empty",
    "inner_blank",
)
# For a key that names a settings field, any other text is an unknown setting: enough
# to see that the refusal shows it escaped.
FIELD_KEY_SWEEP = ("crlf_injection", "surrogate_escape")

Leaf = tuple[str, tuple[Any, ...]]  # ("value" | "key", path into the data)


def leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[Leaf]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield ("key", (*path, k))
            yield from leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, (*path, i))
    elif isinstance(obj, str):
        yield ("value", path)


def mutate(data: dict[str, Any], leaf: Leaf, value: str) -> dict[str, Any]:
    kind, path = leaf
    out = copy.deepcopy(data)
    parent = out
    for p in path[:-1]:
        parent = parent[p]
    if kind == "value":
        parent[path[-1]] = value
    else:
        parent[value] = parent.pop(path[-1])
    return out


def assert_clean_refusal(exc: Exception) -> None:
    """One line of printable text: a key with a line break cannot forge a log line."""
    msg = str(exc)
    assert msg.isprintable(), f"the message holds a raw control character: {msg!r}"


# --- the sweep covers the whole model ------------------------------------------------


def _models(annotation: Any, value: Any) -> list[tuple[type[pydantic.BaseModel], Any]]:
    """(model, its data) for every settings group inside a field's value."""
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [(annotation, value)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and isinstance(value, list):
        return [m for item in value for m in _models(args[0], item)]
    if origin is dict and isinstance(value, dict):
        return [m for item in value.values() for m in _models(args[1], item)]
    if origin in (typing.Union, types.UnionType):
        return [m for arg in args if arg is not type(None) for m in _models(arg, value)]
    return []


def _model_types(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]


def _walk(
    model: type[pydantic.BaseModel], data: Any, where: str, found: set[str], every: set[str]
) -> None:
    """Every field path of `model` into `every`; those `data` sets (in any list item or
    map value) into `found`."""
    for name, field in model.model_fields.items():
        every.add(where + name)
        given = isinstance(data, dict) and name in data
        if given:
            found.add(where + name)
        for sub in _model_types(field.annotation):
            values = (
                [v for m, v in _models(field.annotation, data[name]) if m is sub] if given else []
            )
            for value in values or [None]:
                _walk(sub, value, f"{where}{name}.", found, every)


def test_the_sweep_sets_every_field_of_the_model() -> None:
    """A new setting must be added to factory.full_data, or the sweep would skip it."""
    found: set[str] = set()
    every: set[str] = set()
    _walk(Settings, full_data(), "", found, every)
    assert sorted(every - found) == []


@functools.cache
def _full_main_cf() -> dict[str, str]:
    s = build_settings(full_data())
    return main_cf_params(render(s, secrets_for(s)).files["postfix/main.cf"].content.decode())


def test_the_full_settings_render() -> None:
    assert_bundle_sane(build_settings(full_data()), _full_main_cf())


# --- hostile text in every string and every key ---------------------------------------

LEAVES = list(leaves(full_data()))


def _field_names() -> set[str]:
    every: set[str] = set()
    _walk(Settings, {}, "", set(), every)
    return {path.rsplit(".", 1)[-1] for path in every}


FIELD_NAMES = _field_names()


@pytest.mark.parametrize(
    "leaf", LEAVES, ids=[f"{kind}:{'.'.join(map(str, path))}" for kind, path in LEAVES]
)
def test_hostile_text_anywhere_is_refused_cleanly_or_rendered_safely(leaf: Leaf) -> None:
    kind, path = leaf
    values = FIELD_KEY_SWEEP if kind == "key" and path[-1] in FIELD_NAMES else SWEEP
    for vid in values:
        data = mutate(full_data(), leaf, HOSTILE[vid])
        try:
            s = build_settings(data)
            assert_bundle_sane(s, _full_main_cf())
        except (SettingsError, RenderError) as exc:
            assert_clean_refusal(exc)
        except Exception as exc:  # the bug this test exists to find
            pytest.fail(f"{vid}: {type(exc).__name__} escaped instead of a refusal: {exc}")


# --- hostile secrets reach the renderers -----------------------------------------------

MARK = "hunter2"  # part of every hostile secret; never in a message


def _secret_variants(base: Secrets, value: str) -> dict[str, Secrets]:
    return {
        "user_hashes": dataclasses.replace(
            base, user_hashes=dict.fromkeys(base.user_hashes, value)
        ),
        "fetchmail": dataclasses.replace(base, fetchmail_passwords={0: value}),
        "ldap_bind": dataclasses.replace(base, ldap_bind_password=value),
        "relay": dataclasses.replace(
            base, relay_passwords=dict.fromkeys(base.relay_passwords, value)
        ),
    }


@pytest.mark.parametrize("mechanism", ["pam", "ldap"])
def test_hostile_secrets_are_refused_without_echo(mechanism: str) -> None:
    data = full_data()
    data["sasl"]["mechanism"] = mechanism
    s = build_settings(data)
    base = secrets_for(s)
    for vid, hostile in HOSTILE.items():
        for name, sec in _secret_variants(base, MARK + hostile).items():
            try:
                render(s, sec)
            except RenderError as exc:
                assert_clean_refusal(exc)
                assert MARK not in str(exc), f"{name}/{vid}: the secret is echoed: {exc}"
            except Exception as exc:
                pytest.fail(f"{name}/{vid}: {type(exc).__name__} escaped: {exc}")


@pytest.mark.parametrize("missing", ["relay_passwords", "fetchmail_passwords", "user_hashes"])
def test_a_secret_that_was_not_read_is_a_refusal(missing: str) -> None:
    s = build_settings(full_data() | {"sasl": {"mechanism": "pam"}})
    nothing: dict[str, Any] = {missing: {}}
    sec = dataclasses.replace(secrets_for(s), **nothing)
    with pytest.raises(RenderError) as info:
        render(s, sec)
    assert_clean_refusal(info.value)


# --- path settings: refused at the edge, not when the file is opened --------------------

PATH_LEAVES = [
    leaf
    for leaf in LEAVES
    if leaf[0] == "value" and str(leaf[1][-1]).endswith(("_file", "cert_file", "key_file"))
]


def test_every_path_setting_is_swept() -> None:
    names = {".".join(str(p) for p in path if not isinstance(p, int)) for _, path in PATH_LEAVES}
    assert names == {
        "users.password_file",
        "sasl.ldap.bind_password_file",
        "relay.password_file",
        "relay.senders.@example.com.password_file",
        "fetchmail.accounts.password_file",
        "tls.cert_file",
        "tls.key_file",
        "edge.password_file",
    }


@pytest.mark.parametrize(
    "bad",
    [
        "/run/secrets/a\x00b",
        "/run/secrets/a\nb",
        "/run/a\udcffb",
        "relative/pw",
        "",
        "/" + "x" * 300,
    ],
    ids=["nul", "newline", "broken-utf8", "relative", "empty", "name-too-long"],
)
@pytest.mark.parametrize(
    "leaf", PATH_LEAVES, ids=[".".join(map(str, path)) for _, path in PATH_LEAVES]
)
def test_a_bad_path_is_refused_naming_the_setting(leaf: Leaf, bad: str) -> None:
    with pytest.raises(SettingsError) as info:
        build_settings(mutate(full_data(), leaf, bad))
    msg = str(info.value)
    assert_clean_refusal(info.value)
    assert ".".join(map(str, leaf[1])) in msg


def test_an_absolute_path_is_kept() -> None:
    s = build_settings(full_data())
    assert s.tls.cert_file == Path("/certs/cert.pem")
    assert s.fetchmail.accounts[0].password_file == Path("/run/secrets/pop")


# --- what the loader is handed -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("hostname: " + "[" * 1_000 + "]" * 1_000 + "\n", "nested too deeply"),
        ("hostname: mail.example.com\nsmtp: {recipient_limit: " + "9" * 5000 + "}\n", "converted"),
        ("1: x\nhostname: mail.example.com\n", "top-level key '1'"),
    ],
    ids=["deep", "huge-int", "int-key"],
)
def test_a_file_yaml_cannot_hand_over_is_refused(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=words) as info:
        load_settings(path)
    assert_clean_refusal(info.value)


def test_deeply_nested_json_in_env_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_USERS", "[" * 10_000 + "]" * 10_000)
    with pytest.raises(SettingsError, match="nested too deeply"):
        build_settings(full_data())


def test_an_unknown_env_name_is_shown_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_X\nmailctl: forged line", "1")
    with pytest.raises(SettingsError) as info:
        build_settings(full_data())
    assert_clean_refusal(info.value)
    assert "MAIL_X\\nmailctl" in str(info.value)


def test_a_control_character_in_a_map_key_is_shown_escaped() -> None:
    data = full_data()
    data["maps"]["transports"]["bad\n2026-01-01 mailctl: all good"] = "smtp:"
    with pytest.raises(SettingsError) as info:
        build_settings(data)
    assert_clean_refusal(info.value)
    assert "maps.transports.bad\\n2026-01-01" in str(info.value)


def test_env_json_with_a_control_key_is_shown_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_ALIASES", json.dumps({"x\r\ny@example.com": "alice@example.com"}))
    with pytest.raises(SettingsError) as info:
        build_settings(full_data())
    assert_clean_refusal(info.value)

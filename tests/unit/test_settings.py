"""The settings model and its loader: unknown keys, env over YAML, secrets from files,
and no secret in any error text."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailctl.apply import secrets as apply_secrets
from mailctl.errors import SettingsError
from mailctl.layout import Layout
from mailctl.render import Secrets
from mailctl.settings.loader import build_settings, load_settings
from tests.unit.factory import CERT, HASH, KEY, base_data, settings
from tests.unit.fakes import FakeRunner

CLEAR = "hunter2-Correct-Horse"  # a clear-text password that must never be echoed


def write_yaml(directory: Path, data: dict[str, Any]) -> Path:
    path = directory / "settings.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(SettingsError) as info:
        build_settings(data)
    return str(info.value)


# --- unknown keys ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"bogus": 1}, "'bogus': is not a known setting"),
        ({"smtp": {"nope": 2}}, "'smtp.nope': is not a known setting"),
        (
            {"users": [{"address": "alice@example.com", "password_hash": HASH, "pasword": "x"}]},
            "'users.0.pasword': is not a known setting",
        ),
        (
            {"greylisting": {"enabled": True, "delai": 30}},
            "'greylisting.delai': is not a known setting",
        ),
    ],
    ids=["top", "nested", "in-list", "typo"],
)
def test_unknown_keys_are_refused_by_name(changes: dict[str, Any], where: str) -> None:
    assert where in refused(base_data(**changes))


def test_unknown_key_in_the_yaml_file_is_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, base_data(relay_hots="smtp.example.net"))
    with pytest.raises(SettingsError, match="'relay_hots': is not a known setting"):
        load_settings(path)


def test_every_bad_setting_is_named_in_one_error() -> None:
    msg = refused(base_data(bogus=1, smtp={"message_size_limit": 10, "x": 1}))
    assert "'bogus'" in msg and "'smtp.x'" in msg and "'smtp.message_size_limit'" in msg


def test_missing_hostname_is_named() -> None:
    data = base_data()
    del data["hostname"]
    assert "setting 'hostname': is required" in refused(data)


# --- env vars over the YAML file -------------------------------------------------


def test_yaml_alone(tmp_path: Path) -> None:
    s = load_settings(write_yaml(tmp_path, base_data(smtp={"recipient_limit": 7})))
    assert s.hostname == "mail.example.com"
    assert s.smtp.recipient_limit == 7


def test_env_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(
        tmp_path,
        base_data(
            domains=["example.com", "example.org"],
            smtp={"recipient_limit": 7, "message_size_limit": 4096},
            greylisting={"enabled": True, "delay": 60},
        ),
    )
    monkeypatch.setenv("MAIL_HOSTNAME", "mx.example.net")
    monkeypatch.setenv("MAIL_SMTP__MESSAGE_SIZE_LIMIT", "2048")
    monkeypatch.setenv("MAIL_GREYLISTING__ENABLED", "false")
    monkeypatch.setenv("MAIL_DOMAINS", '["example.com"]')
    s = load_settings(path)
    assert s.hostname == "mx.example.net"
    assert s.smtp.message_size_limit == 2048
    assert s.smtp.recipient_limit == 7, "a nested env var replaces one field, not the group"
    assert s.greylisting.enabled is False
    assert s.greylisting.delay == 60
    assert s.domains == ["example.com"], "a list from env replaces the file's list"


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("mail_smtp__recipient_limit", "9")
    assert settings().smtp.recipient_limit == 9


def test_env_only_setup_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_HOSTNAME", "mail.example.org")
    monkeypatch.setenv("MAIL_DOMAINS", '["example.org"]')
    monkeypatch.setenv(
        "MAIL_USERS", json.dumps([{"address": "carol@example.org", "password_hash": HASH}])
    )
    s = load_settings(tmp_path / "settings.yaml")  # no such file
    assert s.hostname == "mail.example.org"
    assert [u.address for u in s.users] == ["carol@example.org"]


def test_unknown_nested_env_var_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_SMTP__MESAGE_SIZE_LIMIT", "1")
    assert "'smtp.mesage_size_limit': is not a known setting" in refused(base_data())


def test_unknown_top_level_env_var_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAIL_HOSTNAM", "mx.example.net")
    assert "hostnam" in refused(base_data()).lower()


@pytest.mark.parametrize(
    "name",
    [
        "MAIL_PORT",
        "MAIL_SERVICE_HOST",
        "MAIL_SERVICE_PORT",
        "MAIL_SERVICE_PORT_SMTP",
        "MAIL_PORT_25_TCP",
        "MAIL_PORT_25_TCP_ADDR",
        "MAIL_PORT_587_TCP_PROTO",
        "MAIL_SMTP_SERVICE_HOST",  # a Service named mail-smtp
        "MAIL_API_PORT_8080_TCP_PORT",
    ],
)
def test_kubernetes_service_links_are_not_taken_for_settings(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "tcp://10.96.0.12:25")
    assert build_settings(base_data()).hostname == "mail.example.com"


@pytest.mark.parametrize("name", ["MAIL_PORTS", "MAIL_SMTP_PORT_X", "MAIL_HOSTNAME_PORT_25"])
def test_names_only_like_service_links_are_still_refused(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "x")
    assert "is not a known setting" in refused(base_data())


def test_env_value_that_is_not_json_is_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAIL_USERS", f'[{{"address": "a@example.com", "password": "{CLEAR}"')
    msg = refused(base_data())
    assert "users" in msg
    assert CLEAR not in msg


def test_env_wins_over_the_file_in_a_whole_tree_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    # The file's users are in example.com; env narrows the domains: the rule sees env's.
    monkeypatch.setenv("MAIL_DOMAINS", '["example.org"]')
    assert "users.0.address: domain 'example.com' is not listed in 'domains'" in refused(
        base_data()
    )


# --- the YAML file itself --------------------------------------------------------


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SettingsError, match="mapping of settings"):
        load_settings(path)


def test_invalid_yaml_is_refused_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("hostname: [unclosed\n")
    with pytest.raises(SettingsError, match=str(path)):
        load_settings(path)


def test_invalid_yaml_error_does_not_quote_the_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(
        "hostname: mail.example.com\ndomains: [example.com]\nusers:\n"
        f"  - address: alice@example.com\n    password_hash: {CLEAR}: x\n"
    )
    with pytest.raises(SettingsError) as info:
        load_settings(path)
    assert "line 5" in str(info.value)
    assert CLEAR not in str(info.value)


# --- secrets: from files, and never in error text ----------------------------------


def test_wrong_hash_format_does_not_echo_the_password() -> None:
    msg = refused(base_data(users=[{"address": "alice@example.com", "password_hash": CLEAR}]))
    assert "users.0.password_hash" in msg
    assert CLEAR not in msg


@pytest.mark.parametrize(
    "bad_value",
    [[CLEAR], {"x": CLEAR}, 12345678, f"$6${CLEAR} with blanks"],
    ids=["list", "dict", "int", "hash-with-blanks"],
)
def test_bad_password_hash_of_any_type_is_not_echoed(bad_value: Any) -> None:
    msg = refused(base_data(users=[{"address": "alice@example.com", "password_hash": bad_value}]))
    assert "users.0.password_hash" in msg
    assert CLEAR not in msg and "12345678" not in msg


def test_both_password_kinds_is_refused_without_echo() -> None:
    msg = refused(
        base_data(
            users=[
                {
                    "address": "alice@example.com",
                    "password_hash": HASH,
                    "password_file": "/run/secrets/alice",
                }
            ]
        )
    )
    assert "users.0" in msg
    assert HASH not in msg


def test_settings_repr_hides_password_hashes() -> None:
    s = settings()
    assert HASH not in repr(s) and HASH not in str(s)
    assert HASH not in repr(s.users[0])


def test_secrets_repr_hides_everything() -> None:
    sec = Secrets(user_hashes={"a@example.com": HASH}, tls_key=KEY, fetchmail_passwords={0: CLEAR})
    assert CLEAR not in repr(sec) and HASH not in repr(sec) and "PRIVATE" not in repr(sec)


def test_read_secret_takes_one_line(tmp_path: Path) -> None:
    path = tmp_path / "alice"
    path.write_text(f"{CLEAR}\r\n")
    assert apply_secrets.read_secret(path, "users.0.password_file") == CLEAR
    path.write_text(f"  {CLEAR} ")  # blanks inside a password are the password's
    assert apply_secrets.read_secret(path, "users.0.password_file") == f"  {CLEAR} "


@pytest.mark.parametrize(
    "content",
    [f"{CLEAR}\nsecond-{CLEAR}\n", "", "\n", f"{CLEAR}\x00tail"],
    ids=["two-lines", "empty", "blank", "nul"],
)
def test_bad_secret_file_is_refused_without_echo(tmp_path: Path, content: str) -> None:
    path = tmp_path / "alice"
    path.write_text(content)
    with pytest.raises(SettingsError) as info:
        apply_secrets.read_secret(path, "users.0.password_file")
    msg = str(info.value)
    assert "users.0.password_file" in msg and str(path) in msg
    assert CLEAR not in msg and CLEAR not in repr(info.value)


@pytest.mark.parametrize("kind", ["missing", "directory", "not-utf8"])
def test_unreadable_secret_file_is_refused_naming_setting(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "secret"
    if kind == "directory":
        path.mkdir()
    elif kind == "not-utf8":
        path.write_bytes(b"\xff\xfe" + CLEAR.encode())
    with pytest.raises(SettingsError) as info:
        apply_secrets.read_secret(path, "fetchmail.accounts.0.password_file")
    assert "fetchmail.accounts.0.password_file" in str(info.value)
    assert CLEAR not in str(info.value)


def test_resolve_reads_secret_files(tmp_path: Path) -> None:
    (tmp_path / "alice").write_text("alice-pw\n")
    (tmp_path / "pop").write_text("pop-pw\n")
    (tmp_path / "cert.pem").write_bytes(CERT)
    (tmp_path / "key.pem").write_bytes(KEY)
    runner = FakeRunner()
    s = build_settings(
        base_data(
            users=[
                {"address": "alice@example.com", "password_file": str(tmp_path / "alice")},
                {"address": "bob@example.com", "password_hash": HASH},
            ],
            fetchmail={
                "accounts": [
                    {
                        "server": "pop.example.net",
                        "user": "me",
                        "password_file": str(tmp_path / "pop"),
                        "deliver_to": "bob@example.com",
                    }
                ]
            },
            tls={"cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem")},
        )
    )
    layout = Layout(state=tmp_path / "state")
    sec = apply_secrets.resolve(s, layout, runner=runner)
    assert [c[:3] for c in runner.calls] == [["openssl", "passwd", "-6"]]
    assert sec.user_hashes["bob@example.com"] == HASH
    alice = sec.user_hashes["alice@example.com"]
    assert alice.startswith("$6$salt0001$")
    again = apply_secrets.resolve(s, layout, runner=runner)
    assert again.user_hashes["alice@example.com"] == alice, "a render is stable"
    assert len(runner.calls) == 1, "the hash came from the cache on the state volume"
    cache = (tmp_path / "state" / "hashes.json").read_text()
    assert "alice-pw" not in cache and "alice@example.com" not in cache
    assert sec.fetchmail_passwords == {0: "pop-pw"}
    assert (sec.tls_cert, sec.tls_key) == (CERT, KEY)


def test_resolve_names_the_unreadable_secret(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_bytes(CERT)
    (tmp_path / "key.pem").write_bytes(KEY)
    s = build_settings(
        base_data(
            fetchmail={
                "accounts": [
                    {
                        "server": "pop.example.net",
                        "user": "me",
                        "password_file": str(tmp_path / "nope"),
                        "deliver_to": "bob@example.com",
                    }
                ]
            },
            tls={"cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem")},
        )
    )
    with pytest.raises(SettingsError, match=r"fetchmail\.accounts\.0\.password_file"):
        apply_secrets.resolve(s, Layout(state=tmp_path / "state"), runner=FakeRunner())


# --- whole-tree rules name the setting ---------------------------------------------


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"users": [{"address": "alice@example.org", "password_hash": HASH}]}, "users.0.address"),
        (
            {"users": [{"address": "alice@example.com", "password_hash": HASH}] * 2},
            "users.1.address",
        ),
        ({"networks": ["0.0.0.0/0"]}, "networks.0"),
        ({"networks": ["192.168.1.0/24", "::/0"]}, "networks.1"),
        ({"aliases": {"x@example.net": "alice@example.com"}}, "aliases.x@example.net"),
        ({"aliases": {"alice@example.com": "bob@example.com"}}, "aliases.alice@example.com"),
        ({"smtp": {"verbose": ["submission"]}}, "smtp.verbose"),
        ({"sasl": {"on_port_25": True}, "smtp": {"verbose": ["smtp"]}}, "smtp.verbose"),
        ({"cyrus": {"admins": ["carol@example.com"]}}, "cyrus.admins.0"),
        ({"access": {"clients": {"192.0.2.1": "nosuchclass"}}}, "access.clients"),
        ({"alias_domains": ["example.com"]}, "alias_domains"),
        ({"domains": ["example.com", "mail.example.com"]}, "domains"),
        ({"tls": {"cert_file": "/certs/fullchain.pem"}}, "cert_file"),
        ({"smtp": {"message_size_limit": 10}}, "smtp.message_size_limit"),
    ],
    ids=[
        "user-domain",
        "user-twice",
        "network-all",
        "network6-all",
        "alias-domain",
        "alias-is-user",
        "verbose-submission",
        "verbose-auth-25",
        "admin-not-user",
        "unknown-class",
        "alias-domain-is-mailbox-domain",
        "domain-is-hostname",
        "tls-half",
        "size-too-small",
    ],
)
def test_whole_tree_rules_name_the_setting(changes: dict[str, Any], where: str) -> None:
    assert where in refused(base_data(**changes))


def test_names_are_normalised() -> None:
    s = settings(
        hostname="MAIL.Example.COM",
        domains=["Example.COM"],
        users=[{"address": "Alice@Example.com", "password_hash": HASH}],
        aliases={},
    )
    assert (s.hostname, s.domains, s.users[0].address) == (
        "mail.example.com",
        ["example.com"],
        "alice@example.com",
    )


def test_settings_are_frozen() -> None:
    s = settings()
    with pytest.raises(ValueError, match="frozen"):
        s.hostname = "evil.example.com"  # type: ignore[misc]


def test_a_missing_settings_file_is_named_before_what_is_then_lacking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.upper().startswith("MAIL_")]:
        monkeypatch.delenv(name)
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path / "settings.yaml")
    msg = str(err.value)
    assert msg.startswith(f"settings file {tmp_path}/settings.yaml does not exist"), msg
    assert "setting 'hostname': is required" in msg
    monkeypatch.setenv("MAIL_HOSTNAME", "mail.example.org")
    monkeypatch.setenv("MAIL_DOMAINS", '["example.org"]')
    assert load_settings(tmp_path / "settings.yaml").hostname == "mail.example.org"

"""The command line, run in-process against a temp layout (no daemons needed)."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
import yaml

from mailctl import cli
from mailctl.apply import users
from tests.unit.factory import HASH, base_data


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, sub in (
        ("MAILCTL_ETC", "etc"),
        ("MAILCTL_STATE", "state"),
        ("MAILCTL_USERS_DIR", "state/users"),
        ("MAILCTL_SETTINGS_DIR", "config"),
    ):
        monkeypatch.setenv(name, str(tmp_path / sub))
    (tmp_path / "config").mkdir()
    return tmp_path


def write(env: Path, **extra: object) -> None:
    (env / "config/settings.yaml").write_text(yaml.safe_dump(base_data(**extra)))


def test_help_names_only_commands_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "render" not in out
    for command in ("run", "check", "status", "lookup", "queue", "mailbox", "user"):
        assert command in out


def test_check_names_the_bad_setting(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(env, smtp={"message_size_limit": "lots"})
    assert cli.main(["check"]) == 2
    assert "smtp.message_size_limit" in capsys.readouterr().err


def test_check_reads_the_secret_files_as_run_does(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(env, users=[{"address": "alice@example.com", "password_file": str(env / "missing")}])
    assert cli.main(["check"]) == 2
    assert "users.0.password_file: cannot read secret file" in capsys.readouterr().err


def test_check_refuses_our_own_network(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import ipaddress

    from mailctl.apply import inputs
    from mailctl.render import Facts

    own = Facts(own_ipv4=frozenset({ipaddress.IPv4Address("172.16.0.5")}))
    monkeypatch.setattr(inputs, "facts", lambda: own)
    write(env, networks=["172.16.0.0/12"])
    assert cli.main(["check"]) == 2
    assert "networks.0" in capsys.readouterr().err


def test_status_without_the_api_says_so_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.main(["--api-port", str(port), "status"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not answer" in err and "Traceback" not in err


def test_user_list_says_where_each_user_comes_from(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(env)
    users.write_store({"carol@example.com": HASH}, env / "state/users/passwd")
    assert cli.main(["user", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "alice@example.com\tsettings",
        "bob@example.com\tsettings",
        "carol@example.com\tapi",
    ]


def test_user_of_the_settings_file_is_changed_there(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(env)
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    assert cli.main(["user", "passwd", "alice@example.com"]) == 2
    assert "change it there" in capsys.readouterr().err


def test_user_add_needs_a_password(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(env)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert cli.main(["user", "add", "dave@example.com"]) == 2
    assert "empty password" in capsys.readouterr().err
    assert not (env / "state/users/passwd").exists()

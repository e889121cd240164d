"""The /dev/log listener's parser, what it prints, and the masking of secrets on stdout."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pytest

from mailctl.supervise import output, syslog


@pytest.mark.parametrize(
    ("datagram", "parsed"),
    [
        (
            b"<22>Nov 25 12:00:00 postfix/smtpd[123]: connect from unknown[192.0.2.1]",
            ("postfix/smtpd", "connect from unknown[192.0.2.1]", 123, "info"),
        ),
        (
            b"<30>Nov  5 01:02:03 saslauthd[77]: auth success: [user=alice@example.com]",
            ("saslauthd", "auth success: [user=alice@example.com]", 77, "info"),
        ),
        (
            b"<14>Nov 25 12:00:00 cyrus/master: process started",
            ("cyrus/master", "process started", None, "info"),
        ),
        (
            b"<22>Nov 25 12:00:00 cyrus/imap[5]: login: host [192.0.2.1] alice plaintext",
            ("cyrus/imap", "login: host [192.0.2.1] alice plaintext", 5, "info"),
        ),
        (
            b"<13>postgrey[9]: action=pass, reason=client whitelist",
            ("postgrey", "action=pass, reason=client whitelist", 9, "info"),
        ),
        (
            b"<22>Nov 25 12:00:00 postfix/qmgr[1]: removed\n\x00",
            ("postfix/qmgr", "removed", 1, "info"),
        ),
        (
            b"<22>Nov 25 12:00:00 fetchmail[3]: caf\xc3\xa9 \xff",
            ("fetchmail", "caf\u00e9 \ufffd", 3, "info"),
        ),
        (b"not syslog at all", ("syslog", "not syslog at all", None, "info")),
        # the severity is PRI & 7, whatever the facility (mail 16, local6 176, auth 32)
        (b"<16>cyrus/master[1]: emerg", ("cyrus/master", "emerg", 1, "critical")),
        (b"<177>cyrus/imap[1]: alert", ("cyrus/imap", "alert", 1, "critical")),
        (b"<34>saslauthd[1]: crit", ("saslauthd", "crit", 1, "critical")),
        (b"<19>cyrus/lmtp[1]: err", ("cyrus/lmtp", "err", 1, "error")),
        (b"<20>postgrey[1]: warning", ("postgrey", "warning", 1, "warning")),
        (b"<21>postgrey[1]: notice", ("postgrey", "notice", 1, "info")),
        (b"<23>cyrus/imap[1]: debug", ("cyrus/imap", "debug", 1, "debug")),
        # hostile numbers: int() refuses thousands of digits; nothing must raise
        (
            b"<" + b"9" * 5000 + b"014>x[1]: long PRI",  # ...9014 & 7 == 6
            ("x", "long PRI", 1, "info"),
        ),
        (
            b"<22>x[" + b"1" * 5000 + b"]: long pid",
            ("x", "[" + "1" * 5000 + "]: long pid", None, "info"),
        ),
    ],
    ids=[
        "postfix",
        "one-digit-day",
        "no-pid",
        "colon-in-message",
        "no-timestamp",
        "trailing-nul",
        "non-utf8",
        "garbage",
        "emerg",
        "alert",
        "crit",
        "err",
        "warning",
        "notice",
        "debug",
        "long-pri",
        "long-pid",
    ],
)
def test_parse(datagram: bytes, parsed: tuple[str, str, int | None, str]) -> None:
    assert syslog.parse(datagram) == parsed


def test_emit_prints_the_daemon_name(capsys: pytest.CaptureFixture[str]) -> None:
    tag, msg, pid, level = syslog.parse(
        b"<22>Nov 25 12:00:00 postfix/smtpd[123]: connect from x[192.0.2.1]"
    )
    output.emit(tag, msg, pid=pid, level=level)
    assert capsys.readouterr().out == "postfix/smtpd: connect from x[192.0.2.1]\n"


def test_emit_prints_one_line_whatever_the_line_ends_with(
    capsys: pytest.CaptureFixture[str],
) -> None:
    output.emit("cyrus", "a line\r\n")
    assert capsys.readouterr().out == "cyrus: a line\n"


def _wait_for(capsys: pytest.CaptureFixture[str], lines: int, timeout: float = 5.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while seen.count("\n") < lines and time.monotonic() < deadline:
        seen += capsys.readouterr().out
        time.sleep(0.01)
    return seen


def test_listener_prints_every_line_of_a_datagram(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log"
    path.write_text("stale socket left by a previous run")
    syslog.listen(path)
    assert path.is_socket() and path.stat().st_mode & 0o777 == 0o666
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.sendto(
            b"<11>Nov 25 12:00:00 cyrus/master[1]: unable to open database\nsecond line", str(path)
        )
        client.sendto(b"<22>Nov 25 12:00:01 postgrey[2]: password=hunter2 given", str(path))
    seen = _wait_for(capsys, 3)
    assert seen.splitlines() == [
        "cyrus/master: unable to open database",
        "cyrus/master: second line",
        "postgrey: password=*** given",
    ]


# --- masking ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("login password=hunter2 ok", "login password=*** ok"),
        ("Password: hunter2", "Password: ***"),
        ("C: PASS hunter2", "C: PASS ***"),
        ("ldap_password: hunter2", "ldap_password: ***"),
        ("client secret = hunter2", "client secret = ***"),
        ("api token hunter2", "api token ***"),
        pytest.param("passwd=hunter2", "passwd=***"),
        pytest.param('{"password": "hunter2"}', '{"password": "***"}'),
    ],
    ids=["key=value", "key: value", "pop3-pass", "ldap", "secret", "token", "passwd", "json"],
)
def test_secrets_are_masked(line: str, shown: str, capsys: pytest.CaptureFixture[str]) -> None:
    output.emit("d", line)
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert out == f"d: {shown}\n"


@pytest.mark.parametrize(
    "line",
    [
        "connect from unknown[192.0.2.1]",
        "action=greylist, reason=new, client_name=mx.example.org",
        "NOQUEUE: reject: RCPT from x[192.0.2.1]: 554 5.7.1 Relay access denied",
        "alice@example.com: mailbox created, quota 1024",
    ],
)
def test_ordinary_lines_are_left_alone(line: str, capsys: pytest.CaptureFixture[str]) -> None:
    output.emit("d", line)
    assert capsys.readouterr().out == f"d: {line}\n"


def test_listeners_see_every_line_and_a_failing_one_stops_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[tuple[str, str]] = []

    def broken(name: str, line: str) -> None:
        raise RuntimeError(line)

    output.listen(broken)
    output.listen(lambda name, line: seen.append((name, line)))
    try:
        output.pump("postfix", io.BytesIO(b"postfix/lmtp[1]: one\npassword=x two\n")).join(5)
        output.emit("cyrus", "three")
    finally:
        output._listeners.clear()
    assert seen == [
        ("postfix", "postfix/lmtp[1]: one"),
        ("postfix", "password=x two"),
        ("cyrus", "three"),
    ]
    out = capsys.readouterr().out
    assert "postfix: password=*** two" in out and "cyrus: three" in out
    assert out.count("a log listener failed: RuntimeError") == 3

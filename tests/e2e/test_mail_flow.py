"""Issue 2: a user sends over submission/smtps and reads back over IMAP, for real."""

from __future__ import annotations

import smtplib

import pytest

from tests.e2e.appliance import Appliance, message, tls_context
from tests.e2e.data import ALICE, BOB, PASSWORDS


def test_auth_is_never_offered_before_tls(appliance: Appliance) -> None:
    plain = smtplib.SMTP("127.0.0.1", appliance.ports[587], timeout=20)
    try:
        plain.ehlo("client.mailctl.test")
        assert plain.has_extn("starttls")
        assert not plain.has_extn("auth")
        with pytest.raises(smtplib.SMTPException):
            plain.login(*ALICE)
    finally:
        plain.close()
    tls = appliance.smtp(587)
    try:
        assert {"PLAIN", "LOGIN"} <= set(tls.esmtp_features["auth"].split())
    finally:
        tls.quit()


def test_port_25_offers_no_auth_even_over_tls(appliance: Appliance) -> None:
    client = appliance.smtp(25)
    try:
        client.starttls(context=tls_context())
        client.ehlo("client.mailctl.test")
        assert not client.has_extn("auth")
    finally:
        client.quit()


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_submission_to_user_and_alias_read_back_over_imap(
    appliance: Appliance, mechanism: str
) -> None:
    client = appliance.smtp(587)
    client.user, client.password = ALICE
    code, _ = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
    assert code == 235
    to_bob, text1 = message(ALICE[0], BOB[0], f"direct {mechanism}")
    to_team, text2 = message(ALICE[0], "team@example.com", f"alias {mechanism}")
    assert client.sendmail(ALICE[0], [BOB[0]], text1) == {}
    assert client.sendmail(ALICE[0], ["team@example.com"], text2) == {}
    client.quit()
    appliance.wait_delivered(*BOB, to_bob)
    appliance.wait_delivered(*BOB, to_team)
    appliance.wait_delivered(*ALICE, to_team)  # the alias reached both members
    assert {to_bob, to_team} <= appliance.message_ids(*BOB, port=993)


def test_smtps_465_wrapper_mode(appliance: Appliance) -> None:
    client = appliance.smtp(465, login=BOB)
    mid, text = message(BOB[0], ALICE[0], "over 465")
    assert client.sendmail(BOB[0], [ALICE[0]], text) == {}
    client.quit()
    appliance.wait_delivered(*ALICE, mid)
    assert mid in appliance.message_ids(*ALICE, port=993)


@pytest.mark.parametrize("port", [587, 465])
def test_wrong_password_is_refused(appliance: Appliance, port: int) -> None:
    client = appliance.smtp(port)
    try:
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login(ALICE[0], "not-the-password")
        assert err.value.smtp_code == 535
    finally:
        client.close()


def test_submission_without_login_is_refused(appliance: Appliance) -> None:
    client = appliance.smtp(587)
    try:
        client.mail(ALICE[0])
        code, _ = client.rcpt(BOB[0])
        assert code >= 500
    finally:
        client.close()


def test_unknown_local_recipient_is_refused_at_rcpt(appliance: Appliance) -> None:
    client = appliance.smtp(587, login=ALICE)
    try:
        client.mail(ALICE[0])
        code, reply = client.rcpt("nobody@example.com")
        assert code == 550, reply
        assert b"User unknown" in reply
    finally:
        client.close()


def test_imap_refuses_wrong_password_and_plaintext_login(appliance: Appliance) -> None:
    import imaplib

    with pytest.raises(imaplib.IMAP4.error):
        appliance.imap(ALICE[0], "wrong")
    plain = imaplib.IMAP4("127.0.0.1", appliance.ports[143], timeout=20)
    try:
        assert "LOGINDISABLED" in plain.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            plain.login(*ALICE)
    finally:
        plain.shutdown()


def test_passwords_never_reach_the_logs(appliance: Appliance) -> None:
    client = appliance.smtp(587)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        client.login(ALICE[0], "wrong-but-secret-attempt")
    client.close()
    logs = appliance.logs()
    for secret in [*PASSWORDS.values(), "wrong-but-secret-attempt"]:
        assert secret not in logs


def test_every_daemon_logs_to_stdout(appliance: Appliance) -> None:
    logs = appliance.logs()
    for prefix in ("postfix:", "saslauthd:", "postgrey:", "cyrus/", "mailctl:"):
        assert prefix in logs, prefix

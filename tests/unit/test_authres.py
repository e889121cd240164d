"""The fold of our verdicts into one Authentication-Results header (mailctl.authres).
The headers are as OpenDKIM, OpenDMARC and policyd-spf of this image write them."""

from __future__ import annotations

import pytest

from mailctl.authres import Edit, merge

HOST = "mail.example.com"
CLIENT = "172.17.0.1"
SPF_PASS = (
    "Received-SPF",
    "Pass (mailfrom) identity=mailfrom; client-ip=172.17.0.1; helo=client.mailctl.test; "
    "envelope-from=a@good.example; receiver=example.com ",
)
DKIM = ("Authentication-Results", f"{HOST}; dkim=none; dkim-atps=neutral")
DKIM_PASS = (
    "Authentication-Results",
    f"{HOST};\n\tdkim=pass (2048-bit key; unprotected) header.d=good.example\n"
    '\theader.i=@good.example header.b="AbCd12"',
)
DMARC = (
    "Authentication-Results",
    f"{HOST}; dmarc=pass (p=reject dis=none) header.from=good.example",
)
RECEIVED = ("Received", f"from client.mailctl.test (unknown [172.17.0.1]) by {HOST} (Postfix)")
FROM = ("From", "a@good.example")


def test_the_three_verdicts_become_one_header_oldest_first() -> None:
    # each milter inserted its header at the top: OpenDMARC's is above OpenDKIM's
    edit = merge([DMARC, DKIM, SPF_PASS, RECEIVED, FROM], HOST, CLIENT)
    assert edit == Edit(
        delete=(2, 1),
        value=f"{HOST};\n\tspf=pass smtp.mailfrom=a@good.example;\n\tdkim=none; "
        "dkim-atps=neutral;\n\tdmarc=pass (p=reject dis=none) header.from=good.example",
    )


def test_a_folded_verdict_with_a_semicolon_in_its_comment_is_kept_whole() -> None:
    edit = merge([DMARC, DKIM_PASS, RECEIVED], HOST)
    assert edit is not None
    assert edit.value.split(";\n\t")[1] == (
        "dkim=pass (2048-bit key; unprotected) header.d=good.example "
        'header.i=@good.example header.b="AbCd12"'
    )


@pytest.mark.parametrize(
    "below",
    [
        [RECEIVED, ("Authentication-Results", f"{HOST}; dkim=pass header.d=forged.example")],
        [RECEIVED, ("Received-SPF", "Pass (mailfrom) identity=mailfrom; envelope-from=x@y")],
        [FROM, ("Authentication-Results", f"{HOST}; dmarc=pass header.from=forged.example")],
    ],
)
def test_headers_below_postfixs_received_are_the_clients_and_left_alone(
    below: list[tuple[str, str]],
) -> None:
    edit = merge([DMARC, DKIM, SPF_PASS, *below], HOST, CLIENT)
    assert edit is not None
    assert edit.delete == (2, 1)  # not the third Authentication-Results
    assert "forged" not in edit.value
    assert "x@y" not in edit.value


def test_another_authserv_id_ends_ours() -> None:
    other = ("Authentication-Results", "mx.elsewhere.example; dkim=pass header.d=good.example")
    edit = merge([DMARC, other, DKIM, RECEIVED], HOST)
    assert edit == Edit((1,), f"{HOST};\n\tdmarc=pass (p=reject dis=none) header.from=good.example")


def test_the_authserv_id_is_matched_whole_and_without_case() -> None:
    upper = ("authentication-results", "MAIL.Example.COM 1; dkim=none")
    longer = ("Authentication-Results", f"{HOST}.evil.example; dkim=pass")
    assert merge([upper, RECEIVED], HOST) == Edit((1,), f"{HOST};\n\tdkim=none")
    assert merge([longer, RECEIVED], HOST) is None


def test_nothing_to_fold() -> None:
    assert merge([RECEIVED, FROM], HOST) is None
    assert merge([], HOST) is None


@pytest.mark.parametrize(
    ("head", "tail", "verdict"),
    [
        ("Softfail (mailfrom) identity=mailfrom", "envelope-from=a@bad.example",
         "spf=softfail smtp.mailfrom=a@bad.example"),
        ("Fail (mailfrom) identity=mailfrom", "envelope-from=a@bad.example",
         "spf=fail smtp.mailfrom=a@bad.example"),
        ("None (no SPF record) identity=helo", "helo=client.example; envelope-from=<>",
         "spf=none smtp.helo=client.example"),
        ("Temperror (mailfrom) identity=mailfrom", "envelope-from=a@b.example",
         "spf=temperror smtp.mailfrom=a@b.example"),
        # a sender that cannot be written as it stands is left out, never escaped
        ("Pass (mailfrom) identity=mailfrom", 'envelope-from="a b"@x.example', "spf=pass"),
        ("Pass (mailfrom) identity=mailfrom", "envelope-from=a@x.example;dkim=pass",
         "spf=pass smtp.mailfrom=a@x.example"),
    ],
)  # fmt: skip
def test_spf_results_as_policyd_spf_writes_them(head: str, tail: str, verdict: str) -> None:
    value = f"{head}; client-ip={CLIENT}; {tail}"
    edit = merge([("Received-SPF", value), RECEIVED], HOST, CLIENT)
    assert edit == Edit((), f"{HOST};\n\t{verdict}")


@pytest.mark.parametrize(
    "value",
    [
        "Pass (mailfrom) identity=mailfrom; client-ip=192.0.2.9; envelope-from=a@x.example",
        "Pass (mailfrom) identity=mailfrom; envelope-from=a@x.example",
        "Pass (mailfrom) identity=mailfrom; client-ip=nonsense; envelope-from=a@x.example",
    ],
)
def test_a_received_spf_about_another_client_is_not_ours(value: str) -> None:
    assert merge([DKIM, ("Received-SPF", value), RECEIVED], HOST, CLIENT) == Edit(
        (1,), f"{HOST};\n\tdkim=none; dkim-atps=neutral"
    )
    assert merge([DKIM, SPF_PASS, RECEIVED], HOST, "") == Edit(
        (1,), f"{HOST};\n\tdkim=none; dkim-atps=neutral"
    )


def test_only_the_first_received_spf_is_policyd_spfs() -> None:
    forged = ("Received-SPF", SPF_PASS[1].replace("a@good.example", "x@forged.example"))
    softfail = ("Received-SPF", SPF_PASS[1].replace("Pass", "Softfail"))
    edit = merge([DKIM, softfail, forged, RECEIVED], HOST, CLIENT)
    assert edit is not None
    assert "spf=softfail smtp.mailfrom=a@good.example;" in edit.value
    assert "forged" not in edit.value


def test_a_received_spf_that_is_not_policyd_spfs_ends_ours() -> None:
    odd = ("Received-SPF", "maybe (mailfrom) identity=mailfrom")
    assert merge([DKIM, odd, SPF_PASS, RECEIVED], HOST) == Edit(
        (1,), f"{HOST};\n\tdkim=none; dkim-atps=neutral"
    )


def test_a_none_verdict_alone_stays_none() -> None:
    assert merge([("Authentication-Results", f"{HOST}; none"), RECEIVED], HOST) == Edit(
        (1,), f"{HOST};\n\tnone"
    )


@pytest.mark.parametrize("evil", ["\r\nX-Injected: 1", "\nBcc: x@y", "\x00"])
def test_no_new_header_line_can_come_out_of_a_value(evil: str) -> None:
    edit = merge([("Authentication-Results", f"{HOST}; dkim=none{evil}"), RECEIVED], HOST)
    assert edit is not None
    assert all(line.startswith("\t") for line in edit.value.split("\n")[1:])

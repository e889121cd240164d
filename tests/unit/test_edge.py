"""role: edge, and the mailbox node's edge port, as rendered (render.edge)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from mailctl.errors import SettingsError
from mailctl.render import daemons, edge, opendkim, postfix, srs
from tests.unit.factory import main_cf_params as params
from tests.unit.factory import (
    master_options,
    master_rows,
    parse_table,
    postfix_list,
    secrets_for,
    settings,
)

EDGE: dict[str, Any] = {
    "role": "edge",
    "edge": {"mailbox_host": "mailbox"},
    "alias_domains": ["alias.example"],
    "relay_domains": ["backup.example"],
    "aliases": {"postmaster@example.com": "alice@example.com", "@alias.example": "bob@example.com"},
}


def services(**extra: Any) -> dict[tuple[str, str], list[str]]:
    return master_rows(settings(**extra))


def test_an_edge_asks_the_mailbox_node_about_recipients_by_default() -> None:
    s = settings(**EDGE)
    p = params(postfix.main_cf(s))
    assert p["relay_recipient_maps"] == ""
    rcpt = postfix_list(p["smtpd_recipient_restrictions"])
    i = rcpt.index("reject_unauth_destination")
    assert rcpt[i + 1] == "reject_unverified_recipient"  # before greylisting and SPF
    assert p["address_verify_transport_maps"].endswith(f"/{edge.VERIFY_ROUTES}")
    routes = dict(parse_table(postfix.files(s)[f"postfix/{edge.VERIFY_ROUTES}"].content.decode()))
    assert routes["example.com"] == "mailbox-verify:[mailbox]:10025"
    # probes must see a 5xx as final: their transport has no soft_bounce
    probe = master_options(services(**EDGE)[(edge.VERIFY, "unix")])
    assert "soft_bounce" not in probe and probe["smtp_tls_security_level"] == "encrypt"
    assert p["unverified_recipient_reject_code"] == "550"  # the node's 550 is final...
    assert probe["smtp_delivery_status_filter"].endswith(f"/{edge.STATUS_FILTER}")
    [(pattern, result)] = parse_table(
        postfix.files(s)[f"postfix/{edge.STATUS_FILTER}"].content.decode()
    )
    # ...but its name not found (it is down) is not an answer about the recipient
    assert re.sub(pattern.strip("/").replace("$1", ""), result.replace("$", "\\"), "5.4.4 x") == (
        "4.4.4 x"
    )
    # the mailbox node itself never verifies
    assert (
        "reject_unverified_recipient"
        not in params(postfix.main_cf(settings()))["smtpd_recipient_restrictions"]
    )


def test_an_edge_relays_every_domain_to_the_mailbox_node_for_known_recipients() -> None:
    s = settings(**{**EDGE, "edge": {"mailbox_host": "mailbox", "recipients": "settings"}})
    p = params(postfix.main_cf(s))
    assert "reject_unverified_recipient" not in p["smtpd_recipient_restrictions"]
    assert postfix_list(p["relay_domains"]) == ["example.com", "alias.example", "backup.example"]
    assert p["virtual_mailbox_domains"] == "" and p["virtual_alias_maps"] == ""
    assert p["relay_recipient_maps"].endswith(f"/{edge.RECIPIENTS}")
    assert postfix_list(p["transport_maps"])[0].endswith(f"/{edge.ROUTES}")
    files = postfix.files(s)
    known = {k for k, _ in parse_table(files[f"postfix/{edge.RECIPIENTS}"].content.decode())}
    assert known == {
        "alice@example.com",
        "bob@example.com",
        "postmaster@example.com",
        "@alias.example",
        "@backup.example",
    }
    routes = dict(parse_table(files[f"postfix/{edge.ROUTES}"].content.decode()))
    assert routes == {
        "example.com": "mailbox:[mailbox]:10025",
        "alias.example": "mailbox:[mailbox]:10025",
    }
    assert f"postfix/{edge.RECIPIENTS}" in postfix.postmap_paths(s)
    # mail to the mailbox node goes with TLS required
    row = services(**EDGE)[("mailbox", "unix")]
    assert row[0] == "smtp" and master_options(row)["smtp_tls_security_level"] == "encrypt"
    assert master_options(row)["soft_bounce"] == "yes"  # its name unknown while it is down


def test_an_edge_runs_no_mailboxes_logins_or_milters() -> None:
    s = settings(**EDGE, fetchmail={"accounts": []})
    assert [d.name for d in daemons(s)] == ["postgrey", "postfix"]
    svc = services(**EDGE)
    assert ("submission", "inet") not in svc and ("smtps", "inet") not in svc
    p = params(postfix.main_cf(s))
    assert p["smtpd_milters"] == "" and p["non_smtpd_milters"] == ""
    assert opendkim.signed_domains(s) == []
    aliases = {"fwd@example.com": "someone@elsewhere.example"}
    assert not srs.active(settings(**{**EDGE, "aliases": aliases}))
    assert srs.active(settings(aliases=aliases))  # the mailbox node forwards, with SRS


def test_the_mailbox_node_opens_its_edge_port_for_the_edges_only() -> None:
    s = settings(edges=["10.89.0.0/24"])
    p = params(postfix.main_cf(s))
    assert p[edge.CLIENT_CHECK] == "check_client_access cidr:${config_directory}/edges.cidr, reject"
    opts = master_options(services(edges=["10.89.0.0/24"])[("10025", "inet")])
    assert opts["smtpd_client_restrictions"] == f"${edge.CLIENT_CHECK}"
    rcpt = opts["smtpd_recipient_restrictions"].split(",")
    assert rcpt[0] == "reject_unauth_destination"  # only local recipients
    assert "smtpd_relay_restrictions" not in opts  # the fixed relay guard stays
    table = postfix.files(s)[f"postfix/{edge.CLIENTS}"].content.decode()
    assert parse_table(table) == [("10.89.0.0/24", "OK")]
    assert ("10025", "inet") not in services()


@pytest.mark.parametrize("host", ["a b", "999.1.1.1", "mailbox.example.", "x" * 300, "a$b"])
def test_a_bad_mailbox_host_is_refused_in_one_plain_sentence(host: str) -> None:
    with pytest.raises(SettingsError) as exc:
        settings(role="edge", edge={"mailbox_host": host})
    assert str(exc.value).endswith(
        f"setting 'edge.mailbox_host': {host!r} is neither a host name nor an IPv4 address"
    )


@pytest.mark.parametrize(("host", "kept"), [("10.0.0.5", "10.0.0.5"), (" Mailbox ", "mailbox")])
def test_a_mailbox_host_is_an_ipv4_address_or_a_name(host: str, kept: str) -> None:
    assert settings(role="edge", edge={"mailbox_host": host}).edge.mailbox_host == kept


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"role": "edge"}, "edge.mailbox_host"),
        ({"role": "edge", "edge": {"mailbox_host": "a b"}}, "edge.mailbox_host"),
        ({"role": "relay"}, "role"),
        ({"edges": ["0.0.0.0/0"]}, "edges.0"),
        ({"edge": {"drain_timeout": -1}}, "edge.drain_timeout"),
    ],
)
def test_bad_edge_settings_are_refused_naming_the_setting(
    extra: dict[str, Any], named: str
) -> None:
    with pytest.raises((SettingsError, ValueError)) as exc:
        settings(**extra)
    assert named in str(exc.value)


LOGIN = {"username": "edge@example.com", "password_file": "/run/secrets/edge"}


def test_an_edge_logs_in_at_the_mailbox_node_when_a_login_is_set() -> None:
    s = settings(**{**EDGE, "edge": {"mailbox_host": "mailbox", **LOGIN}})
    p = params(postfix.main_cf(s))
    assert p["smtp_sasl_auth_enable"] == "yes"
    files = postfix.relay_passwords(s, secrets_for(s))
    entry = files[f"postfix/{postfix.RELAY_PASSWORDS}"]
    assert entry.mode == 0o600
    assert parse_table(entry.content.decode()) == [
        ("[mailbox]:10025", "edge@example.com:relay-secret")
    ]
    # without a login it does not
    assert params(postfix.main_cf(settings(**EDGE)))["smtp_sasl_auth_enable"] == "no"


def test_the_mailbox_node_then_takes_the_edges_mail_only_with_the_login() -> None:
    s = settings(edges=["10.89.0.0/24"], edge=LOGIN)
    table = postfix.files(s)[f"postfix/{edge.CLIENTS}"].content.decode()
    assert parse_table(table) == [("10.89.0.0/24", "permit_sasl_authenticated")]
    opts = master_options(services(edges=["10.89.0.0/24"], edge=LOGIN)[("10025", "inet")])
    assert opts["smtpd_sasl_auth_enable"] == "yes"
    plain = master_options(services(edges=["10.89.0.0/24"])[("10025", "inet")])
    assert plain["smtpd_sasl_auth_enable"] == "no"


@pytest.mark.parametrize(
    ("edge_settings", "named"),
    [
        ({"username": "edge@example.com"}, "edge.username"),
        ({**LOGIN, "tls": "may"}, "edge.tls"),
        ({**LOGIN, "username": "a:b"}, "edge.username"),
    ],
)
def test_a_bad_edge_login_is_refused_naming_the_setting(
    edge_settings: dict[str, Any], named: str
) -> None:
    with pytest.raises((SettingsError, ValueError)) as exc:
        settings(edge=edge_settings)
    assert named in str(exc.value)

"""Renderers: pure and deterministic, a change touches only its files, and the relay
guard holds whatever restriction lists the user writes."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mailctl.errors import RenderError
from mailctl.render import Bundle, Secrets, postfix, postfix_maps, render
from mailctl.render.bundle import LIVE
from mailctl.render.fetchmail import RC
from mailctl.settings import Settings
from mailctl.settings.loader import build_settings, load_settings
from tests.unit.factory import (
    HASH,
    base_data,
    fetchmail_tokens,
    full_data,
    main_cf_params,
    master_cf_services,
    master_options,
    master_rows,
    parse_main_cf,
    parse_table,
    postfix_list,
    secrets_for,
    settings,
)

RELAY_GUARD = ["permit_mynetworks", "permit_sasl_authenticated", "reject_unauth_destination"]


def bundle_of(s: Settings, secrets: Secrets | None = None) -> Bundle:
    return render(s, secrets or secrets_for(s))


def changed(a: Bundle, b: Bundle) -> set[str]:
    return {p for p in set(a.files) | set(b.files) if a.files.get(p) != b.files.get(p)}


def reloaded(b: Bundle, paths: set[str]) -> set[str]:
    """The daemons whose spec says they read one of `paths` (what reconcile reloads)."""
    return {d.name for d in b.daemons if any(p.startswith(d.reads) for p in paths) and d.reads}


def main_cf(b: Bundle) -> str:
    return b.files["postfix/main.cf"].content.decode()


# --- deterministic and pure ------------------------------------------------------

RICH: dict[str, Any] = {
    "aliases": {
        "postmaster@example.com": "alice@example.com",
        "team@example.com": ["alice@example.com", "bob@example.com"],
        "@example.com": "alice@example.com",
    },
    "networks": ["192.168.2.0/24"],
    "maps": {
        "canonical": {"old@example.com": "alice@example.com"},
        "transports": {"example.net": "smtp:[relay.example.net]:587"},
        "local_aliases": {"root": ["alice@example.com"]},
    },
    "access": {
        "clients": {"192.0.2.0/24": "REJECT go away", "spam.example.org": "REJECT"},
        "senders": {"spam@example.org": "REJECT"},
    },
    "restrictions": {"preset": "internet", "classes": {"strict": ["reject_unknown_sender_domain"]}},
    "rbl": {"lists": ["zen.spamhaus.org"], "whitelist": ["192.0.2.7"]},
    "greylisting": {"whitelist_clients": ["friend.example.org", "198.51.100.0/24"]},
    "fetchmail": {
        "accounts": [
            {
                "server": "pop.example.net",
                "user": "me",
                "password_file": "/s",
                "deliver_to": "bob@example.com",
            }
        ]
    },
    "cyrus": {"admins": ["alice@example.com"]},
}


def test_render_twice_gives_the_same_bytes() -> None:
    s = settings(**RICH)
    a, b = bundle_of(s), bundle_of(s)
    assert a.files == b.files
    assert a.daemons == b.daemons
    assert (a.postmap, a.postalias, a.mailboxes) == (b.postmap, b.postalias, b.mailboxes)


def test_same_file_loaded_twice_renders_the_same(tmp_path: Path) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(base_data(**RICH)))
    a, b = load_settings(path), load_settings(path)
    assert bundle_of(a).files == bundle_of(b).files


def test_map_order_in_the_settings_does_not_change_the_tables() -> None:
    a = ("a@example.com", "alice@example.com")
    b = ("b@example.com", "bob@example.com")
    x, y = ("x@example.org", "REJECT"), ("y@example.org", "OK")
    one = settings(aliases=dict([a, b]), access={"senders": dict([x, y])})
    two = settings(aliases=dict([b, a]), access={"senders": dict([y, x])})
    assert changed(bundle_of(one), bundle_of(two)) == set()


def test_render_reads_no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    s = settings(**RICH)
    before = bundle_of(s).files
    monkeypatch.setenv("MAIL_HOSTNAME", "other.example.net")
    monkeypatch.setenv("MAILCTL_ETC", "/elsewhere")
    assert bundle_of(s).files == before


# --- a change touches only its files ---------------------------------------------


@pytest.mark.parametrize(
    ("changes", "files", "daemons"),
    [
        (
            {
                "aliases": {
                    "postmaster@example.com": "alice@example.com",
                    "info@example.com": ["alice@example.com", "bob@example.com"],
                }
            },
            {"postfix/virtual"},
            {"postfix"},
        ),
        (
            {
                "users": [
                    {"address": "alice@example.com", "password_hash": HASH},
                    {"address": "bob@example.com", "password_hash": HASH, "quota_mb": 100},
                    {"address": "carol@example.com", "password_hash": HASH},
                ]
            },
            {"postfix/vmailbox", "postfix/sender_login", "sasl/users"},
            {"postfix"},
        ),
        ({"smtp": {"message_size_limit": 1_000_000}}, {"postfix/main.cf"}, {"postfix"}),
        (
            {"maps": {"canonical": {"old@example.com": "alice@example.com"}}},
            {"postfix/canonical", "postfix/main.cf"},
            {"postfix"},
        ),
        (
            {"access": {"senders": {"spam@example.org": "REJECT"}}},
            {"postfix/sender_access"},
            {"postfix"},
        ),
        ({"cyrus": {"quota_warn": 80}}, {"cyrus/imapd.conf", "cyrus/imapd-admin.conf"}, {"cyrus"}),
        ({"cyrus": {"pop3": False}}, {"cyrus/cyrus.conf"}, {"cyrus"}),
        (
            {"greylisting": {"whitelist_clients": ["friend.example.org"]}},
            {"postgrey/whitelist_clients"},
            {"postgrey"},
        ),
        ({"greylisting": {"delay": 60}}, set(), set()),
        (
            {"sasl": {"mech_list": ["plain"]}},
            {"postfix/sasl/smtpd.conf", "cyrus/imapd.conf", "cyrus/imapd-admin.conf"},
            {"postfix", "cyrus"},
        ),
    ],
    ids=[
        "add-alias",
        "add-user",
        "size-limit",
        "canonical",
        "sender-access",
        "quota-warn",
        "no-pop3",
        "greylist-whitelist",
        "greylist-delay",
        "mech-list",
    ],
)
def test_a_change_touches_only_its_files(
    changes: dict[str, Any], files: set[str], daemons: set[str]
) -> None:
    before, after = bundle_of(settings()), bundle_of(settings(**changes))
    assert changed(before, after) == files
    assert reloaded(after, files) == daemons


def test_greylist_delay_changes_only_the_command_line() -> None:
    before, after = bundle_of(settings()), bundle_of(settings(greylisting={"delay": 60}))
    assert before.daemon("postgrey").argv != after.daemon("postgrey").argv
    assert "--delay=60" in after.daemon("postgrey").argv
    assert before.daemon("postfix") == after.daemon("postfix")


def test_adding_a_user_adds_its_mailbox() -> None:
    b = bundle_of(settings())
    assert b.mailboxes == {"alice@example.com": None, "bob@example.com": 100 * 1024}


# --- the relay guard -------------------------------------------------------------

USER_LISTS: list[tuple[str, dict[str, Any]]] = [
    ("defaults", {}),
    ("internet-preset", {"restrictions": {"preset": "internet"}}),
    ("recipient-permit", {"restrictions": {"recipient": ["permit"]}}),
    (
        "recipient-permit-auth-dest",
        {"restrictions": {"recipient": ["permit_auth_destination", "permit"]}},
    ),
    ("greylist-first", {"restrictions": {"recipient": ["greylist", "permit"]}}),
    ("no-reject-unauth", {"restrictions": {"recipient": ["permit_mynetworks", "dunno"]}}),
    (
        "every-stage-permits",
        {
            "restrictions": {
                s: ["permit"] for s in ("client", "helo", "sender", "recipient", "data")
            }
        },
    ),
    (
        "class-permits",
        {
            "restrictions": {"classes": {"allow_all": ["permit"]}, "recipient": ["allow_all"]},
            "access": {"clients": {"0.0.0.0/0": "allow_all"}},
        },
    ),
    (
        "access-ok-everyone",
        {"access": {"clients": {"0.0.0.0/0": "OK"}, "recipients": {"example.org": "OK"}}},
    ),
    ("trusted-network", {"networks": ["192.168.2.0/24", "2001:db8::/48"]}),
    ("auth-on-25", {"sasl": {"on_port_25": True}}),
]


@pytest.mark.parametrize("changes", [pytest.param(c, id=i) for i, c in USER_LISTS])
def test_relay_guard_ends_with_reject_unauth_destination(changes: dict[str, Any]) -> None:
    s = settings(**changes)
    b = bundle_of(s)
    defs = parse_main_cf(main_cf(b))
    names = [n for n, _ in defs]
    twice = sorted({n for n in names if names.count(n) > 1})
    assert not twice, f"defined twice: {twice}"
    params = dict(defs)
    relay = postfix_list(params["smtpd_relay_restrictions"])
    assert relay[-1] in ("reject_unauth_destination", "defer_unauth_destination")
    assert set(relay[:-1]) <= {"permit_mynetworks", "permit_sasl_authenticated"}
    assert params["compatibility_level"] == "3.6"
    assert params["mynetworks_style"] == "host"
    mynetworks = postfix_list(params["mynetworks"])
    # IPv6 needs [] (else `2001:...` reads as type:table); [addr/len] and [addr]/len are one.
    assert all(n.startswith("[") for n in mynetworks if ":" in n)
    assert [n.replace("[", "").replace("]", "") for n in mynetworks] == [
        "127.0.0.0/8",
        "::1/128",
        *(str(n) for n in s.networks),
    ]
    assert postfix_list(params["smtpd_data_restrictions"])[0] == "reject_unauth_pipelining"
    services = master_cf_services(b.files["postfix/master.cf"].content.decode())
    assert "smtpd_relay_restrictions" not in master_options(services["smtp"])
    for port in ("submission", "smtps"):
        opts = master_options(services[port])
        assert opts["smtpd_relay_restrictions"] == "permit_sasl_authenticated,reject"
        assert opts["smtpd_tls_auth_only"] == "yes"


@pytest.mark.parametrize("name", ["smtpd_relay_restrictions", "mynetworks"])
def test_a_restriction_class_cannot_redefine_a_parameter(name: str) -> None:
    s = settings(restrictions={"classes": {name: ["permit"]}})
    defs = parse_main_cf(main_cf(bundle_of(s)))
    names = [n for n, _ in defs]
    assert names.count(name) == 1
    params = dict(defs)
    assert postfix_list(params["smtpd_relay_restrictions"]) == RELAY_GUARD
    assert postfix_list(params["mynetworks"]) == ["127.0.0.0/8", "[::1]/128"]


def test_data_stage_keeps_the_pipelining_guard_first() -> None:
    s = settings(restrictions={"data": ["permit", "reject_unauth_pipelining"]})
    params = main_cf_params(main_cf(bundle_of(s)))
    assert postfix_list(params["smtpd_data_restrictions"]) == ["reject_unauth_pipelining", "permit"]


def test_greylisting_off_removes_the_policy_service() -> None:
    without = bundle_of(settings(greylisting={"enabled": False}))
    on = main_cf_params(main_cf(bundle_of(settings())))
    off = main_cf_params(main_cf(without))
    assert "check_policy_service inet:127.0.0.1:10023" in on["smtpd_recipient_restrictions"]
    assert "check_policy_service inet:" not in off["smtpd_recipient_restrictions"]
    assert "postgrey" not in {d.name for d in without.daemons}


def test_smtp_hardening_is_always_rendered() -> None:
    params = main_cf_params(main_cf(bundle_of(settings())))
    assert params["smtpd_forbid_bare_newline"] in ("normalize", "reject")
    assert params["smtpd_forbid_unauth_pipelining"] == "yes"
    assert params["smtpd_tls_auth_only"] == "yes"
    assert params["smtpd_sasl_auth_enable"] == "no"  # no AUTH on port 25 unless asked


# --- files, modes and daemons --------------------------------------------------------


def test_secret_files_are_not_world_readable() -> None:
    b = bundle_of(settings(**RICH))
    assert b.files[RC].mode & 0o077 == 0 and b.files[RC].owner == "fetchmail"
    assert b.files["sasl/users"].mode & 0o077 == 0
    assert b.files["tls/key.pem"].mode & 0o007 == 0


def test_fetchmailrc_means_what_the_settings_say() -> None:
    password = 'x" preconnect "touch /tmp/pwned\\ \u00fc'
    s = settings(
        fetchmail={
            "interval": 120,
            "accounts": [
                {
                    "server": "pop.example.net",
                    "protocol": "imap",
                    "port": 993,
                    "user": 'me "quoted"',
                    "password_file": "/s",
                    "deliver_to": "bob@example.com",
                    "keep": True,
                }
            ],
        }
    )
    rc = bundle_of(s, secrets_for(s, fetchmail_password=password)).files[RC].content
    tokens = [t for k, t in fetchmail_tokens(rc)]
    kinds = [k for k, t in fetchmail_tokens(rc)]
    assert tokens == [
        "set",
        "daemon",
        "120",
        "set",
        "no",
        "bouncemail",
        "set",
        "postmaster",
        "postmaster",
        "poll",
        "pop.example.net",
        "proto",
        "imap",
        "port",
        "993",
        "user",
        'me "quoted"',
        "password",
        password,
        "is",
        "bob@example.com",
        "here",
        "smtpname",
        "bob@example.com",
        "smtphost",
        "127.0.0.1/25",
        "ssl",
        "sslcertck",
        "keep",
    ]
    strings = {t for k, t in zip(kinds, tokens, strict=True) if k == "string"}
    assert {password, 'me "quoted"', "pop.example.net"} <= strings


def test_daemons_start_in_dependency_order() -> None:
    b = bundle_of(settings(**RICH))
    order = [d.name for d in b.daemons]
    assert order == [
        "saslauthd",
        "cyrus",
        "postgrey",
        "opendkim",
        "opendmarc",
        "authres",
        "postfix",
        "fetchmail",
    ]
    for i, d in enumerate(b.daemons):
        assert set(d.before) <= set(order[:i]), f"{d.name} waits for a later daemon"
    assert set(b.daemon("postfix").before) >= {"saslauthd", "cyrus", "postgrey", "opendkim"}
    assert "opendmarc" in b.daemon("postfix").before


@pytest.mark.parametrize(
    ("secrets_change", "setting"),
    [({"user_hashes": {}}, "users"), ({"fetchmail_passwords": {}}, "fetchmail.accounts.0")],
    ids=["user-hash", "fetchmail-password"],
)
def test_missing_secret_is_refused_naming_the_setting(
    secrets_change: dict[str, Any], setting: str
) -> None:
    s = settings(**RICH)
    full = secrets_for(s)
    sec = Secrets(**{**{f: getattr(full, f) for f in full.__dataclass_fields__}, **secrets_change})
    with pytest.raises(RenderError, match=setting):
        render(s, sec)


def test_aliases_file_means_what_the_settings_say() -> None:
    targets = ["alice@example.com", "bob", "/var/mail/archive", ":include:/etc/mail/team"]
    s = settings(maps={"local_aliases": {"root": targets, "Webmaster": ["root"]}})
    text = bundle_of(s).files["postfix/aliases"].content.decode()
    read = {}
    for key, value in parse_table(text):  # postalias: `name: target, target`
        assert key.endswith(":"), key
        read[key[:-1]] = [t.strip() for t in value.split(",")]
    assert read == {
        "root": targets,
        "webmaster": ["root"],
        "postmaster": ["root"],
        "mailer-daemon": ["postmaster"],
        "abuse": ["postmaster"],
    }


def test_cidr_tables_hold_only_networks() -> None:
    b = bundle_of(settings(**RICH))
    cidr = [p for p in b.files if p.endswith(".cidr")]
    assert {"postfix/client_access.cidr", "postfix/rbl_whitelist.cidr"} <= set(cidr)
    for path in cidr:
        for key, value in parse_table(b.files[path].content.decode()):
            ipaddress.ip_network(key)  # a cidr table key is a network, nothing else
            assert value
    entries = parse_table(b.files["postfix/client_access.cidr"].content.decode())
    assert entries == [("192.0.2.0/24", "REJECT go away")]


# --- which setting each generated table comes from -----------------------------------


def test_every_generated_postfix_table_names_its_setting() -> None:
    data = full_data()
    data["access"]["patterns"] = [
        {"stage": stage, "type": kind, "pattern": "^x", "action": "OK"}
        for stage in postfix_maps.STAGES
        for kind in postfix_maps.PATTERN_TYPES
    ]
    s = build_settings(data)
    bundle = bundle_of(s)
    tables = [p for p in bundle.files if p.startswith("postfix/")]
    tables += list(bundle.postmap) + list(bundle.postalias)
    unnamed = sorted(p for p in tables if postfix_maps.setting_of(p) is None)
    assert unnamed == ["postfix/main.cf", "postfix/master.cf", "postfix/sasl/smtpd.conf"]
    # And every name it knows is a real table: no entry outlives its file.
    known = {f"postfix/{name}" for name in postfix_maps._SETTING_OF}
    assert known <= set(bundle.files)


@pytest.mark.parametrize(
    ("path", "setting"),
    [
        ("postfix/helo_access.pcre", "access.patterns"),
        ("postfix/sender_access.regexp", "access.patterns"),
        ("postfix/transport", "maps.transports"),
        ("postfix/transport.db", "maps.transports"),
        ("postfix/transport.lmdb", "maps.transports"),
        ("postfix/client_access.cidr", "access.clients"),
        ("postfix/virtual", "aliases"),
        ("postfix/aliases.db", "maps.local_aliases"),
        ("postfix/relay_passwords", "relay"),
        ("postfix/main.cf", None),
        ("cyrus/imapd.conf", None),
        ("transport", None),
    ],
)
def test_setting_of(path: str, setting: str | None) -> None:
    assert postfix_maps.setting_of(path) == setting


def test_setting_of_the_relay_passwords_matches_the_renderer() -> None:
    assert postfix_maps.setting_of(f"postfix/{postfix.RELAY_PASSWORDS}") == "relay"


def test_a_relay_password_that_was_not_read_names_the_setting() -> None:
    s = build_settings(full_data())
    sec = secrets_for(s)
    sender_only = {k: v for k, v in sec.relay_passwords.items() if k != s.relay.host}
    with pytest.raises(RenderError, match=r"^relay\.password_file: no password was read$"):
        render(s, Secrets(**{**sec.__dict__, "relay_passwords": sender_only}))
    with pytest.raises(RenderError, match=r"relay\.senders\.@example\.com\.password_file"):
        render(s, Secrets(**{**sec.__dict__, "relay_passwords": {s.relay.host or "": "pw"}}))


def test_a_banner_starting_with_a_brace_is_read_as_written() -> None:
    # main.cf groups { ... } only in lists and ${...} expressions; the banner follows
    # $myhostname, so a leading brace of the setting is never the value's first character.
    s = settings(smtp={"banner": "{ESMTP} ${x} $y"})
    banner = main_cf_params(bundle_of(s).files["postfix/main.cf"].content.decode())["smtpd_banner"]
    assert banner == "$myhostname {ESMTP} $${x} $$y"


# --- SPF (policyd-spf) --------------------------------------------------------------


def test_spf_is_asked_after_the_relay_checks_and_before_greylisting() -> None:
    b = bundle_of(settings(networks=["192.0.2.0/24"]))
    recipient = postfix_list(main_cf_params(main_cf(b))["smtpd_recipient_restrictions"])
    spf_at = recipient.index("unix:private/policyd-spf")
    assert recipient.index("reject_unauth_destination") < spf_at
    assert recipient.index("permit_sasl_authenticated") < spf_at  # logged-in users: no SPF
    assert spf_at < recipient.index("inet:127.0.0.1:10023")
    master = b.files["postfix/master.cf"].content.decode()
    assert "spawn user=policyd-spf argv=/usr/bin/policyd-spf" in master
    conf = b.files["policyd-spf/policyd-spf.conf"].content.decode()
    assert "Mail_From_reject = Fail\n" in conf and "HELO_reject = Fail\n" in conf
    assert "TempError_Defer = False\n" in conf and "PermError_reject = False\n" in conf
    assert "skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1,192.0.2.0/24\n" in conf


def test_spf_mark_only_and_off() -> None:
    conf = bundle_of(settings(spf={"fail": "mark"})).files["policyd-spf/policyd-spf.conf"]
    assert b"Mail_From_reject = False\n" in conf.content
    off = bundle_of(settings(spf={"enabled": False}))
    assert "policyd-spf" not in main_cf(off)
    assert "policyd-spf" not in off.files["postfix/master.cf"].content.decode()
    assert not any(p.startswith("policyd-spf/") for p in off.files)


# --- SRS (postsrsd) -----------------------------------------------------------------


def test_srs_runs_only_while_an_alias_forwards_outside() -> None:
    inside = bundle_of(settings(aliases={"team@example.com": "alice@example.com"}))
    assert "postsrsd" not in {d.name for d in inside.daemons}
    assert "10001" not in main_cf(inside)

    out = bundle_of(
        settings(alias_domains=["example.org"], aliases={"fwd@example.com": "someone@far.test"})
    )
    spec = out.daemon("postsrsd")
    assert "-dexample.com" in spec.argv and "-Xexample.org" in spec.argv
    assert "-l127.0.0.1" in spec.argv and "-upostsrsd" in spec.argv
    params = main_cf_params(main_cf(out))
    assert params["sender_canonical_maps"].endswith(", tcp:127.0.0.1:10001")
    assert params["recipient_canonical_maps"].endswith(", tcp:127.0.0.1:10002")
    assert params["sender_canonical_classes"] == "envelope_sender"  # never the From header
    names = [d.name for d in out.daemons]
    assert names.index("postsrsd") < names.index("postfix")
    off = bundle_of(settings(srs={"enabled": False}, aliases={"f@example.com": "x@far.test"}))
    assert "postsrsd" not in {d.name for d in off.daemons}
    assert main_cf_params(main_cf(off))["sender_canonical_classes"] == (
        "envelope_sender, header_sender"
    )


def test_srs_refuses_sender_canonical_which_needs_the_header() -> None:
    with pytest.raises(RenderError, match=r"^srs\.enabled: .*maps\.sender_canonical"):
        bundle_of(
            settings(
                aliases={"fwd@example.com": "someone@far.test"},
                maps={"sender_canonical": {"bob@example.com": "robert@example.com"}},
            )
        )


# --- DMARC (OpenDMARC) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "reject", "marked"),
    [("none", "false", False), ("quarantine", "false", True), ("reject", "true", True)],
)
def test_dmarc_policy_reaches_opendmarc_and_the_mark(
    policy: str, reject: str, marked: bool
) -> None:
    b = bundle_of(settings(dmarc={"policy": policy}))
    conf = b.files["opendmarc/opendmarc.conf"].content.decode()
    assert f"RejectFailures {reject}\n" in conf
    assert "AuthservID mail.example.com\n" in conf and "SPFSelfValidate true\n" in conf
    params = main_cf_params(main_cf(b))
    # OpenDKIM first (OpenDMARC reads its verdict), authres last (it folds them); a
    # failing OpenDMARC or authres accepts mail
    assert " ".join(params["smtpd_milters"].split()) == (
        "unix:opendkim/opendkim.sock, { unix:opendmarc/opendmarc.sock, default_action=accept }"
        ", { unix:authres/authres.sock, default_action=accept }"
    )
    assert params["non_smtpd_milters"] == "unix:opendkim/opendkim.sock"
    checks = b.files["postfix/milter_header_checks.pcre"].content.decode()
    pattern = re.search(r"^/(.+)/$", checks, re.M)
    assert (pattern is not None) == marked
    if pattern:
        rule = re.compile(pattern.group(1))
        fail = "Authentication-Results: mail.example.com; dmarc=fail (p=reject dis=none) "
        assert rule.search(fail + "header.from=x.example")
        assert rule.search(fail.replace("p=reject", "p=quarantine"))
        assert not rule.search(fail.replace("p=reject", "p=none"))
        assert not rule.search(fail.replace("dmarc=fail", "dmarc=pass"))
        assert not rule.search(fail.replace("mail.example.com", "evil.example"))


def test_dmarc_off() -> None:
    b = bundle_of(settings(dmarc={"enabled": False}))
    assert "opendmarc" not in {d.name for d in b.daemons}
    assert " ".join(main_cf_params(main_cf(b))["smtpd_milters"].split()) == (
        "unix:opendkim/opendkim.sock, { unix:authres/authres.sock, default_action=accept }"
    )


@pytest.mark.parametrize(
    ("dkim", "dmarc", "trusted"),
    [
        (True, True, "unix:opendkim/opendkim.sock"),
        (False, True, "DISABLE"),
        (True, False, "unix:opendkim/opendkim.sock"),
    ],
)
def test_trusted_clients_meet_the_signers_only(dkim: bool, dmarc: bool, trusted: str) -> None:
    b = bundle_of(
        settings(dkim={"enabled": dkim}, dmarc={"enabled": dmarc}, networks=["10.1.0.0/16"])
    )
    assert "authres" in {d.name for d in b.daemons}
    params = main_cf_params(main_cf(b))
    assert params["smtpd_milter_maps"] == f"cidr:{LIVE}/postfix/trusted_milters.cidr"
    table = b.files["postfix/trusted_milters.cidr"].content.decode()
    rows = [line.split(None, 1) for line in table.splitlines() if line and line[0] != "#"]
    assert rows == [[n, trusted] for n in ("127.0.0.0/8", "::1/128", "10.1.0.0/16")]


@pytest.mark.parametrize("ed25519", [False, True])
def test_submission_meets_the_signers_only(ed25519: bool) -> None:
    s = settings(dkim={"ed25519": ed25519}, proxy_protocol={"submission": True})
    params = main_cf_params(main_cf(bundle_of(s)))
    signers = ["unix:opendkim/opendkim.sock", *(["unix:opendkim/ed25519.sock"] if ed25519 else [])]
    assert postfix_list(params["mailctl_signers"]) == signers
    rows = master_rows(s)
    for port in ("submission", "smtps", "10587", "10465"):
        assert master_options(rows[(port, "inet")])["smtpd_milters"] == "$mailctl_signers", port
    assert "smtpd_milters" not in master_options(rows[("smtpd", "pass")])  # port 25: all of them


@pytest.mark.parametrize(
    "extra",
    [{}, {"role": "edge", "edge": {"mailbox_host": "mailbox"}}, {"edges": ["10.89.0.0/24"]}],
)
def test_every_parameter_of_ours_is_used(extra: dict[str, Any]) -> None:
    """postconf warns of an unused main.cf parameter, and validation refuses a warning:
    each mailctl_* parameter must be named in main.cf or master.cf."""
    s = settings(**extra)
    main, master = postfix.main_cf(s), postfix.master_cf(s)
    ours = [name for name in main_cf_params(main) if name.startswith("mailctl_")]
    assert ours or extra.get("role") == "edge"
    for name in ours:
        assert re.search(rf"\$\{{?{name}\b", main + master), name


def test_no_verdicts_no_fold() -> None:
    b = bundle_of(settings(dkim={"enabled": False}, dmarc={"enabled": False}))
    assert "authres" not in {d.name for d in b.daemons}
    params = main_cf_params(main_cf(b))
    assert params["smtpd_milters"] == params["smtpd_milter_maps"] == ""
    assert "postfix/trusted_milters.cidr" not in b.files


def test_authres_runs_as_its_own_user_for_our_hostname() -> None:
    spec = bundle_of(settings()).daemon("authres")
    assert spec.argv[:2] == ("/usr/bin/python3", "-I")
    assert spec.argv[2].endswith("/mailctl/authres.py")
    assert spec.argv[3:] == (
        "unix:/var/spool/postfix/authres/authres.sock",
        "mail.example.com",
        "authres",
    )


def test_ed25519_signs_in_a_second_opendkim_after_the_rsa_one() -> None:
    from mailctl.render.opendkim import SigningKey

    s_ = settings(dkim={"ed25519": True})
    keys = (
        SigningKey("example.com", "mc1", "/k/mc1.pem", "rsa"),
        SigningKey("example.com", "me1", "/k/me1.pem", "ed25519"),
    )
    b = render(s_, secrets_for(s_), None, keys)
    names = [d.name for d in b.daemons]
    assert names.index("opendkim-ed25519") < names.index("postfix")
    conf = b.files["opendkim/ed25519.conf"].content.decode()
    assert "SignatureAlgorithm ed25519-sha256\n" in conf and "Mode s\n" in conf
    assert b"me1" in b.files["opendkim/ed25519_signing_table"].content
    assert b"me1" not in b.files["opendkim/signing_table"].content
    assert b"mc1" in b.files["opendkim/signing_table"].content
    params = main_cf_params(main_cf(b))
    milters = " ".join(params["smtpd_milters"].split())
    assert milters.startswith("unix:opendkim/opendkim.sock, unix:opendkim/ed25519.sock, {")
    assert params["non_smtpd_milters"] == (
        "unix:opendkim/opendkim.sock, unix:opendkim/ed25519.sock"
    )
    off = bundle_of(settings())
    assert "opendkim/ed25519.conf" not in off.files
    assert "opendkim-ed25519" not in {d.name for d in off.daemons}

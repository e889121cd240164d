"""The DNS self-check against a hand-written resolver: every state of every check, the
blocklist rules of RFC 5782 and Spamhaus's error codes, SPF evaluated by pyspf through
the seam, the cache with its rate limit, the operation over settings and DKIM state,
the CLI and the API route; and DnsResolver against a tiny DNS server on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
import yaml

from mailctl import cli
from mailctl.apply import dkim
from mailctl.errors import MailctlError
from mailctl.layout import Layout
from mailctl.ops import selfcheck
from mailctl.ops.models import SelfCheck, SelfCheckReport
from mailctl.ops.selfcheck import NOANSWER, NXDOMAIN, Cache, DnsResolver, Inputs, Reply, run
from tests.unit.factory import base_data, settings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from mailctl.api.app import Tokens, create_app

HOST = "mail.example.com"
DOMAIN = "example.com"
IP4 = "192.0.2.25"
IP6 = "2001:db8::25"
REV4 = "25.2.0.192.in-addr.arpa"
REV6 = "5.2.0.0." + "0." * 20 + "8.b.d.0.1.0.0.2.ip6.arpa"
KEY = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAexample"
SEL = f"s1._domainkey.{DOMAIN}"
ZEN = "zen.spamhaus.org"
DBL = "dbl.spamhaus.org"
SERVFAIL = Reply.failed("All nameservers failed to answer the query: SERVFAIL")
TIMEOUT = Reply.failed("no answer within 4 s")

World = dict[tuple[str, str], Reply]


def txt(*strings: str) -> str:
    """A TXT record in presentation format, one quoted character-string each."""
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in strings)


def found(*records: str) -> Reply:
    return Reply.found(records)


class FakeResolver:
    """(name, type) -> Reply; anything else is NXDOMAIN. Records every question."""

    def __init__(self, answers: Mapping[tuple[str, str], Reply], fail_all: bool = False) -> None:
        self.answers = {(n.lower(), t): a for (n, t), a in answers.items()}
        self.fail_all = fail_all
        self.asked: list[tuple[str, str]] = []
        self.delay = 0.0

    def query(self, name: str, rtype: str) -> Reply:
        self.asked.append((name, rtype))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_all:
            return SERVFAIL
        return self.answers.get((name, rtype), NXDOMAIN)

    def describe(self) -> str:
        return "fake resolver"


def good_world() -> World:
    """A domain set up right: every check says ok."""
    return {
        (DOMAIN, "MX"): found(f"10 {HOST}."),
        (HOST, "A"): found(IP4),
        (HOST, "AAAA"): found(IP6),
        (REV4, "PTR"): found(f"{HOST}."),
        (REV6, "PTR"): found(f"{HOST}."),
        (DOMAIN, "TXT"): found(txt("v=spf1 mx -all"), txt("google-site-verification=x")),
        (SEL, "TXT"): found(txt(f"v=DKIM1; k=rsa; p={KEY}")),
        (f"_dmarc.{DOMAIN}", "TXT"): found(txt("v=DMARC1; p=reject; rua=mailto:pm@example.com")),
        (f"2.0.0.127.{ZEN}", "A"): found("127.0.0.2", "127.0.0.4", "127.0.0.10"),
        (f"test.{DBL}", "A"): found("127.0.1.2"),
    }


def w(*changes: tuple[str, str, Reply]) -> World:
    world = good_world()
    for name, rtype, answer in changes:
        world[(name, rtype)] = answer
    return world


def inputs(**changes: Any) -> Inputs:
    base: dict[str, Any] = {
        "hostname": HOST,
        "domains": (DOMAIN,),
        "address": IP4,
        "dkim": ((SEL, f"v=DKIM1; k=rsa; p={KEY}", "active"),),
        "blocklists": (ZEN,),
        "domain_blocklists": (DBL,),
    }
    base.update(changes)
    return Inputs(**base)


def checks(world: World, name: str, **changes: Any) -> list[SelfCheck]:
    report = run(inputs(**changes), FakeResolver(world), now=1000.0)
    return [c for c in report.checks if c.check == name]


def one(world: World, name: str, **changes: Any) -> SelfCheck:
    (check,) = checks(world, name, **changes)
    return check


# --- the whole run ------------------------------------------------------------------------


def test_a_domain_set_up_right_is_ok_everywhere() -> None:
    report = run(inputs(), FakeResolver(good_world()), now=1234.5)
    assert (report.state, report.checked_at, report.cached) == ("ok", 1234.5, False)
    assert report.next_run_after == 1234.5 + selfcheck.MIN_INTERVAL
    assert (report.resolver, report.address) == ("fake resolver", IP4)
    assert [(c.check, c.subject, c.state) for c in report.checks] == [
        ("mx", DOMAIN, "ok"),
        ("fcrdns", IP4, "ok"),
        ("spf", DOMAIN, "ok"),
        ("dkim", SEL, "ok"),
        ("dmarc", DOMAIN, "ok"),
        ("blocklist", f"{IP4} on {ZEN}", "ok"),
        ("blocklist", f"{DOMAIN} on {DBL}", "ok"),
    ], report.checks


def test_a_resolver_that_fails_everything_gives_unknown_never_ok() -> None:
    report = run(inputs(), FakeResolver({}, fail_all=True), now=0)
    assert {c.state for c in report.checks} == {"unknown"}, report.checks
    assert report.state == "unknown"
    assert all("SERVFAIL" in c.reason for c in report.checks), report.checks


def test_the_overall_state_is_the_worst_one() -> None:
    def of(*states: Any) -> str:
        return selfcheck.worst(
            [SelfCheck(check="mx", subject="x", state=s, reason="") for s in states]
        )

    assert of("ok", "warn") == "warn"
    assert of("ok", "unknown", "warn") == "unknown"
    assert of("unknown", "fail", "ok") == "fail"
    assert of() == "ok"


def test_a_run_stops_asking_when_its_time_is_up() -> None:
    resolver = FakeResolver(good_world())
    resolver.delay = 0.05
    report = run(inputs(domains=("a.example", "b.example")), resolver, now=0, budget=0.01)
    assert any("were used up" in c.reason for c in report.checks), report.checks
    assert "ok" not in {c.state for c in report.checks if "used up" in c.reason}
    assert len(resolver.asked) < 12


def test_the_report_is_json_for_the_api() -> None:
    report = run(inputs(), FakeResolver(good_world()), now=1.0)
    assert SelfCheckReport.model_validate_json(report.model_dump_json()) == report


# --- MX ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "state", "words"),
    [
        ((), "ok", f"10 {HOST}"),
        (((DOMAIN, "MX", found("20 backup.example.net.", "10 MAIL.Example.COM.")),), "ok", "10 "),
        (((DOMAIN, "MX", found(f"10 {HOST}")),), "ok", HOST),
        # Another name, but its address is ours.
        (
            ((DOMAIN, "MX", found("10 mx.example.com.")), ("mx.example.com", "A", found(IP4))),
            "ok",
            "10 mx.example.com",
        ),
        # Ours only as a backup: mail goes elsewhere first.
        (
            ((DOMAIN, "MX", found("10 mx.provider.example.", f"20 {HOST}.")),),
            "warn",
            "another server first",
        ),
        (((DOMAIN, "MX", found("10 mx.elsewhere.net.")),), "fail", f"not {HOST} nor a host"),
        (((DOMAIN, "MX", found("0 .")),), "fail", "null MX"),
        (((DOMAIN, "MX", found("garbage")),), "fail", "does not parse"),
        (((DOMAIN, "MX", NXDOMAIN),), "fail", "does not exist"),
        (((DOMAIN, "MX", NOANSWER),), "fail", "has no MX record"),
        (((DOMAIN, "MX", SERVFAIL),), "unknown", "SERVFAIL"),
        (((DOMAIN, "MX", TIMEOUT),), "unknown", "within 4 s"),
        # Not ours by name, and the address of the other one cannot be looked up.
        (
            ((DOMAIN, "MX", found("10 mx.elsewhere.net.")), ("mx.elsewhere.net", "A", SERVFAIL)),
            "unknown",
            "lookups failed",
        ),
    ],
)
def test_mx(changes: tuple[tuple[str, str, Reply], ...], state: str, words: str) -> None:
    check = one(w(*changes), "mx")
    assert (check.state, check.subject) == (state, DOMAIN), check
    assert words in check.reason


def test_mx_without_our_address_goes_by_name_alone() -> None:
    world = w((DOMAIN, "MX", found("10 mx.example.com.")), ("mx.example.com", "A", found(IP4)))
    check = one(world, "mx", address=None)
    assert check.state == "fail" and "nor a host" not in check.reason, check


# --- forward-confirmed reverse DNS ----------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "state", "words"),
    [
        ((), "ok", f"{IP4} -> PTR {HOST} -> A {IP4}"),
        # The PTR name confirms, but it is not the name we greet with.
        (
            (
                (REV4, "PTR", found("host-25.isp.example.")),
                ("host-25.isp.example", "A", found(IP4)),
            ),
            "warn",
            "not our hostname",
        ),
        # Two PTRs, ours among them and confirming.
        (((REV4, "PTR", found("other.example.", f"{HOST}.")),), "ok", HOST),
        (((REV4, "PTR", NXDOMAIN),), "fail", "no PTR record"),
        (((REV4, "PTR", NOANSWER),), "fail", "no PTR record"),
        (((HOST, "A", found("192.0.2.99")),), "fail", "does not lead back"),
        (((HOST, "A", NXDOMAIN),), "fail", "NXDOMAIN"),
        (((REV4, "PTR", SERVFAIL),), "unknown", "PTR lookup"),
        (((REV4, "PTR", TIMEOUT),), "unknown", "within 4 s"),
        (((HOST, "A", SERVFAIL),), "unknown", "lookup of the PTR name failed"),
    ],
)
def test_fcrdns(changes: tuple[tuple[str, str, Reply], ...], state: str, words: str) -> None:
    check = one(w(*changes), "fcrdns")
    assert (check.state, check.subject) == (state, IP4), check
    assert words in check.reason


def test_fcrdns_of_ipv6_goes_through_the_nibble_name_and_aaaa() -> None:
    resolver = FakeResolver(good_world())
    report = run(inputs(address=IP6), resolver, now=0)
    (check,) = [c for c in report.checks if c.check == "fcrdns"]
    assert (check.state, check.subject) == ("ok", IP6), check
    assert (REV6, "PTR") in resolver.asked
    assert (HOST, "AAAA") in resolver.asked
    broken = one(w((HOST, "AAAA", found("2001:db8::99"))), "fcrdns", address=IP6)
    assert broken.state == "fail", broken


@pytest.mark.parametrize(("ip", "words"), [(None, "not known"), ("nope", "not an IP address")])
def test_without_the_outbound_address_its_checks_are_unknown(ip: str | None, words: str) -> None:
    report = run(inputs(address=ip), FakeResolver(good_world()), now=0)
    unknown = [c for c in report.checks if c.state == "unknown"]
    assert [c.check for c in unknown] == ["fcrdns", "spf", "blocklist"], report.checks
    assert all(words in c.reason for c in unknown)
    assert {c.state for c in report.checks if c not in unknown} == {"ok"}


# --- SPF (pyspf through the seam) -------------------------------------------------------------


def spf_world(*records: str, **extra: Reply) -> World:
    world = w((DOMAIN, "TXT", found(*(txt(r) for r in records)) if records else NOANSWER))
    for key, answer in extra.items():
        name, rtype = key.split("|")
        world[(name, rtype)] = answer
    return world


@pytest.mark.parametrize(
    ("world", "state", "words"),
    [
        (spf_world("v=spf1 mx -all"), "ok", "SPF pass"),
        (spf_world("v=spf1 a:mail.example.com -all"), "ok", "SPF pass"),
        (spf_world("v=spf1 ip4:192.0.2.0/24 -all"), "ok", "SPF pass"),
        # Nothing in the record names our address: only evaluation can tell.
        (
            spf_world(
                "v=spf1 include:_spf.example.net -all",
                **{"_spf.example.net|TXT": found(txt("v=spf1 ip4:192.0.2.0/27 ~all"))},
            ),
            "ok",
            "SPF pass",
        ),
        # ... and a record that merely mentions it is no pass.
        (spf_world("v=spf1 exists:192.0.2.25.example.org -all"), "fail", "SPF fail"),
        (spf_world("v=spf1 ip4:198.51.100.1 ~all"), "warn", "softfail"),
        (spf_world("v=spf1 ip4:198.51.100.1 ?all"), "warn", "neutral"),
        (spf_world("v=spf1 ip4:198.51.100.1 -all"), "fail", "SPF fail"),
        (spf_world(), "fail", "no SPF record"),
        (spf_world("not spf at all"), "fail", "no SPF record"),
        (spf_world("v=spf1 -all", "v=spf1 mx -all"), "fail", "permerror"),
        (spf_world("v=spf1 bogus:thing -all"), "fail", "permerror"),
        (spf_world("v=spf1 include:_spf.example.net -all"), "fail", "permerror"),
        (w((DOMAIN, "TXT", SERVFAIL)), "unknown", "temperror"),
        (w((DOMAIN, "TXT", TIMEOUT)), "unknown", "temperror"),
        (spf_world("v=spf1 mx -all", **{f"{HOST}|A": SERVFAIL}), "unknown", "temperror"),
    ],
)
def test_spf(world: World, state: str, words: str) -> None:
    check = one(world, "spf")
    assert (check.state, check.subject) == (state, DOMAIN), check
    assert words in check.reason


def test_spf_for_ipv6_asks_only_our_resolver() -> None:
    resolver = FakeResolver(spf_world("v=spf1 mx -all"))
    report = run(inputs(address=IP6), resolver, now=0)
    (check,) = [c for c in report.checks if c.check == "spf"]
    assert check.state == "ok", check
    assert {(DOMAIN, "TXT"), (DOMAIN, "MX"), (HOST, "AAAA")} <= set(resolver.asked)
    assert selfcheck._spf_resolver.get() is None  # outside a check, pyspf's own lookup


def test_spf_joins_split_txt_strings_without_a_space() -> None:
    split = w((DOMAIN, "TXT", found(txt("v=spf1 ip4:192.0.2.0/2", "4 -all"))))
    assert one(split, "spf").state == "ok"


# --- DKIM ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "ours", "key_state", "state", "words"),
    [
        (found(txt(f"v=DKIM1; k=rsa; p={KEY}")), KEY, "active", "ok", "matches ours"),
        (found(txt(f"k=rsa; p={KEY};")), KEY, "retiring", "ok", "matches ours"),
        # Split across strings, with folding whitespace inside the key.
        (
            found(txt("v=DKIM1; k=rsa; p=" + KEY[:20], KEY[20:40] + " ", " " + KEY[40:])),
            KEY,
            "active",
            "ok",
            "matches",
        ),
        (found(txt(f"v=DKIM1; p={KEY}")), KEY, "pending", "ok", "matches"),
        (found(txt("v=DKIM1; p=")), "", "revoked", "ok", "revoked (empty p=)"),
        (NXDOMAIN, "", "revoked", "ok", "verifies nothing"),
        (found(txt(f"v=DKIM1; t=y; p={KEY}")), KEY, "active", "warn", "t=y"),
        (NXDOMAIN, KEY, "pending", "warn", "not published"),
        (found(txt("v=DKIM1; k=rsa; p=OTHERKEYxyz")), KEY, "active", "fail", "is not ours"),
        (found(txt("v=DKIM1; k=rsa; p=OTHERKEYxyz")), KEY, "pending", "fail", "is not ours"),
        (found(txt(f"v=DKIM1; p={KEY}")), "", "revoked", "fail", "we revoked"),
        (found(txt("v=DKIM1; p=")), KEY, "active", "fail", "empty (revoked) key"),
        (found(txt("v=DKIM1; k=rsa")), KEY, "active", "fail", "no p="),
        (found(txt(f"v=DKIM2; p={KEY}")), KEY, "active", "fail", "DKIM1"),
        (found(txt(f"p={KEY}; v=DKIM1")), KEY, "active", "fail", "DKIM1 first"),
        (found(txt("just some text")), KEY, "active", "fail", "not a DKIM key record"),
        (found(txt(f"p={KEY}"), txt(f"p={KEY}")), KEY, "active", "fail", "2 TXT records"),
        (found('"unterminated'), KEY, "active", "fail", "does not parse"),
        (NXDOMAIN, KEY, "active", "fail", "no TXT record"),
        (NOANSWER, KEY, "retiring", "fail", "no TXT record"),
        (SERVFAIL, KEY, "active", "unknown", "SERVFAIL"),
        (TIMEOUT, KEY, "pending", "unknown", "within 4 s"),
    ],
)
def test_dkim(answer: Reply, ours: str, key_state: str, state: str, words: str) -> None:
    record = (SEL, f"v=DKIM1; k=rsa; p={ours}", key_state)
    check = one(w((SEL, "TXT", answer)), "dkim", dkim=(record,))
    assert (check.state, check.subject) == (state, SEL), check
    assert words in check.reason


def test_dkim_checks_every_published_record_and_nothing_without_keys() -> None:
    s2 = f"s2._domainkey.{DOMAIN}"
    world = w((s2, "TXT", found(txt("v=DKIM1; p=NEWKEY"))))
    records = (
        (SEL, f"v=DKIM1; k=rsa; p={KEY}", "retiring"),
        (s2, "v=DKIM1; k=rsa; p=NEWKEY", "active"),
        (f"s0._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=ABC", "active"),
    )
    got = checks(world, "dkim", dkim=records)
    assert [(c.subject.split(".")[0], c.state) for c in got] == [
        ("s1", "ok"),
        ("s2", "ok"),
        ("s0", "fail"),
    ]
    assert checks(good_world(), "dkim", dkim=()) == []


# --- DMARC ----------------------------------------------------------------------------------

DMARC = f"_dmarc.{DOMAIN}"


@pytest.mark.parametrize(
    ("answer", "state", "words"),
    [
        (found(txt("v=DMARC1; p=reject")), "ok", "p=reject"),
        (found(txt("v=DMARC1; p=quarantine; pct=50; sp=reject")), "ok", "p=quarantine"),
        (found(txt("v=DMARC1;", " p=Quarantine")), "ok", "p=quarantine"),
        (found(txt("v=DMARC1; p=reject"), txt("other text")), "ok", "p=reject"),
        (found(txt("v=DMARC1; p=none; rua=mailto:pm@example.com")), "warn", "monitoring only"),
        (found(txt("v=DMARC1; p=reject"), txt("v=DMARC1; p=none")), "fail", "2 DMARC records"),
        (found(txt("v=DMARC1; p=maybe")), "fail", "p=maybe"),
        (found(txt("v=DMARC1; p=reject; sp=never")), "fail", "sp=never"),
        (found(txt("v=DMARC1; p=reject; pct=150")), "fail", "pct=150"),
        (found(txt("v=DMARC1; rua=mailto:pm@example.com")), "fail", "no p="),
        (found(txt("v=DMARC1; garbage; p=reject")), "fail", "does not parse"),
        (found(txt("v=DMARC1; p=reject; p=none")), "fail", "twice"),
        (found(txt("p=reject; v=DMARC1")), "fail", "starts with v=DMARC1"),
        (found(txt("v=dmarc1; p=reject")), "fail", "starts with v=DMARC1"),
        (found('"unterminated'), "fail", "does not parse"),
        (NXDOMAIN, "fail", "no DMARC record"),
        (NOANSWER, "fail", "no DMARC record"),
        (SERVFAIL, "unknown", "SERVFAIL"),
        (TIMEOUT, "unknown", "within 4 s"),
    ],
)
def test_dmarc(answer: Reply, state: str, words: str) -> None:
    check = one(w((DMARC, "TXT", answer)), "dmarc")
    assert (check.state, check.subject) == (state, DOMAIN), check
    assert words in check.reason


# --- blocklists --------------------------------------------------------------------------

Q4 = f"25.2.0.192.{ZEN}"


def ip_listing(*changes: tuple[str, str, Reply], ip: str = IP4) -> SelfCheck:
    (check,) = [c for c in checks(w(*changes), "blocklist", address=ip) if ZEN in c.subject]
    return check


@pytest.mark.parametrize(
    ("answer", "state", "words"),
    [
        (NXDOMAIN, "ok", "not listed"),
        (NOANSWER, "ok", "not listed"),
        (found("127.0.0.2"), "fail", "127.0.0.2 (SBL)"),
        (found("127.0.0.4", "127.0.0.10"), "fail", "127.0.0.4 (XBL), 127.0.0.10 (PBL"),
        (found("127.0.0.200"), "fail", "127.0.0.200"),
        (found("127.255.255.252"), "unknown", "typing error"),
        (found("127.255.255.254"), "unknown", "public or open resolver"),
        (found("127.255.255.255"), "unknown", "too many queries"),
        (found("127.255.255.1"), "unknown", "error code 127.255.255.1"),
        (found("127.0.0.4", "127.255.255.254"), "unknown", "open resolver"),
        (found("198.51.100.7"), "unknown", "outside 127.0.0.0/8"),
        (found("127.0.0.1"), "unknown", "not a listing code"),
        (found("::1"), "unknown", "not an IPv4 address"),
        (SERVFAIL, "unknown", "SERVFAIL"),
        (TIMEOUT, "unknown", "within 4 s"),
    ],
)
def test_ip_blocklist_answers(answer: Reply, state: str, words: str) -> None:
    check = ip_listing((Q4, "A", answer))
    assert (check.state, check.subject) == (state, f"{IP4} on {ZEN}"), check
    assert words in check.reason


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        (((f"2.0.0.127.{ZEN}", "A", NXDOMAIN),), "127.0.0.2 is not listed (NXDOMAIN)"),
        (((f"2.0.0.127.{ZEN}", "A", NOANSWER),), "127.0.0.2 is not listed"),
        (((f"2.0.0.127.{ZEN}", "A", found("127.255.255.254")),), "open resolver"),
        (((f"2.0.0.127.{ZEN}", "A", found("203.0.113.9")),), "outside 127.0.0.0/8"),
        (((f"1.0.0.127.{ZEN}", "A", found("127.0.0.2")),), "127.0.0.1 is listed (127.0.0.2"),
        (((f"1.0.0.127.{ZEN}", "A", found("127.255.255.255")),), "too many queries"),
        (((f"2.0.0.127.{ZEN}", "A", SERVFAIL),), "could not be looked up: All nameservers"),
        (((f"1.0.0.127.{ZEN}", "A", TIMEOUT),), "test entry 127.0.0.1"),
    ],
)
def test_a_blocklist_is_believed_only_after_its_test_entries(
    changes: tuple[tuple[str, str, Reply], ...], words: str
) -> None:
    # Our address is "not listed" (NXDOMAIN), which would be ok from a working list.
    resolver = FakeResolver(w(*changes))
    report = run(inputs(), resolver, now=0)
    (check,) = [c for c in report.checks if c.subject == f"{IP4} on {ZEN}"]
    assert check.state == "unknown", check
    assert words in check.reason
    assert (Q4, "A") not in resolver.asked  # a list not believed is not asked at all


def test_ipv6_is_looked_up_in_nibble_format() -> None:
    name = REV6.removesuffix(".ip6.arpa") + f".{ZEN}"
    assert ip_listing(ip=IP6).state == "ok"
    check = ip_listing((name, "A", found("127.0.0.3")), ip=IP6)
    assert (check.state, check.subject) == ("fail", f"{IP6} on {ZEN}"), check
    assert "SBL CSS" in check.reason


def test_a_list_other_than_spamhaus_gets_codes_without_names() -> None:
    zone = "bl.example.org"
    world = w(
        (f"2.0.0.127.{zone}", "A", found("127.0.0.2")),
        (f"25.2.0.192.{zone}", "A", found("127.0.0.2")),
    )
    check = one(world, "blocklist", blocklists=(zone,), domain_blocklists=())
    assert (check.state, check.reason) == ("fail", f"{IP4} is listed on {zone}: 127.0.0.2")


@pytest.mark.parametrize(
    ("changes", "state", "words"),
    [
        ((), "ok", "not listed"),
        (((f"{DOMAIN}.{DBL}", "A", found("127.0.1.2")),), "fail", "127.0.1.2 (DBL spam domain)"),
        (((f"{DOMAIN}.{DBL}", "A", found("127.255.255.254")),), "unknown", "open resolver"),
        (((f"{DOMAIN}.{DBL}", "A", found("127.0.1.255")),), "unknown", "IP address"),
        (((f"{DOMAIN}.{DBL}", "A", SERVFAIL),), "unknown", "failed"),
        (((f"{DOMAIN}.{DBL}", "A", TIMEOUT),), "unknown", "within 4 s"),
        (((f"test.{DBL}", "A", NXDOMAIN),), "unknown", "TEST is not listed"),
        (((f"invalid.{DBL}", "A", found("127.0.1.2")),), "unknown", "INVALID is listed"),
    ],
)
def test_domain_blocklist(
    changes: tuple[tuple[str, str, Reply], ...], state: str, words: str
) -> None:
    (check,) = [c for c in checks(w(*changes), "blocklist") if DBL in c.subject]
    assert (check.state, check.subject) == (state, f"{DOMAIN} on {DBL}"), check
    assert words in check.reason


def test_a_domain_list_not_believed_makes_every_domain_unknown() -> None:
    world = w((f"test.{DBL}", "A", NXDOMAIN))
    got = checks(world, "blocklist", domains=(DOMAIN, "other.example"), blocklists=())
    assert [(c.subject, c.state) for c in got] == [
        (f"{DOMAIN} on {DBL}", "unknown"),
        (f"other.example on {DBL}", "unknown"),
    ]


# --- the cache and its rate limit -----------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cached(tmp_path: Path) -> tuple[Cache, Clock, FakeResolver]:
    return Cache(tmp_path / "selfcheck.json"), Clock(), FakeResolver(good_world())


def test_the_cache_serves_a_result_for_max_age_and_a_refresh_once_a_minute(
    tmp_path: Path,
) -> None:
    cache, clock, resolver = cached(tmp_path)

    def get(refresh: bool = False, **kw: Any) -> SelfCheckReport:
        return cache.get(inputs(**kw), lambda: resolver, max_age=300, refresh=refresh, clock=clock)

    first = get()
    asked = len(resolver.asked)
    assert (first.cached, first.checked_at) == (False, 1000.0)
    clock.now += 59
    again = get(refresh=True)  # a refresh within the minute: the same result
    assert (again.cached, again.checked_at) == (True, 1000.0)
    assert len(resolver.asked) == asked
    clock.now += 1
    assert get().cached  # within max_age without a refresh: the same result
    fresh = get(refresh=True)  # a minute later a refresh asks again
    assert (fresh.cached, fresh.checked_at) == (False, 1060.0)
    assert len(resolver.asked) == 2 * asked
    clock.now += 299
    assert get().checked_at == 1060.0
    clock.now += 1
    assert get().checked_at == 1360.0  # max_age passed: asked again
    # Another question (another address) is another result, kept beside the first.
    other = get(address=IP6)
    assert other.address == IP6 and not other.cached
    assert get().checked_at == 1360.0


def test_max_age_below_a_minute_is_a_minute(tmp_path: Path) -> None:
    cache, clock, resolver = cached(tmp_path)
    cache.get(inputs(), lambda: resolver, max_age=1, clock=clock)
    clock.now += 30
    assert cache.get(inputs(), lambda: resolver, max_age=1, clock=clock).checked_at == 1000.0


def test_a_clock_that_went_back_asks_again(tmp_path: Path) -> None:
    cache, clock, resolver = cached(tmp_path)
    cache.get(inputs(), lambda: resolver, max_age=300, clock=clock)
    clock.now -= 3600
    assert not cache.get(inputs(), lambda: resolver, max_age=300, clock=clock).cached


def test_the_cache_keeps_few_questions_and_ignores_a_broken_file(tmp_path: Path) -> None:
    cache, clock, resolver = cached(tmp_path)
    for n in range(selfcheck.KEEP + 3):
        clock.now += 1
        cache.get(inputs(address=f"192.0.2.{n + 1}"), lambda: resolver, max_age=300, clock=clock)
    kept = json.loads(cache.path.read_text())["reports"]
    assert len(kept) == selfcheck.KEEP
    assert "192.0.2.1" not in {r["address"] for r in kept.values()}  # the oldest went
    cache.path.write_text("{not json")
    assert not cache.get(inputs(), lambda: resolver, max_age=300, clock=clock).cached


def test_a_state_directory_that_cannot_be_made_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    cache = Cache(tmp_path / "file" / "selfcheck.json")
    with pytest.raises(MailctlError, match="cannot lock"):
        cache.get(inputs(), lambda: FakeResolver(good_world()), max_age=300)


def test_callers_at_once_share_one_run(tmp_path: Path) -> None:
    resolver = FakeResolver(good_world())
    resolver.delay = 0.005
    reports: list[SelfCheckReport] = []

    def ask() -> None:
        cache = Cache(tmp_path / "selfcheck.json")  # a process of its own would open anew
        reports.append(cache.get(inputs(), lambda: resolver, max_age=300))

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.checked_at for r in reports}) == 1
    assert sum(not r.cached for r in reports) == 1
    assert resolver.asked.count((DOMAIN, "MX")) == 2  # once for MX, once by SPF's mx


# --- the operation: settings and DKIM state in, and the CLI and the API on top ------------------


def layout_with(tmp_path: Path, **extra: Any) -> Layout:
    layout = Layout(
        etc=tmp_path / "etc", state=tmp_path / "state", settings_dir=tmp_path, owners=False
    )
    layout.settings_file.write_text(yaml.safe_dump(base_data(**extra)))
    return layout


def test_inputs_come_from_the_settings_and_the_dkim_state(tmp_path: Path) -> None:
    keys = dkim.State(
        {
            DOMAIN: [
                dkim.Key("mc1", "retired", 0.0, "OLD"),
                dkim.Key("mc2", "active", 1.0, "CUR"),
                dkim.Key("mc3", "pending", 2.0, "NEW"),
            ],
            "alias.example": [dkim.Key("mc4", "revoked", 1.0, "GONE")],
            "left.example": [dkim.Key("mc5", "active", 1.0, "LEFT")],  # not in the settings
        }
    )
    s = settings(
        alias_domains=["alias.example"],
        selfcheck={"address": IP4, "blocklists": [ZEN], "domain_blocklists": [DBL]},
    )
    got = selfcheck.inputs_for(s, keys)
    assert got == Inputs(
        hostname=HOST,
        domains=(DOMAIN, "alias.example"),
        address=IP4,
        dkim=(
            ("mc4._domainkey.alias.example", "v=DKIM1; k=rsa; p=", "revoked"),
            (f"mc2._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=CUR", "active"),
            (f"mc3._domainkey.{DOMAIN}", "v=DKIM1; k=rsa; p=NEW", "pending"),
        ),
        blocklists=(ZEN,),
        domain_blocklists=(DBL,),
    )
    assert selfcheck.inputs_for(s, keys, " 2001:DB8::25 ").address == IP6
    with pytest.raises(MailctlError, match="not an IP address"):
        selfcheck.inputs_for(s, keys, "mail.example.com")
    # Without selfcheck.address: smtp.bind_address when it is a public one.
    assert selfcheck.inputs_for(settings(), keys).address is None
    private = settings(smtp={"bind_address": "10.0.0.5"})
    assert selfcheck.inputs_for(private, keys).address is None
    public = settings(smtp={"bind_address": "8.8.4.4"})
    assert selfcheck.inputs_for(public, keys).address == "8.8.4.4"


def test_the_operation_checks_the_live_keys_and_keeps_the_result(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, selfcheck={"address": IP4, "every": "10m"})
    keys = dkim.State({DOMAIN: [dkim.Key("s1", "active", 1.0, KEY)]})
    dkim.state_file(layout).parent.mkdir(parents=True)
    dkim.state_file(layout).write_text(keys.to_json())
    resolver, clock = FakeResolver(w((f"2.0.0.127.{ZEN}", "A", NXDOMAIN))), Clock()
    report = selfcheck.checks(layout, resolver=lambda: resolver, clock=clock)
    assert [(c.check, c.state) for c in report.checks] == [
        ("mx", "ok"),
        ("fcrdns", "ok"),
        ("spf", "ok"),
        ("dkim", "ok"),
        ("dmarc", "ok"),
    ]
    assert (layout.state / "selfcheck.json").exists()
    clock.now += 599
    assert selfcheck.checks(layout, resolver=lambda: resolver, clock=clock).cached
    clock.now += 1
    assert not selfcheck.checks(layout, resolver=lambda: resolver, clock=clock).cached
    # With DKIM off, no DKIM records are checked.
    layout.settings_file.write_text(
        yaml.safe_dump(base_data(dkim={"enabled": False}, selfcheck={"address": IP4}))
    )
    report = selfcheck.checks(layout, resolver=lambda: resolver, clock=clock)
    assert "dkim" not in {c.check for c in report.checks}


def test_the_cli_prints_a_line_a_check_and_exits_1_unless_all_is_ok_or_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    layout_with(tmp_path)
    worlds = iter([w((f"_dmarc.{DOMAIN}", "TXT", found(txt("v=DMARC1; p=none")))), {}])
    monkeypatch.setattr(selfcheck, "DnsResolver", lambda: FakeResolver(next(worlds)))
    monkeypatch.setenv("MAILCTL_STATE", str(tmp_path / "state"))
    argv = ["--settings-dir", str(tmp_path), "selfcheck", "--address", IP4]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ok", "mx", DOMAIN]
    assert out[3].split()[:3] == ["warn", "dmarc", DOMAIN] and "p=none" in out[3]
    assert out[-1].startswith("warn: 3 ok, 1 warn, 0 fail, 0 unknown; checked ")
    assert cli.main([*argv, "--json"]) == 0  # the same question: the kept result
    shown = json.loads(capsys.readouterr().out)
    assert (shown["state"], shown["cached"], shown["address"]) == ("warn", True, IP4)
    # A new address is a new question, asked at once.
    assert cli.main([*argv[:-1], "192.0.2.26", "--refresh"]) == 1  # {}: all NXDOMAIN
    assert "fail: 0 ok" in capsys.readouterr().out
    assert cli.main([*argv[:-1], "not-an-ip"]) == 2
    assert "not an IP address" in capsys.readouterr().err


def test_get_checks_needs_the_admin_token_and_takes_refresh_and_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = layout_with(tmp_path)
    resolver = FakeResolver(good_world())
    monkeypatch.setattr(selfcheck, "DnsResolver", lambda: resolver)
    admin, read = "a" * 30, "r" * 30
    app = TestClient(create_app(_Ready(), Tokens(admin=admin, read=read), layout=layout))
    assert app.get("/checks").status_code == 401
    assert app.get("/checks", headers={"Authorization": f"Bearer {read}"}).status_code == 403
    auth = {"Authorization": f"Bearer {admin}"}
    r = app.get("/checks", params={"address": IP4}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["address"], body["cached"]) == ("ok", IP4, False)
    assert {c["check"] for c in body["checks"]} == {"mx", "fcrdns", "spf", "dmarc"}
    r = app.get("/checks", params={"address": IP4, "refresh": "true"}, headers=auth)
    assert r.json()["cached"] is True  # within the minute
    r = app.get("/checks", params={"address": "nope"}, headers=auth)
    assert r.status_code == 400 and "not an IP address" in r.json()["detail"]
    r = app.get("/checks", headers=auth)
    assert r.json()["address"] is None and r.json()["state"] == "unknown"
    # readiness asks nothing of DNS
    before = len(resolver.asked)
    assert app.get("/readyz").status_code == 200
    assert len(resolver.asked) == before


class _Ready:
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"ready": True, "problems": []}


# --- DnsResolver against a DNS server on loopback ----------------------------------------------


class TinyDns:
    """UDP on 127.0.0.1: names under "nx." NXDOMAIN, "fail." SERVFAIL, "refused." REFUSED,
    "silent." no answer at all; any other name has A 192.0.2.1 and TXT "a" "b"."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            query = dns.message.from_wire(data)
            name = query.question[0].name.to_text()
            rtype = query.question[0].rdtype
            if name.endswith("silent."):
                continue
            reply = dns.message.make_response(query)
            if name.endswith("nx."):
                reply.set_rcode(dns.rcode.NXDOMAIN)
            elif name.endswith("fail."):
                reply.set_rcode(dns.rcode.SERVFAIL)
            elif name.endswith("refused."):
                reply.set_rcode(dns.rcode.REFUSED)
            elif rtype == dns.rdatatype.A:
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "A", "192.0.2.1"))
            elif rtype == dns.rdatatype.TXT:
                reply.answer.append(dns.rrset.from_text(name, 60, "IN", "TXT", '"a" "b"'))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def tiny_dns() -> Iterator[TinyDns]:
    server = TinyDns()
    yield server
    server.close()


def test_dns_resolver_maps_every_outcome(tiny_dns: TinyDns) -> None:
    r = DnsResolver(["127.0.0.1"], port=tiny_dns.port, timeout=0.3, lifetime=0.6)
    assert "127.0.0.1" in r.describe()
    assert r.query("host.test", "A") == Reply.found(["192.0.2.1"])
    assert r.query("host.test", "TXT") == Reply.found(['"a" "b"'])
    assert r.query("host.test", "MX") == NOANSWER
    assert r.query("gone.nx", "A") == NXDOMAIN
    for name, words in [("x.fail", "SERVFAIL"), ("x.refused", "REFUSED"), ("x.silent", "0.6 s")]:
        answer = r.query(name, "A")
        assert answer.kind == "failure", answer
        assert words in answer.reason


def test_dns_resolver_with_nothing_listening_makes_every_check_unknown() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = DnsResolver(["127.0.0.1"], port=port, timeout=0.2, lifetime=0.4)
    assert r.query("example.com", "MX").kind == "failure"
    started = time.monotonic()
    report = run(inputs(), r, now=0)
    assert {c.state for c in report.checks} == {"unknown"}, report.checks
    assert time.monotonic() - started < 3  # side by side: not one timeout after another

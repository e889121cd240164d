"""Issue 8: the DNS self-check (`mailctl selfcheck`, GET /checks) against the DNS peer.

The appliance resolves through the DNS peer, which serves one world with a domain for
each state: example.com set up right, warn.example half right, bad.example wrong,
broken.example answered with SERVFAIL (a CNAME loop the peer's unbound cannot end).
Blocklists live there too: one clean, one that lists us, one that answers Spamhaus's
"open resolver" error code, one whose RFC 5782 test entry is missing, one that answers
our address with SERVFAIL. Reverse DNS states come from asking about other addresses;
a timeout from the DNS peer paused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from tests.e2e import peers
from tests.e2e.appliance import Appliance, running
from tests.e2e.data import SCREEN
from tests.e2e.util import wait_until

ADMIN = "admin-token-" + "s" * 24
IP = "192.0.2.25"  # the address mail leaves from, as the settings say (only looked up)
DOMAINS = ["example.com", "warn.example", "bad.example", "broken.example"]
LISTS = ["clean.bl.example", "listed.bl.example", "error.bl.example", "untested.bl.example"]
LISTS += ["servfail.bl.example"]
SETTINGS: dict[str, Any] = {
    "hostname": "mail.example.com",
    "domains": DOMAINS,
    "greylisting": {"enabled": False},
    "postscreen": dict(SCREEN),
    "selfcheck": {"address": IP, "blocklists": LISTS, "domain_blocklists": ["dbl.example"]},
}
# SERVFAIL: unbound follows a CNAME out of a redirect zone, and these two never end.
LOOP = ["CNAME *.loop.example x.broken.example", "CNAME *.broken.example x.loop.example"]


def world(dns: peers.Dns, dkim: dict[str, str]) -> list[str]:
    """Every record of the test; dkim: name -> TXT text, as `mailctl dns` says."""
    ours = next(n for n in dkim if n.endswith(".example.com"))
    bad = next(n for n in dkim if n.endswith(".bad.example"))
    return [
        "NS example.com ns1.example.com",
        f"A ns1.example.com {dns.ip}",
        # example.com: all ok
        "MX example.com 10 mail.example.com",
        f"A mail.example.com {IP}",
        f"PTR {IP} mail.example.com",
        "TXT example.com v=spf1 mx -all",
        "TXT _dmarc.example.com v=DMARC1; p=reject",
        f"TXT {ours} {dkim[ours]}",
        # warn.example: we are only the backup MX, softfail, p=none, its key unpublished
        "MX warn.example 10 mx.provider.example",
        "MX warn.example 20 mail.example.com",
        "A mx.provider.example 198.51.100.7",
        "TXT warn.example v=spf1 ip4:198.51.100.7 ~all",
        "TXT _dmarc.warn.example v=DMARC1; p=none",
        # bad.example: another MX, SPF -all for others, no DMARC, another key
        "MX bad.example 10 mx.elsewhere.example",
        "A mx.elsewhere.example 198.51.100.8",
        "TXT bad.example v=spf1 ip4:198.51.100.0/24 -all",
        f"TXT {bad} {dkim[ours]}",
        *LOOP,
        # reverse DNS of other addresses: .26 confirms another name, .27 has no PTR,
        # .28 SERVFAILs
        "PTR 192.0.2.26 host26.provider.example",
        "A host26.provider.example 192.0.2.26",
        "CNAME *.28.2.0.192.in-addr.arpa x.loop.example",
        # blocklists (RFC 5782 test entry 127.0.0.2 listed, 127.0.0.1 not)
        "A 2.0.0.127.clean.bl.example 127.0.0.2",
        "A 2.0.0.127.listed.bl.example 127.0.0.2",
        "A 25.2.0.192.listed.bl.example 127.0.0.3",
        "A 2.0.0.127.error.bl.example 127.0.0.2",
        "A 25.2.0.192.error.bl.example 127.255.255.254",
        "A 25.2.0.192.untested.bl.example 127.0.0.2",
        "A 2.0.0.127.servfail.bl.example 127.0.0.2",
        "CNAME *.25.2.0.192.servfail.bl.example x.loop.example",
        "A test.dbl.example 127.0.1.2",
        "A bad.example.dbl.example 127.0.1.2",
    ]


def dkim_records(app: Appliance) -> dict[str, str]:
    code, out = app.cli("dns", "--json")
    assert code == 0, out
    return {r["name"]: r["value"] for r in json.loads(out) if "._domainkey." in r["name"]}


@pytest.fixture(scope="module")
def app(
    client: docker.DockerClient, auth_dns: peers.Dns, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Appliance]:
    """The appliance, once it has a DKIM key for every domain and the world is published."""
    with running(
        client,
        SETTINGS,
        Path(tmp_path_factory.mktemp("selfcheck")),
        dns=[auth_dns.ip],
        environment={"MAILCTL_API_TOKEN": ADMIN},
    ) as appliance:

        def every_key() -> dict[str, str] | None:
            found = dkim_records(appliance)
            return found if len(found) == len(DOMAINS) else None

        keys = wait_until(every_key, 30, lambda: appliance.logs()[-3000:], interval=0.3)
        auth_dns.set_records(world(auth_dns, keys))
        yield appliance


def states(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(c["check"], c["subject"]): c["state"] for c in report["checks"]}


def selfcheck(app: Appliance, *args: str) -> tuple[int, dict[str, Any]]:
    code, out = app.cli("selfcheck", "--json", *args)
    assert code in (0, 1), out
    return code, json.loads(out)


def test_every_state_of_every_check_from_what_dns_serves(app: Appliance) -> None:
    code, report = selfcheck(app)
    assert code == 1 and report["state"] == "fail", report  # exit 1: something failed
    assert report["address"] == IP and not report["cached"]
    got = states(report)
    dkim = {
        c["subject"].split("._domainkey.")[1]: c["state"]
        for c in report["checks"]
        if c["check"] == "dkim"
    }
    want = {"example.com": "ok", "warn.example": "warn", "bad.example": "fail"}
    want["broken.example"] = "unknown"
    for check in ("mx", "spf", "dmarc"):
        assert {d: got[(check, d)] for d in DOMAINS} == want, (check, report)
    assert dkim == want, report
    assert got[("fcrdns", IP)] == "ok", report
    assert {z: got[("blocklist", f"{IP} on {z}")] for z in LISTS} == {
        "clean.bl.example": "ok",
        "listed.bl.example": "fail",
        "error.bl.example": "unknown",
        "untested.bl.example": "unknown",
        "servfail.bl.example": "unknown",
    }, report
    assert {d: got[("blocklist", f"{d} on dbl.example")] for d in DOMAINS} == {
        "example.com": "ok",
        "warn.example": "ok",
        "bad.example": "fail",
        "broken.example": "ok",
    }, report
    reasons = {(c["check"], c["subject"]): c["reason"] for c in report["checks"]}
    assert "SERVFAIL" in reasons[("mx", "broken.example")]
    assert "public or open resolver" in reasons[("blocklist", f"{IP} on error.bl.example")]
    assert "RFC 5782" in reasons[("blocklist", f"{IP} on untested.bl.example")]
    assert "softfail" in reasons[("spf", "warn.example")]
    assert "p=none" in reasons[("dmarc", "warn.example")]
    # The same question again within selfcheck.every: the kept result, no new lookups.
    code, again = selfcheck(app)
    assert again["cached"] and again["checked_at"] == report["checked_at"]
    # And as a terminal shows it.
    code, out = app.cli("selfcheck")
    assert code == 1 and "fail     mx        bad.example" in out, out
    assert out.splitlines()[-1].startswith("fail: "), out


@pytest.fixture
def api(app: Appliance) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    base = f"http://127.0.0.1:{app.ports[8080]}"
    with httpx.Client(base_url=base, headers=headers, timeout=60) as c:
        yield c


@pytest.mark.parametrize(
    ("address", "state", "words"),
    [
        ("192.0.2.26", "warn", "not our hostname"),
        ("192.0.2.27", "fail", "no PTR record"),
        ("192.0.2.28", "unknown", "SERVFAIL"),
    ],
)
def test_reverse_dns_of_other_addresses_through_the_api(
    api: httpx.Client, address: str, state: str, words: str
) -> None:
    r = api.get("/checks", params={"address": address})
    assert r.status_code == 200, r.text
    (check,) = [c for c in r.json()["checks"] if c["check"] == "fcrdns"]
    assert (check["subject"], check["state"]) == (address, state), check
    assert words in check["reason"]


def test_a_refresh_is_rate_limited(app: Appliance, api: httpx.Client) -> None:
    first = api.get("/checks", params={"address": "192.0.2.30"}).json()
    assert not first["cached"]
    again = api.get("/checks", params={"address": "192.0.2.30", "refresh": "true"}).json()
    assert again["cached"] and again["checked_at"] == first["checked_at"]
    assert again["next_run_after"] == first["checked_at"] + 60
    r = api.get("/checks", params={"address": "not an address"})
    assert r.status_code == 400 and "not an IP address" in r.json()["detail"]
    assert httpx.get(api.base_url.join("/checks")).status_code == 401


def test_a_resolver_that_does_not_answer_is_unknown_and_readiness_does_not_care(
    app: Appliance, auth_dns: peers.Dns
) -> None:
    auth_dns.container.pause()
    try:
        code, report = selfcheck(app, "--address", "192.0.2.31")
        assert app.readyz()[0] == 200
    finally:
        auth_dns.container.unpause()
    assert code == 1 and report["state"] == "unknown", report
    assert {c["state"] for c in report["checks"]} == {"unknown"}, report
    assert any("no answer within" in c["reason"] for c in report["checks"]), report

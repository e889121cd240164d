"""The DKIM keys' lifecycle (apply.dkim.step) with a DNS and a key maker of the test's own.

Gates, not delays: a key signs only once every name server publishes it, for its TTL;
the key it replaces stays published for retire_after; no selector is used twice."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from mailctl.apply import dkim
from mailctl.apply.proc import Done
from mailctl.errors import CommandError, MailctlError
from mailctl.layout import Layout
from mailctl.render import opendkim
from mailctl.settings import Settings
from tests.unit.factory import base_data

DAY = 86_400.0
T0 = 1_800_000_000.0  # 2027-01-15
POLICY = dkim.Policy(rotate_after=180 * DAY, retire_after=7 * DAY)


class Dns:
    """What the name servers publish: selector -> public key; None: they do not answer."""

    def __init__(self) -> None:
        self.published: dict[str, str] | None = {}
        self.ttl = 300

    def __call__(self, domain: str, key: dkim.Key) -> dkim.Observation:
        if self.published is None:
            return dkim.Observation(None, detail="SERVFAIL")
        if self.published.get(f"{key.selector}.{domain}") == key.public:
            return dkim.Observation(True, ttl=self.ttl)
        return dkim.Observation(False)

    def publish(self, domain: str, key: dkim.Key) -> None:
        assert self.published is not None
        self.published[f"{key.selector}.{domain}"] = key.public


def make_key(domain: str, selector: str, algorithm: dkim.Algorithm = "rsa") -> str:
    return f"PUB-{algorithm}-{domain}-{selector}"


def run(
    state: dkim.State, dns: Dns, now: float, domains: tuple[str, ...] = ("a.test",)
) -> list[str]:
    return dkim.step(state, list(domains), now, POLICY, dns, make_key)


def states(state: dkim.State, domain: str = "a.test") -> list[tuple[str, str]]:
    return [(k.selector, k.state) for k in state.keys(domain)]


def test_a_new_key_signs_only_after_its_record_is_seen_for_its_ttl() -> None:
    state, dns = dkim.State(), Dns()
    notes = run(state, dns, T0)
    assert states(state) == [("mc20270115", "pending")]
    assert "publish it" in notes[0]
    assert run(state, dns, T0 + DAY) == []  # not published: stays pending, however long
    assert states(state) == [("mc20270115", "pending")]

    dns.publish("a.test", state.keys("a.test")[0])
    run(state, dns, T0 + DAY)
    assert states(state) == [("mc20270115", "pending")]  # seen, but not for its TTL yet
    run(state, dns, T0 + DAY + 299)
    assert states(state) == [("mc20270115", "pending")]
    notes = run(state, dns, T0 + DAY + 300)
    assert states(state) == [("mc20270115", "active")]
    assert notes == ["a.test: key mc20270115 active: its TXT record is published"]


def test_a_record_that_goes_away_starts_the_ttl_wait_again() -> None:
    state, dns = dkim.State(), Dns()
    run(state, dns, T0)
    key = state.keys("a.test")[0]
    dns.publish("a.test", key)
    run(state, dns, T0 + 10)
    dns.published = {}  # one server lost it, or the operator removed it
    run(state, dns, T0 + 200)
    dns.publish("a.test", key)
    run(state, dns, T0 + 400)  # seen again from here
    assert states(state) == [("mc20270115", "pending")]
    run(state, dns, T0 + 700)
    assert states(state) == [("mc20270115", "active")]


def test_an_unanswering_dns_is_no_evidence_either_way() -> None:
    state, dns = dkim.State(), Dns()
    run(state, dns, T0)
    dns.publish("a.test", state.keys("a.test")[0])
    run(state, dns, T0 + 10)
    dns.published = None
    run(state, dns, T0 + 5000)
    assert states(state) == [("mc20270115", "pending")]  # never activated on no answer
    dns.published = {}
    dns.publish("a.test", state.keys("a.test")[0])
    run(state, dns, T0 + 5001)  # seen since T0 + 10: the TTL has passed
    assert states(state) == [("mc20270115", "active")]


def test_rotation_overlaps_then_retires_and_never_reuses_a_selector() -> None:
    state, dns = dkim.State(), Dns()
    run(state, dns, T0)
    dns.publish("a.test", state.keys("a.test")[0])
    run(state, dns, T0 + 1)
    run(state, dns, T0 + 400)
    assert states(state) == [("mc20270115", "active")]
    run(state, dns, T0 + 179 * DAY)
    assert states(state) == [("mc20270115", "active")]  # not due yet
    notes = run(state, dns, T0 + 181 * DAY)
    assert notes == ["a.test: key mc20270115 is due; new key mc20270715"]
    assert states(state) == [("mc20270115", "active"), ("mc20270715", "pending")]
    assert [k.selector for k in dkim.signing_keys(state, Layout(), ["a.test"])] == ["mc20270115"]

    dns.publish("a.test", state.keys("a.test")[1])
    run(state, dns, T0 + 181 * DAY + 1)
    run(state, dns, T0 + 181 * DAY + 400)
    assert states(state) == [("mc20270115", "retiring"), ("mc20270715", "active")]
    # both are published during the overlap, only the new one signs
    assert [n for n, _, _ in dkim.records(state, ["a.test"])] == [
        "mc20270115._domainkey.a.test",
        "mc20270715._domainkey.a.test",
    ]
    assert [k.selector for k in dkim.signing_keys(state, Layout(), ["a.test"])] == ["mc20270715"]
    run(state, dns, T0 + 188 * DAY + 399)
    assert states(state)[0] == ("mc20270115", "retiring")
    notes = run(state, dns, T0 + 188 * DAY + 400)
    assert states(state)[0] == ("mc20270115", "retired")
    assert "remove its TXT record" in notes[0]
    assert [n for n, _, _ in dkim.records(state, ["a.test"])] == ["mc20270715._domainkey.a.test"]

    # a manual rotation on the same day as a key was made gets a fresh selector
    (key,) = dkim.rotate(state, "a.test", T0 + 181 * DAY, make_key)
    assert key.selector == "mc20270715b"
    with pytest.raises(MailctlError, match="already waiting"):
        dkim.rotate(state, "a.test", T0 + 181 * DAY, make_key)


def test_revoke_stops_signing_at_once_and_publishes_an_empty_key() -> None:
    state, dns = dkim.State(), Dns()
    run(state, dns, T0)
    dns.publish("a.test", state.keys("a.test")[0])
    run(state, dns, T0 + 1)
    run(state, dns, T0 + 400)
    note = dkim.revoke(state, "a.test", "mc20270115", T0 + 500, make_key)
    assert "revoked" in note and "new key mc20270115b" in note
    assert states(state) == [("mc20270115", "revoked"), ("mc20270115b", "pending")]
    assert dkim.signing_keys(state, Layout(), ["a.test"]) == ()
    published = {name: text for name, text, _ in dkim.records(state, ["a.test"])}
    assert published["mc20270115._domainkey.a.test"] == ("v=DKIM1; k=rsa; p=")
    with pytest.raises(MailctlError, match="already revoked"):
        dkim.revoke(state, "a.test", "mc20270115", T0 + 600, make_key)
    with pytest.raises(MailctlError, match="no DKIM key 'nope'"):
        dkim.revoke(state, "a.test", "nope", T0 + 600, make_key)


def test_every_domain_gets_its_own_keys_and_a_dropped_one_gets_no_new_ones() -> None:
    state, dns = dkim.State(), Dns()
    run(state, dns, T0, ("a.test", "b.test"))
    assert states(state, "b.test") == [("mc20270115", "pending")]
    run(state, dns, T0 + 500 * DAY, ("a.test",))  # b.test left the settings
    assert states(state, "b.test") == [("mc20270115", "pending")]
    assert len(state.keys("a.test")) == 1


def test_the_state_survives_a_restart_and_a_broken_file_is_set_aside(tmp_path: Path) -> None:
    layout = Layout(state=tmp_path, owners=False)
    with dkim.locked(layout) as state:
        run(state, Dns(), T0)
    again = dkim.load(layout)
    assert states(again) == [("mc20270115", "pending")]
    assert json.loads(dkim.state_file(layout).read_text())["version"] == 1

    dkim.state_file(layout).write_text("{not json")
    with pytest.raises(MailctlError, match="unreadable"):
        dkim.load(layout)
    note = dkim.repair(layout)
    assert note is not None and "new DKIM keys will be made" in note
    assert dkim.load(layout).domains == {}
    assert dkim.repair(layout) is None
    assert list(tmp_path.glob("dkim/state.broken-*.json"))


def test_the_signer_gets_exactly_the_active_keys() -> None:
    settings = Settings.model_validate(base_data(alias_domains=["alias.test"]))
    key = opendkim.SigningKey("example.com", "mc20270115", "/k/example.com/mc20270115.pem")
    foreign = opendkim.SigningKey("gone.test", "s1", "/k/gone.test/s1.pem")
    files = opendkim.files(settings, (key, foreign))
    assert files["opendkim/signing_table"].content.decode().splitlines()[-1] == (
        "*@example.com mc20270115._domainkey.example.com"
    )
    assert b"gone.test" not in files["opendkim/key_table"].content
    off = Settings.model_validate(base_data(dkim={"enabled": False}))
    assert opendkim.files(off, (key,)) == {}


def test_a_private_key_is_made_for_opendkim_only(tmp_path: Path) -> None:
    """openssl for real: a 2048-bit key, 0600, and its public half as the TXT's p=."""
    import base64
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl here")

    def runner(
        argv: list[str], *, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, input=input_text, capture_output=True, text=True, check=True)

    layout = Layout(state=tmp_path, owners=False)
    public = dkim.key_maker(layout, runner)("a.test", "s1", "rsa")
    path = dkim.key_file(layout, "a.test", "s1")
    assert path.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" in path.read_text()
    assert len(base64.b64decode(public)) == 294  # DER SubjectPublicKeyInfo of RSA-2048
    state = dkim.State({"a.test": [dkim.Key("s1", "retired", T0, public)]})
    dkim.prune_keys(state, layout)
    assert not path.exists()


def test_a_resolver_that_times_out_is_unknown_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rotator thread died on dnspython's LifetimeTimeout once; now it is 'unknown'."""
    import dns.exception

    from mailctl.apply import dnsquery

    def timeout(domain: str, timeout: float = 3.0) -> list[str]:
        raise dns.exception.Timeout

    monkeypatch.setattr(dnsquery, "name_servers", timeout)
    seen = dnsquery.published("a.test", "s1._domainkey.a.test", "PUB")
    assert seen["matches"] is None and "Timeout" in str(seen["detail"])


def test_the_dns_is_asked_in_a_child_and_its_silence_is_unknown() -> None:
    """observe runs `python -m mailctl.apply.dnsquery` (dnspython stays out of the
    controller) and reads its JSON; a child that fails or babbles is no evidence."""
    key = dkim.Key("s1", "pending", T0, "PUB")
    asked: list[tuple[list[str], str | None]] = []

    def answers(out: str) -> Callable[..., Done]:
        def run(argv: list[str], *, input_text: str | None = None, **_: object) -> Done:
            asked.append((argv, input_text))
            return subprocess.CompletedProcess(argv, 0, out, "")

        return run

    seen = dkim.observe(
        "a.test", key, runner=answers('{"matches": true, "ttl": 300, "detail": "x"}')
    )
    assert seen == dkim.Observation(True, 300, "x")
    assert asked[0][0][1:] == [
        "-m",
        "mailctl.apply.dnsquery",
        "a.test",
        "s1._domainkey.a.test",
        "3.0",
    ]
    assert asked[0][1] == "PUB"  # the public key on stdin
    assert dkim.observe("a.test", key, runner=answers("Traceback ...")).matches is None

    def fails(argv: list[str], **_: object) -> Done:
        raise CommandError(argv, 1, "boom")

    assert dkim.observe("a.test", key, runner=fails).matches is None


def test_ed25519_keys_live_beside_the_rsa_ones_with_their_own_lifecycle() -> None:
    """dkim.ed25519: a second key per domain, its own selectors (me...), its own gates."""
    state, dns = dkim.State(), Dns()
    both: tuple[dkim.Algorithm, ...] = ("rsa", "ed25519")
    dkim.step(state, ["a.test"], T0, POLICY, dns, make_key, both)
    assert states(state) == [("mc20270115", "pending"), ("me20270115", "pending")]
    ed = state.keys("a.test")[1]
    assert ed.algorithm == "ed25519" and ed.record().startswith("v=DKIM1; k=ed25519; p=PUB-ed")
    dns.publish("a.test", ed)  # only the Ed25519 record is out: only it activates
    dkim.step(state, ["a.test"], T0 + 1, POLICY, dns, make_key, both)
    dkim.step(state, ["a.test"], T0 + 400, POLICY, dns, make_key, both)
    assert states(state) == [("mc20270115", "pending"), ("me20270115", "active")]
    layout = Layout()
    signing = dkim.signing_keys(state, layout, ["a.test"], both)
    assert [k.selector for k in signing] == ["me20270115"]
    assert dkim.signing_keys(state, layout, ["a.test"]) == ()  # Ed25519 off: not signed

    made = dkim.rotate(state, "a.test", T0 + 500, make_key, ("ed25519",))
    assert [k.selector for k in made] == ["me20270115b"]
    note = dkim.revoke(state, "a.test", "me20270115", T0 + 600, make_key)
    assert "new key" not in note  # its successor of the same algorithm already waits
    # Ed25519 turned off again: its keys stay, no new ones are made
    dkim.step(state, ["a.test"], T0 + 100 * DAY, POLICY, dns, make_key)
    assert [k.algorithm for k in state.keys("a.test")].count("ed25519") == 2


def test_an_ed25519_public_key_is_the_bare_32_bytes(tmp_path: Path) -> None:
    """RFC 8463: p= of an Ed25519 key is the raw key, not a SubjectPublicKeyInfo."""
    import base64
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("no openssl here")

    def runner(argv: list[str], *, input_text: str | None = None) -> Done:
        return subprocess.run(argv, input=input_text, capture_output=True, text=True, check=True)

    layout = Layout(state=tmp_path, owners=False)
    public = dkim.key_maker(layout, runner)("a.test", "me1", "ed25519")
    assert len(base64.b64decode(public)) == 32
    pem = dkim.key_file(layout, "a.test", "me1").read_text()
    body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
    assert len(base64.b64decode(body)) == 48  # PKCS#8 of Ed25519; an RSA key is ~1,200

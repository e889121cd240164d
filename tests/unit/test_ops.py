"""The operations layer and the admin API's routes over it, on a temp layout.

Only what needs a running daemon is left to the e2e tier (saslauthd, Cyrus, the
live Postfix tables): here the stores, the rules and the answers are checked."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from mailctl import cli
from mailctl.api.app import Penalty, Tokens, create_app
from mailctl.apply import inputs, users
from mailctl.errors import Conflict, MailctlError, NotFound, SettingsError
from mailctl.layout import Layout
from mailctl.ops import accounts, config, mailqueue
from mailctl.ops.models import CheckResult, NewAlias, NewUser, QueueFilter
from tests.unit.factory import CERT, HASH, KEY, base_data
from tests.unit.fakes import Done, FakeRunner

ADMIN = "admin-" + "a" * 30
READ = "read-" + "r" * 30


def data(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    tls = {"cert_file": str(tmp_path / "cert.pem"), "key_file": str(tmp_path / "key.pem")}
    return base_data(tls=tls, **extra)


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Layout:
    lay = Layout(
        etc=tmp_path / "etc",
        state=tmp_path / "state",
        users=tmp_path / "state/users",
        settings_dir=tmp_path / "config",
        owners=False,
    )
    lay.settings_dir.mkdir()
    (tmp_path / "cert.pem").write_bytes(CERT)
    (tmp_path / "key.pem").write_bytes(KEY)
    lay.settings_file.write_text(yaml.safe_dump(data(tmp_path)))
    for name, sub in (
        ("MAILCTL_ETC", "etc"),
        ("MAILCTL_STATE", "state"),
        ("MAILCTL_USERS_DIR", "state/users"),
        ("MAILCTL_SETTINGS_DIR", "config"),
    ):
        monkeypatch.setenv(name, str(tmp_path / sub))
    monkeypatch.setattr(inputs, "wait_applied", lambda *a, **k: None)  # no controller here
    return lay


def test_users_list_says_where_each_comes_from(layout: Layout) -> None:
    users.write_store({"carol@example.com": HASH}, layout.store)
    listed = [(u.address, u.source) for u in accounts.list_users(layout)]
    assert listed == [
        ("alice@example.com", "settings"),
        ("bob@example.com", "settings"),
        ("carol@example.com", "api"),
    ]


def test_add_user_stores_a_hash_never_the_password(layout: Layout) -> None:
    entry = accounts.add_user(
        layout, NewUser(address="Dave@Example.com", password=SecretStr("s3cret-pass"))
    )
    assert (entry.address, entry.source) == ("dave@example.com", "api")
    stored = users.read_store(layout.store)
    assert stored["dave@example.com"].startswith("$6$")
    assert "s3cret-pass" not in layout.store.read_text()
    with pytest.raises(Conflict, match="exists"):
        accounts.add_user(layout, NewUser(address="dave@example.com", password=SecretStr("x1")))
    with pytest.raises(Conflict, match="settings file"):
        accounts.add_user(layout, NewUser(address="alice@example.com", password=SecretStr("x1")))


@pytest.mark.parametrize(
    ("address", "password", "error"),
    [
        ("eve@other.example", "pw-123456", "not listed in 'domains'"),
        ("not-an-address", "pw-123456", "mail address"),
        ("eve@example.com", "", "password"),
        ("eve@example.com", "two\nlines", "password"),
        ("eve@example.com", "x" * 1025, "password"),
    ],
)
def test_add_user_refuses_what_the_settings_file_would(
    layout: Layout, address: str, password: str, error: str
) -> None:
    with pytest.raises(MailctlError, match=error):
        accounts.add_user(layout, NewUser(address=address, password=SecretStr(password)))
    assert users.read_store(layout.store) == {}


def test_delete_and_passwd_only_touch_the_store(layout: Layout) -> None:
    users.write_store({"carol@example.com": HASH}, layout.store)
    with pytest.raises(Conflict, match="change it there"):
        accounts.delete_user(layout, "alice@example.com")
    with pytest.raises(NotFound):
        accounts.delete_user(layout, "nobody@example.com")
    with pytest.raises(NotFound):
        accounts.set_password(layout, "nobody@example.com", "pw-123456")
    accounts.set_password(layout, "carol@example.com", "new-pw-123")
    assert users.read_store(layout.store)["carol@example.com"] != HASH
    assert "mail kept" in accounts.delete_user(layout, "carol@example.com")
    assert users.read_store(layout.store) == {}


def test_aliases_add_list_delete_under_the_settings_rules(layout: Layout) -> None:
    entry = accounts.add_alias(
        layout, NewAlias(address="Team@example.com", targets=["alice@example.com", "bob@x.org"])
    )
    assert entry.address == "team@example.com"
    listed = {(a.address, a.source) for a in accounts.list_aliases(layout)}
    assert listed == {("postmaster@example.com", "settings"), ("team@example.com", "api")}
    assert json.loads(layout.alias_store.read_text()) == {
        "team@example.com": ["alice@example.com", "bob@x.org"]
    }
    with pytest.raises(Conflict):
        accounts.add_alias(layout, NewAlias(address="postmaster@example.com", targets=["a@b.c"]))
    with pytest.raises(SettingsError, match="is a loop"):
        accounts.add_alias(
            layout, NewAlias(address="loop@example.com", targets=["loop@example.com"])
        )
    with pytest.raises(SettingsError, match="is also a user"):
        accounts.add_alias(layout, NewAlias(address="alice@example.com", targets=["b@x.org"]))
    with pytest.raises(SettingsError, match="domain"):
        accounts.add_alias(layout, NewAlias(address="a@elsewhere.example", targets=["b@x.org"]))
    with pytest.raises(SettingsError, match="alias store"):
        accounts.add_alias(layout, NewAlias(address="bad\nkey@example.com", targets=["b@x.org"]))
    accounts.delete_alias(layout, "team@example.com")
    with pytest.raises(NotFound):
        accounts.delete_alias(layout, "team@example.com")
    with pytest.raises(Conflict):
        accounts.delete_alias(layout, "postmaster@example.com")


def test_a_stored_alias_goes_live_through_the_same_gathering(layout: Layout) -> None:
    from mailctl.apply import inputs
    from mailctl.render.facts import Facts

    users.write_aliases({"team@example.com": ["bob@example.com"]}, layout.alias_store)
    before = inputs.digest(layout)
    gathered = inputs.gather(layout, runner=FakeRunner(), found=Facts(), save=False)
    assert gathered.settings.alias_targets()["team@example.com"] == ["bob@example.com"]
    users.write_aliases({"team@example.com": ["alice@example.com"]}, layout.alias_store)
    assert inputs.digest(layout) != before, "a change of the alias store is a new apply"
    layout.alias_store.write_text("[1, 2]")
    with pytest.raises(SettingsError, match="alias store"):
        inputs.gather(layout, runner=FakeRunner(), found=Facts(), save=False)


def test_domains_say_how_each_is_handled(layout: Layout) -> None:
    layout.settings_file.write_text(
        yaml.safe_dump(base_data(alias_domains=["alias.example"], relay_domains=["relay.example"]))
    )  # tls is not read for a listing
    kinds = {(d.name, d.kind) for d in accounts.list_domains(layout)}
    assert kinds == {
        ("example.com", "mailbox"),
        ("alias.example", "alias"),
        ("relay.example", "relay"),
    }


QUEUE = [
    {
        "queue_name": "deferred",
        "queue_id": "4dN2xq0Yb5z9kQp",
        "arrival_time": 1_000,
        "message_size": 512,
        "sender": "a@sender.example",
        "recipients": [{"address": "alice@example.com", "delay_reason": "connect refused"}],
    },
    {
        "queue_name": "hold",
        "queue_id": "4dN2xq0Yb5zAAAA",
        "arrival_time": 1_900,
        "message_size": 100,
        "sender": "b@other.example",
        "recipients": [{"address": "bob@example.com"}],
    },
]


def queue_runner() -> FakeRunner:
    runner = FakeRunner()
    out = "postqueue: warning: a warning line\n" + "".join(json.dumps(q) + "\n" for q in QUEUE)
    runner.handlers["postqueue"] = lambda argv, stdin: Done(argv, 0, out, "")
    return runner


@pytest.mark.parametrize(
    ("f", "ids"),
    [
        (QueueFilter(), ["4dN2xq0Yb5z9kQp", "4dN2xq0Yb5zAAAA"]),
        (QueueFilter(queue="hold"), ["4dN2xq0Yb5zAAAA"]),
        (QueueFilter(sender="SENDER.example"), ["4dN2xq0Yb5z9kQp"]),
        (QueueFilter(recipient="bob@"), ["4dN2xq0Yb5zAAAA"]),
        (QueueFilter(min_age=500), ["4dN2xq0Yb5z9kQp"]),
    ],
)
def test_queue_list_filters(f: QueueFilter, ids: list[str]) -> None:
    entries = mailqueue.list_queue(f, run=queue_runner(), now=2_000)
    assert [e.id for e in entries] == ids
    if ids[0] == "4dN2xq0Yb5z9kQp":
        assert entries[0].age_seconds == 1_000
        assert entries[0].recipients[0].delay_reason == "connect refused"


def test_queue_actions_refuse_what_is_not_a_queue_id() -> None:
    with pytest.raises(Exception, match="is not a queue ID"):
        mailqueue.act("delete", "../../etc/passwd", run=FakeRunner())


def test_check_text_refuses_like_apply_and_makes_nothing(layout: Layout) -> None:
    root = layout.settings_dir.parent
    bad = yaml.safe_dump(data(root, smtp={"message_size_limit": 5}))
    result = config.check_text(layout, bad, run=FakeRunner())
    assert not result.ok and "smtp.message_size_limit" in (result.error or "")
    good = config.check_text(layout, yaml.safe_dump(data(root)), run=FakeRunner())
    assert good.ok and (good.hostname, good.users, good.aliases) == ("mail.example.com", 2, 1)
    assert not layout.current.exists(), "a dry run makes nothing live"


# --- the API over the operations -----------------------------------------------------


class Ready:
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"ready": True}


def api(layout: Layout, **kw: Any) -> TestClient:
    tokens = Tokens(admin=ADMIN, read=READ, **kw)
    return TestClient(create_app(Ready(), tokens, layout=layout), raise_server_exceptions=False)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_read_token_reads_and_cannot_change_anything(layout: Layout) -> None:
    c = api(layout)
    assert c.get("/users", headers=auth(READ)).status_code == 200
    r = c.post("/users", headers=auth(READ), json={"address": "x@example.com", "password": "p"})
    assert (r.status_code, r.json()["detail"]) == (403, "the read token cannot change anything")
    assert c.delete("/aliases/a@example.com", headers=auth(READ)).status_code == 403
    assert c.post("/queue/flush", headers=auth(READ)).status_code == 403
    assert users.read_store(layout.store) == {}


def test_admin_changes_are_logged_with_the_token_name_never_the_token(
    layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    c = api(layout)
    r = c.post(
        "/users", headers=auth(ADMIN), json={"address": "dave@example.com", "password": "pw-1x"}
    )
    assert (r.status_code, r.json()) == (201, {"address": "dave@example.com", "source": "api"})
    out = capsys.readouterr().out
    assert "api: POST /users by the admin token" in out
    assert ADMIN not in out and "pw-1x" not in out


def test_errors_of_the_operations_have_their_status(layout: Layout) -> None:
    c = api(layout)
    r = c.post(
        "/users", headers=auth(ADMIN), json={"address": "alice@example.com", "password": "p1"}
    )
    assert r.status_code == 409
    r = c.delete("/users/nobody@example.com", headers=auth(ADMIN))
    assert r.status_code == 404
    r = c.post(
        "/aliases",
        headers=auth(ADMIN),
        json={"address": "l@example.com", "targets": ["l@example.com"]},
    )
    assert r.status_code == 400 and "loop" in r.json()["detail"]


def test_dry_run_takes_settings_text(layout: Layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "check_text", lambda lay, text: CheckResult(ok="hostname" in text))
    r = api(layout).post(
        "/check",
        headers={**auth(READ), "Content-Type": "text/plain"},
        content="hostname: mail.example.com\n",
    )
    assert (r.status_code, r.json()["ok"]) == (200, True)


def test_metrics_need_the_read_token_unless_public(layout: Layout) -> None:
    assert api(layout).get("/metrics").status_code == 401
    assert api(layout).get("/metrics", headers=auth(READ)).status_code == 200
    assert api(layout, metrics_public=True).get("/metrics").status_code == 200


def test_tokens_come_from_files_too(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(ADMIN + "\n")
    keys = Tokens.from_env({"MAILCTL_API_TOKEN_FILE": str(f), "MAILCTL_API_READ_TOKEN": "short"})
    assert (keys.admin, keys.read) == (ADMIN, None)
    assert ADMIN not in repr(keys)


def test_wrong_tokens_are_slowed_down_more_each_time() -> None:
    now = [0.0]
    p = Penalty(clock=lambda: now[0])
    assert p.delay("10.0.0.1") == 0
    for expected in (0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0):
        p.failed("10.0.0.1")
        assert p.delay("10.0.0.1") == expected
    assert p.delay("10.0.0.2") == 0, "per client"
    now[0] += 301
    assert p.delay("10.0.0.1") == 0, "forgotten after five quiet minutes"
    p.failed("10.0.0.3")
    p.succeeded("10.0.0.3")
    assert p.delay("10.0.0.3") == 0


def test_cli_alias_verbs(layout: Layout, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["alias", "add", "team@example.com", "alice@example.com"]) == 0
    assert cli.main(["alias", "list"]) == 0
    out = capsys.readouterr().out
    assert "team@example.com\talice@example.com\tapi" in out
    assert "postmaster@example.com\talice@example.com\tsettings" in out
    assert cli.main(["alias", "delete", "postmaster@example.com"]) == 2
    assert "change it there" in capsys.readouterr().err
    assert cli.main(["domain"]) == 0
    assert capsys.readouterr().out == "example.com\tmailbox\n"


def test_a_queue_action_on_a_message_that_is_not_there_is_not_found() -> None:
    runner = FakeRunner()
    said = {"out": "postsuper: Placed on hold: 0 messages\n"}
    runner.handlers["postsuper"] = lambda argv, stdin: Done(argv, 0, said["out"], "")
    with pytest.raises(NotFound):
        mailqueue.act("hold", "4dN2xq0Yb5zAAAA", run=runner)
    said["out"] = (
        "postsuper: 4dN2xq0Yb5zAAAA: placed on hold\npostsuper: Placed on hold: 1 message\n"
    )
    assert "placed on hold" in mailqueue.act("hold", "4dN2xq0Yb5zAAAA", run=runner)
    said["out"] = "postsuper: Deleted: 0 messages\n"
    assert mailqueue.act("delete", "ALL", run=runner) == "postsuper: Deleted: 0 messages"


def test_a_change_waits_for_the_controller_and_hears_its_refusal(tmp_path: Path) -> None:
    """The CLI's answer means live: it waits for the digest of what it wrote."""
    lay = Layout(state=tmp_path, users=tmp_path / "users", settings_dir=tmp_path, owners=False)
    lay.settings_file.write_text("hostname: a\n")
    with pytest.raises(MailctlError, match="has not applied it yet"):
        inputs.wait_applied(lay, within=0.2, poll=0.05)  # no controller has answered
    inputs.record_outcome(lay, inputs.digest(lay), None)
    inputs.wait_applied(lay, within=0.2)  # applied: returns at once
    lay.settings_file.write_text("hostname: b\n")  # a newer change than the one applied
    with pytest.raises(MailctlError, match="has not applied it yet"):
        inputs.wait_applied(lay, within=0.2, poll=0.05)
    inputs.record_outcome(lay, inputs.digest(lay), "domains: is not a list")
    with pytest.raises(MailctlError, match="not applied: domains: is not a list"):
        inputs.wait_applied(lay, within=0.2)


def test_dns_records_name_every_record_a_domain_needs(layout: Layout) -> None:
    """`mailctl dns`: MX, SPF, DMARC, TLS-RPT for each domain, each published DKIM key,
    and what the operator must ask for (A, PTR) as comments; long TXT split at 255."""
    from mailctl.apply import dkim
    from mailctl.ops import dns

    with dkim.locked(layout) as state:
        state.domains["example.com"] = [
            dkim.Key("mc1", "active", 0.0, "P" * 392),
            dkim.Key("mc0", "revoked", 0.0, "OLD", retiring_since=0.0),
        ]
    found = {(r.name, r.type): r for r in dns.records(layout)}
    assert found[("example.com", "MX")].value == "10 mail.example.com."
    assert found[("example.com", "TXT")].value == "v=spf1 mx -all"
    assert found[("_dmarc.example.com", "TXT")].value.startswith("v=DMARC1; p=none; rua=")
    assert found[("_smtp._tls.example.com", "TXT")].value == (
        "v=TLSRPTv1; rua=mailto:postmaster@example.com"
    )
    assert found[("mc0._domainkey.example.com", "TXT")].value == "v=DKIM1; k=rsa; p="
    zone = dns.zone_text(dns.records(layout))
    assert "; mail.example.com.\tIN\tA\t<this server's public IPv4>" in zone
    long_line = next(line for line in zone.splitlines() if line.startswith("mc1._domainkey"))
    assert long_line.count('" "') == 1 and long_line.endswith('" )')  # two strings <= 255

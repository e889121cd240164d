"""Issue 9: the admin API and the metrics against a running appliance.

Every route is called with the admin token, the read token, a wrong token and
none; the read token changes nothing. What the API does is then seen where it
matters: a user added through it logs in over SMTP and IMAP, a held message is
released into its mailbox, the metrics move by what happened.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.appliance import Appliance
from tests.e2e.data import ALICE, BASE_FILES, base_settings
from tests.e2e.fixtures import MakeAppliance
from tests.e2e.util import wait_until

ADMIN = "admin-token-" + "a" * 24
READ = "read-token-" + "r" * 24
HELD = "team@example.com"  # the access map holds mail to this recipient (an alias)
OUTSIDE = "outside.mailctl.test"


def start(make_appliance: MakeAppliance, greylisting: bool) -> Appliance:
    settings = base_settings(delay=60)
    settings["greylisting"]["enabled"] = greylisting
    settings["access"] = {"recipients": {HELD: "HOLD held for the API test"}}
    return make_appliance(
        settings,
        extra_files=BASE_FILES,
        environment={"MAILCTL_API_TOKEN": ADMIN, "MAILCTL_API_READ_TOKEN": READ},
    )


@pytest.fixture
def app(make_appliance: MakeAppliance) -> Appliance:
    """Without greylisting: a stranger's mail on port 25 gets in at once."""
    return start(make_appliance, greylisting=False)


def client_of(app: Appliance) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{app.ports[8080]}", timeout=60)


@pytest.fixture
def api(app: Appliance) -> Iterator[httpx.Client]:
    with client_of(app) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# (method, path, json body or text, who may): every route of the admin API once.
ROUTES: list[tuple[str, str, Any, str]] = [
    ("GET", "/status", None, "read"),
    ("GET", "/metrics", None, "read"),
    ("GET", "/logs?limit=5&daemon=postfix", None, "read"),
    ("GET", "/users", None, "read"),
    ("GET", "/aliases", None, "read"),
    ("GET", "/domains", None, "read"),
    ("GET", "/mailboxes", None, "read"),
    ("GET", "/queue?queue=deferred", None, "read"),
    ("GET", "/lookup/virtual?key=team@example.com", None, "read"),
    ("POST", "/check", "hostname: mail.example.com\n", "read"),
    ("POST", "/users", {"address": "route@example.com", "password": "route-pw-1"}, "admin"),
    ("PUT", "/users/route@example.com/password", {"password": "route-pw-2"}, "admin"),
    ("POST", "/users/route@example.com/test", {"password": "route-pw-2"}, "admin"),
    ("DELETE", "/users/route@example.com", None, "admin"),
    ("POST", "/aliases", {"address": "route-alias@example.com", "targets": [ALICE[0]]}, "admin"),
    ("DELETE", "/aliases/route-alias@example.com", None, "admin"),
    ("DELETE", "/mailboxes/gone@example.com", None, "admin"),
    ("POST", "/queue/flush", None, "admin"),
    ("POST", "/queue/4dN2xq0Yb5zAAAA/hold", None, "admin"),
    ("POST", "/queue/4dN2xq0Yb5zAAAA/release", None, "admin"),
    ("POST", "/queue/4dN2xq0Yb5zAAAA/requeue", None, "admin"),
    ("DELETE", "/queue/4dN2xq0Yb5zAAAA", None, "admin"),
    ("GET", "/queue/4dN2xq0Yb5zAAAA", None, "read"),
    ("GET", "/dkim", None, "read"),
    ("GET", "/dns", None, "read"),
    ("POST", "/dkim/elsewhere.example/rotate", None, "admin"),
    ("POST", "/dkim/example.com/mcnosuch/revoke", None, "admin"),
    ("GET", "/checks?refresh=true", None, "admin"),
]
# What the admin gets where the object does not exist, or the dry run's text is short.
ADMIN_CODE = {
    "/mailboxes/gone@example.com": 404,
    "/queue/4dN2xq0Yb5zAAAA": 404,
    "/queue/4dN2xq0Yb5zAAAA/hold": 404,
    "/queue/4dN2xq0Yb5zAAAA/release": 404,
    "/queue/4dN2xq0Yb5zAAAA/requeue": 404,
    "/dkim/elsewhere.example/rotate": 404,
    "/dkim/example.com/mcnosuch/revoke": 404,
}


def call(api: httpx.Client, method: str, path: str, body: Any, token: str | None) -> httpx.Response:
    headers = bearer(token) if token else {}
    if isinstance(body, str):
        headers["Content-Type"] = "text/plain"
        return api.request(method, path, content=body, headers=headers)
    return api.request(method, path, json=body, headers=headers)


def test_every_route_with_every_kind_of_token(app: Appliance, api: httpx.Client) -> None:
    for method, path, body, who in ROUTES:
        where = f"{method} {path}"
        assert call(api, method, path, body, None).status_code == 401, where
        assert call(api, method, path, body, "wrong-" + "w" * 30).status_code == 403, where
        r = call(api, method, path, body, READ)
        if who == "admin":
            assert r.status_code == 403, where
            assert r.json()["detail"] == "the read token cannot change anything"
        else:
            assert r.status_code == ADMIN_CODE.get(path, 200), f"{where}: {r.text}"
        r = call(api, method, path, body, ADMIN)
        expected = ADMIN_CODE.get(path, 201 if method == "POST" and who == "admin" else 200)
        if path in ("/queue/flush",) or path.endswith("/test") or path == "/check":
            expected = 200
        assert r.status_code == expected, f"{where}: {r.text}"
    logs = app.logs()
    assert "api: POST /users by the admin token" in logs
    assert ADMIN not in logs and READ not in logs
    assert "route-pw-1" not in logs and "route-pw-2" not in logs
    spec = api.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    for method, path, _, _ in ROUTES:
        route = re.sub(r"\?.*", "", path)
        route = re.sub(r"/users/[^/]+", "/users/{address}", route)
        route = re.sub(r"/aliases/[^/]+", "/aliases/{address}", route)
        route = re.sub(r"/mailboxes/[^/]+", "/mailboxes/{address}", route)
        route = re.sub(r"/lookup/[^/]+", "/lookup/{table}", route)
        route = re.sub(r"/queue/4dN2xq0Yb5zAAAA/\w+", "/queue/{queue_id}/{action}", route)
        route = route.replace("/queue/4dN2xq0Yb5zAAAA", "/queue/{queue_id}")
        route = re.sub(r"/dkim/[^/]+/rotate", "/dkim/{domain}/rotate", route)
        route = re.sub(r"/dkim/[^/]+/[^/]+/revoke", "/dkim/{domain}/{selector}/revoke", route)
        assert (method, route) in documented, f"{method} {route} is not in /openapi.json"


def test_a_user_added_through_the_api_logs_in_at_once(app: Appliance, api: httpx.Client) -> None:
    r = api.post(
        "/users", headers=bearer(ADMIN), json={"address": "dora@example.com", "password": "d0ra-pw"}
    )
    assert r.status_code == 201, r.text
    assert app.can_login("dora@example.com", "d0ra-pw", 587)
    app.imap("dora@example.com", "d0ra-pw").logout()
    listed = api.get("/users", headers=bearer(READ)).json()
    assert {"address": "dora@example.com", "source": "api"} in listed
    assert {"address": ALICE[0], "source": "settings"} in listed
    r = api.post(
        "/users", headers=bearer(ADMIN), json={"address": "eve@elsewhere.example", "password": "x1"}
    )
    assert r.status_code == 400 and "'domains'" in r.json()["detail"], r.text
    r = api.delete(f"/users/{ALICE[0]}", headers=bearer(ADMIN))
    assert r.status_code == 409 and "settings file" in r.json()["detail"]


def test_a_held_message_is_listed_and_released_through_the_api(
    app: Appliance, api: httpx.Client
) -> None:
    # Port 25: logged-in users pass before the access maps.
    mid, code, reply = app.send("friend@sender.mailctl.test", HELD, helo=OUTSIDE, subject="held")
    assert code == 250, reply

    def held() -> list[dict[str, Any]] | None:
        r = api.get("/queue", params={"queue": "hold"}, headers=bearer(READ))
        return r.json() or None

    [entry] = wait_until(held, 20, "the message never showed up in the hold queue")
    assert re.fullmatch(r"[0-9A-Za-z]{12,}", entry["id"]), "long queue IDs"
    shown = api.get(f"/queue/{entry['id']}", headers=bearer(READ))
    assert shown.status_code == 200 and "Subject: held" in shown.json()["text"]
    r = api.post(f"/queue/{entry['id']}/release", headers=bearer(ADMIN))
    assert r.status_code == 200, r.text
    app.wait_delivered(*ALICE, mid)


def metric(api: httpx.Client, name: str, **labels: str) -> float:
    text = api.get("/metrics", headers=bearer(READ)).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_move_by_what_happened(make_appliance: MakeAppliance) -> None:
    app = start(make_appliance, greylisting=True)
    with client_of(app) as api:
        check_metrics(app, api)


def check_metrics(app: Appliance, api: httpx.Client) -> None:
    delivered = metric(api, "mailctl_messages_delivered_total", transport="lmtp")
    mid, code, reply = app.send(ALICE[0], ALICE[0], login=ALICE, port=587, subject="counted")
    assert code == 250, reply
    app.wait_delivered(*ALICE, mid)
    wait_until(
        lambda: metric(api, "mailctl_messages_delivered_total", transport="lmtp") >= delivered + 1,
        10,
        "the delivery was not counted",
    )
    time.sleep(1)
    assert metric(api, "mailctl_messages_delivered_total", transport="lmtp") == delivered + 1

    greylisted = metric(api, "mailctl_smtpd_rejects_total", reason="greylist")
    relay = metric(api, "mailctl_smtpd_rejects_total", reason="relay")
    code, reply = app.rcpt(
        f"stranger-{time.monotonic_ns()}@sender.mailctl.test", ALICE[0], helo=OUTSIDE
    )
    assert code == 450, reply  # the appliance of this test greylists
    code, reply = app.rcpt("someone@sender.mailctl.test", "victim@example.net", helo=OUTSIDE)
    assert code == 554, reply
    wait_until(
        lambda: (
            metric(api, "mailctl_smtpd_rejects_total", reason="greylist") == greylisted + 1
            and metric(api, "mailctl_smtpd_rejects_total", reason="relay") == relay + 1
        ),
        10,
        "the greylisting and the relay refusal were not counted by reason",
    )
    assert metric(api, "mailctl_daemon_up", daemon="cyrus") == 1

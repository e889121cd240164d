"""The HTTP API: liveness, readiness with its problems, and /status behind the token."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

with warnings.catch_warnings():
    # This starlette deprecates its test client on httpx in favour of httpx2 (not
    # installed here); the client works the same. Only this one warning is let through.
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

from mailctl.api.app import MIN_TOKEN, admin_token, create_app
from mailctl.layout import Layout
from mailctl.reconcile import Controller
from mailctl.render.bundle import DaemonSpec, Reload
from mailctl.supervise.process import State
from tests.unit.factory import base_data
from tests.unit.fakes import FakeClock, FakeRunner

TOKEN = "t0k3n-" + "x" * 30
CLEAR = "hunter2-Correct-Horse"


class FakeSource:
    def __init__(self, ready: bool, body: dict[str, Any]) -> None:
        self.ready, self.body = ready, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return self.ready, self.body


NOT_READY = FakeSource(False, {"ready": False, "problems": ["cyrus is backoff"]})
READY = FakeSource(True, {"ready": True, "problems": []})


def client(source: Any = READY, token: str | None = TOKEN) -> TestClient:
    return TestClient(create_app(source, token))


def test_healthz_is_alive_even_when_not_ready() -> None:
    r = client(NOT_READY).get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "alive"})


def test_readyz_is_503_with_the_problems() -> None:
    r = client(NOT_READY).get("/readyz")
    assert r.status_code == 503
    assert r.json()["problems"] == ["cyrus is backoff"]


def test_readyz_is_200_when_ready() -> None:
    r = client(READY).get("/readyz")
    assert (r.status_code, r.json()["ready"]) == (200, True)


def test_openapi_and_docs_are_served_with_a_response_model_on_every_route() -> None:
    c = client()
    assert c.get("/docs").status_code == 200
    spec = c.get("/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            ok = op["responses"].get("200") or op["responses"].get("201")
            assert ok, f"{method} {path}: no success response"
            if path != "/metrics":
                assert ok["content"]["application/json"]["schema"], f"{method} {path}: no schema"


# --- /status and the token -------------------------------------------------------

BAD_AUTH = [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
    {"Authorization": "Bearer wrong-token-but-long-enough"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},
]


@pytest.mark.parametrize("query", ["", f"?token={TOKEN}", f"?access_token={TOKEN}", "?_=1"])
@pytest.mark.parametrize("headers", BAD_AUTH)
def test_status_never_answers_without_the_right_token(headers: dict[str, str], query: str) -> None:
    source = FakeSource(False, {"ready": False, "problems": ["internal detail 42"]})
    r = TestClient(create_app(source, TOKEN), raise_server_exceptions=False).get(
        "/status" + query, headers=headers
    )
    assert r.status_code != 200
    assert "internal detail 42" not in r.text and TOKEN not in r.text


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": ""}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Bearer "}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": "Bearer wrong-token-but-long-enough-xxxx"}, 403),
        ({"Authorization": f"Bearer {TOKEN}x"}, 403),
        ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 403),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        ({"Authorization": f"bearer {TOKEN}"}, 200),
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "scheme-blank",
        "basic",
        "bare-token",
        "wrong",
        "longer",
        "shorter",
        "right",
        "lower-case-scheme",
    ],
)
def test_status_needs_the_bearer_token(headers: dict[str, str], code: int) -> None:
    r = client(NOT_READY).get("/status", headers=headers)
    assert r.status_code == code
    if code == 200:
        assert r.json() == NOT_READY.body, "/status answers even when not ready"
    else:
        assert TOKEN not in r.text
    if code == 401:
        assert r.headers["www-authenticate"] == "Bearer"


def test_token_in_the_query_string_is_not_accepted() -> None:
    assert client().get(f"/status?token={TOKEN}").status_code == 401
    assert client().get(f"/status?access_token={TOKEN}").status_code == 401


def test_status_is_off_without_a_token() -> None:
    r = client(token=None).get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("value", "expected"),
    [("", None), ("x" * (MIN_TOKEN - 1), None), ("x" * MIN_TOKEN, "x" * MIN_TOKEN)],
)
def test_admin_token_needs_a_long_one(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("MAILCTL_API_TOKEN", value)
    assert admin_token() == expected


def test_admin_token_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILCTL_API_TOKEN", raising=False)
    assert admin_token() is None


# --- with the real controller's readiness ------------------------------------------


def _controller(tmp_path: Path) -> Controller:
    layout = Layout(
        etc=tmp_path / "etc", state=tmp_path / "state", settings_dir=tmp_path, owners=False
    )
    return Controller(layout, runner=FakeRunner(), clock=FakeClock())


def test_controller_not_ready_before_a_good_apply(tmp_path: Path) -> None:
    r = client(_controller(tmp_path)).get("/readyz")
    assert r.status_code == 503
    assert any(p.startswith("last settings change failed") for p in r.json()["problems"])


def test_controller_ready_when_applied_and_daemons_run(tmp_path: Path) -> None:
    ctl = _controller(tmp_path)
    ctl.status.ok = True
    ctl.supervisor.configure(
        [DaemonSpec(name="postfix", argv=("/bin/true",), reads=(), reload=Reload("restart"))]
    )
    r = client(ctl).get("/readyz")
    assert r.status_code == 503
    assert r.json()["problems"] == ["postfix is stopped", "the users' mailboxes are being created"]
    ctl.mailboxes_made = True
    r = client(ctl).get("/readyz")
    assert r.json()["problems"] == ["postfix is stopped"]
    ctl.supervisor.procs["postfix"].state = State.RUNNING  # no probes: running is ready
    r = client(ctl).get("/readyz")
    assert (r.status_code, r.json()["problems"]) == (200, [])
    assert r.json()["daemons"]["postfix"]["ready"] is True


def _failed_controller(tmp_path: Path) -> Controller:
    """A controller whose last apply failed on a clear-text password in password_hash."""
    ctl = _controller(tmp_path)
    data = base_data(users=[{"address": "alice@example.com", "password_hash": CLEAR}])
    (tmp_path / "settings.yaml").write_text(yaml.safe_dump(data))
    assert not ctl.apply()
    assert ctl.status.error and "users.0.password_hash" in ctl.status.error
    return ctl


def test_readyz_body_holds_no_secret(tmp_path: Path) -> None:
    r = client(_failed_controller(tmp_path)).get("/readyz")
    assert r.status_code == 503
    assert "users.0.password_hash" in r.text
    assert CLEAR not in r.text and TOKEN not in r.text


def test_status_body_holds_no_secret(tmp_path: Path) -> None:
    r = client(_failed_controller(tmp_path)).get(
        "/status", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 200
    assert "users.0.password_hash" in r.text
    assert CLEAR not in r.text and TOKEN not in r.text

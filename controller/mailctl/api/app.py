"""The HTTP API: health, readiness, metrics, and the admin API over the operations layer.

- /healthz and /readyz are open (probes);
- /metrics needs the read token, unless MAILCTL_METRICS_PUBLIC=true;
- every other route needs a bearer token: the read token for what only looks
  (GET, and the dry run), the admin token for what changes something. With no
  token configured (or one shorter than MIN_TOKEN) those routes are off (404).
- Tokens come from MAILCTL_API_TOKEN / MAILCTL_API_READ_TOKEN or, the Docker and
  Kubernetes secrets convention, from the files named by the same names + _FILE.
  They are compared in constant time; a client that keeps giving a wrong one
  waits longer each time; every change is logged with the route and the token's
  name, never the token.
- The routes call mailctl.ops, as the CLI does; the models are ops.models.

Side effects: those of the operations; the audit lines on stdout.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mailctl.errors import CommandError, Conflict, MailctlError, NotFound, SettingsError
from mailctl.layout import Layout
from mailctl.ops import accounts, config, dns, mailqueue
from mailctl.ops.models import (
    AliasEntry,
    CheckResult,
    DkimKey,
    DnsRecord,
    DomainEntry,
    Done,
    LoginResult,
    LoginTest,
    LogLine,
    LookupResult,
    MailboxEntry,
    NewAlias,
    NewPassword,
    NewUser,
    QueueAction,
    QueueEntry,
    QueueFilter,
    QueueMessage,
    QueueName,
    SelfCheckReport,
    UserEntry,
)
from mailctl.supervise import output

MIN_TOKEN = 24
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class StatusSource(Protocol):
    def readiness(self) -> tuple[bool, dict[str, Any]]: ...


class MetricsSource(Protocol):
    def metrics_text(self) -> bytes: ...


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """NAME, or the content of the file NAME_FILE names; None if short or unset."""
    value = env.get(name, "")
    path = env.get(f"{name}_FILE", "")
    if path:
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            output.emit(
                output.CONTROLLER, f"{name}_FILE: cannot read it ({exc.__class__.__name__})"
            )
            return None
    if value and len(value) < MIN_TOKEN:
        output.emit(
            output.CONTROLLER, f"{name}: shorter than {MIN_TOKEN} characters, so it is not used"
        )
        return None
    return value or None


@dataclass(frozen=True)
class Tokens:
    admin: str | None = None
    read: str | None = None
    metrics_public: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Tokens:
        return cls(
            admin=_secret(env, "MAILCTL_API_TOKEN"),
            read=_secret(env, "MAILCTL_API_READ_TOKEN"),
            metrics_public=env.get("MAILCTL_METRICS_PUBLIC", "").lower() in ("1", "true", "yes"),
        )

    def __repr__(self) -> str:  # never the values
        return f"Tokens(admin={self.admin is not None}, read={self.read is not None})"


def admin_token() -> str | None:
    """The admin token from the environment (kept for callers that need only it)."""
    return Tokens.from_env().admin


class Penalty:
    """Wrong tokens per client: each one doubles the wait before the next answer."""

    FIRST, CAP, FORGET = 0.25, 5.0, 300.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._fails: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def delay(self, client: str) -> float:
        with self._lock:
            count, last = self._fails.get(client, (0, 0.0))
            if not count or self.clock() - last > self.FORGET:
                return 0.0
            return float(min(self.CAP, self.FIRST * 2 ** (count - 1)))

    def failed(self, client: str) -> None:
        with self._lock:
            if len(self._fails) > 10_000:  # bounded: forget the oldest half
                for key in sorted(self._fails, key=lambda k: self._fails[k][1])[:5_000]:
                    del self._fails[key]
            count, _ = self._fails.get(client, (0, 0.0))
            self._fails[client] = (count + 1, self.clock())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._fails.pop(client, None)


Level = Literal["read", "admin"]


class Error(BaseModel):
    detail: str


def create_app(
    source: StatusSource,
    tokens: Tokens | str | None = None,
    *,
    layout: Layout | None = None,
    metrics: MetricsSource | None = None,
    penalty: Penalty | None = None,
) -> FastAPI:
    if not isinstance(tokens, Tokens):
        tokens = Tokens(admin=tokens)
    keys = tokens
    slow = penalty or Penalty()
    lay = layout or Layout.from_env()
    app = FastAPI(
        title="mail appliance",
        summary="Health, metrics and the admin API of the mail appliance",
        version="1",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI's own 422 is for a request of the wrong shape; what the operations
        # refuse (a setting's rule, a conflict, a missing object) is one sentence.
        responses={
            code: {"model": Error, "description": why}
            for code, why in (
                (400, "refused: the detail names what is wrong"),
                (401, "no bearer token"),
                (403, "a wrong token, or the read token for a change"),
                (404, "no such object, or the admin API is off"),
                (409, "clashes with what exists (the settings file's entries among it)"),
                (502, "a daemon's tool failed"),
            )
        },
    )

    open_paths = {"/healthz", "/readyz", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
    if keys.metrics_public:
        open_paths.add("/metrics")

    def deny(status: int, detail: str, **headers: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)

    @app.middleware("http")
    async def gate(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """No answer but 401/403/404 without a known token: before any parsing or
        validation of the request, so even a 422 says nothing to a stranger."""
        if request.url.path in open_paths:
            return await call_next(request)
        if keys.admin is None and keys.read is None:
            return deny(404, "the admin API is off (set MAILCTL_API_TOKEN, 24+ characters)")
        client = request.client.host if request.client else "?"
        wait = slow.delay(client)
        if wait:
            await asyncio.sleep(wait)
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return deny(401, "a bearer token is required", **{"WWW-Authenticate": "Bearer"})
        offered = given.strip().encode()
        name = None
        for candidate, token in (("admin", keys.admin), ("read", keys.read)):
            if token is not None and hmac.compare_digest(offered, token.encode()):
                name = candidate
        if name is None:
            slow.failed(client)
            return deny(403, "wrong token")
        slow.succeeded(client)
        request.state.token = name
        return await call_next(request)

    def guard(level: Level) -> Callable[[Request], str]:
        def check(request: Request) -> str:
            name = str(getattr(request.state, "token", ""))
            if level == "admin":
                if name != "admin":
                    raise HTTPException(
                        404 if keys.admin is None else 403,
                        "the admin API is off (set MAILCTL_API_TOKEN, 24+ characters)"
                        if keys.admin is None
                        else "the read token cannot change anything",
                    )
                output.emit(
                    output.CONTROLLER,
                    f"api: {request.method} {request.url.path} by the {name} token",
                )
            return name

        return check

    Read = Depends(guard("read"))
    Admin = Depends(guard("admin"))

    def error(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(request: Request, exc: Exception) -> JSONResponse:
            del request
            return JSONResponse({"detail": str(exc)}, status_code=status)

        return handler

    app.add_exception_handler(NotFound, error(404))
    app.add_exception_handler(Conflict, error(409))
    app.add_exception_handler(SettingsError, error(400))
    app.add_exception_handler(CommandError, error(502))
    app.add_exception_handler(MailctlError, error(400))

    # --- open ------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["health"])
    def readyz(response: Response) -> dict[str, Any]:
        ready, body = source.readiness()
        if not ready:
            response.status_code = 503
        return body

    # --- read ------------------------------------------------------------------------

    metrics_guard = [] if keys.metrics_public else [Read]

    @app.get("/metrics", tags=["health"], dependencies=metrics_guard, response_class=Response)
    def get_metrics() -> Response:
        body = metrics.metrics_text() if metrics is not None else b""
        return Response(body, media_type=METRICS_CONTENT_TYPE)

    @app.get("/status", tags=["health"], dependencies=[Read])
    def status() -> dict[str, Any]:
        return source.readiness()[1]

    @app.get("/logs", tags=["health"], dependencies=[Read])
    def logs(
        limit: Annotated[int, Query(ge=1, le=2000)] = 100,
        daemon: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[LogLine]:
        return [LogLine(**vars(line)) for line in output.recent(limit, daemon)]

    @app.get("/users", tags=["users"], dependencies=[Read])
    def users_list() -> list[UserEntry]:
        return accounts.list_users(lay)

    @app.get("/aliases", tags=["aliases"], dependencies=[Read])
    def aliases_list() -> list[AliasEntry]:
        return accounts.list_aliases(lay)

    @app.get("/domains", tags=["domains"], dependencies=[Read])
    def domains_list() -> list[DomainEntry]:
        return accounts.list_domains(lay)

    @app.get("/mailboxes", tags=["mailboxes"], dependencies=[Read])
    def mailboxes_list() -> list[MailboxEntry]:
        return accounts.list_mailboxes(lay)

    @app.get("/queue", tags=["queue"], dependencies=[Read])
    def queue_list(
        queue: QueueName | None = None,
        sender: Annotated[str | None, Query(max_length=320)] = None,
        recipient: Annotated[str | None, Query(max_length=320)] = None,
        min_age: Annotated[int | None, Query(ge=0)] = None,
    ) -> list[QueueEntry]:
        f = QueueFilter(queue=queue, sender=sender, recipient=recipient, min_age=min_age)
        return mailqueue.list_queue(f)

    @app.get("/queue/{queue_id}", tags=["queue"], dependencies=[Read])
    def queue_show(queue_id: str, full: bool = False) -> QueueMessage:
        return mailqueue.show(queue_id, full=full)

    @app.get("/lookup/{table}", tags=["tables"], dependencies=[Read])
    def table_lookup(
        table: str, key: Annotated[str, Query(min_length=1, max_length=1000)]
    ) -> LookupResult:
        return mailqueue.lookup(table, key)

    @app.post("/check", tags=["settings"], dependencies=[Read])
    def settings_check(
        text: Annotated[str, Body(media_type="text/plain", max_length=1024 * 1024)],
    ) -> CheckResult:
        """A dry run: the settings text goes through the same validation as an apply."""
        return config.check_text(lay, text)

    # --- admin -----------------------------------------------------------------------

    @app.post("/users", tags=["users"], dependencies=[Admin], status_code=201)
    def users_add(new: NewUser) -> UserEntry:
        return accounts.add_user(lay, new)

    @app.delete("/users/{address}", tags=["users"], dependencies=[Admin])
    def users_delete(address: str, purge: bool = False) -> Done:
        return Done(message=accounts.delete_user(lay, address, purge=purge))

    @app.put("/users/{address}/password", tags=["users"], dependencies=[Admin])
    def users_passwd(address: str, new: NewPassword) -> Done:
        accounts.set_password(lay, address, new.password.get_secret_value())
        return Done(message=f"password changed for {address.lower()}")

    @app.post("/users/{address}/test", tags=["users"], dependencies=[Admin])
    def users_test(address: str, attempt: LoginTest) -> LoginResult:
        return accounts.test_login(
            lay, address, attempt.password.get_secret_value(), attempt.service
        )

    @app.post("/aliases", tags=["aliases"], dependencies=[Admin], status_code=201)
    def aliases_add(new: NewAlias) -> AliasEntry:
        return accounts.add_alias(lay, new)

    @app.delete("/aliases/{address}", tags=["aliases"], dependencies=[Admin])
    def aliases_delete(address: str) -> Done:
        accounts.delete_alias(lay, address)
        return Done(message=f"deleted the alias {address.lower()}")

    @app.delete("/mailboxes/{address}", tags=["mailboxes"], dependencies=[Admin])
    def mailboxes_purge(address: str) -> Done:
        accounts.purge_mailbox(lay, address)
        return Done(message=f"purged the mailbox of {address.lower()}")

    @app.post("/queue/flush", tags=["queue"], dependencies=[Admin])
    def queue_flush() -> Done:
        mailqueue.flush()
        return Done(message="the queue is flushed")

    @app.post("/queue/{queue_id}/{action}", tags=["queue"], dependencies=[Admin])
    def queue_act(queue_id: str, action: Literal["hold", "release", "requeue"]) -> Done:
        return Done(message=mailqueue.act(action, queue_id))

    @app.delete("/queue/{queue_id}", tags=["queue"], dependencies=[Admin])
    def queue_delete(queue_id: str) -> Done:
        act: QueueAction = "delete"
        return Done(message=mailqueue.act(act, queue_id))

    @app.get("/dkim", tags=["dkim"], dependencies=[Read])
    def dkim_list() -> list[DkimKey]:
        return dns.list_keys(lay)

    @app.post("/dkim/{domain}/rotate", tags=["dkim"], dependencies=[Admin], status_code=201)
    def dkim_rotate(domain: str) -> list[DkimKey]:
        return dns.rotate(lay, domain)

    @app.post("/dkim/{domain}/{selector}/revoke", tags=["dkim"], dependencies=[Admin])
    def dkim_revoke(domain: str, selector: str) -> Done:
        return Done(message=dns.revoke(lay, domain, selector))

    @app.get("/dns", tags=["dkim"], dependencies=[Read])
    def dns_records() -> list[DnsRecord]:
        return dns.records(lay)

    @app.get("/checks", tags=["checks"], dependencies=[Admin])
    def checks(
        refresh: bool = False,
        address: Annotated[str | None, Query(max_length=64)] = None,
    ) -> SelfCheckReport:
        """The DNS self-check (MX, reverse DNS, SPF, DKIM, DMARC, blocklists). The admin
        token, as it makes this server ask blocklists: a result is reused for
        `selfcheck.every`, and even `refresh=true` asks DNS at most once a minute."""
        # Imported here: dnspython and pyspf stay out of the controller until asked for.
        from mailctl.ops import selfcheck

        return selfcheck.checks(lay, address=address, refresh=refresh)

    return app

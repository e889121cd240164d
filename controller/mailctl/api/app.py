"""FastAPI app factory: /healthz (alive), /readyz (ready to serve mail), /status.

No side effects of its own: it reads the controller's status snapshot.
Admin routes need a bearer token compared in constant time; with no token
configured (or a short one) they are off.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Header, HTTPException, Response

MIN_TOKEN = 24


class StatusSource(Protocol):
    def readiness(self) -> tuple[bool, dict[str, Any]]: ...


def admin_token() -> str | None:
    token = os.environ.get("MAILCTL_API_TOKEN", "")
    return token if len(token) >= MIN_TOKEN else None


def create_app(source: StatusSource, token: str | None = None) -> FastAPI:
    app = FastAPI(title="mail appliance", docs_url=None, redoc_url=None, openapi_url=None)

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            raise HTTPException(404, "admin API is off (set MAILCTL_API_TOKEN, 24+ chars)")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise HTTPException(
                401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise HTTPException(403, "wrong token")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz")
    def readyz(response: Response) -> dict[str, Any]:
        ready, body = source.readiness()
        if not ready:
            response.status_code = 503
        return body

    # A dependency by value: a local type alias in an annotation would not resolve here.
    @app.get("/status", dependencies=[Depends(require_admin)])
    def status() -> dict[str, Any]:
        return source.readiness()[1]

    return app

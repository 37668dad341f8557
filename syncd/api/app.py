"""FastAPI app factory: health, the self-service registration API, the enrollment pages.

The admin API and SCIM mount here as they land. Every response carries the security headers of
:class:`SecurityHeaders` (CSP, no referrer, no framing).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd import __version__
from syncd.api import enroll_pages, idempotency, openapi, ratelimit, selfservice
from syncd.api.admin import admin_router
from syncd.config.models import Config
from syncd.errors import SyncdError
from syncd.store import schema
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.stale_runs import last_runs

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}
NO_STORE_PREFIXES = ("/enroll", "/api/")


class SecurityHeaders:
    """Pure-ASGI middleware: :data:`SECURITY_HEADERS` on every response (unless the app set them), and
    ``cache-control: no-store`` under :data:`NO_STORE_PREFIXES` except the enrollment pages' assets. Pure
    ASGI rather than ``@app.middleware("http")`` (``BaseHTTPMiddleware``), which runs every request in an
    extra task with a streamed body — a measurable cost per request on the verification path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        no_store = path.startswith(NO_STORE_PREFIXES) and not path.startswith("/enroll/assets")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if no_store:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


SCIM_PREFIX = "/scim/v2"


class App(FastAPI):
    """FastAPI, with requests under ``/scim/v2/`` handed to the SCIM app before FastAPI's own middleware
    and routing: SCIM does its own auth, limits and errors and needs only the security headers here, and
    an IdP's lookups are the hottest path, of which that stack took a third (docs/adr/0030). The mount
    stays in ``routes`` for anything that walks them.

    The SCIM app is built on first use (or by :meth:`scim_app` from the daemon right after READY): its
    modules (scim2-models, its grammar) are a fifth of the daemon's start-up (docs/adr/0044)."""

    scim_factory: Callable[[], ASGIApp] | None = None
    _scim: ASGIApp | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._scim_lock = threading.Lock()  # one per app: apps build their SCIM apps independently

    def scim_app(self) -> ASGIApp | None:
        """The SCIM app (with the security headers), built once; blocking the first time."""
        if self._scim is None and self.scim_factory is not None:
            with self._scim_lock:
                if self._scim is None:
                    self._scim = SecurityHeaders(self.scim_factory())
        return self._scim

    async def _scim_handler(self, scope: Scope, receive: Receive, send: Send) -> None:
        scim = self._scim or await to_thread.run_sync(self.scim_app)
        assert scim is not None
        await scim(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.scim_factory is not None
            and scope["type"] == "http"
            and scope["path"].startswith(SCIM_PREFIX + "/")
        ):
            root_path = scope.get("root_path", "")
            child = {**scope, "app_root_path": scope.get("app_root_path", root_path)}
            child["root_path"] = root_path + SCIM_PREFIX
            await self._scim_handler(child, receive, send)
            return
        await super().__call__(scope, receive, send)


def _scim_factory(config: Config, db: Database) -> Callable[[], ASGIApp]:
    def build() -> ASGIApp:
        from syncd.api.scim import create_scim_app  # noqa: PLC0415 (on first use: see App)

        return create_scim_app(config, db)

    return build


def create_app(config: Config, db: Database, enrollment: EnrollmentSettings | None = None) -> FastAPI:
    """Build the app for one config and database (no module-level state).

    Without ``enrollment`` (no seed key: ``check-config`` and tests of other parts) the registration API
    and the enrollment pages answer that enrollment is not configured.
    """
    app = App(title="syncd", version=__version__, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.db = db
    app.state.enrollment = enrollment
    app.scim_factory = _scim_factory(config, db)  # SCIM 2.0 (docs/adr/0030), built on first use
    app.mount(SCIM_PREFIX, app._scim_handler)
    app.include_router(selfservice.router)
    app.include_router(enroll_pages.router)
    app.include_router(admin_router())  # /api/v1 and /api/mfa/admin (docs/adr/0050)
    # API qualities (docs/adr/0055): Idempotency-Key inside the per-key rate limits; the adjusted document.
    app.add_middleware(idempotency.IdempotencyMiddleware, max_body_bytes=config.api.max_body_bytes)
    app.add_middleware(ratelimit.RateLimitMiddleware, limits=config.api.rate_limits)
    openapi.install(app)

    app.add_middleware(SecurityHeaders)  # outermost of ours: on every answer, 429s included

    @app.exception_handler(SyncdError)
    async def _syncd_error(_request: Request, error: SyncdError) -> JSONResponse:
        status = _status(error)
        message = str(error) if status < 500 else "the service is temporarily unavailable"
        headers = dict(getattr(error, "headers", None) or {})
        if status == 401:
            headers["www-authenticate"] = "Bearer"
        body = {"error": {"code": error.code, "message": message}}
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in error.errors()
        ]
        body = {"error": {"code": "invalid_request", "message": "; ".join(problems[:5]) or "invalid request"}}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        body = {"error": {"code": code, "message": str(error.detail)}}
        return JSONResponse(body, status_code=error.status_code, headers=error.headers)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        """Ready: the database answers and its schema is the one this code expects. Also says whether this
        replica leads (runs the scheduled jobs) and how each source's last sync ended (a failed sync does
        not make the API unready)."""
        try:
            db.ping()
            schema.check_current(db)
            with db.read() as session:
                last = last_runs(session)
        except SyncdError as error:
            body = {"status": "unavailable", "error": {"code": error.code, "message": "database not ready"}}
            return JSONResponse(body, status_code=503)
        role = getattr(request.app.state, "role", None)
        return JSONResponse({"status": "ok", **({"role": role()} if role else {}), "sources": last})

    return app


STATUS_BY_CODE = {
    "not_found": 404,
    "refused": 409,
    "already_running": 409,
    "usage": 400,
    "rate_limited": 429,
    "unauthenticated": 401,
    "forbidden": 403,
    "conflict": 409,
    "invalid_code": 400,
    "factor_locked": 423,
    "expired": 410,
}


def _status(error: SyncdError) -> int:
    return STATUS_BY_CODE.get(error.code, 503)

"""FastAPI app factory. Health endpoints now; the admin API, SCIM and pages mount here as they land."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from syncd import __version__
from syncd.api.scim import create_scim_app
from syncd.config.models import Config
from syncd.errors import SyncdError
from syncd.store import schema
from syncd.store.db import Database


def create_app(config: Config, db: Database) -> FastAPI:
    """Build the app for one config and database (no module-level state)."""
    app = FastAPI(title="syncd", version=__version__, docs_url=None, redoc_url=None)
    app.state.config = config
    app.state.db = db
    app.mount("/scim/v2", create_scim_app(config, db))  # SCIM 2.0 (docs/adr/0030)

    @app.exception_handler(SyncdError)
    async def _syncd_error(_request: Request, error: SyncdError) -> JSONResponse:
        status = _status(error)
        message = str(error) if status < 500 else "the service is temporarily unavailable"
        return JSONResponse({"error": {"code": error.code, "message": message}}, status_code=status)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Alive: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Ready: the database answers and its schema is the one this code expects."""
        try:
            db.ping()
            schema.check_current(db)
        except SyncdError as error:
            body = {"status": "unavailable", "error": {"code": error.code, "message": "database not ready"}}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def _status(error: SyncdError) -> int:
    return {"not_found": 404, "refused": 409, "already_running": 409, "usage": 400}.get(error.code, 503)

"""The HTTP metrics middleware (route templates, verification outcomes) and request ids, in process."""

from __future__ import annotations

import io
import logging
import re

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from syncd import logs
from syncd.api.metrics import HttpMetrics, Metrics
from syncd.asgi import RequestIds, Swappable


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/enroll/verify")
    def verify(code: str) -> dict[str, str]:
        logging.getLogger("syncd.test").info("verifying")
        if code == "locked":
            raise HTTPException(423)
        if code != "123456":
            raise HTTPException(400)
        return {"ok": "yes"}

    admin = APIRouter()  # included with a prefix, as the admin API is

    @admin.post("/verify")
    def decide(code: str, request: Request) -> dict[str, str]:
        # like the real route: always 200, the finer outcome in request.state.verification
        request.state.verification = "ok" if code == "123456" else "wrong_code"
        return {"result": "ALLOW" if code == "123456" else "DENY"}

    app.include_router(admin, prefix="/api/v1")

    @app.get("/users/{user_id}")
    def user(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    return app


def test_latency_by_route_template_and_verification_outcomes() -> None:
    metrics = Metrics()
    swappable = Swappable(_app())
    client = TestClient(RequestIds(HttpMetrics(swappable, metrics, swappable.routes)))
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(logs.LogfmtFormatter())
    logger = logging.getLogger("syncd.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    for code in ("123456", "000000", "000001", "locked"):
        client.post(f"/enroll/verify?code={code}")
    for code in ("123456", "000000", "000001"):
        assert client.post(f"/api/v1/verify?code={code}").status_code == 200
    for n in range(3):
        client.get(f"/users/u{n}")
    given = client.get("/users/x", headers={"x-request-id": "proxy-request-0001"})
    assert given.headers["x-request-id"] == "proxy-request-0001"
    invented = client.get("/users/x", headers={"x-request-id": "bad id with spaces"}).headers["x-request-id"]
    assert len(invented) == 16 and invented != "bad id with spaces"
    sample = metrics.registry.get_sample_value
    assert sample("syncd_verifications_total", {"route": "/enroll/verify", "outcome": "accepted"}) == 1
    assert sample("syncd_verifications_total", {"route": "/enroll/verify", "outcome": "rejected"}) == 2
    assert sample("syncd_verifications_total", {"route": "/enroll/verify", "outcome": "locked"}) == 1
    assert sample("syncd_verifications_total", {"route": "/api/v1/verify", "outcome": "accepted"}) == 1
    assert sample("syncd_verifications_total", {"route": "/api/v1/verify", "outcome": "wrong_code"}) == 2
    labels = {"method": "GET", "route": "/users/{user_id}", "status": "2xx"}
    assert sample("syncd_http_request_duration_seconds_count", labels) == 5  # one label set, not one per id
    assert client.get("/nowhere").status_code == 404
    assert (
        sample(
            "syncd_http_request_duration_seconds_count",
            {"method": "GET", "route": "unmatched", "status": "4xx"},
        )
        == 1
    )
    logger.removeHandler(handler)
    lines = written.getvalue().splitlines()
    assert len(lines) == 4 and all(re.search(r" request_id=[0-9a-f]{16}$", line) for line in lines)

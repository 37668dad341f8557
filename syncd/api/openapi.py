"""The OpenAPI document, made to match what the app answers (docs/adr/0055-api-qualities.md).

Served at ``/api/v1/openapi.json`` (and FastAPI's ``/openapi.json``, the same document). FastAPI's own
document is adjusted once, when first asked for:

- 422 is the app's error shape (``ErrorBody``), not FastAPI's ``HTTPValidationError``;
- every admin operation documents 401 and 403 (the bearer scheme is declared by the ``bearer`` dependency);
- the POSTs that honour ``Idempotency-Key`` declare the header and their 409;
- the rate-limited POSTs declare 429 and the ``RateLimit-*`` / ``Retry-After`` headers.

Mounted sub-apps (SCIM under ``/scim/v2``) are not part of this document; SCIM describes itself through
its own discovery endpoints (RFC 7644 §4).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import JSONResponse

from syncd.api import idempotency, ratelimit
from syncd.api.admin.schemas import ErrorBody

PATH = "/api/v1/openapi.json"
ADMIN_PREFIXES = ("/api/v1/", "/api/mfa/admin/")
ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
RATE_HEADERS = {
    "RateLimit-Limit": "Requests the key may send at once (the bucket size).",
    "RateLimit-Remaining": "Requests left in the bucket now.",
    "RateLimit-Reset": "Seconds until the bucket is full again.",
}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the adjusted document and serve it at :data:`PATH`."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description="syncd admin API: API keys as bearer tokens (`syncd apikey create`).",
                routes=app.routes,
            )
            app.openapi_schema = adjust(document)
        return app.openapi_schema

    async def serve(_request: Request) -> JSONResponse:
        return JSONResponse(openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_route(PATH, serve, methods=["GET"], include_in_schema=False)


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def adjust(document: dict[str, Any]) -> dict[str, Any]:
    """The changes listed in the module docstring, applied to a FastAPI document."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in (
        ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}).items()
    ):
        schemas.setdefault(name, schema)
    if "ErrorBody" not in schemas:
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        body.pop("$defs", None)
        schemas["ErrorBody"] = body
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            invalid = responses.get("422")
            if invalid is not None:
                responses["422"] = _error(invalid.get("description") or "Invalid request body or parameters")
            if path.startswith(ADMIN_PREFIXES):
                responses.setdefault("401", _error("No valid API key"))
                responses.setdefault("403", _error("The API key lacks the scope"))
            if idempotency.applies(method.upper(), path):
                _idempotent(operation)
            if ratelimit.route_class(method.upper(), path):
                _rate_limited(responses)
    for name in FASTAPI_VALIDATION:
        schemas.pop(name, None)
    return document


def _idempotent(operation: dict[str, Any]) -> None:
    parameters = operation.setdefault("parameters", [])
    if not any(p.get("name", "").lower() == "idempotency-key" for p in parameters):
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Send the same key again to get the first answer instead of a second run "
                "(kept 24 h; the same key with another body is 409).",
                "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[!-~]+$"},
            }
        )
    responses = operation["responses"]
    responses.setdefault("400", _error("Bad request (or a malformed Idempotency-Key)"))
    responses.setdefault(
        "409", _error("Conflict (an Idempotency-Key reused with another body, or in flight)")
    )


def _rate_limited(responses: dict[str, Any]) -> None:
    headers = {
        name: {"description": text, "schema": {"type": "integer"}} for name, text in RATE_HEADERS.items()
    }
    for status, response in responses.items():
        if status.startswith("2"):
            response.setdefault("headers", {}).update(headers)
    retry = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
    responses["429"] = _error("Too many requests for this API key", {**headers, **retry})

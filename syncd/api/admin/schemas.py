"""Bodies shared by every admin route: the error shape and the cursor page."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    """Stable machine-readable name (``not_found``, ``forbidden``, ``invalid_request``, …)."""
    message: str
    """What went wrong, for a person."""


class ErrorBody(BaseModel):
    """Every error response: ``{"error": {"code": …, "message": …}}``."""

    error: ErrorDetail


ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Ids are URL-safe random strings (``tables.new_id``); anything else can't exist (and a NUL byte would
upset PostgreSQL), so it is refused as invalid input."""


def storable(value: str | None) -> str | None:
    """Refuse strings no database can store (NUL characters, unpaired surrogates) as invalid input
    (``AfterValidator(storable)`` on free-text fields)."""
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode") from exc
    return value


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request"},
    401: {"model": ErrorBody, "description": "No valid API key"},
    403: {"model": ErrorBody, "description": "The API key lacks the scope"},
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "Conflict or refused by a lifecycle rule"},
    422: {"model": ErrorBody, "description": "Invalid request body or parameters"},
}
"""``responses=ERRORS`` on a route documents every error it can answer with."""

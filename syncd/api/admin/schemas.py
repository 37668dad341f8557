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


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad request"},
    401: {"model": ErrorBody, "description": "No valid API key"},
    403: {"model": ErrorBody, "description": "The API key lacks the scope"},
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "Conflict or refused by a lifecycle rule"},
    422: {"model": ErrorBody, "description": "Invalid request body or parameters"},
}
"""``responses=ERRORS`` on a route documents every error it can answer with."""

"""SCIM errors (RFC 7644 §3.12) and the one place where any error becomes a SCIM error body.

:class:`ScimError` is part of syncd's error tree; each subclass carries its HTTP status and ``scimType``.
:func:`to_error` maps every exception an endpoint can raise — SCIM errors, the rest of the tree, foreign
errors — to ``(status, body)``; bodies never carry internals (no SQL, no traceback, no secrets).
"""

from __future__ import annotations

import logging
from typing import Any

from syncd.errors import NotFoundError, StoreError, SyncdError, UnauthenticatedError

ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"

log = logging.getLogger("syncd.scim")


class ScimError(SyncdError):
    """A request a SCIM client must fix (or a state it must know about)."""

    code = "scim"
    status: int = 400
    scim_type: str | None = None


class InvalidFilterError(ScimError):
    """The filter is malformed, names an unknown attribute, or compares in a way the attribute forbids."""

    scim_type = "invalidFilter"


class InvalidSyntaxError(ScimError):
    """The body is not a well-formed SCIM message (bad JSON, not UTF-8, wrong message schema)."""

    scim_type = "invalidSyntax"


class InvalidValueError(ScimError):
    """A value is missing, of the wrong type, or not acceptable (also bad query parameters)."""

    scim_type = "invalidValue"


class InvalidPathError(ScimError):
    """A PATCH path is malformed or names an unknown attribute."""

    scim_type = "invalidPath"


class NoTargetError(ScimError):
    """A PATCH path selects nothing where it must select something."""

    scim_type = "noTarget"


class MutabilityError(ScimError):
    """An attempt to change an attribute the client may not change."""

    scim_type = "mutability"


class UniquenessError(ScimError):
    """userName (or a group's displayName) is already in use."""

    status = 409
    scim_type = "uniqueness"


class ResourceNotFoundError(ScimError):
    """No such resource visible to this client (other sources' objects are invisible: 404, not 403)."""

    status = 404


class UnauthorizedError(ScimError):
    """No valid bearer token of an enabled SCIM source."""

    status = 401


class PreconditionFailedError(ScimError):
    """If-Match does not match the resource's current version."""

    status = 412


class PayloadTooLargeError(ScimError):
    """The body is larger than the advertised maxPayloadSize."""

    status = 413


class UnsupportedMediaTypeError(ScimError):
    """The body is neither application/scim+json nor application/json."""

    status = 415


class MethodNotAllowedError(ScimError):
    """The endpoint exists but not with this method (e.g. POST on /Schemas)."""

    status = 405


class NotSupportedError(ScimError):
    """An optional feature syncd does not offer (/Me, /Bulk)."""

    status = 501


UNAVAILABLE = "the service is temporarily unavailable"


def to_error(error: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and SCIM Error body for any exception an endpoint raised."""
    if isinstance(error, ScimError):
        return error.status, body(error.status, str(error), error.scim_type)
    if isinstance(error, NotFoundError):
        return 404, body(404, str(error))
    if isinstance(error, UnauthenticatedError):
        return 401, body(401, "authentication required")
    if isinstance(error, StoreError):
        log.error("SCIM request failed: database unavailable", extra={"reason": str(error)})
        return 503, body(503, UNAVAILABLE)
    log.error("SCIM request failed", exc_info=error)
    return 500, body(500, "internal error")


def body(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        out["scimType"] = scim_type
    return out

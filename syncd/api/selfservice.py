"""Self-service registration API (seed doc 001), for the user of the enrollment session.

* ``POST /api/mfa/register/TOTP`` ``{"action": "GENERATE_SECRET"}`` → ``CHALLENGE`` with ``key`` and ``uri``
  (issuer, algorithm, digits, period from the org's TOTP settings); ``{"action": "VERIFY", "otp": "123456"}``
  → ``REGISTERED`` and the device ACTIVE.
* ``GET /api/mfa/register/TOTP`` → ``{"status": S, "factor": "TOTP"}``, S one of REGISTERED, CHALLENGE,
  UNREGISTERED.
* ``DELETE /api/mfa/register/TOTP/{credential}``: ``credential`` is a current code, as confirmation.

The secret is in the ``GENERATE_SECRET`` response only; nothing returns it after registration.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict, Field

from syncd.api import enroll_session, registration
from syncd.domain import otp
from syncd.errors import NotFoundError, UnauthenticatedError, UsageError
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings

router = APIRouter(prefix="/api/mfa/register", tags=["self-service registration"])


class RegisterRequest(BaseModel):
    """``GENERATE_SECRET`` starts a registration; ``VERIFY`` with ``otp`` finishes it."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["GENERATE_SECRET", "VERIFY"]
    otp: str | None = Field(default=None, max_length=16, description="The current code (VERIFY).")


def _context(request: Request) -> tuple[Database, EnrollmentSettings]:
    settings = request.app.state.enrollment
    if settings is None:
        raise NotFoundError("enrollment is not configured on this server")
    return request.app.state.db, settings


def _factor(factor: str) -> None:
    if factor.upper() != "TOTP":
        raise NotFoundError(f"factor {factor!r} is not supported (only TOTP)")


def _session(request: Request, db: Database, settings: EnrollmentSettings) -> enroll_session.EnrollSession:
    if not enroll_session.same_origin(request, settings):
        raise UnauthenticatedError("cross-origin request refused")
    return enroll_session.require(request, db, settings)


@router.post("/{factor}")
def register(factor: str, request: Request, body: Annotated[RegisterRequest, Body()]) -> dict[str, Any]:
    """Generate a secret (``CHALLENGE``) or verify one code (``REGISTERED``)."""
    _factor(factor)
    db, settings = _context(request)
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise UsageError("send the body as application/json")
    session = _session(request, db, settings)
    if body.action == "GENERATE_SECRET":
        challenge = registration.generate(db, settings, session.user_id)
        key = otp.b32encode(challenge.secret)
        details = {"registrationStatus": "CHALLENGE", "key": key, "uri": challenge.uri}
        return {"status": "CHALLENGE", "factor": "TOTP", "additionalDetails": details}
    if not body.otp:
        raise UsageError("VERIFY needs the current code in 'otp'")
    registration.raise_for(registration.verify(db, settings, session.user_id, body.otp))
    return {"status": "REGISTERED", "factor": "TOTP"}


@router.get("/{factor}")
def registration_status(factor: str, request: Request) -> dict[str, str]:
    """The current user's registration status for the factor."""
    _factor(factor)
    db, settings = _context(request)
    session = _session(request, db, settings)
    return {"status": registration.status(db, session.user_id), "factor": "TOTP"}


@router.delete("/{factor}/{credential}")
def delete_registration(factor: str, credential: str, request: Request) -> dict[str, Any]:
    """Remove the current user's registration, confirmed by a current code (the device is disabled)."""
    _factor(factor)
    db, settings = _context(request)
    session = _session(request, db, settings)
    registration.raise_for(registration.delete_self(db, settings, session.user_id, credential))
    return {"message": "TOTP registration deleted", "errorCode": None}

"""Admin API: a user's factor registration (seed 001 "Manage MFA" 3 and 5, "Manage Users" 1 and 2).

``GET`` answers ``{"status": "REGISTERED" | "CHALLENGE" | "UNREGISTERED", "factor": "TOTP"}`` (read scope);
``DELETE`` removes the registration and the user's TOTP devices, recomputing the status (manage scope,
204). Only TOTP is registered this way; any other factor is 404.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, ID_PATTERN
from syncd.errors import NotFoundError
from syncd.store import registrations, user_admin
from syncd.store.enrollment import EnrollmentSettings

RESPONSES: dict[int | str, dict[str, Any]] = {code: dict(doc) for code, doc in ERRORS.items()}

router = APIRouter(prefix="/api/mfa/admin/registrations", tags=["registrations"])

Id = Annotated[str, Path(pattern=ID_PATTERN)]
Factor = Annotated[str, Path(min_length=1, max_length=32, description="The MFA factor: TOTP.")]


class RegistrationOut(BaseModel):
    status: Literal["REGISTERED", "CHALLENGE", "UNREGISTERED"]
    factor: Literal["TOTP"]


def _factor(factor: str) -> None:
    if factor != registrations.FACTOR:
        raise NotFoundError(f"no factor {factor!r} here: only TOTP is registered through this API")


@router.get("/{factor}/users/{targetUserId}", responses=RESPONSES)
def get_registration(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    factor: Factor,
    targetUserId: Id,
) -> RegistrationOut:
    """The user's registration status for the factor."""
    _factor(factor)
    with request.app.state.db.read() as session:
        user = user_admin.get(session, targetUserId)
        status = registrations.status(session, user.id)
    return RegistrationOut(status=status, factor="TOTP")


@router.delete(
    "/{factor}/users/{targetUserId}", status_code=204, response_class=Response, responses=RESPONSES
)
def delete_registration(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
    factor: Factor,
    targetUserId: Id,
) -> Response:
    """Unregister the user: the TOTP devices go, the status is derived again (audited; the user is told
    by mail that an authenticator was removed)."""
    _factor(factor)
    settings: EnrollmentSettings | None = request.app.state.enrollment
    if settings is None:
        raise NotFoundError("enrollment is not configured")
    with request.app.state.db.write() as session:
        user = user_admin.get(session, targetUserId)
        registrations.admin_delete(session, user.id, settings, actor=caller.actor)
    return Response(status_code=204)

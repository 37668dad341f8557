"""Admin API: enrollment mail for one user or many (seed 000 "Enrollment", "Enrollment email";
docs/adr/0051-admin-users-and-groups.md). Both routes are rate-limited and take ``Idempotency-Key``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from syncd.api.admin.schemas import ID_PATTERN, ErrorBody
from syncd.api.admin.users import MANAGE, RESPONSES, Id
from syncd.errors import DomainError, NotFoundError, RateLimitedError
from syncd.store import invites, user_admin
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import User

router = APIRouter(tags=["users"])


class InviteResult(BaseModel):
    userId: str
    result: Literal["invited", "skipped", "rate_limited"]
    reason: str | None = None


class BulkInvite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userIds: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(min_length=1, max_length=1000)


class BulkInviteResult(BaseModel):
    invited: int
    skipped: int
    rateLimited: int
    results: list[InviteResult]


def _settings(request: Request) -> EnrollmentSettings:
    settings: EnrollmentSettings | None = request.app.state.enrollment
    if settings is None:
        raise NotFoundError("enrollment is not configured")
    return settings


def _invite(session: Any, user_id: str, settings: EnrollmentSettings, actor: str) -> InviteResult:
    user = session.get(User, user_id)
    if user is None:
        return InviteResult(userId=user_id, result="skipped", reason="no such user")
    if user.deleted_at is not None:
        return InviteResult(userId=user_id, result="skipped", reason="user is deleted")
    try:
        issued = invites.issue(session, user, settings, actor=actor, reason="sent by an admin")
    except RateLimitedError as error:
        return InviteResult(userId=user_id, result="rate_limited", reason=str(error))
    if isinstance(issued, invites.Skipped):
        return InviteResult(userId=user_id, result="skipped", reason=issued.reason)
    return InviteResult(userId=user_id, result="invited")


@router.post(
    "/users/{userId}/enrollment-email",
    status_code=202,
    responses={**RESPONSES, 429: {"model": ErrorBody, "description": "Too many enrollment mails"}},
)
def send_enrollment_email(request: Request, caller: MANAGE, userId: Id) -> InviteResult:
    """Queue a new enrollment mail (the previous link stops working). 409 when the user can't enroll or
    has no email address, 429 over the daily limit."""
    settings = _settings(request)
    with request.app.state.db.write() as session:
        user_admin.get(session, userId)
        result = _invite(session, userId, settings, caller.actor)
    if result.result == "rate_limited":
        raise RateLimitedError(result.reason or "rate limited")
    if result.result == "skipped":
        raise DomainError(f"no enrollment mail for user {userId}: {result.reason}")
    return result


@router.post("/users/enrollment-emails", status_code=200, responses=RESPONSES)
def send_enrollment_emails(request: Request, caller: MANAGE, body: BulkInvite) -> BulkInviteResult:
    """Queue enrollment mail for up to 1000 users; each is invited, skipped (with why) or rate limited."""
    settings = _settings(request)
    ids = list(dict.fromkeys(body.userIds))
    with request.app.state.db.write() as session:
        results = [_invite(session, uid, settings, caller.actor) for uid in ids]
    return BulkInviteResult(
        invited=sum(r.result == "invited" for r in results),
        skipped=sum(r.result == "skipped" for r in results),
        rateLimited=sum(r.result == "rate_limited" for r in results),
        results=results,
    )

"""Admin API: bypass codes (seed 000 "Bypass code", ``bypassCodeId``; docs/adr/0052).

The codes are in the response to the POST that makes them and nowhere else: the store keeps argon2id
hashes, listings show metadata, audit rows and the notification mail carry the count only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.devices import UserId, mail_host
from syncd.api.admin.schemas import ERRORS, ID_PATTERN
from syncd.domain import bypass
from syncd.domain.lifecycle import can_use_bypass_code
from syncd.errors import DomainError
from syncd.store import bypass_codes
from syncd.store.devices import load_user
from syncd.store.tables import BypassCode, utcnow

router = APIRouter(tags=["bypass_codes"])

CodeId = Annotated[str, Path(pattern=ID_PATTERN, description="The bypassCodeId.")]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(bypass.DEFAULT_COUNT, ge=bypass.MIN_COUNT, le=bypass.MAX_COUNT)
    digits: int = Field(bypass.DEFAULT_DIGITS, ge=bypass.MIN_DIGITS, le=bypass.MAX_DIGITS)
    uses: int = Field(bypass.DEFAULT_USES, ge=bypass.MIN_USES, le=bypass.MAX_USES)
    """How many times each code may be used."""
    expiresInSeconds: int = Field(bypass.DEFAULT_EXPIRY, ge=bypass.MIN_EXPIRY, le=bypass.MAX_EXPIRY)
    preserveExisting: bool = False
    """Keep the user's live codes (default: generating revokes them)."""


class NewCodeOut(BaseModel):
    bypassCodeId: str
    code: str
    """The code in plaintext: shown in this response only."""
    expires: datetime
    usesLeft: int


class Generated(BaseModel):
    userId: str
    items: list[NewCodeOut]


class CodeOut(BaseModel):
    bypassCodeId: str
    status: Literal["ACTIVE", "USED", "EXPIRED", "REVOKED"]
    created: datetime
    expires: datetime | None
    usesLeft: int
    lastUsed: datetime | None
    revoked: datetime | None


class CodeList(BaseModel):
    items: list[CodeOut]


class Revoked(BaseModel):
    revoked: int
    """How many live codes were revoked."""


def _status(code: BypassCode, now: datetime) -> Literal["ACTIVE", "USED", "EXPIRED", "REVOKED"]:
    if code.revoked_at is not None:
        return "REVOKED"
    if code.uses_left <= 0:
        return "USED"
    if code.expires_at is not None and code.expires_at <= now:
        return "EXPIRED"
    return "ACTIVE"


@router.post("/users/{userId}/bypass-codes", status_code=201, responses=ERRORS)
def generate_codes(
    request: Request,
    userId: UserId,
    body: GenerateRequest,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> Generated:
    """Generate bypass codes (returned once, here). 409 for PROVISIONING_DISABLED users."""
    db = request.app.state.db
    with db.read() as session:  # fail fast before spending time on the hashes
        user = load_user(session, userId)
        if not can_use_bypass_code(user.status):
            raise DomainError(f"user {userId} is {user.status.value}: bypass codes can't be generated")
    made = bypass.make_codes(userId, body.count, body.digits)
    with db.write() as session:
        rows = bypass_codes.generate(
            session,
            userId,
            made,
            uses=body.uses,
            expires_in=timedelta(seconds=body.expiresInSeconds),
            preserve_existing=body.preserveExisting,
            actor=caller.actor,
            host=mail_host(request),
        )
        items = [
            NewCodeOut(
                bypassCodeId=row.id,
                code=code.plaintext,
                expires=row.expires_at or utcnow(),
                usesLeft=row.uses_left,
            )
            for row, code in zip(rows, made, strict=True)
        ]
    return Generated(userId=userId, items=items)


@router.get("/users/{userId}/bypass-codes", responses=ERRORS)
def list_codes(
    request: Request, userId: UserId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> CodeList:
    """The user's codes, newest first: metadata only, never a code."""
    now = utcnow()
    with request.app.state.db.read() as session:
        return CodeList(
            items=[
                CodeOut(
                    bypassCodeId=c.id,
                    status=_status(c, now),
                    created=c.created_at,
                    expires=c.expires_at,
                    usesLeft=c.uses_left,
                    lastUsed=c.last_used_at,
                    revoked=c.revoked_at,
                )
                for c in bypass_codes.listing(session, userId)
            ]
        )


@router.delete("/users/{userId}/bypass-codes", responses=ERRORS)
def revoke_all_codes(
    request: Request, userId: UserId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> Revoked:
    """Revoke every live code of the user."""
    with request.app.state.db.write() as session:
        return Revoked(revoked=bypass_codes.revoke_all(session, userId, actor=caller.actor))


@router.delete(
    "/users/{userId}/bypass-codes/{bypassCodeId}",
    status_code=204,
    response_class=Response,
    responses=ERRORS,
)
def revoke_code(
    request: Request,
    userId: UserId,
    bypassCodeId: CodeId,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> Response:
    """Revoke one code."""
    with request.app.state.db.write() as session:
        bypass_codes.revoke(session, userId, bypassCodeId, actor=caller.actor)
    return Response(status_code=204)

"""Admin API: hardware tokens (seed 000 "Hardware token"; docs/adr/0052).

Import an inventory (OATH CSV or PSKC, all rows or none), list and get tokens (never the seed), assign one
to a user by serial (an ACTIVE HARDWARE_TOKEN device; one token per user), unassign, resynchronise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.devices import UserId, mail_host, seed_keys
from syncd.api.admin.schemas import ERRORS, ID_PATTERN
from syncd.domain import token_files
from syncd.domain.lifecycle import UserStatus
from syncd.store import devices, hardware_tokens, token_codes
from syncd.store.tables import HardwareToken

router = APIRouter(tags=["hardware_tokens"])

MAX_FILE_CHARS = 5 * 1024 * 1024
TokenId = Annotated[str, Path(pattern=ID_PATTERN, description="The hardware token's id.")]
SERIAL_PATTERN = token_files.SERIAL.pattern
Code = Annotated[str, Field(pattern=r"^[0-9]{6,8}$")]


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Literal["csv", "pskc"]
    content: str = Field(min_length=1, max_length=MAX_FILE_CHARS)
    """The file's text: OATH CSV (serial,secret,type,digits,period|counter,algorithm) or PSKC XML."""


class Imported(BaseModel):
    imported: int
    hotp: int
    totp: int


class TokenOut(BaseModel):
    tokenId: str
    serial: str
    type: Literal["HOTP", "TOTP"]
    digits: int
    algorithm: str
    period: int | None
    """TOTP time step in seconds (None for HOTP)."""
    counter: int
    """HOTP: the next counter value expected; TOTP: the first time step not accepted yet."""
    drift: int
    """TOTP clock drift in time steps."""
    userId: str | None
    imported: datetime


class TokenPage(BaseModel):
    items: list[TokenOut]
    nextCursor: str | None


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    serial: str = Field(pattern=SERIAL_PATTERN)


class Assigned(BaseModel):
    token: TokenOut
    deviceId: str
    userStatus: UserStatus


class Unassigned(BaseModel):
    token: TokenOut
    userStatus: UserStatus


class ResyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    codes: list[Code] = Field(min_length=2, max_length=2)
    """Two consecutive codes shown by the token."""


def token_out(token: HardwareToken) -> TokenOut:
    return TokenOut(
        tokenId=token.id,
        serial=token.serial,
        type="HOTP" if token.otp_type == "HOTP" else "TOTP",
        digits=token.digits,
        algorithm=token.algorithm,
        period=token.period if token.otp_type == "TOTP" else None,
        counter=token.counter,
        drift=token.drift,
        userId=token.user_id,
        imported=token.imported_at,
    )


@router.post("/hardware-tokens/import", status_code=201, responses=ERRORS)
def import_tokens(
    request: Request, body: ImportRequest, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> Imported:
    """Import an inventory: every token or none. 400 lists every bad row (CSV line number, PSKC KeyPackage
    index and serial), seeds shorter than 128 bits and serials already stored."""
    keys = seed_keys(request)
    parsed = token_files.parse(body.content, body.format)
    with request.app.state.db.write() as session:
        count = hardware_tokens.import_tokens(session, parsed, keys=keys, actor=caller.actor)
    hotp = sum(1 for t in parsed.tokens if t.otp_type == "HOTP")
    return Imported(imported=count, hotp=hotp, totp=count - hotp)


@router.get("/hardware-tokens", responses=ERRORS)
def list_tokens(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    assigned: Annotated[
        bool | None, Query(description="Only assigned (true) or free (false) tokens.")
    ] = None,
    serialPrefix: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:/-]{0,128}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,200}$")] = None,
) -> TokenPage:
    """Tokens ordered by serial, a page at a time (``nextCursor``)."""
    with request.app.state.db.read() as session:
        page = hardware_tokens.listing(
            session, assigned=assigned, serial_prefix=serialPrefix, limit=limit, cursor=cursor
        )
        return TokenPage(items=[token_out(t) for t in page.items], nextCursor=page.next_cursor)


@router.get("/hardware-tokens/{tokenId}", responses=ERRORS)
def get_token(
    request: Request, tokenId: TokenId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> TokenOut:
    with request.app.state.db.read() as session:
        return token_out(hardware_tokens.get(session, tokenId))


@router.post("/users/{userId}/hardware-token", status_code=201, responses=ERRORS)
def assign_token(
    request: Request,
    userId: UserId,
    body: AssignRequest,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> Assigned:
    """Assign the token with this serial. 409 when the user already has a token, the token is someone
    else's, or the user may not enroll (DEVICES_DISABLED, PROVISIONING_DISABLED)."""
    with request.app.state.db.write() as session:
        token, device = hardware_tokens.assign(
            session, userId, body.serial, actor=caller.actor, host=mail_host(request)
        )
        user = devices.load_user(session, userId)
        return Assigned(token=token_out(token), deviceId=device.id, userStatus=user.status)


@router.delete("/users/{userId}/hardware-token", responses=ERRORS)
def unassign_token(
    request: Request, userId: UserId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> Unassigned:
    """Take the user's token back: its device is deleted and the token is free again."""
    with request.app.state.db.write() as session:
        token = hardware_tokens.unassign(session, userId, actor=caller.actor, host=mail_host(request))
        user = devices.load_user(session, userId)
        return Unassigned(token=token_out(token), userStatus=user.status)


@router.post("/hardware-tokens/{tokenId}/resync", responses=ERRORS)
def resync_token(
    request: Request,
    tokenId: TokenId,
    body: ResyncRequest,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> TokenOut:
    """Resynchronise with two consecutive codes: HOTP looks 100 counter values ahead, TOTP ±20 time steps
    (the drift is stored). 409 when the codes match nowhere."""
    keys = seed_keys(request)
    with request.app.state.db.write() as session:
        token = token_codes.resync(session, tokenId, body.codes, keys=keys, actor=caller.actor)
        return token_out(token)

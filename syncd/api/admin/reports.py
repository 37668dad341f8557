"""Admin API: reports (seed 002 "Reporting"), scope ``read``.

* ``GET /reports/users?factor=&status=&lastAuthnStatus=`` — users by factor criteria, cursor paged;
* ``GET /reports/users/{userId}/enrollment`` — invites (generation, expiry, use; never the link token),
  registration status per factor, devices, per-factor lock and last authentication;
* ``GET /reports/status-counts`` — users by status;
* ``GET /reports/sync-runs?source=&limit=`` — sync run history with per-run counts.

A user's registered factors are ``GET /users/{userId}/factors`` (factors.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS
from syncd.domain.lifecycle import UserStatus
from syncd.errors import UsageError
from syncd.store import cursors_page
from syncd.store import reports as store

router = APIRouter(prefix="/reports", tags=["reports"])
RESPONSES: dict[int | str, dict[str, Any]] = {code: dict(spec) for code, spec in ERRORS.items()}

FactorName = Literal["TOTP", "HARDWARE_TOKEN", "BYPASS_CODE"]
FactorStatus = Literal["REGISTERED", "DISABLED", "PENDING", "UNREGISTERED"]
LastAuthStatus = Literal["SUCCESS", "FAILURE", "LOCKED", "DENIED"]
NO_NUL = r"^[^\x00]+$"
UserId = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL)]


class FactorUser(BaseModel):
    userId: str
    username: str
    status: UserStatus
    factorType: FactorName
    factorStatus: FactorStatus
    lastAuthnStatus: str | None
    lastAuthnAt: datetime | None
    locked: bool


class FactorUserPage(BaseModel):
    items: list[FactorUser]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")


class Invite(BaseModel):
    inviteId: str
    generation: int
    state: Literal["LIVE", "USED", "REVOKED", "EXPIRED"]
    createdAt: datetime
    expiresAt: datetime
    usedAt: datetime | None
    revokedAt: datetime | None
    remindersSent: int


class EnrollmentDevice(BaseModel):
    deviceId: str
    type: str
    state: str
    name: str | None
    createdAt: datetime
    lastUsedAt: datetime | None


class UserFactorState(BaseModel):
    factorType: str
    enabled: bool
    locked: bool
    failures: int
    lastAuthnStatus: str | None
    lastAuthnAt: datetime | None


class EnrollmentReport(BaseModel):
    userId: str
    username: str
    status: UserStatus
    invites: list[Invite]
    registrations: dict[str, FactorStatus] = Field(description="Registration status by factor type.")
    devices: list[EnrollmentDevice]
    factors: list[UserFactorState]


class StatusCounts(BaseModel):
    counts: dict[str, int] = Field(description="Users by status (every status, zeros included).")
    total: int


class RunCounts(BaseModel):
    created: int
    updated: int
    disabled: int
    reenabled: int
    unchanged: int
    errors: int


class SyncRunSummary(BaseModel):
    runId: str
    source: str
    mode: str
    dryRun: bool
    status: str
    reason: str | None
    startedAt: datetime
    finishedAt: datetime | None
    counts: RunCounts
    sourceUsers: int | None
    decidedBy: str | None


class SyncRunList(BaseModel):
    items: list[SyncRunSummary]


@router.get("/users", response_model=FactorUserPage, responses=RESPONSES)
def users_by_factor(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    factor: FactorName,
    status: FactorStatus | None = None,
    lastAuthnStatus: LastAuthStatus | None = None,
    userStatus: UserStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=cursors_page.MAX_CURSOR)] = None,
) -> FactorUserPage:
    """Users by factor criteria (seed 002): registration ``status`` of ``factor``, ``lastAuthnStatus``."""
    after = cursors_page.decode(cursor) if cursor else None
    if after is not None and any("\x00" in part for part in after):
        raise UsageError("cursor: not a cursor from this API")
    with request.app.state.db.read() as session:
        rows = store.users_by_factor(
            session,
            factor,
            status=status,
            last_auth_status=lastAuthnStatus,
            user_status=userStatus,
            limit=limit + 1,
            after=after,
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return FactorUserPage(
        items=[
            FactorUser(
                userId=r.user_id,
                username=r.username,
                status=UserStatus(r.status),
                factorType=factor,
                factorStatus=r.factor_status,
                lastAuthnStatus=r.last_auth_status,
                lastAuthnAt=r.last_auth_at,
                locked=r.locked,
            )
            for r in rows
        ],
        nextCursor=cursors_page.encode(rows[-1].username_key, rows[-1].user_id) if more and rows else None,
    )


@router.get("/users/{userId}/enrollment", response_model=EnrollmentReport, responses=RESPONSES)
def user_enrollment(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    userId: UserId,
) -> EnrollmentReport:
    """Factor enrollment information for a user (seed 002): invites, registrations, devices, lock state."""
    with request.app.state.db.read() as session:
        report = store.enrollment(session, userId)
        return EnrollmentReport(
            userId=report.user.id,
            username=report.user.username,
            status=UserStatus(report.user.status),
            invites=[
                Invite(
                    inviteId=i.invite_id,
                    generation=i.generation,
                    state=i.state,
                    createdAt=i.created_at,
                    expiresAt=i.expires_at,
                    usedAt=i.used_at,
                    revokedAt=i.revoked_at,
                    remindersSent=i.reminders_sent,
                )
                for i in report.invites
            ],
            registrations=report.registrations,
            devices=[
                EnrollmentDevice(
                    deviceId=d.id,
                    type=d.type.value,
                    state=d.state.value,
                    name=d.name,
                    createdAt=d.created_at,
                    lastUsedAt=d.last_used_at,
                )
                for d in report.devices
            ],
            factors=[
                UserFactorState(
                    factorType=f.factor_type,
                    enabled=f.enabled,
                    locked=f.locked_at is not None,
                    failures=f.failures,
                    lastAuthnStatus=f.last_auth_status,
                    lastAuthnAt=f.last_auth_at,
                )
                for f in report.factors
            ],
        )


@router.get("/status-counts", response_model=StatusCounts, responses=RESPONSES)
def status_counts(request: Request, caller: Annotated[Caller, Depends(require(Scope.READ))]) -> StatusCounts:
    """How many users are in each status."""
    with request.app.state.db.read() as session:
        counts = store.status_counts(session)
    return StatusCounts(counts=counts, total=sum(counts.values()))


@router.get("/sync-runs", response_model=SyncRunList, responses=RESPONSES)
def sync_runs(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    source: Annotated[str | None, Query(min_length=1, max_length=64, pattern=NO_NUL)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> SyncRunList:
    """Sync run history, newest first, with what each run changed."""
    with request.app.state.db.read() as session:
        rows = store.sync_runs(session, source, limit)
        return SyncRunList(
            items=[
                SyncRunSummary(
                    runId=r.id,
                    source=r.source,
                    mode=r.mode,
                    dryRun=r.dry_run,
                    status=r.status,
                    reason=r.reason,
                    startedAt=r.started_at,
                    finishedAt=r.finished_at,
                    counts=RunCounts(**store.run_counts(r)),
                    sourceUsers=r.source_users,
                    decidedBy=r.decided_by,
                )
                for r in rows
            ]
        )

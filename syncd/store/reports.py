"""Report queries (seed 002 "Reporting"): users by factor criteria, a user's enrollment, counts, sync runs.

A user's *registration status* for a factor (the ``status`` of ``/reports/users``):

* TOTP and HARDWARE_TOKEN: ``REGISTERED`` (an ACTIVE device of that type), ``DISABLED`` (devices, none
  ACTIVE, at least one DISABLED), ``PENDING`` (only a PENDING device: enrollment started), ``UNREGISTERED``
  (no device of that type);
* BYPASS_CODE: ``REGISTERED`` (a live code: not revoked, not expired, uses left), else ``UNREGISTERED``.

Each is one SQL expression, so a filter on it is a ``WHERE`` and the listing pages by keyset on
``(username_key, id)`` over 100,000 users without loading them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import runs, users
from syncd.store.tables import (
    BypassCode,
    Device,
    EnrollmentInvite,
    SyncRun,
    User,
    UserFactor,
    utcnow,
)

FACTORS = ("TOTP", "HARDWARE_TOKEN", "BYPASS_CODE")
REGISTERED, DISABLED, PENDING, UNREGISTERED = "REGISTERED", "DISABLED", "PENDING", "UNREGISTERED"
FACTOR_STATUSES = (REGISTERED, DISABLED, PENDING, UNREGISTERED)
LAST_AUTH_STATUSES = ("SUCCESS", "FAILURE", "LOCKED", "DENIED")


@dataclass(frozen=True, slots=True)
class FactorRow:
    user_id: str
    username: str
    username_key: str
    status: str
    factor_status: str
    last_auth_status: str | None
    last_auth_at: datetime | None
    locked: bool


def _has_device(factor: str, state: DeviceState) -> sa.ColumnElement[bool]:
    return sa.exists().where(Device.user_id == User.id, Device.type == factor, Device.state == state)


def _has_live_code(now: datetime) -> sa.ColumnElement[bool]:
    return sa.exists().where(
        BypassCode.user_id == User.id,
        BypassCode.revoked_at.is_(None),
        BypassCode.uses_left > 0,
        sa.or_(BypassCode.expires_at.is_(None), BypassCode.expires_at > now),
    )


def factor_status(factor: str, now: datetime) -> sa.ColumnElement[str]:
    """The registration status of ``factor`` for the row of ``users`` in the query, as SQL."""
    if factor == "BYPASS_CODE":
        return sa.case((_has_live_code(now), REGISTERED), else_=UNREGISTERED)
    device_type = DeviceType(factor)
    return sa.case(
        (_has_device(device_type, DeviceState.ACTIVE), REGISTERED),
        (_has_device(device_type, DeviceState.DISABLED), DISABLED),
        (_has_device(device_type, DeviceState.PENDING), PENDING),
        else_=UNREGISTERED,
    )


def _status_filter(factor: str, wanted: str, now: datetime) -> sa.ColumnElement[bool]:
    """``factor_status(...) == wanted`` written as EXISTS terms (the planner uses the device index)."""
    if factor == "BYPASS_CODE":
        live = _has_live_code(now)
        return live if wanted == REGISTERED else (~live if wanted == UNREGISTERED else sa.false())
    t = DeviceType(factor)
    active, disabled = _has_device(t, DeviceState.ACTIVE), _has_device(t, DeviceState.DISABLED)
    pending = _has_device(t, DeviceState.PENDING)
    if wanted == REGISTERED:
        return active
    if wanted == DISABLED:
        return sa.and_(~active, disabled)
    if wanted == PENDING:
        return sa.and_(~active, ~disabled, pending)
    return ~sa.exists().where(Device.user_id == User.id, Device.type == t)


def users_by_factor(
    session: Session,
    factor: str,
    *,
    status: str | None = None,
    last_auth_status: str | None = None,
    user_status: UserStatus | None = None,
    limit: int = 50,
    after: tuple[str, str] | None = None,
    now: datetime | None = None,
) -> list[FactorRow]:
    """Live users with their status for ``factor``, filtered, ordered by (username_key, id)."""
    now = now or utcnow()
    uf = sa.orm.aliased(UserFactor)
    query = (
        sa.select(
            User.id,
            User.username,
            User.username_key,
            User.status,
            factor_status(factor, now).label("factor_status"),
            uf.last_auth_status,
            uf.last_auth_at,
            uf.locked_at,
        )
        .outerjoin(uf, sa.and_(uf.user_id == User.id, uf.factor_type == factor))
        .where(User.deleted_at.is_(None))
        .order_by(User.username_key, User.id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(_status_filter(factor, status, now))
    if last_auth_status is not None:
        query = query.where(uf.last_auth_status == last_auth_status)
    if user_status is not None:
        query = query.where(User.status == user_status)
    if after is not None:
        key, last_id = after
        query = query.where(
            sa.or_(User.username_key > key, sa.and_(User.username_key == key, User.id > last_id))
        )
    return [
        FactorRow(
            user_id=row.id,
            username=row.username,
            username_key=row.username_key,
            status=UserStatus(row.status).value,
            factor_status=row.factor_status,
            last_auth_status=row.last_auth_status,
            last_auth_at=row.last_auth_at,
            locked=row.locked_at is not None,
        )
        for row in session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class InviteInfo:
    invite_id: str
    generation: int
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    reminders_sent: int
    state: str  # LIVE | USED | REVOKED | EXPIRED


@dataclass(frozen=True, slots=True)
class Enrollment:
    user: User
    invites: list[InviteInfo]
    registrations: dict[str, str]  # factor -> registration status
    devices: Sequence[Device]
    factors: Sequence[UserFactor]


def _invite_state(invite: EnrollmentInvite, now: datetime) -> str:
    if invite.used_at is not None:
        return "USED"
    if invite.revoked_at is not None:
        return "REVOKED"
    return "LIVE" if invite.expires_at > now else "EXPIRED"


def enrollment(session: Session, user_id: str, *, now: datetime | None = None) -> Enrollment:
    """Invites (never their tokens), registration status per factor, devices and per-factor state."""
    now = now or utcnow()
    user = users.find(session, user_id)
    invites = session.scalars(
        sa.select(EnrollmentInvite)
        .where(EnrollmentInvite.user_id == user.id)
        .order_by(EnrollmentInvite.generation, EnrollmentInvite.created_at)
    ).all()
    devices = session.scalars(
        sa.select(Device).where(Device.user_id == user.id).order_by(Device.created_at, Device.id)
    ).all()
    statuses = dict(
        session.execute(
            sa.select(*(factor_status(f, now).label(f) for f in FACTORS)).where(User.id == user.id)
        )
        .one()
        ._mapping
    )
    user_factors = session.scalars(
        sa.select(UserFactor).where(UserFactor.user_id == user.id).order_by(UserFactor.factor_type)
    ).all()
    return Enrollment(
        user=user,
        invites=[
            InviteInfo(
                invite_id=i.id,
                generation=i.generation,
                created_at=i.created_at,
                expires_at=i.expires_at,
                used_at=i.used_at,
                revoked_at=i.revoked_at,
                reminders_sent=i.reminders_sent,
                state=_invite_state(i, now),
            )
            for i in invites
        ],
        registrations={str(k): str(v) for k, v in statuses.items()},
        devices=devices,
        factors=user_factors,
    )


def status_counts(session: Session) -> dict[str, int]:
    """Users by status, every status present (zeros included), as ``/metrics`` counts them."""
    counts = users.counts_by_status(session)
    return {status.value: counts.get(status.value, 0) for status in UserStatus}


def sync_runs(session: Session, source: str | None, limit: int) -> Sequence[SyncRun]:
    return runs.recent(session, source, limit)


def run_counts(run: SyncRun) -> dict[str, Any]:
    return {
        "created": run.created,
        "updated": run.updated,
        "disabled": run.disabled,
        "reenabled": run.reenabled,
        "unchanged": run.unchanged,
        "errors": run.errors,
    }

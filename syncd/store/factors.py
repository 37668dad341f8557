"""Per-user, per-factor state: the consecutive-failure counter and the lock (reliability.md O4).

Counters live in the database, so every session, worker and replica shares them. Increments are single
``UPDATE … SET failures = failures + 1`` statements (no read-modify-write), and the lock is set by the same
statement that reaches the limit. A locked factor refuses even a correct code until an admin unlocks it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent, DeviceState, DeviceType
from syncd.store import audit
from syncd.store.db import rowcount
from syncd.store.tables import BypassCode, Device, HardwareToken, UserFactor, utcnow

TOTP = "TOTP"


def _ensure(session: Session, user_id: str, factor: str) -> None:
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(UserFactor)
        .values(user_id=user_id, factor_type=factor, enabled=True, failures=0)
        .on_conflict_do_nothing(index_elements=["user_id", "factor_type"])
    )


def _row(session: Session, user_id: str, factor: str) -> UserFactor | None:
    return session.scalar(
        sa.select(UserFactor)
        .where(UserFactor.user_id == user_id, UserFactor.factor_type == factor)
        .execution_options(populate_existing=True)
    )


def is_locked(session: Session, user_id: str, factor: str = TOTP) -> bool:
    row = _row(session, user_id, factor)
    return row is not None and row.locked_at is not None


def is_disabled(session: Session, user_id: str, factor: str = TOTP) -> bool:
    """An admin turned this factor off for the user."""
    row = _row(session, user_id, factor)
    return row is not None and not row.enabled


def record_failure(
    session: Session, user_id: str, *, max_failures: int, factor: str = TOTP, now: datetime | None = None
) -> bool:
    """Count one wrong code; True when the factor is (now) locked."""
    _ensure(session, user_id, factor)
    now = now or utcnow()
    session.execute(
        sa.update(UserFactor)
        .where(UserFactor.user_id == user_id, UserFactor.factor_type == factor)
        .values(
            failures=UserFactor.failures + 1,
            locked_at=sa.case(
                (sa.and_(UserFactor.locked_at.is_(None), UserFactor.failures + 1 >= max_failures), now),
                else_=UserFactor.locked_at,
            ),
            # The same words as verification writes (store/verification.py LastAuth), so reports find both.
            last_auth_status=sa.case(
                (
                    sa.or_(UserFactor.locked_at.is_not(None), UserFactor.failures + 1 >= max_failures),
                    "LOCKED",
                ),
                else_="FAILURE",
            ),
            last_auth_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    locked = is_locked(session, user_id, factor)
    if locked:
        row = _row(session, user_id, factor)
        if row is not None and row.locked_at == now:
            audit.record(
                session,
                AuditEvent("system", "factor.locked", "user", user_id, None, factor, "too many wrong codes"),
            )
    return locked


def record_success(
    session: Session, user_id: str, *, factor: str = TOTP, now: datetime | None = None
) -> None:
    """A code was accepted: the consecutive-failure counter starts again."""
    _ensure(session, user_id, factor)
    session.execute(
        sa.update(UserFactor)
        .where(UserFactor.user_id == user_id, UserFactor.factor_type == factor)
        .values(failures=0, last_auth_status="SUCCESS", last_auth_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )


# ---- verification hot path (docs/adr/0054, "Speed"): one statement per write, Core, no ORM objects ------
_USER_FACTORS = cast("sa.Table", UserFactor.__table__)


def _bp(name: str, type_: Any = None) -> Any:
    return sa.bindparam(f"p_{name}", type_=type_)


@functools.cache
def _upserts(dialect: str) -> tuple[Any, Any, Any]:
    """The upserts of the verification path for ``dialect`` (built once per dialect): the last
    authentication (keeping the counter; resetting it), and a counted failure returning ``locked_at``."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    t = _USER_FACTORS
    key = [t.c.user_id, t.c.factor_type]
    now = _bp("now", t.c.last_auth_at.type)
    row = {"user_id": _bp("user"), "factor_type": _bp("factor"), "enabled": True, "last_auth_at": now}
    last = insert(t).values(**row, failures=0, last_auth_status=_bp("status"))
    keep = last.on_conflict_do_update(
        index_elements=key, set_={"last_auth_status": _bp("status"), "last_auth_at": now}
    )
    reset = last.on_conflict_do_update(
        index_elements=key, set_={"last_auth_status": _bp("status"), "last_auth_at": now, "failures": 0}
    )
    after = t.c.failures + 1
    reaches = after >= _bp("max_failures", sa.Integer)
    count = (
        insert(t)
        .values(
            **row, failures=1, locked_at=_bp("locked_at", t.c.locked_at.type), last_auth_status=_bp("status")
        )
        .on_conflict_do_update(
            index_elements=key,
            set_={
                "failures": after,
                "locked_at": sa.case((sa.and_(t.c.locked_at.is_(None), reaches), now), else_=t.c.locked_at),
                "last_auth_status": sa.case(
                    (sa.or_(t.c.locked_at.is_not(None), reaches), "LOCKED"), else_="FAILURE"
                ),
                "last_auth_at": now,
            },
        )
        .returning(t.c.locked_at)
    )
    return keep, reset, count


def record_last(
    session: Session, user_id: str, factor: str, status: str, now: datetime, *, reset: bool = False
) -> None:
    """One upsert: ``last_auth_status`` / ``last_auth_at`` of the user's factor (the row is made if missing);
    with ``reset`` the consecutive-failure counter goes back to 0 in the same statement (a good code)."""
    keep, zero, _ = _upserts(session.get_bind().dialect.name)
    params = {"p_user": user_id, "p_factor": factor, "p_status": status, "p_now": now}
    session.connection().execute(zero if reset else keep, params)


def count_failure(session: Session, user_id: str, factor: str, *, max_failures: int, now: datetime) -> bool:
    """One upsert: count a wrong code, lock at ``max_failures``, write ``FAILURE`` or ``LOCKED`` as the
    last authentication; True when the factor is (now) locked. The statement that locks it is audited."""
    _, _, count = _upserts(session.get_bind().dialect.name)
    first_locks = max_failures <= 1
    params = {
        "p_user": user_id,
        "p_factor": factor,
        "p_status": "LOCKED" if first_locks else "FAILURE",
        "p_now": now,
        "p_locked_at": now if first_locks else None,
        "p_max_failures": max_failures,
    }
    locked_at = session.connection().execute(count, params).scalar_one()
    if locked_at is not None and locked_at == now:
        audit.record(
            session,
            AuditEvent("system", "factor.locked", "user", user_id, None, factor, "too many wrong codes"),
        )
    return locked_at is not None


def failures(session: Session, user_id: str, factor: str = TOTP) -> int:
    row = _row(session, user_id, factor)
    return row.failures if row is not None else 0


def unlock(session: Session, user_id: str, *, actor: str, factor: str = TOTP) -> bool:
    """Admin unlock of one factor: its counter to zero, its lock lifted (other factors untouched).
    True when it was locked; a counter without a lock is reset too (audited either way when it changed)."""
    row = _row(session, user_id, factor)
    if row is None or (row.locked_at is None and row.failures == 0):
        return False
    was_locked = row.locked_at is not None
    session.execute(
        sa.update(UserFactor)
        .where(UserFactor.user_id == user_id, UserFactor.factor_type == factor)
        .values(failures=0, locked_at=None)
        .execution_options(synchronize_session=False)
    )
    reason = "unlocked" if was_locked else f"failure counter reset (was {row.failures})"
    audit.record(session, AuditEvent(actor, "factor.unlocked", "user", user_id, factor, None, reason))
    return was_locked


# ---- admin: per-user enablement and the factor summary (issue 6, Part C; docs/adr/0053) -------------
def set_enabled(session: Session, user_id: str, *, enabled: bool, actor: str, factor: str = TOTP) -> bool:
    """An admin turns one factor on or off for one user (the counter and lock are kept). Audited when it
    changed; False when it already was so."""
    _ensure(session, user_id, factor)
    result = session.execute(
        sa.update(UserFactor)
        .where(UserFactor.user_id == user_id, UserFactor.factor_type == factor, UserFactor.enabled != enabled)
        .values(enabled=enabled)
        .execution_options(synchronize_session=False)
    )
    changed = bool(rowcount(result))
    if changed:
        action = "factor.enabled" if enabled else "factor.disabled"
        old, new = ("disabled", "enabled") if enabled else ("enabled", "disabled")
        audit.record(
            session, AuditEvent(actor, action, "user", user_id, old, new, f"{factor} {new} by admin")
        )
    return changed


@dataclass(frozen=True, slots=True)
class FactorState:
    """What an admin sees about one factor of one user."""

    factor_type: str
    enabled: bool
    registration: str  # REGISTERED | PENDING | NOT_REGISTERED
    failures: int
    locked: bool
    locked_at: datetime | None
    last_auth_status: str | None
    last_auth_at: datetime | None
    live_bypass_codes: int | None = None  # BYPASS_CODE only
    hardware_token_serial: str | None = None  # HARDWARE_TOKEN only


def states(session: Session, user_id: str, *, now: datetime | None = None) -> list[FactorState]:
    """TOTP, HARDWARE_TOKEN and BYPASS_CODE for ``user_id`` (in that order), whether or not a row exists.

    TOTP is REGISTERED with an ACTIVE TOTP device (PENDING with only a pending one); HARDWARE_TOKEN when a
    token is assigned; BYPASS_CODE while the user has live codes (not revoked, not expired, uses left)."""
    now = now or utcnow()
    rows = {
        r.factor_type: r
        for r in session.scalars(
            sa.select(UserFactor)
            .where(UserFactor.user_id == user_id)
            .execution_options(populate_existing=True)
        )
    }
    totp_states = set(
        session.scalars(
            sa.select(Device.state).where(Device.user_id == user_id, Device.type == DeviceType.TOTP)
        )
    )
    if DeviceState.ACTIVE in totp_states:
        totp = "REGISTERED"
    elif DeviceState.PENDING in totp_states:
        totp = "PENDING"
    else:
        totp = "NOT_REGISTERED"
    serial = session.scalar(sa.select(HardwareToken.serial).where(HardwareToken.user_id == user_id))
    live = int(
        session.scalar(
            sa.select(sa.func.count())
            .select_from(BypassCode)
            .where(
                BypassCode.user_id == user_id,
                BypassCode.revoked_at.is_(None),
                BypassCode.uses_left > 0,
                sa.or_(BypassCode.expires_at.is_(None), BypassCode.expires_at > now),
            )
        )
        or 0
    )
    registration = {
        "TOTP": totp,
        "HARDWARE_TOKEN": "REGISTERED" if serial is not None else "NOT_REGISTERED",
        "BYPASS_CODE": "REGISTERED" if live else "NOT_REGISTERED",
    }
    out = []
    for factor in ("TOTP", "HARDWARE_TOKEN", "BYPASS_CODE"):
        row = rows.get(factor)
        out.append(
            FactorState(
                factor_type=factor,
                enabled=row.enabled if row is not None else True,
                registration=registration[factor],
                failures=row.failures if row is not None else 0,
                locked=row is not None and row.locked_at is not None,
                locked_at=row.locked_at if row is not None else None,
                last_auth_status=row.last_auth_status if row is not None else None,
                last_auth_at=row.last_auth_at if row is not None else None,
                live_bypass_codes=live if factor == "BYPASS_CODE" else None,
                hardware_token_serial=serial if factor == "HARDWARE_TOKEN" else None,
            )
        )
    return out

"""Per-user, per-factor state: the consecutive-failure counter and the lock (reliability.md O4).

Counters live in the database, so every session, worker and replica shares them. Increments are single
``UPDATE … SET failures = failures + 1`` statements (no read-modify-write), and the lock is set by the same
statement that reaches the limit. A locked factor refuses even a correct code until an admin unlocks it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.store import audit
from syncd.store.db import rowcount
from syncd.store.tables import UserFactor, utcnow

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
            last_auth_status="FAILED",
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


def failures(session: Session, user_id: str, factor: str = TOTP) -> int:
    row = _row(session, user_id, factor)
    return row.failures if row is not None else 0


def unlock(session: Session, user_id: str, *, actor: str, factor: str = TOTP) -> bool:
    """Admin unlock: counter to zero, lock lifted. False when it was not locked."""
    result = session.execute(
        sa.update(UserFactor)
        .where(
            UserFactor.user_id == user_id, UserFactor.factor_type == factor, UserFactor.locked_at.is_not(None)
        )
        .values(failures=0, locked_at=None)
        .execution_options(synchronize_session=False)
    )
    if rowcount(result):
        audit.record(session, AuditEvent(actor, "factor.unlocked", "user", user_id, factor, None, "unlocked"))
    return bool(rowcount(result))

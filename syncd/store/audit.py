"""The audit log: one row per change, written in the same unit of work as the change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.store.bulk import insert_rows
from syncd.store.prepared import DriverWork
from syncd.store.tables import AuditRecord, utcnow


def record(session: Session, event: AuditEvent, details: dict[str, Any] | None = None) -> None:
    """Add one audit row (never a secret: callers pass ids, statuses and reasons only)."""
    session.add(
        AuditRecord(
            actor=event.actor,
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            old=event.old,
            new=event.new,
            reason=event.reason,
            run_id=event.run_id,
            details=details,
        )
    )


INSERT = sa.insert(AuditRecord.__table__).values(  # type: ignore[arg-type]
    {name: sa.bindparam(name) for name in ("at", "actor", "action", "target_type", "target_id", "old", "new")}
    | {name: sa.bindparam(name) for name in ("reason", "run_id")}
)


def record_row(work: DriverWork, event: AuditEvent, at: datetime) -> None:
    """:func:`record` for units of work of prepared statements (the hot SCIM writes)."""
    work.run(
        INSERT,
        {
            "at": at,
            "actor": event.actor,
            "action": event.action,
            "target_type": event.target_type,
            "target_id": event.target_id,
            "old": event.old,
            "new": event.new,
            "reason": event.reason,
            "run_id": event.run_id,
        },
    )


def for_target(session: Session, target_type: str, target_id: str) -> Sequence[AuditRecord]:
    """A target's audit rows, oldest first."""
    query = (
        sa.select(AuditRecord)
        .where(AuditRecord.target_type == target_type, AuditRecord.target_id == target_id)
        .order_by(AuditRecord.id)
    )
    return session.scalars(query).all()


def record_many(session: Session, events: Sequence[AuditEvent]) -> None:
    """Add many audit rows in one executemany (bulk runs: thousands of creations at once)."""
    if not events:
        return
    now = utcnow()
    insert_rows(
        session,
        AuditRecord.__table__,  # type: ignore[arg-type]
        [
            {
                "at": now,
                "actor": e.actor,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "old": e.old,
                "new": e.new,
                "reason": e.reason,
                "run_id": e.run_id,
                "details": None,
            }
            for e in events
        ],
    )

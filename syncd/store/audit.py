"""The audit log: one row per change, written in the same unit of work as the change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.store.tables import AuditRecord


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


def for_target(session: Session, target_type: str, target_id: str) -> Sequence[AuditRecord]:
    """A target's audit rows, oldest first."""
    query = (
        sa.select(AuditRecord)
        .where(AuditRecord.target_type == target_type, AuditRecord.target_id == target_id)
        .order_by(AuditRecord.id)
    )
    return session.scalars(query).all()


def record_many(session: Session, events: Sequence[AuditEvent]) -> None:
    """Add many audit rows (bulk jobs such as the retention purge)."""
    for event in events:
        record(session, event)

"""Reading the audit log: filtered pages newest first, keyset on the row id (the admin API's audit routes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.store.tables import AuditRecord


@dataclass(frozen=True, slots=True)
class Filters:
    """Every field optional; ``since`` inclusive, ``until`` exclusive."""

    actor: str | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def page(session: Session, filters: Filters, *, before_id: int | None, limit: int) -> Sequence[AuditRecord]:
    """Up to ``limit`` rows matching ``filters`` with an id below ``before_id``, newest (highest id) first."""
    query = sa.select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
    conditions = [
        column == value
        for column, value in (
            (AuditRecord.actor, filters.actor),
            (AuditRecord.action, filters.action),
            (AuditRecord.target_type, filters.target_type),
            (AuditRecord.target_id, filters.target_id),
        )
        if value is not None
    ]
    if filters.since is not None:
        conditions.append(AuditRecord.at >= filters.since)
    if filters.until is not None:
        conditions.append(AuditRecord.at < filters.until)
    if before_id is not None:
        conditions.append(AuditRecord.id < before_id)
    return session.scalars(query.where(*conditions)).all()

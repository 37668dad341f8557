"""Org factors (seed 002): which factors the org offers, with their settings and status (docs/adr/0053).

A factor with no row counts as ACTIVE (TOTP, HARDWARE_TOKEN, BYPASS_CODE), so an org that never
configured factors works; "disabling" a factor therefore keeps its row with status INACTIVE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.domain.policy import FACTOR_TYPES
from syncd.errors import ConflictError, DomainError, NotFoundError
from syncd.store import audit, policies
from syncd.store.tables import OrgFactor

ACTIVE, INACTIVE = "ACTIVE", "INACTIVE"


def is_active(session: Session, factor_type: str) -> bool:
    """True when the org offers ``factor_type``: its row is ACTIVE, or it has no row and is a built-in
    factor (TOTP, HARDWARE_TOKEN, BYPASS_CODE)."""
    status = session.scalar(sa.select(OrgFactor.status).where(OrgFactor.factor_type == factor_type))
    return status_is_active(status, factor_type)


def status_is_active(status: str | None, factor_type: str) -> bool:
    """:func:`is_active` for a status read elsewhere (``None``: the factor has no row)."""
    if status is None:
        return factor_type in FACTOR_TYPES
    return status == ACTIVE


def listing(session: Session) -> Sequence[OrgFactor]:
    return session.scalars(sa.select(OrgFactor).order_by(OrgFactor.factor_type)).all()


def get(session: Session, factor_id: str) -> OrgFactor:
    row = session.get(OrgFactor, factor_id)
    if row is None:
        raise NotFoundError(f"no org factor {factor_id!r}")
    return row


def by_type(session: Session, factor_type: str) -> OrgFactor | None:
    return session.scalar(sa.select(OrgFactor).where(OrgFactor.factor_type == factor_type))


def create(
    session: Session, factor_type: str, provider: str, settings: dict[str, Any], *, active: bool, actor: str
) -> OrgFactor:
    """Configure a factor for the org; ConflictError (naming the existing id) when it is configured."""
    existing = by_type(session, factor_type)
    if existing is not None:
        raise ConflictError(
            f"factor {factor_type} is already configured as {existing.id}; "
            f"change it with PUT /api/v1/factors/{existing.id}"
        )
    row = OrgFactor(
        factor_type=factor_type, provider=provider, settings=settings, status=ACTIVE if active else INACTIVE
    )
    session.add(row)
    session.flush()
    audit.record(session, AuditEvent(actor, "org_factor.created", "org_factor", row.id, None, row.status))
    return row


def update(
    session: Session, row: OrgFactor, settings: dict[str, Any] | None, *, activate: bool, actor: str
) -> None:
    if settings is not None:
        row.settings = settings
    old = row.status
    if activate:
        row.status = ACTIVE
    audit.record(
        session,
        AuditEvent(
            actor, "org_factor.updated", "org_factor", row.id, old, row.status, "configuration changed"
        ),
    )


def set_status(session: Session, row: OrgFactor, status: str, *, actor: str, reason: str) -> bool:
    """Activate or deactivate; deactivating a factor that a policy requires is refused (DomainError naming
    the policies). False when the status did not change."""
    if status == INACTIVE:
        needing = policies.requiring(session, row.factor_type)
        if needing:
            names = ", ".join(f"{p.name!r} ({p.id}) rule(s) {', '.join(map(str, idx))}" for p, idx in needing)
            raise DomainError(f"factor {row.factor_type} is required by policies: {names}")
    if row.status == status:
        return False
    old, row.status = row.status, status
    action = "org_factor.activated" if status == ACTIVE else "org_factor.deactivated"
    audit.record(session, AuditEvent(actor, action, "org_factor", row.id, old, status, reason))
    return True

"""Policy assignments to users and groups (one ``policy_assignments`` row each), for the admin API."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.errors import NotFoundError
from syncd.store import audit
from syncd.store.db import rowcount
from syncd.store.tables import Policy, PolicyAssignment


def policy(session: Session, policy_id: str) -> Policy:
    found = session.get(Policy, policy_id)
    if found is None:
        raise NotFoundError(f"no policy {policy_id!r}")
    return found


def _target(kind: str, target_id: str) -> sa.ColumnElement[bool]:
    column = PolicyAssignment.user_id if kind == "user" else PolicyAssignment.group_id
    return column == target_id


def of(session: Session, kind: str, target_id: str) -> list[Policy]:
    """Policies assigned directly to a user or a group (``kind`` "user" or "group"), by priority."""
    query = (
        sa.select(Policy)
        .join(PolicyAssignment, PolicyAssignment.policy_id == Policy.id)
        .where(_target(kind, target_id))
        .order_by(Policy.priority, Policy.name)
    )
    return list(session.scalars(query))


def assign(session: Session, policy_id: str, kind: str, target_id: str, *, actor: str) -> bool:
    """Assign; False when it was assigned already (idempotent)."""
    found = policy(session, policy_id)
    existing = session.scalar(
        sa.select(PolicyAssignment.id).where(PolicyAssignment.policy_id == found.id, _target(kind, target_id))
    )
    if existing is not None:
        return False
    row = PolicyAssignment(policy_id=found.id, **{f"{kind}_id": target_id})
    session.add(row)
    audit.record(
        session, AuditEvent(actor, "policy.assigned", kind, target_id, None, found.id, "assigned by an admin")
    )
    return True


def unassign(session: Session, policy_id: str, kind: str, target_id: str, *, actor: str) -> None:
    """Remove an assignment (NotFoundError for an unknown policy or one not assigned)."""
    found = policy(session, policy_id)
    result = session.execute(
        sa.delete(PolicyAssignment).where(PolicyAssignment.policy_id == found.id, _target(kind, target_id))
    )
    if not rowcount(result):
        raise NotFoundError(f"policy {found.name!r} is not assigned to this {kind}")
    audit.record(
        session,
        AuditEvent(actor, "policy.unassigned", kind, target_id, found.id, None, "unassigned by an admin"),
    )

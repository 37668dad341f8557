"""Policies and their assignments: queries, and :func:`decide` for the verification route (docs/adr/0053).

Rules are stored as JSON in ``policies.rules`` (the API's camelCase form) and turned into
:class:`syncd.domain.policy.Policy` objects here; evaluation itself is pure (:mod:`syncd.domain.policy`).
A user's policies are those assigned to the user directly or to any group the user is in effectively
(direct membership, or membership of a group nested, at any depth, in the assigned group).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import policy as rules
from syncd.domain.lifecycle import AuditEvent
from syncd.errors import NotFoundError
from syncd.store import audit
from syncd.store.db import flush_unique, rowcount
from syncd.store.tables import Group, GroupMember, GroupNesting, Policy, PolicyAssignment, User


@dataclass(frozen=True, slots=True)
class Applied:
    """A policy that applies to a user, and how: ``direct``, or through the listed assigned groups."""

    policy: Policy
    direct: bool
    via_groups: tuple[str, ...]


def to_domain(row: Policy) -> rules.Policy:
    return rules.policy_from_json(row.id, row.name, row.priority, row.rules or [])


def _effective_groups(user_id: str) -> sa.CTE:
    """Live groups the user is in directly, and (recursively) every live group those are nested in.
    ``UNION`` (not ``UNION ALL``) stops at groups already found, so nesting cycles end."""
    direct = (
        sa.select(GroupMember.group_id.label("id"))
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id == user_id, Group.deleted_at.is_(None))
        .cte("effective_groups", recursive=True)
    )
    parents = (
        sa.select(GroupNesting.parent_id)
        .join(direct, GroupNesting.child_id == direct.c.id)
        .join(Group, Group.id == GroupNesting.parent_id)
        .where(Group.deleted_at.is_(None))
    )
    return direct.union(parents)


def effective_group_ids(session: Session, user_id: str) -> set[str]:
    """Live groups the user is in directly, plus every group those are nested in (cycles are harmless);
    one recursive statement."""
    groups = _effective_groups(user_id)
    return set(session.scalars(sa.select(groups.c.id)))


def applicable(session: Session, user_id: str, group_ids: Iterable[str]) -> list[Applied]:
    """Policies assigned to the user or to any of ``group_ids`` (the user's effective groups)."""
    groups = sorted(set(group_ids))
    target = PolicyAssignment.user_id == user_id
    if groups:
        target = sa.or_(target, PolicyAssignment.group_id.in_(groups))
    rows = session.execute(
        sa.select(PolicyAssignment.policy_id, PolicyAssignment.user_id, PolicyAssignment.group_id).where(
            target
        )
    ).all()
    direct: set[str] = set()
    via: dict[str, set[str]] = {}
    for policy_id, assigned_user, assigned_group in rows:
        if assigned_user is not None:
            direct.add(policy_id)
        elif assigned_group is not None:
            via.setdefault(policy_id, set()).add(assigned_group)
    ids = sorted(direct | set(via))
    if not ids:
        return []
    policies = session.scalars(sa.select(Policy).where(Policy.id.in_(ids))).all()
    return [Applied(p, p.id in direct, tuple(sorted(via.get(p.id, ())))) for p in policies]


def request_for(
    session: Session, user: User, application: str, factor: str | None, client_ip: str | None
) -> tuple[rules.AccessRequest, list[Applied]]:
    groups = effective_group_ids(session, user.id)
    request = rules.AccessRequest(
        user_id=user.id,
        user_status=user.status.value,
        group_ids=frozenset(groups),
        application=application,
        factor=factor,
        client_ip=client_ip,
    )
    return request, applicable(session, user.id, groups)


def decide(
    session: Session, user_id: str, application: str, factor: str | None, client_ip: str | None
) -> rules.Decision:
    """The policy decision for ``user_id`` using ``factor`` from ``client_ip`` on ``application``.

    Raises NotFoundError for an unknown user id."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user {user_id!r}")
    return decide_for(session, user.id, user.status.value, application, factor, client_ip)


def decide_for(
    session: Session,
    user_id: str,
    user_status: str,
    application: str,
    factor: str | None,
    client_ip: str | None,
) -> rules.Decision:
    """:func:`decide` for a user already read (the verification path): two statements, no ORM objects —
    the effective groups (one recursive query) and the policies assigned to the user or to those groups."""
    groups = effective_group_ids(session, user_id)
    target = PolicyAssignment.user_id == user_id
    if groups:
        target = sa.or_(target, PolicyAssignment.group_id.in_(sorted(groups)))
    rows = session.execute(
        sa.select(Policy.id, Policy.name, Policy.priority, Policy.rules).where(
            Policy.id.in_(sa.select(PolicyAssignment.policy_id).where(target))
        )
    ).all()
    request = rules.AccessRequest(
        user_id=user_id,
        user_status=user_status,
        group_ids=frozenset(groups),
        application=application,
        factor=factor,
        client_ip=client_ip,
    )
    found = [rules.policy_from_json(r.id, r.name, r.priority, r.rules or []) for r in rows]
    return rules.evaluate(found, request)


# ---- CRUD helpers ----------------------------------------------------------------------------------
def get(session: Session, policy_id: str) -> Policy:
    row = session.get(Policy, policy_id)
    if row is None:
        raise NotFoundError(f"no policy {policy_id!r}")
    return row


def save(session: Session, row: Policy) -> None:
    """Write ``row`` now; a name another request took since the caller checked it is a ConflictError."""
    flush_unique(session, f"a policy named {row.name!r} exists", row)


def by_name(session: Session, name: str) -> Policy | None:
    return session.scalar(sa.select(Policy).where(Policy.name == name))


def listing(session: Session) -> Sequence[Policy]:
    return session.scalars(sa.select(Policy).order_by(Policy.priority, Policy.name, Policy.id)).all()


def assignments(session: Session, policy_id: str) -> Sequence[PolicyAssignment]:
    query = (
        sa.select(PolicyAssignment)
        .where(PolicyAssignment.policy_id == policy_id)
        .order_by(PolicyAssignment.user_id, PolicyAssignment.group_id)
    )
    return session.scalars(query).all()


def delete(session: Session, row: Policy, *, actor: str) -> int:
    """Delete a policy and its assignments (explicitly: SQLite does not enforce foreign keys everywhere);
    audited with the number of assignments removed. Returns that number."""
    removed = session.execute(sa.delete(PolicyAssignment).where(PolicyAssignment.policy_id == row.id))
    count = rowcount(removed)
    audit.record(
        session,
        AuditEvent(
            actor, "policy.deleted", "policy", row.id, row.name, None, f"{count} assignment(s) removed"
        ),
        {"assignmentsRemoved": count},
    )
    session.delete(row)
    return count


def requiring(session: Session, factor_type: str) -> list[tuple[Policy, list[int]]]:
    """Policies with rules that require ``factor_type`` (see :func:`syncd.domain.policy.requires_factor`)."""
    found = []
    for row in listing(session):
        indexes = rules.requires_factor(to_domain(row), factor_type)
        if indexes:
            found.append((row, indexes))
    return found

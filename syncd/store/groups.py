"""Groups, direct memberships and nesting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from syncd.store.tables import Group, GroupMember, GroupNesting, SourceLink


@dataclass(frozen=True, slots=True)
class LinkedGroupRow:
    """One group linked to a source, with its members as that source's anchors."""

    anchor: str
    group_id: str
    name: str
    description: str | None
    in_scope: bool
    member_users: frozenset[str]
    member_groups: frozenset[str]


def linked(session: Session, source: str) -> list[LinkedGroupRow]:
    """Every group linked to ``source`` with the memberships that source manages (three queries)."""
    query = (
        sa.select(SourceLink.anchor, SourceLink.in_scope, Group.id, Group.name, Group.description)
        .join(Group, Group.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "group")
    )
    groups = session.execute(query).all()
    users: dict[str, set[str]] = {}
    user_link = aliased(SourceLink)
    member_query = (
        sa.select(GroupMember.group_id, user_link.anchor)
        .join(
            user_link,
            sa.and_(
                user_link.object_id == GroupMember.user_id,
                user_link.object_type == "user",
                user_link.source == source,
            ),
        )
        .where(GroupMember.managed_by == source)
    )
    for group_id, anchor in session.execute(member_query):
        users.setdefault(group_id, set()).add(anchor)
    nested: dict[str, set[str]] = {}
    child_link = aliased(SourceLink)
    nest_query = (
        sa.select(GroupNesting.parent_id, child_link.anchor)
        .join(
            child_link,
            sa.and_(
                child_link.object_id == GroupNesting.child_id,
                child_link.object_type == "group",
                child_link.source == source,
            ),
        )
        .where(GroupNesting.managed_by == source)
    )
    for parent_id, anchor in session.execute(nest_query):
        nested.setdefault(parent_id, set()).add(anchor)
    return [
        LinkedGroupRow(
            g.anchor,
            g.id,
            g.name,
            g.description,
            g.in_scope,
            frozenset(users.get(g.id, ())),
            frozenset(nested.get(g.id, ())),
        )
        for g in groups
    ]


def add_members(
    session: Session,
    group_id: str,
    user_ids: Iterable[str],
    managed_by: str | None,
    displays: Mapping[str, str] | None = None,
) -> set[str]:
    """Add direct members; a membership that already exists (e.g. added by an admin) is left as it is.

    ``displays`` (SCIM ``members.display``) is stored with new memberships. Returns the ids that were
    already members.
    """
    ids = set(user_ids)
    existing: set[str] = set()
    if ids:
        query = sa.select(GroupMember.user_id).where(
            GroupMember.group_id == group_id, GroupMember.user_id.in_(ids)
        )
        existing = set(session.scalars(query))
    shown = displays or {}
    session.add_all(
        GroupMember(group_id=group_id, user_id=uid, managed_by=managed_by, display=shown.get(uid))
        for uid in sorted(ids - existing)
    )
    return existing


def remove_members(session: Session, group_id: str, user_ids: Iterable[str]) -> None:
    ids = list(user_ids)
    if ids:
        session.execute(
            sa.delete(GroupMember).where(GroupMember.group_id == group_id, GroupMember.user_id.in_(ids))
        )


def add_children(
    session: Session,
    parent_id: str,
    child_ids: Iterable[str],
    managed_by: str | None,
    displays: Mapping[str, str] | None = None,
) -> set[str]:
    """Nest groups in ``parent``; existing nestings are left as they are (their ids are returned)."""
    ids = set(child_ids)
    existing: set[str] = set()
    if ids:
        query = sa.select(GroupNesting.child_id).where(
            GroupNesting.parent_id == parent_id, GroupNesting.child_id.in_(ids)
        )
        existing = set(session.scalars(query))
    shown = displays or {}
    session.add_all(
        GroupNesting(parent_id=parent_id, child_id=cid, managed_by=managed_by, display=shown.get(cid))
        for cid in sorted(ids - existing)
    )
    return existing


def remove_children(session: Session, parent_id: str, child_ids: Iterable[str]) -> None:
    ids = list(child_ids)
    if ids:
        session.execute(
            sa.delete(GroupNesting).where(GroupNesting.parent_id == parent_id, GroupNesting.child_id.in_(ids))
        )


def effective_member_ids(session: Session, group_id: str) -> set[str]:
    """User ids in the group directly or through nested groups (cycles are harmless)."""
    seen_groups: set[str] = set()
    frontier = {group_id}
    while frontier:
        seen_groups |= frontier
        children = session.scalars(
            sa.select(GroupNesting.child_id).where(GroupNesting.parent_id.in_(frontier))
        )
        frontier = set(children) - seen_groups
    query = sa.select(GroupMember.user_id).where(GroupMember.group_id.in_(seen_groups))
    return set(session.scalars(query))


def names_of_user(session: Session, user_id: str) -> list[str]:
    """Names of the groups a user is directly in."""
    query = (
        sa.select(Group.name)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user_id, Group.deleted_at.is_(None))
        .order_by(Group.name)
    )
    return list(session.scalars(query))


def count(session: Session) -> int:
    return (
        session.scalar(sa.select(sa.func.count()).select_from(Group).where(Group.deleted_at.is_(None))) or 0
    )

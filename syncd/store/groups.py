"""Groups, direct memberships and nesting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, aliased

from syncd.store.bulk import foreign_keys_checked_at_end, insert_rows
from syncd.store.tables import Group, GroupMember, GroupNesting, SourceLink, utcnow


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


def linked(session: Session, source: str, anchors: Iterable[str] | None = None) -> list[LinkedGroupRow]:
    """Every group linked to ``source`` (or only those of ``anchors``) with the memberships that source
    manages (three queries)."""
    query = (
        sa.select(SourceLink.anchor, SourceLink.in_scope, Group.id, Group.name, Group.description)
        .join(Group, Group.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "group")
    )
    if anchors is not None:
        wanted = sorted(set(anchors))
        if not wanted:
            return []
        query = query.where(SourceLink.anchor.in_(wanted))
    groups = session.execute(query).all()
    only = [g.id for g in groups] if anchors is not None else None
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
    if only is not None:
        member_query = member_query.where(GroupMember.group_id.in_(only))
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
    if only is not None:
        nest_query = nest_query.where(GroupNesting.parent_id.in_(only))
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


def count_memberships(session: Session, source: str) -> int:
    """Direct memberships and nestings managed by ``source`` (the guard's population for removals)."""
    members = session.scalar(
        sa.select(sa.func.count()).select_from(GroupMember).where(GroupMember.managed_by == source)
    )
    nests = session.scalar(
        sa.select(sa.func.count()).select_from(GroupNesting).where(GroupNesting.managed_by == source)
    )
    return int(members or 0) + int(nests or 0)


def insert_members(
    session: Session, rows: Iterable[tuple[str, str]], managed_by: str | None, *, expected: int = 0
) -> None:
    """Insert (group id, user id) memberships known not to exist yet, in bulk (rows may be a generator).

    ``expected`` (about how many rows there are) lets a large load check its foreign keys once, at the
    end (:func:`~syncd.store.bulk.foreign_keys_checked_at_end`)."""
    with foreign_keys_checked_at_end(session, GroupMember.__tablename__, expected):
        insert_rows(
            session,
            GroupMember.__table__,  # type: ignore[arg-type]
            ({"group_id": g, "user_id": u, "managed_by": managed_by} for g, u in rows),
        )


_STAGED = sa.Table(
    "syncd_staged_members",
    sa.MetaData(),
    sa.Column("group_id", sa.String(32), nullable=False),
    sa.Column("anchor", sa.String(255), nullable=False),
    prefixes=["TEMPORARY"],
)


def stage_members(session: Session, rows: Iterable[tuple[str, str]]) -> None:
    """Load (group id, user anchor) pairs of new groups into a temporary table, in bulk (rows may be a
    generator); :func:`insert_staged_members` turns them into memberships and drops the table. Created
    in the caller's transaction: a rollback drops it too."""
    _STAGED.create(session.connection())
    insert_rows(session, _STAGED, ({"group_id": g, "anchor": a} for g, a in rows))


def _staged_links(source: str) -> sa.Join:
    return _STAGED.outerjoin(
        SourceLink,
        sa.and_(
            SourceLink.source == source,
            SourceLink.object_type == "user",
            SourceLink.anchor == _STAGED.c.anchor,
        ),
    )


def unlinked_staged(session: Session, source: str) -> dict[str, set[str]]:
    """Group id → the staged member anchors that no user of ``source`` is linked to."""
    query = (
        sa.select(_STAGED.c.group_id, _STAGED.c.anchor)
        .select_from(_staged_links(source))
        .where(SourceLink.anchor.is_(None))
    )
    out: dict[str, set[str]] = {}
    for group_id, anchor in session.execute(query):
        out.setdefault(group_id, set()).add(anchor)
    return out


def insert_staged_members(session: Session, source: str, *, expected: int) -> None:
    """Insert the staged pairs whose anchor ``source`` links to a user as memberships managed by
    ``source`` (one ``INSERT … SELECT``), then drop the staging table. ``expected``: about how many."""
    linked = (
        sa.select(_STAGED.c.group_id, SourceLink.object_id, sa.literal(source, sa.String(64)))
        .select_from(_staged_links(source))
        .where(SourceLink.object_id.is_not(None))
        .distinct()
    )
    with foreign_keys_checked_at_end(session, GroupMember.__tablename__, expected):
        session.execute(sa.insert(GroupMember).from_select(["group_id", "user_id", "managed_by"], linked))
    _STAGED.drop(session.connection())


def insert_children(session: Session, rows: Iterable[tuple[str, str]], managed_by: str | None) -> None:
    """Insert (parent id, child id) nestings known not to exist yet, in bulk (rows may be a generator)."""
    insert_rows(
        session,
        GroupNesting.__table__,  # type: ignore[arg-type]
        ({"parent_id": p, "child_id": c, "managed_by": managed_by} for p, c in rows),
    )


def remove_memberships_of(session: Session, user_ids: Sequence[str], managed_by: str) -> None:
    """Drop the memberships ``managed_by`` manages for these users (they left that source's scope)."""
    for i in range(0, len(user_ids), 500):
        session.execute(
            sa.delete(GroupMember).where(
                GroupMember.user_id.in_(user_ids[i : i + 500]), GroupMember.managed_by == managed_by
            )
        )


def live_names(session: Session, keys: Iterable[str]) -> dict[str, str]:
    """Name key → id of the live groups that have these (casefolded) names."""
    out: dict[str, str] = {}
    wanted = sorted(set(keys))
    for i in range(0, len(wanted), 500):
        query = sa.select(Group.name_key, Group.id).where(
            Group.name_key.in_(wanted[i : i + 500]), Group.deleted_at.is_(None)
        )
        out.update({key: gid for key, gid in session.execute(query)})
    return out


def insert_many(session: Session, rows: Sequence[dict[str, Any]], *, managed_by: str | None) -> None:
    """Insert groups (rows: id, name, description) in one executemany."""
    if rows:
        now = utcnow()
        insert_rows(
            session,
            Group.__table__,  # type: ignore[arg-type]
            [
                {
                    **row,
                    "name_key": row["name"].casefold(),
                    "managed_by": managed_by,
                    "deleted_at": None,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
            ],
        )

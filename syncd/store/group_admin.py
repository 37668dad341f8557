"""Groups as the admin API lists and changes them (docs/adr/0051-admin-users-and-groups.md).

Only manual groups (``managed_by`` NULL) are created, renamed, deleted or given members here; a group a
source manages is read-only (:class:`ConflictError` naming the source). Nesting is followed with a visited
set, so cycles in the data end the walk instead of looping.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.errors import ConflictError, NotFoundError
from syncd.store import audit, groups
from syncd.store.db import flush_unique
from syncd.store.tables import Group, GroupMember, GroupNesting, PolicyAssignment, User, utcnow


def get(session: Session, group_id: str) -> Group:
    group = session.get(Group, group_id)
    if group is None or group.deleted_at is not None:
        raise NotFoundError(f"no group {group_id!r}")
    return group


def _walk(session: Session, start: Iterable[str], *, down: bool) -> set[str]:
    """``start`` and every live group reachable through nesting (children when ``down``, else parents)."""
    seen: set[str] = set()
    frontier = set(start)
    near, far = (
        (GroupNesting.parent_id, GroupNesting.child_id)
        if down
        else (GroupNesting.child_id, GroupNesting.parent_id)
    )
    while frontier:
        seen |= frontier
        query = (
            sa.select(far)
            .join(Group, Group.id == far)
            .where(near.in_(sorted(frontier)), Group.deleted_at.is_(None))
        )
        frontier = set(session.scalars(query)) - seen
    return seen


def descendants(session: Session, group_id: str) -> frozenset[str]:
    """The group and every group nested in it, at any depth (the groups whose members are effective)."""
    return frozenset(_walk(session, [group_id], down=True))


def ancestors_of_user(session: Session, user_id: str) -> tuple[set[str], set[str]]:
    """(direct group ids, effective group ids) of a user: effective adds every group that contains one
    of the direct groups through nesting."""
    direct = set(
        session.scalars(
            sa.select(GroupMember.group_id)
            .join(Group, Group.id == GroupMember.group_id)
            .where(GroupMember.user_id == user_id, Group.deleted_at.is_(None))
        )
    )
    return direct, _walk(session, direct, down=False)


def by_ids(session: Session, ids: Iterable[str]) -> list[Group]:
    wanted = sorted(set(ids))
    if not wanted:
        return []
    return list(
        session.scalars(sa.select(Group).where(Group.id.in_(wanted)).order_by(Group.name_key, Group.id))
    )


def page(
    session: Session, *, limit: int, after: tuple[str, str] | None, source: str | None = None
) -> tuple[list[Group], tuple[str, str] | None]:
    """One page of live groups in ``(name_key, id)`` order."""
    query = (
        sa.select(Group).where(Group.deleted_at.is_(None)).order_by(Group.name_key, Group.id).limit(limit + 1)
    )
    if source is not None:
        query = query.where(Group.managed_by == source)
    if after is not None:
        key, last_id = after
        query = query.where(Group.name_key >= key, sa.or_(Group.name_key > key, Group.id > last_id))
    rows = list(session.scalars(query))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, (rows[-1].name_key, rows[-1].id)
    return rows, None


def member_count(session: Session, group_id: str) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(GroupMember)
        .join(User, User.id == GroupMember.user_id)
        .where(GroupMember.group_id == group_id, User.deleted_at.is_(None))
    )
    return int(session.scalar(query) or 0)


def require_manual(group: Group, what: str = "its members") -> None:
    if group.managed_by is not None:
        raise ConflictError(
            f"group {group.name} is managed by source '{group.managed_by}'; change {what} in the directory"
        )


def _check_name_free(session: Session, name: str, except_id: str | None = None) -> None:
    owner = groups.live_names(session, [name.casefold()]).get(name.casefold())
    if owner is not None and owner != except_id:
        raise ConflictError(f"a group named {name!r} exists already")


def create(session: Session, name: str, description: str | None, *, actor: str) -> Group:
    _check_name_free(session, name)
    group = Group(name=name, name_key=name.casefold(), description=description, managed_by=None)
    flush_unique(session, f"a group named {name!r} exists already", group)
    audit.record(
        session, AuditEvent(actor, "group.created", "group", group.id, None, name, "created by an admin")
    )
    return group


def update(session: Session, group: Group, changes: dict[str, str | None], *, actor: str) -> Group:
    require_manual(group, "the group")
    changed = sorted(k for k, v in changes.items() if getattr(group, k) != v)
    if not changed:
        return group
    old_name = group.name
    if "name" in changes and changes["name"] is not None:
        name = changes["name"]
        if name.casefold() != group.name_key:
            _check_name_free(session, name, except_id=group.id)
        group.name, group.name_key = name, name.casefold()
    if "description" in changes:
        group.description = changes["description"]
    flush_unique(session, f"a group named {group.name!r} exists already")
    audit.record(
        session,
        AuditEvent(actor, "group.updated", "group", group.id, old_name, group.name, "updated by an admin"),
        {"fields": changed},
    )
    return group


def delete(session: Session, group: Group, *, actor: str) -> None:
    """Soft-delete a manual group and drop its memberships, nestings and policy assignments."""
    require_manual(group, "the group")
    group.deleted_at = utcnow()
    session.execute(sa.delete(GroupMember).where(GroupMember.group_id == group.id))
    session.execute(
        sa.delete(GroupNesting).where(
            sa.or_(GroupNesting.parent_id == group.id, GroupNesting.child_id == group.id)
        )
    )
    session.execute(sa.delete(PolicyAssignment).where(PolicyAssignment.group_id == group.id))
    audit.record(
        session,
        AuditEvent(actor, "group.deleted", "group", group.id, group.name, None, "deleted by an admin"),
    )


def add_member(session: Session, group: Group, user: User, *, actor: str) -> bool:
    """Make ``user`` a direct member of a manual group; False when it already was."""
    require_manual(group)
    if groups.add_members(session, group.id, [user.id], None):
        return False
    audit.record(
        session,
        AuditEvent(actor, "group.member_added", "group", group.id, None, user.id, "added by an admin"),
    )
    return True


def remove_member(session: Session, group: Group, user: User, *, actor: str) -> None:
    """Drop a direct membership of a manual group (NotFoundError when there is none)."""
    require_manual(group)
    exists = session.scalar(
        sa.select(GroupMember.user_id).where(GroupMember.group_id == group.id, GroupMember.user_id == user.id)
    )
    if exists is None:
        raise NotFoundError(f"user {user.username} is not a direct member of group {group.name}")
    groups.remove_members(session, group.id, [user.id])
    audit.record(
        session,
        AuditEvent(actor, "group.member_removed", "group", group.id, user.id, None, "removed by an admin"),
    )

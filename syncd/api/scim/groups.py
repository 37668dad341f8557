"""SCIM Group operations: groups, their direct user members and nested groups, per client.

A client sees and changes only the groups its source manages, and only memberships of users and groups
of its own source: a membership an admin (or another source) added to someone else is neither shown nor
removed. Every write locks the group row first (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite writes are
serialised by ``BEGIN IMMEDIATE``), so parallel membership PATCHes never lose members.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from syncd.api.scim import patch, resources, validation
from syncd.api.scim.auth import Client
from syncd.api.scim.catalogue import GROUPS
from syncd.api.scim.context import Context, check_version
from syncd.api.scim.errors import InvalidValueError, ResourceNotFoundError, UniquenessError
from syncd.api.scim.mappers import GroupMapper
from syncd.api.scim.query import Query, list_response, page
from syncd.api.scim.resources import Member, Projection
from syncd.domain.lifecycle import AuditEvent
from syncd.store import audit, groups, links
from syncd.store.tables import Group, GroupMember, GroupNesting, User, utcnow

T, USERS_T, MEMBERS, NESTING = Group.__table__, User.__table__, GroupMember.__table__, GroupNesting.__table__
COLUMNS = (T.c.id, T.c.name, T.c.attributes, T.c.created_at, T.c.updated_at)
BY_ID = sa.select(*COLUMNS).where(T.c.id == sa.bindparam("id"), T.c.managed_by == sa.bindparam("source"))
BY_ID = BY_ID.where(T.c.deleted_at.is_(None))
CHILD = T.alias("child")
USER_MEMBERS = (
    sa.select(MEMBERS.c.group_id, USERS_T.c.id, sa.func.coalesce(MEMBERS.c.display, USERS_T.c.username))
    .join(USERS_T, USERS_T.c.id == MEMBERS.c.user_id)
    .where(
        MEMBERS.c.group_id.in_(sa.bindparam("ids", expanding=True)),
        USERS_T.c.managed_by == sa.bindparam("source"),
        USERS_T.c.deleted_at.is_(None),
    )
)
GROUP_MEMBERS = (
    sa.select(NESTING.c.parent_id, CHILD.c.id, sa.func.coalesce(NESTING.c.display, CHILD.c.name))
    .join(CHILD, CHILD.c.id == NESTING.c.child_id)
    .where(
        NESTING.c.parent_id.in_(sa.bindparam("ids", expanding=True)),
        CHILD.c.managed_by == sa.bindparam("source"),
        CHILD.c.deleted_at.is_(None),
    )
)
Result = tuple[dict[str, Any], str]


def _visible(client: Client) -> list[Any]:
    return [Group.managed_by == client.source, Group.deleted_at.is_(None)]


def _members_of(conn: Connection | Session, client: Client, ids: list[str]) -> dict[str, list[Member]]:
    out: dict[str, list[Member]] = {}
    if not ids:
        return out
    params = {"ids": ids, "source": client.source}
    for group_id, user_id, display in conn.execute(USER_MEMBERS, params):
        out.setdefault(group_id, []).append(Member(user_id, "User", display))
    for parent_id, child_id, display in conn.execute(GROUP_MEMBERS, params):
        out.setdefault(parent_id, []).append(Member(child_id, "Group", display))
    for members in out.values():
        members.sort(key=lambda m: (m.type, m.display or "", m.id))
    return out


def _render(conn: Connection | Session, ctx: Context, client: Client, row: Any, proj: Projection) -> Result:
    members = _members_of(conn, client, [row.id]).get(row.id, []) if proj.wants("members") else None
    return proj.apply(resources.render_group(row, ctx.base, members)), resources.version(row.updated_at)


def get(ctx: Context, client: Client, group_id: str, proj: Projection) -> Result:
    with ctx.read() as conn:
        row = conn.execute(BY_ID, {"id": group_id, "source": client.source}).first()
        if row is None:
            raise ResourceNotFoundError("Group not found")
        return _render(conn, ctx, client, row, proj)


def search(ctx: Context, client: Client, query: Query, *, lenient: bool = False) -> dict[str, Any]:
    proj = query.projection(GROUPS)
    visible = [T.c.managed_by == client.source, T.c.deleted_at.is_(None)]
    with ctx.read() as conn:
        mapper = GroupMapper(ctx.dialect, client.source)
        rows, total = page(conn, mapper, ctx.dialect, T, COLUMNS, visible, query, lenient=lenient)
        members = _members_of(conn, client, [r.id for r in rows]) if proj.wants("members") else {}
    found = [proj.apply(resources.render_group(r, ctx.base, members.get(r.id, []))) for r in rows]
    return list_response(found, total, query)


def _split(doc: dict[str, Any]) -> tuple[str, dict[str, Any], list[Any] | None]:
    attributes = {k: v for k, v in doc.items() if k not in ("displayName", "members")}
    return doc["displayName"], attributes, doc.get("members")


def _check_name(session: Session, name: str, group_id: str | None) -> None:
    query = sa.select(Group.id).where(Group.name_key == name.casefold(), Group.deleted_at.is_(None))
    owner = session.scalar(query)
    if owner is not None and owner != group_id:
        raise UniquenessError("displayName is already in use by another group")
    if len(name) > 256:
        raise InvalidValueError("displayName is longer than 256 characters")


def create(ctx: Context, client: Client, body: Any, proj: Projection) -> Result:
    name, attributes, members = _split(validation.document(GROUPS, body))
    with ctx.write() as session:
        _check_name(session, name, None)
        group = Group(name=name, name_key=name.casefold(), attributes=attributes, managed_by=client.source)
        session.add(group)
        session.flush()
        links.add(session, client.source, "group", group.id, group.id)
        event = AuditEvent(
            client.actor, "group.created", "group", group.id, None, name, "created by SCIM client"
        )
        audit.record(session, event)
        _add(session, client, group, members or [])
        session.flush()
        return _render(session, ctx, client, group, proj)


LOCK = (
    sa.select(Group)
    .where(
        Group.id == sa.bindparam("id"), Group.managed_by == sa.bindparam("source"), Group.deleted_at.is_(None)
    )
    .with_for_update()
)


def _locked(session: Session, client: Client, group_id: str, if_match: str | None) -> Group:
    group = session.scalars(LOCK, {"id": group_id, "source": client.source}).first()
    if group is None:
        raise ResourceNotFoundError("Group not found")
    check_version(group.updated_at, if_match)
    return group


def _rename(session: Session, client: Client, group: Group, name: str) -> None:
    if name == group.name:
        return
    _check_name(session, name, group.id)
    event = AuditEvent(
        client.actor, "group.renamed", "group", group.id, group.name, name, "renamed by SCIM client"
    )
    audit.record(session, event)
    group.name, group.name_key = name, name.casefold()


def replace(
    ctx: Context, client: Client, group_id: str, body: Any, if_match: str | None, proj: Projection
) -> Result:
    name, attributes, members = _split(validation.document(GROUPS, body))
    with ctx.write() as session:
        group = _locked(session, client, group_id, if_match)
        _rename(session, client, group, name)
        group.attributes = attributes
        _clear(session, client, group)
        _add(session, client, group, members or [])
        group.updated_at = utcnow()
        session.flush()
        return _render(session, ctx, client, group, proj)


def modify(
    ctx: Context, client: Client, group_id: str, ops: list[patch.Operation], if_match: str | None
) -> None:
    with ctx.write() as session:
        group = _locked(session, client, group_id, if_match)
        others: list[patch.Operation] = []
        for operation in ops:
            member_op, rest = _member_part(operation)
            if member_op is not None:
                _member_op(session, client, group, member_op)
            if rest is not None:
                others.append(rest)
        if others:
            current = {**(group.attributes or {}), "displayName": group.name}
            name, attributes, _ = _split(validation.document(GROUPS, patch.apply(GROUPS, current, others)))
            _rename(session, client, group, name)
            group.attributes = attributes
        group.updated_at = utcnow()


def delete(ctx: Context, client: Client, group_id: str, if_match: str | None) -> None:
    with ctx.write() as session:
        group = _locked(session, client, group_id, if_match)
        group.deleted_at = group.updated_at = utcnow()
        link = links.get(session, client.source, "group", group.id)
        if link is not None:
            link.in_scope = False
        event = AuditEvent(
            client.actor, "group.removed", "group", group.id, group.name, None, "deleted by SCIM client"
        )
        audit.record(session, event)


def _member_part(operation: patch.Operation) -> tuple[patch.Operation | None, patch.Operation | None]:
    """Split an operation into its ``members`` part and the rest (pathless values may hold both)."""
    if operation.path is None:
        if not isinstance(operation.value, dict):
            return None, operation
        members = [v for k, v in operation.value.items() if isinstance(k, str) and k.lower() == "members"]
        rest = {
            k: v for k, v in operation.value.items() if not (isinstance(k, str) and k.lower() == "members")
        }
        member_op = patch.Operation(operation.op, "members", members[0]) if members else None
        return member_op, patch.Operation(operation.op, None, rest) if rest else None
    if operation.path.lower().startswith("members") or operation.path.lower().startswith(
        GROUPS.core.lower() + ":members"
    ):
        return operation, None
    return None, operation


def _member_op(session: Session, client: Client, group: Group, operation: patch.Operation) -> None:
    assert operation.path is not None
    where = patch.target(GROUPS, operation.path)
    if where.resolved is None or where.resolved.attr.name != "members":
        raise InvalidValueError("invalid members path")
    if where.filter is None and where.sub is None:
        values = [] if operation.value is None else operation.value
        values = values if isinstance(values, list) else [values]
        if operation.op == "add":
            _add(session, client, group, values)
        elif operation.op == "replace":
            _clear(session, client, group)
            _add(session, client, group, values)
        elif values:  # remove only the listed members (Entra legacy, authentik)
            _remove(session, client, group, _ids(values))
        else:
            _clear(session, client, group)
        return
    if operation.op != "remove" or where.sub is not None:
        return  # add/replace through a members filter, or of display/type: nothing syncd stores
    current = _members_of(session, client, [group.id]).get(group.id, [])
    matched = [
        m.id for m in current if patch.matches(where, {"value": m.id, "type": m.type, "display": m.display})
    ]
    _remove(session, client, group, matched)


def _values(values: Iterable[Any]) -> dict[str, str | None]:
    """Member id → the display the client sent (None when it sent none)."""
    out: dict[str, str | None] = {}
    for value in values:
        raw = value.get("value") if isinstance(value, dict) else value
        if not isinstance(raw, str) or not raw:
            raise InvalidValueError("each member needs a string value (the member's id)")
        validation.text(raw, "members.value")
        display = value.get("display") if isinstance(value, dict) else None
        if display is not None and (not isinstance(display, str) or len(display) > 512):
            raise InvalidValueError("members.display must be a string of at most 512 characters")
        out[raw] = validation.text(display, "members.display") if display else None
    return out


def _ids(values: Iterable[Any]) -> list[str]:
    return list(_values(values))


def _add(session: Session, client: Client, group: Group, values: list[Any]) -> None:
    wanted = _values(values)
    ids = set(wanted)
    if not ids:
        return
    if group.id in ids:
        raise InvalidValueError("a group can't be a member of itself")
    live_users = sa.select(User.id).where(
        User.id.in_(ids), User.managed_by == client.source, User.deleted_at.is_(None)
    )
    user_ids = set(session.scalars(live_users))
    others = ids - user_ids
    group_ids = set()
    if others:
        group_ids = set(session.scalars(sa.select(Group.id).where(Group.id.in_(others), *_visible(client))))
    unknown = ids - user_ids - group_ids
    if unknown:
        raise InvalidValueError(f"{len(unknown)} member(s) are not Users or Groups of this client")
    displays = {k: v for k, v in wanted.items() if v is not None}
    for existing in groups.add_members(session, group.id, user_ids, client.source, displays):
        if existing in displays:
            session.execute(
                sa.update(GroupMember)
                .where(GroupMember.group_id == group.id, GroupMember.user_id == existing)
                .values(display=displays[existing])
            )
    for existing in groups.add_children(session, group.id, group_ids, client.source, displays):
        if existing in displays:
            session.execute(
                sa.update(GroupNesting)
                .where(GroupNesting.parent_id == group.id, GroupNesting.child_id == existing)
                .values(display=displays[existing])
            )
    group.updated_at = utcnow()


def _remove(session: Session, client: Client, group: Group, ids: list[str]) -> None:
    if not ids:
        return
    own_users = sa.select(User.id).where(User.id.in_(ids), User.managed_by == client.source)
    own_groups = sa.select(Group.id).where(Group.id.in_(ids), Group.managed_by == client.source)
    groups.remove_members(session, group.id, session.scalars(own_users).all())
    groups.remove_children(session, group.id, session.scalars(own_groups).all())
    group.updated_at = utcnow()


def _clear(session: Session, client: Client, group: Group) -> None:
    own_users = sa.select(User.id).where(User.managed_by == client.source)
    own_groups = sa.select(Group.id).where(Group.managed_by == client.source)
    no_sync = {"synchronize_session": False}
    session.execute(
        sa.delete(GroupMember).where(GroupMember.group_id == group.id, GroupMember.user_id.in_(own_users)),
        execution_options=no_sync,
    )
    session.execute(
        sa.delete(GroupNesting).where(
            GroupNesting.parent_id == group.id, GroupNesting.child_id.in_(own_groups)
        ),
        execution_options=no_sync,
    )
    group.updated_at = utcnow()

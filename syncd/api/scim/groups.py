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
from syncd.api.scim.context import Context, check_version, owned_by_source
from syncd.api.scim.errors import InvalidValueError, ResourceNotFoundError, UniquenessError
from syncd.api.scim.mappers import GroupMapper
from syncd.api.scim.query import Query, list_response, page
from syncd.api.scim.resources import Member, Projection
from syncd.domain.lifecycle import AuditEvent
from syncd.store import audit, links
from syncd.store.prepared import DriverWork
from syncd.store.tables import Group, GroupMember, GroupNesting, User, utcnow

T, USERS_T, MEMBERS, NESTING = Group.__table__, User.__table__, GroupMember.__table__, GroupNesting.__table__
COLUMNS = (T.c.id, T.c.name, T.c.attributes, T.c.created_at, T.c.updated_at)
BY_ID = sa.select(*COLUMNS).where(T.c.id == sa.bindparam("id"), owned_by_source(T.c.managed_by))
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
        _add(DriverWork(session), client, group.id, members or [])
        return _render(session, ctx, client, group, proj)


LOCK = (
    sa.select(Group)
    .where(Group.id == sa.bindparam("id"), owned_by_source(T.c.managed_by), Group.deleted_at.is_(None))
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
        work = DriverWork(session)
        _clear(work, client, group.id)
        _add(work, client, group.id, members or [])
        group.updated_at = utcnow()
        session.flush()
        return _render(session, ctx, client, group, proj)


GROUP_ROW = sa.select(T.c.id, T.c.updated_at).where(T.c.id == sa.bindparam("id")).with_for_update()
GROUP_ROW = GROUP_ROW.where(owned_by_source(T.c.managed_by), T.c.deleted_at.is_(None))
TOUCH = sa.update(Group).where(Group.id == sa.bindparam("group_id")).values(updated_at=sa.bindparam("now"))


def modify(
    ctx: Context, client: Client, group_id: str, ops: list[patch.Operation], if_match: str | None
) -> None:
    try:
        parts = [(member_op, rest, _plain(member_op)) for member_op, rest in map(_member_part, ops)]
    except InvalidValueError:
        parts = None  # said after the group's lookup (a 404 comes first), below
    if parts is not None and all(rest is None and plain is not None for _op, rest, plain in parts):
        # The IdPs' member pushes (add / remove by id): prepared statements only (docs/adr/0033)
        with ctx.driver() as work:
            found = work.all(GROUP_ROW, {"id": group_id, "source": client.source})
            if not found:
                raise ResourceNotFoundError("Group not found")
            check_version(found[0].updated_at, if_match)
            for member_op, _rest, plain in parts:
                assert member_op is not None and plain is not None
                _apply_plain(work, client, group_id, member_op.op, plain)
            work.run(TOUCH, {"group_id": group_id, "now": utcnow()})
        return
    with ctx.write() as session:
        group = _locked(session, client, group_id, if_match)
        others: list[patch.Operation] = []
        for member_op, rest in map(_member_part, ops):
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


def _plain(operation: patch.Operation | None) -> list[Any] | None:
    """The values of a members operation on the whole attribute (no filter, no sub-attribute), else None."""
    if operation is None or operation.path is None:
        return None
    where = patch.target(GROUPS, operation.path)
    if where.resolved is None or where.resolved.attr.name != "members":
        raise InvalidValueError("invalid members path")
    if where.filter is not None or where.sub is not None:
        return None
    values = [] if operation.value is None else operation.value
    return values if isinstance(values, list) else [values]


def _apply_plain(work: DriverWork, client: Client, group_id: str, op: str, values: list[Any]) -> None:
    if op == "add":
        _add(work, client, group_id, values)
    elif op == "replace":
        _clear(work, client, group_id)
        _add(work, client, group_id, values)
    elif values:  # remove only the listed members (Entra legacy, authentik)
        _remove(work, client, group_id, _ids(values))
    else:
        _clear(work, client, group_id)


def _member_op(session: Session, client: Client, group: Group, operation: patch.Operation) -> None:
    values = _plain(operation)
    if values is not None:
        _apply_plain(DriverWork(session), client, group.id, operation.op, values)
        return
    assert operation.path is not None
    where = patch.target(GROUPS, operation.path)
    if operation.op != "remove" or where.sub is not None:
        return  # add/replace through a members filter, or of display/type: nothing syncd stores
    current = _members_of(session, client, [group.id]).get(group.id, [])
    matched = [
        m.id for m in current if patch.matches(where, {"value": m.id, "type": m.type, "display": m.display})
    ]
    _remove(DriverWork(session), client, group.id, matched)


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


# Membership changes as prepared statements (syncd.store.prepared): one indexed statement per member, on
# the hot path and inside the ORM's units of work alike (DriverWork flushes the session first).
LIVE_USER = sa.select(USERS_T.c.id).where(USERS_T.c.id == sa.bindparam("id"), USERS_T.c.deleted_at.is_(None))
LIVE_USER = LIVE_USER.where(owned_by_source(USERS_T.c.managed_by))  # see owned_by_source
LIVE_GROUP = sa.select(T.c.id).where(T.c.id == sa.bindparam("id"), T.c.deleted_at.is_(None))
LIVE_GROUP = LIVE_GROUP.where(owned_by_source(T.c.managed_by))
OWN_USER = sa.select(USERS_T.c.id).where(USERS_T.c.id == sa.bindparam("id"))
OWN_USER = OWN_USER.where(owned_by_source(USERS_T.c.managed_by))
OWN_GROUP = sa.select(T.c.id).where(T.c.id == sa.bindparam("id"), owned_by_source(T.c.managed_by))
_EDGES: dict[str, tuple[Any, Any, Any]] = {  # member kind: (table, parent column, child column)
    "user": (GroupMember, GroupMember.group_id, GroupMember.user_id),
    "group": (GroupNesting, GroupNesting.parent_id, GroupNesting.child_id),
}
EXISTS = {
    kind: sa.select(child).where(parent == sa.bindparam("group_id"), child == sa.bindparam("member_id"))
    for kind, (_table, parent, child) in _EDGES.items()
}
INSERT = {
    kind: sa.insert(table).values(
        {
            parent.key: sa.bindparam("group_id"),
            child.key: sa.bindparam("member_id"),
            "managed_by": sa.bindparam("source"),
            "display": sa.bindparam("display"),
        }
    )
    for kind, (table, parent, child) in _EDGES.items()
}
SET_DISPLAY = {
    kind: sa.update(table)
    .where(parent == sa.bindparam("group_id"), child == sa.bindparam("member_id"))
    .values(display=sa.bindparam("display"))
    for kind, (table, parent, child) in _EDGES.items()
}
DROP = {
    kind: sa.delete(table).where(parent == sa.bindparam("group_id"), child == sa.bindparam("member_id"))
    for kind, (table, parent, child) in _EDGES.items()
}


def _add(work: DriverWork, client: Client, group_id: str, values: list[Any]) -> None:
    wanted = _values(values)
    if group_id in wanted:
        raise InvalidValueError("a group can't be a member of itself")
    kinds: dict[str, str] = {}
    for member_id in wanted:
        member = {"id": member_id, "source": client.source}
        if work.all(LIVE_USER, member):
            kinds[member_id] = "user"
        elif work.all(LIVE_GROUP, member):
            kinds[member_id] = "group"
    unknown = len(wanted) - len(kinds)
    if unknown:
        raise InvalidValueError(f"{unknown} member(s) are not Users or Groups of this client")
    for member_id in sorted(wanted):  # the order store.groups inserts in
        kind, display = kinds[member_id], wanted[member_id]
        edge = {"group_id": group_id, "member_id": member_id, "display": display, "source": client.source}
        if not work.all(EXISTS[kind], edge):
            work.run(INSERT[kind], edge)
        elif display is not None:  # an existing membership keeps its display unless a new one is sent
            work.run(SET_DISPLAY[kind], edge)


def _remove(work: DriverWork, client: Client, group_id: str, ids: list[str]) -> None:
    for member_id in dict.fromkeys(ids):
        params = {"id": member_id, "source": client.source, "group_id": group_id, "member_id": member_id}
        if work.all(OWN_USER, params):
            work.run(DROP["user"], params)
        if work.all(OWN_GROUP, params):
            work.run(DROP["group"], params)


OWN_USERS = sa.select(USERS_T.c.id).where(USERS_T.c.managed_by == sa.bindparam("source"))
OWN_GROUPS = sa.select(T.c.id).where(T.c.managed_by == sa.bindparam("source"))
CLEAR = {
    kind: sa.delete(table).where(parent == sa.bindparam("group_id"), child.in_(own))
    for (kind, (table, parent, child)), own in zip(_EDGES.items(), (OWN_USERS, OWN_GROUPS), strict=True)
}


def _clear(work: DriverWork, client: Client, group_id: str) -> None:
    """Remove every member of this client's source (others' memberships stay)."""
    for statement in CLEAR.values():
        work.run(statement, {"group_id": group_id, "source": client.source})

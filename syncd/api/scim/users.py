"""SCIM User operations: each write is a one-object run of the same lifecycle as every source.

Store functions do the work (``store.users``, ``store.links``, ``store.audit``, ``store.invites``) in one
unit of work per request, with the actor ``scim:SOURCE``: ``active=false`` and DELETE make the user
PROVISIONING_DISABLED through ``derive_status`` (DELETE also soft-deletes: the userName is free again and
the user is purged after retention); ``active=true`` restores the status its devices give, without
re-enrollment. A client sees only the users its source manages (others are 404). A new user gets the
enrollment invite in the same unit of work when the source has ``invite_new_users``.

The IdPs' hot writes (create, PATCH, PUT) run the same rules as prepared statements on the driver's
connection (``syncd.store.prepared``, docs/adr/0033): the domain decides status and audit events either way.
"""

from __future__ import annotations

import functools
import json
import re
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from syncd.api.scim import patch, resources, validation
from syncd.api.scim.auth import Client
from syncd.api.scim.catalogue import USERS
from syncd.api.scim.context import Context, check_version, owned_by_source
from syncd.api.scim.errors import InvalidFilterError, ResourceNotFoundError, UniquenessError
from syncd.api.scim.mappers import UserMapper
from syncd.api.scim.query import Query, list_response, page
from syncd.api.scim.resources import Projection
from syncd.domain.lifecycle import AuditEvent, UserState, derive_status, set_provisioned
from syncd.store import audit, invites, links, users
from syncd.store.prepared import DriverWork
from syncd.store.tables import Group, GroupMember, SourceLink, User, new_id, utcnow

# Reads are Core statements built once (bound parameters): the lookups IdPs make are the hot path.
T, MEMBERS, GROUP_T = User.__table__, GroupMember.__table__, Group.__table__
COLUMNS = (T.c.id, T.c.username, T.c.provisioned, T.c.attributes, T.c.created_at, T.c.updated_at)
VISIBLE = (T.c.managed_by == sa.bindparam("source"), T.c.deleted_at.is_(None))
VISIBLE_BY_ID = (owned_by_source(T.c.managed_by), T.c.deleted_at.is_(None))  # see owned_by_source
BY_ID = sa.select(*COLUMNS).where(T.c.id == sa.bindparam("id"), *VISIBLE_BY_ID)
BY_USERNAME = sa.select(*COLUMNS).where(T.c.username_key == sa.bindparam("key"), *VISIBLE)


def _groups_query(user_filter: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(MEMBERS.c.user_id, GROUP_T.c.id, GROUP_T.c.name)
        .join(GROUP_T, GROUP_T.c.id == MEMBERS.c.group_id)
        .where(
            user_filter,
            # `|| ''` keeps SQLite (no statistics unless ANALYZE ran) from driving the join from
            # ix_groups_managed_by, probing every group of the source: 0.27 ms instead of 0.02 at 2,000
            # groups.
            GROUP_T.c.managed_by + "" == sa.bindparam("source"),
            GROUP_T.c.deleted_at.is_(None),
        )
        .order_by(GROUP_T.c.name)
    )


GROUPS_OF = _groups_query(MEMBERS.c.user_id.in_(sa.bindparam("ids", expanding=True)))
GROUPS_OF_ONE = _groups_query(MEMBERS.c.user_id == sa.bindparam("id"))  # no expanding IN to render


# The IdPs' most frequent request, ``userName eq`` with the groups attribute: user and groups in one
# statement (one row per group, or one with no group), half the statement overhead of two.
def _with_groups(user_filter: sa.ColumnElement[bool], visible: tuple[Any, ...]) -> sa.Select[Any]:
    return (
        sa.select(*COLUMNS, GROUP_T.c.id.label("group_id"), GROUP_T.c.name.label("group_name"))
        .select_from(
            T.outerjoin(MEMBERS, MEMBERS.c.user_id == T.c.id).outerjoin(
                GROUP_T,
                sa.and_(
                    GROUP_T.c.id == MEMBERS.c.group_id,
                    GROUP_T.c.managed_by + "" == sa.bindparam("source"),  # see GROUPS_OF
                    GROUP_T.c.deleted_at.is_(None),
                ),
            )
        )
        .where(user_filter, *visible)
        .order_by(T.c.id, GROUP_T.c.name)
    )


BY_USERNAME_WITH_GROUPS = _with_groups(T.c.username_key == sa.bindparam("key"), VISIBLE)
BY_ID_WITH_GROUPS = _with_groups(T.c.id == sa.bindparam("id"), VISIBLE_BY_ID)  # GET /Users/{id}, the same way
Result = tuple[dict[str, Any], str]  # the rendered resource and its version


def _visible(client: Client) -> list[Any]:
    return [T.c.managed_by == client.source, T.c.deleted_at.is_(None)]


def _groups_of(
    conn: Connection | Session, client: Client, ids: list[str]
) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    if ids:
        for user_id, group_id, name in conn.execute(GROUPS_OF, {"ids": ids, "source": client.source}):
            out.setdefault(user_id, []).append((group_id, name))
    return out


def _render(conn: Connection | Session, ctx: Context, client: Client, row: Any, proj: Projection) -> Result:
    groups = None
    if proj.wants("groups"):
        found = conn.execute(GROUPS_OF_ONE, {"id": row.id, "source": client.source})
        groups = [(group_id, name) for _user_id, group_id, name in found]
    return _result(ctx, row, groups, proj)


def _result(ctx: Context, row: Any, groups: list[tuple[str, str]] | None, proj: Projection) -> Result:
    return proj.apply(resources.render_user(row, ctx.base, groups)), resources.version(row.updated_at)


def get(ctx: Context, client: Client, user_id: str, proj: Projection) -> Result:
    if ctx.points is not None and proj.wants("groups"):  # SQLite: on the driver's connection
        joined = ctx.points.all(BY_ID_WITH_GROUPS, {"id": user_id, "source": client.source})
        return _one_with_groups(ctx, joined, proj)
    with ctx.read() as conn:
        row = conn.execute(BY_ID, {"id": user_id, "source": client.source}).first()
        if row is None:
            raise ResourceNotFoundError("User not found")
        return _render(conn, ctx, client, row, proj)


def search(ctx: Context, client: Client, query: Query, *, lenient: bool = False) -> dict[str, Any]:
    proj = query.projection(USERS)
    key = _username_lookup(query)
    if key is not None and proj.wants("groups"):  # at most one live user, one indexed statement
        return _by_username_with_groups(ctx, client, key, query, proj)
    with ctx.read() as conn:
        if key is not None:
            rows = list(conn.execute(BY_USERNAME, {"key": key, "source": client.source}))
            total = len(rows)
            rows = rows[query.start_index - 1 : query.start_index - 1 + query.count]
        else:
            mapper = UserMapper(ctx.dialect, client.source)
            rows, total = page(
                conn, mapper, ctx.dialect, T, COLUMNS, _visible(client), query, lenient=lenient
            )
        groups = _groups_of(conn, client, [r.id for r in rows]) if proj.wants("groups") else {}
    found = [proj.apply(resources.render_user(r, ctx.base, groups.get(r.id))) for r in rows]
    return list_response(found, total, query)


async def get_async(ctx: Context, client: Client, user_id: str, proj: Projection) -> Result | None:
    """PostgreSQL: GET /Users/{id} awaited on the event loop (see :func:`lookup`); None unless it can be."""
    if ctx.async_points is None or not proj.wants("groups"):
        return None
    joined = await ctx.async_points.all(BY_ID_WITH_GROUPS, {"id": user_id, "source": client.source})
    return _one_with_groups(ctx, joined, proj)


def _one_with_groups(ctx: Context, joined: list[Any], proj: Projection) -> Result:
    if not joined:
        raise ResourceNotFoundError("User not found")
    groups = [(r.group_id, r.group_name) for r in joined if r.group_id is not None]
    return _result(ctx, joined[0], groups, proj)


async def lookup(ctx: Context, client: Client, query: Query) -> dict[str, Any] | None:
    """PostgreSQL: a ``userName eq`` lookup with groups awaited on the event loop (one round trip, see
    syncd.store.point_reads); None when the query is not one (use :func:`search`)."""
    proj = query.projection(USERS)
    key = _username_lookup(query)
    if ctx.async_points is None or key is None or not proj.wants("groups"):
        return None
    joined = await ctx.async_points.all(BY_USERNAME_WITH_GROUPS, {"key": key, "source": client.source})
    return _username_result(ctx, joined, query, proj)


def _by_username_with_groups(
    ctx: Context, client: Client, key: str, query: Query, proj: Projection
) -> dict[str, Any]:
    params = {"key": key, "source": client.source}
    if ctx.points is not None:  # SQLite: on the driver's connection (syncd.store.point_reads)
        joined = ctx.points.all(BY_USERNAME_WITH_GROUPS, params)
    else:
        with ctx.read() as conn:
            joined = list(conn.execute(BY_USERNAME_WITH_GROUPS, params))
    return _username_result(ctx, joined, query, proj)


def _username_result(ctx: Context, joined: list[Any], query: Query, proj: Projection) -> dict[str, Any]:
    """The list response of a ``userName eq`` lookup from its rows (one per group, or one with none)."""
    found_groups: dict[str, list[tuple[str, str]]] = {}
    by_id: dict[str, Any] = {}
    for row in joined:
        by_id.setdefault(row.id, row)
        if row.group_id is not None:
            found_groups.setdefault(row.id, []).append((row.group_id, row.group_name))
    rows = list(by_id.values())[query.start_index - 1 : query.start_index - 1 + query.count]
    found = [proj.apply(resources.render_user(r, ctx.base, found_groups.get(r.id))) for r in rows]
    return list_response(found, len(by_id), query)


def is_point_lookup(query: Query) -> bool:
    """Whether the query is a plain ``userName eq`` lookup (one indexed statement)."""
    try:
        return _username_lookup(query) is not None
    except InvalidFilterError:
        return False


# ``userName eq "…"`` (optionally URN-qualified, any case): recognised without the parser, which costs
# more than the lookup itself; anything else goes through filters.parse.
USERNAME_EQ = re.compile(
    r'\s*(?:urn:ietf:params:scim:schemas:core:2\.0:user:)?username\s+eq\s+("(?:[^"\\]|\\.)*")\s*',
    re.IGNORECASE,
)


def _username_lookup(query: Query) -> str | None:
    """The casefolded userName of a plain ``userName eq "…"`` filter without sorting, else None."""
    if query.filter is None or query.sort_by is not None:
        return None
    match = USERNAME_EQ.fullmatch(query.filter)
    if match is None:
        return None
    try:
        value = json.loads(match.group(1))
    except ValueError:
        return None  # let the parser say what is wrong with it
    return validation.text(value, "userName", InvalidFilterError).casefold()


def create(ctx: Context, client: Client, body: Any, proj: Projection) -> Result:
    doc = validation.document(USERS, body)
    doc.setdefault("active", True)  # RFC 7644 §3.3: the server may assign a default
    fields, active = resources.user_columns(doc)
    key = users.username_key(fields["username"])
    with ctx.driver() as work:
        if not _owners(work, key) and not invites.wanted(work.session, client.source):
            return _render_row(work, ctx, client, _insert(work, client, fields, active is not False), proj)
    # Taking over another source's user, or inviting the new one: the ORM's unit of work (store.invites)
    with ctx.write() as session:
        owner = users.owners_of_usernames(session, [key]).get(key)
        if owner is None:
            user = users.create(
                session,
                fields,
                provisioned=active is not False,
                managed_by=client.source,
                actor=client.actor,
                reason="created by SCIM client",
            )
            links.add(session, client.source, "user", user.id, user.id)
            invites.after_user_created(session, user, source=client.source, actor=client.actor, run_id=None)
        else:
            user = _take_over(session, client, owner, fields, active)
        session.flush()
        return _render(session, ctx, client, user, proj)


def _take_over(
    session: Session,
    client: Client,
    owner: tuple[str, str | None],
    fields: dict[str, Any],
    active: bool | None,
) -> User:
    user_id, source = owner
    if source is None or source not in client.take_over_from:
        raise UniquenessError("userName is already in use")
    user = session.get(User, user_id, with_for_update=True)
    assert user is not None
    users.update_fields(user, fields)
    user.managed_by = client.source
    user.updated_at = utcnow()
    links.add(session, client.source, "user", user.id, user.id)
    reason = f"userName matched; taken over from {source}"
    audit.record(
        session, AuditEvent(client.actor, "user.taken_over", "user", user.id, source, client.source, reason)
    )
    _set_active(session, client, user, active if active is not None else True)
    return user


LOCK = (
    sa.select(User)
    .where(User.id == sa.bindparam("id"), owned_by_source(T.c.managed_by), User.deleted_at.is_(None))
    .with_for_update()
)


def _locked(session: Session, client: Client, user_id: str, if_match: str | None) -> User:
    user = session.scalars(LOCK, {"id": user_id, "source": client.source}).first()
    if user is None:
        raise ResourceNotFoundError("User not found")
    check_version(user.updated_at, if_match)
    return user


def _set_active(session: Session, client: Client, user: User, active: bool) -> None:
    if active == user.provisioned:
        return
    with session.no_autoflush:  # the device query must not flush half-applied changes first
        devices = users.device_states_of(session, user.id)
    reason = "reactivated by SCIM client" if active else "deactivated by SCIM client (active=false)"
    users.set_provisioned_status(session, user, active, devices, actor=client.actor, reason=reason)


# The IdPs' hot writes (create, PATCH, PUT; docs/adr/0033): prepared statements on the driver's connection
# (syncd.store.prepared), the same rules as the store's ORM functions (store.users, store.links, store.audit).
ROW = sa.select(
    *COLUMNS, T.c.username_key, T.c.email, T.c.given_name, T.c.family_name, T.c.display_name, T.c.phone
)
LOCKED_ROW = ROW.where(T.c.id == sa.bindparam("id"), *VISIBLE_BY_ID).with_for_update()
OWNERS = sa.select(T.c.id, T.c.managed_by).where(
    T.c.username_key == sa.bindparam("key"), T.c.deleted_at.is_(None)
)
SAVED = (
    "username",
    "username_key",
    "email",
    "given_name",
    "family_name",
    "display_name",
    "phone",
    "attributes",
)
INSERT = sa.insert(User).values(
    {name: sa.bindparam(name) for name in ("id", *SAVED, "status", "provisioned", "managed_by", "created_at")}
    | {"updated_at": sa.bindparam("created_at")}
)
LINK = sa.insert(SourceLink).values(
    source=sa.bindparam("source"),
    object_type="user",
    anchor=sa.bindparam("user_id"),
    object_id=sa.bindparam("user_id"),
    in_scope=True,
    last_seen_at=sa.bindparam("now"),
)


@functools.cache
def _update(columns: frozenset[str]) -> sa.Update:
    """The UPDATE of these columns (and ``updated_at``): an unchanged indexed column is left alone."""
    names = sorted(columns | {"updated_at"})
    return (
        sa.update(User).where(User.id == sa.bindparam("row_id")).values({n: sa.bindparam(n) for n in names})
    )


def _owners(work: DriverWork, key: str) -> list[Any]:
    return work.all(OWNERS, {"key": key})


def _insert(work: DriverWork, client: Client, fields: dict[str, Any], provisioned: bool) -> Any:
    """A new user of this client (as ``users.create`` + ``links.add``), audited."""
    now = utcnow()
    row = {
        **fields,
        "id": new_id(),
        "username_key": users.username_key(fields["username"]),
        "status": derive_status(provisioned=provisioned, devices=()),
        "provisioned": provisioned,
        "managed_by": client.source,
        "created_at": now,
        "updated_at": now,
    }
    work.run(INSERT, row)
    work.run(LINK, {"source": client.source, "user_id": row["id"], "now": now})
    event = AuditEvent(
        client.actor, "user.created", "user", row["id"], None, row["status"].value, "created by SCIM client"
    )
    audit.record_row(work, event, now)
    return SimpleNamespace(**row)


def _locked_row(work: DriverWork, client: Client, user_id: str, if_match: str | None) -> Any:
    found = work.all(LOCKED_ROW, {"id": user_id, "source": client.source})
    if not found:
        raise ResourceNotFoundError("User not found")
    check_version(found[0].updated_at, if_match)
    return found[0]


def _save(work: DriverWork, client: Client, row: Any, doc: dict[str, Any], *, replacing: bool) -> Any:
    """Apply a validated document to a locked row; the row as stored (the same when nothing changes)."""
    fields, active = resources.user_columns(doc)
    if active is None and "active" in (row.attributes or {}) and replacing:
        fields["attributes"]["active"] = row.provisioned  # PUT without active leaves it (RFC 7644 §3.5.1)
    fields["username_key"] = users.username_key(fields["username"])
    changed = {name: value for name, value in fields.items() if getattr(row, name) != value}
    if not changed and (active is None or active == row.provisioned):
        return row
    if "username_key" in changed and any(
        owner.id != row.id for owner in _owners(work, fields["username_key"])
    ):
        raise UniquenessError("userName is already in use")
    now = utcnow()
    if active is not None and active != row.provisioned:
        devices = {device_id: state for device_id, state in work.all(users.DEVICES_OF, {"user_id": row.id})}
        reason = "reactivated by SCIM client" if active else "deactivated by SCIM client (active=false)"
        outcome = set_provisioned(
            UserState(row.id, row.provisioned, devices), active, actor=client.actor, reason=reason
        )
        changed |= {"provisioned": active, "status": outcome.state.status}
        if outcome.event is not None:
            audit.record_row(work, outcome.event, now)
    work.run(_update(frozenset(changed)), {**changed, "updated_at": now, "row_id": row.id})
    return row._replace(**{k: v for k, v in changed.items() if k in row._fields}, updated_at=now)


def _render_row(work: DriverWork, ctx: Context, client: Client, row: Any, proj: Projection) -> Result:
    groups = None
    if proj.wants("groups"):
        found = work.all(GROUPS_OF_ONE, {"id": row.id, "source": client.source})
        groups = [(group_id, name) for _user_id, group_id, name in found]
    return _result(ctx, row, groups, proj)


def replace(
    ctx: Context, client: Client, user_id: str, body: Any, if_match: str | None, proj: Projection
) -> Result:
    doc = validation.document(USERS, body)
    with ctx.driver() as work:
        row = _locked_row(work, client, user_id, if_match)
        return _render_row(work, ctx, client, _save(work, client, row, doc, replacing=True), proj)


def modify(
    ctx: Context,
    client: Client,
    user_id: str,
    ops: list[patch.Operation],
    if_match: str | None,
    proj: Projection,
) -> Result:
    with ctx.driver() as work:
        row = _locked_row(work, client, user_id, if_match)
        current = resources.user_document(row.username, row.provisioned, row.attributes)
        doc = validation.document(USERS, patch.apply(USERS, current, ops))
        return _render_row(work, ctx, client, _save(work, client, row, doc, replacing=False), proj)


def delete(ctx: Context, client: Client, user_id: str, if_match: str | None) -> None:
    with ctx.write() as session:
        user = _locked(session, client, user_id, if_match)
        users.soft_delete(user)
        user.updated_at = utcnow()
        link = links.get(session, client.source, "user", user.id)
        if link is not None:
            link.in_scope = False
        _set_active(session, client, user, False)
        event = AuditEvent(
            client.actor, "user.deleted", "user", user.id, None, None, "deleted by SCIM client"
        )
        audit.record(session, event)

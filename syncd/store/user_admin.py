"""Users as the admin API lists and changes them (docs/adr/0051-admin-users-and-groups.md).

Listing is keyset-paginated on ``(username_key, id)`` over live users (the partial unique index
``uq_users_username_key_live`` serves the order); every filter is an indexed equality or an ``EXISTS``
on a table keyed by user id, so a page costs about ``limit`` index steps however many users there are.
``q`` is a case-insensitive prefix of the name columns, an OR of index ranges (``user_search``).
Source-managed users keep their source attributes: changing them here is a :class:`ConflictError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.factor_state import FactorState, FactorType, factor_state
from syncd.domain.lifecycle import AuditEvent, DeviceState, DeviceType, UserStatus
from syncd.errors import ConflictError, NotFoundError
from syncd.store import audit, invites, user_search, users
from syncd.store.tables import (
    BypassCode,
    Device,
    Group,
    GroupMember,
    User,
    UserFactor,
    utcnow,
)

SOURCE_FIELDS = ("username", "email", "given_name", "family_name", "display_name", "phone")
"""Attributes a source owns: read-only through the admin API for source-managed users."""

_DEVICE_TYPE = {FactorType.TOTP: DeviceType.TOTP, FactorType.HARDWARE_TOKEN: DeviceType.HARDWARE_TOKEN}


@dataclass(frozen=True, slots=True)
class UserFilter:
    status: UserStatus | None = None
    group_ids: frozenset[str] | None = None  # effective: the group and every group nested in it
    source: str | None = None
    factor: FactorType | None = None
    factor_state: FactorState | None = None
    last_authn_status: str | None = None
    q: str | None = None


@dataclass(frozen=True, slots=True)
class FactorSummary:
    factor_type: FactorType
    state: FactorState
    last_authn_status: str | None
    last_authn_at: datetime | None


def _device_exists(factor: FactorType, state: DeviceState | None, now: datetime) -> sa.ColumnElement[bool]:
    if factor is FactorType.BYPASS_CODE:
        if state not in (None, DeviceState.ACTIVE):
            return sa.false()
        return (
            sa.select(BypassCode.id)
            .where(
                BypassCode.user_id == User.id,
                BypassCode.revoked_at.is_(None),
                BypassCode.uses_left > 0,
                sa.or_(BypassCode.expires_at.is_(None), BypassCode.expires_at > now),
            )
            .exists()
        )
    query = sa.select(Device.id).where(Device.user_id == User.id, Device.type == _DEVICE_TYPE[factor])
    if state is not None:
        query = query.where(Device.state == state)
    return query.exists()


def factor_state_clause(
    factor: FactorType, state: FactorState, now: datetime | None = None
) -> sa.ColumnElement[bool]:
    """SQL for "this user's ``factor`` is in ``state``" with the precedence of
    :func:`syncd.domain.factor_state.factor_state`."""
    now = now or utcnow()
    row = sa.select(UserFactor.user_id).where(
        UserFactor.user_id == User.id, UserFactor.factor_type == factor.value
    )
    disabled = row.where(UserFactor.enabled.is_(False)).exists()
    locked = row.where(UserFactor.enabled.is_(True), UserFactor.locked_at.is_not(None)).exists()
    active = _device_exists(factor, DeviceState.ACTIVE, now)
    pending = _device_exists(factor, DeviceState.PENDING, now)
    if state is FactorState.DISABLED:
        only_disabled = sa.and_(~locked, ~active, ~pending, _device_exists(factor, DeviceState.DISABLED, now))
        return sa.or_(disabled, only_disabled)
    usable = sa.and_(~disabled, ~locked)
    if state is FactorState.LOCKED:
        return sa.and_(~disabled, locked)
    if state is FactorState.ACTIVE:
        return sa.and_(usable, active)
    if state is FactorState.PENDING:
        return sa.and_(usable, ~active, pending)
    return sa.and_(usable, ~_device_exists(factor, None, now))


def conditions(f: UserFilter, *, q_indexed: bool = True) -> list[sa.ColumnElement[bool]]:
    """WHERE clauses of a filter, over live users (``q_indexed``: see ``user_search.prefix_clause``)."""
    where: list[sa.ColumnElement[bool]] = [User.deleted_at.is_(None)]
    if f.status is not None:
        where.append(User.status == f.status)
    if f.source is not None:
        where.append(User.managed_by == f.source)
    if f.group_ids is not None:
        where.append(
            sa.select(GroupMember.user_id)
            .where(GroupMember.user_id == User.id, GroupMember.group_id.in_(sorted(f.group_ids)))
            .exists()
        )
    if f.factor is not None and f.factor_state is not None:
        where.append(factor_state_clause(f.factor, f.factor_state))
    elif f.factor is not None:
        where.append(~factor_state_clause(f.factor, FactorState.NOT_SETUP))
    if f.last_authn_status is not None:
        auth = sa.select(UserFactor.user_id).where(
            UserFactor.user_id == User.id, UserFactor.last_auth_status == f.last_authn_status
        )
        if f.factor is not None:
            auth = auth.where(UserFactor.factor_type == f.factor.value)
        where.append(auth.exists())
    if f.q:
        where.append(user_search.prefix_clause(f.q, indexed=q_indexed))
    return where


def page(
    session: Session, f: UserFilter, *, limit: int, after: tuple[str, str] | None
) -> tuple[list[User], tuple[str, str] | None]:
    """One page of live users in ``(username_key, id)`` order after ``after``, and the key of its last row
    when more may follow."""
    order: sa.ColumnElement[str] | sa.orm.InstrumentedAttribute[str] = User.username_key
    q_indexed = True
    if f.q:
        q_indexed = not user_search.broad_on_sqlite(session, f.q)
        if q_indexed:  # SQLite: gather the matches by their prefix indexes, never walk username order
            order = user_search.unindexed(User.username_key)
    query = (
        sa.select(User).where(*conditions(f, q_indexed=q_indexed)).order_by(order, User.id).limit(limit + 1)
    )
    if after is not None:
        key, last_id = after
        # the ``>=`` bound lets the planner start an index range scan (the OR alone hides it)
        query = query.where(
            User.username_key >= key,
            sa.or_(User.username_key > key, User.id > last_id),
        )
    rows = list(session.scalars(query))
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, (rows[-1].username_key, rows[-1].id)
    return rows, None


def get(session: Session, user_id: str, *, deleted_ok: bool = False) -> User:
    """A user by id; 404 for unknown ids (and deleted users unless ``deleted_ok``)."""
    user = session.get(User, user_id)
    if user is None or (user.deleted_at is not None and not deleted_ok):
        raise NotFoundError(f"no user {user_id!r}")
    return user


def direct_groups(session: Session, user_id: str) -> list[Group]:
    query = (
        sa.select(Group)
        .join(GroupMember, GroupMember.group_id == Group.id)
        .where(GroupMember.user_id == user_id, Group.deleted_at.is_(None))
        .order_by(Group.name_key, Group.id)
    )
    return list(session.scalars(query))


def device_count(session: Session, user_id: str) -> int:
    query = sa.select(sa.func.count()).select_from(Device).where(Device.user_id == user_id)
    return int(session.scalar(query) or 0)


def factor_summaries(session: Session, user_id: str, now: datetime | None = None) -> list[FactorSummary]:
    """The state of every factor type for one user (three small queries)."""
    now = now or utcnow()
    devices: dict[DeviceType, list[DeviceState]] = {}
    for device_type, device_state in session.execute(
        sa.select(Device.type, Device.state).where(Device.user_id == user_id)
    ):
        devices.setdefault(device_type, []).append(device_state)
    rows = {
        r.factor_type: r for r in session.scalars(sa.select(UserFactor).where(UserFactor.user_id == user_id))
    }
    live_codes = session.scalar(
        sa.select(sa.func.count())
        .select_from(BypassCode)
        .where(
            BypassCode.user_id == user_id,
            BypassCode.revoked_at.is_(None),
            BypassCode.uses_left > 0,
            sa.or_(BypassCode.expires_at.is_(None), BypassCode.expires_at > now),
        )
    )
    out = []
    for factor in FactorType:
        if factor is FactorType.BYPASS_CODE:
            states = [DeviceState.ACTIVE] if live_codes else []
        else:
            states = devices.get(_DEVICE_TYPE[factor], [])
        row = rows.get(factor.value)
        state = factor_state(
            enabled=row.enabled if row is not None else True,
            locked=row is not None and row.locked_at is not None,
            devices=states,
        )
        out.append(
            FactorSummary(
                factor,
                state,
                row.last_auth_status if row is not None else None,
                row.last_auth_at if row is not None else None,
            )
        )
    return out


def _managed(user: User, field: str, verb: str = "change") -> ConflictError:
    return ConflictError(
        f"user {user.username} is managed by source '{user.managed_by}'; {verb} {field} in the directory"
    )


def _check_username_free(session: Session, username: str, except_id: str | None = None) -> None:
    owner = users.owners_of_usernames(session, [users.username_key(username)]).get(
        users.username_key(username)
    )
    if owner is not None and owner[0] != except_id:
        raise ConflictError(f"username {username!r} is taken by another user")


def create_manual(session: Session, fields: dict[str, Any], *, actor: str) -> User:
    """A user no source manages (``managed_by`` NULL), UNENROLLED until it has a device."""
    _check_username_free(session, fields["username"])
    try:
        with session.begin_nested():
            return users.create(
                session, fields, provisioned=True, managed_by=None, actor=actor, reason="created by an admin"
            )
    except sa.exc.IntegrityError:
        raise ConflictError(f"username {fields['username']!r} is taken by another user") from None


def update(session: Session, user: User, changes: dict[str, Any], *, actor: str) -> User:
    """Change a manual user's attributes; any change to a source-managed user is a ConflictError."""
    if user.managed_by is not None:
        for name in SOURCE_FIELDS:
            if name in changes:
                raise _managed(user, name.replace("_", " "))
        raise _managed(user, "its attributes")
    changed = sorted(k for k, v in changes.items() if getattr(user, k) != v)
    if not changed:
        return user
    if "username" in changes and users.username_key(changes["username"]) != user.username_key:
        _check_username_free(session, changes["username"], except_id=user.id)
    try:
        with session.begin_nested():
            users.update_fields(user, changes)
            session.flush()
    except sa.exc.IntegrityError:
        raise ConflictError(f"username {changes['username']!r} is taken by another user") from None
    audit.record(
        session,
        AuditEvent(actor, "user.updated", "user", user.id, None, None, "updated by an admin"),
        {"fields": changed},
    )
    return user


def delete(session: Session, user: User, *, actor: str) -> None:
    """Soft-delete a manual user: PROVISIONING_DISABLED through the lifecycle rules, ``deleted_at`` set,
    live enrollment links revoked; audited."""
    if user.managed_by is not None:
        raise _managed(user, "the user", verb="remove")
    devices = users.device_states_of(session, user.id)
    users.set_provisioned_status(session, user, False, devices, actor=actor, reason="deleted by an admin")
    users.soft_delete(user)
    invites.revoke(session, user.id)
    audit.record(
        session, AuditEvent(actor, "user.deleted", "user", user.id, None, None, "deleted by an admin")
    )


def statuses(session: Session, ids: Sequence[str]) -> dict[str, UserStatus]:
    query = sa.select(User.id, User.status).where(User.id.in_(list(ids)))
    return {uid: status for uid, status in session.execute(query)}

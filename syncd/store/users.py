"""Users: queries and the writes that keep the stored status equal to ``derive_status``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import (
    AuditEvent,
    DeviceState,
    UserState,
    UserStatus,
    derive_status,
    set_provisioned,
)
from syncd.errors import NotFoundError
from syncd.store import audit
from syncd.store.bulk import insert_rows
from syncd.store.tables import Device, SourceLink, User, utcnow


@dataclass(frozen=True, slots=True)
class LinkedUserRow:
    """One user linked to a source, as the planner needs it."""

    anchor: str
    dn: str | None
    in_scope: bool
    user_id: str
    provisioned: bool
    fields: dict[str, Any]


def username_key(username: str) -> str:
    """Usernames are unique case-insensitively (Unicode casefold)."""
    return username.casefold()


def linked(session: Session, source: str, anchors: Iterable[str] | None = None) -> list[LinkedUserRow]:
    """Every user linked to ``source``, or only those of ``anchors`` (rows, no ORM identity map)."""
    if anchors is not None:
        wanted = sorted(set(anchors))
        rows: list[LinkedUserRow] = []
        for i in range(0, len(wanted), 500):
            rows += _linked(session, source, wanted[i : i + 500])
        return rows
    return _linked(session, source, None)


def _linked(session: Session, source: str, anchors: list[str] | None) -> list[LinkedUserRow]:
    query = (
        sa.select(
            SourceLink.anchor,
            SourceLink.dn,
            SourceLink.in_scope,
            User.id,
            User.provisioned,
            User.username,
            User.email,
            User.given_name,
            User.family_name,
            User.display_name,
            User.phone,
            User.attributes,
        )
        .join(User, User.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "user")
    )
    if anchors is not None:
        query = query.where(SourceLink.anchor.in_(anchors))
    rows = []
    for r in session.execute(query):
        fields = {
            "username": r.username,
            "email": r.email,
            "given_name": r.given_name,
            "family_name": r.family_name,
            "display_name": r.display_name,
            "phone": r.phone,
            "attributes": r.attributes or {},
        }
        rows.append(LinkedUserRow(r.anchor, r.dn, r.in_scope, r.id, r.provisioned, fields))
    return rows


DEVICES_OF = sa.select(Device.id, Device.state).where(Device.user_id == sa.bindparam("user_id"))


def device_states_of(session: Session, user_id: str) -> dict[str, DeviceState]:
    """Device states of one user by device id (one prebuilt statement: the per-request paths)."""
    return {device_id: state for device_id, state in session.execute(DEVICES_OF, {"user_id": user_id})}


def device_states(session: Session, user_ids: Iterable[str]) -> dict[str, dict[str, DeviceState]]:
    """Device states of many users, keyed by user id then device id."""
    out: dict[str, dict[str, DeviceState]] = {}
    ids = list(user_ids)
    for chunk in range(0, len(ids), 500):
        query = sa.select(Device.user_id, Device.id, Device.state).where(
            Device.user_id.in_(ids[chunk : chunk + 500])
        )
        for user_id, device_id, state in session.execute(query):
            out.setdefault(user_id, {})[device_id] = state
    return out


def owners_of_usernames(session: Session, keys: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """For live users with these username keys: key → (user id, managing source).

    Deleted users are skipped here rather than in SQL: with ``deleted_at IS NULL`` in the query, SQLite
    (and PostgreSQL without statistics) answers through the ``deleted_at`` index, i.e. every live user.
    """
    out: dict[str, tuple[str, str | None]] = {}
    keys = list(keys)
    for chunk in range(0, len(keys), 500):
        query = sa.select(User.username_key, User.id, User.managed_by, User.deleted_at).where(
            User.username_key.in_(keys[chunk : chunk + 500])
        )
        for key, user_id, source, deleted_at in session.execute(query):
            if deleted_at is None:
                out[key] = (user_id, source)
    return out


def create(
    session: Session,
    fields: dict[str, Any],
    *,
    provisioned: bool,
    managed_by: str | None,
    actor: str,
    reason: str,
    run_id: str | None = None,
) -> User:
    """Insert a user with the status ``derive_status`` gives a user without devices; audit it."""
    state = UserState(user_id="", provisioned=provisioned)
    user = User(
        **fields,
        username_key=username_key(fields["username"]),
        provisioned=provisioned,
        status=state.status,
        managed_by=managed_by,
    )
    session.add(user)
    session.flush()
    audit.record(
        session, AuditEvent(actor, "user.created", "user", user.id, None, user.status.value, reason, run_id)
    )
    return user


def update_fields(user: User, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        setattr(user, name, value)
    user.username_key = username_key(user.username)


def set_provisioned_status(
    session: Session,
    user: User,
    provisioned: bool,
    devices: dict[str, DeviceState],
    *,
    actor: str,
    reason: str,
    run_id: str | None = None,
) -> None:
    """Apply a source's enable/disable through the domain rules; store status and audit the change."""
    outcome = set_provisioned(
        UserState(user.id, user.provisioned, devices), provisioned, actor=actor, reason=reason, run_id=run_id
    )
    user.provisioned = provisioned
    user.status = outcome.state.status
    if outcome.event is not None:
        audit.record(session, outcome.event)


def find(session: Session, ref: str) -> User:
    """A user by id, or by username (case-insensitive, live users only)."""
    user = session.get(User, ref)
    if user is None:
        user = session.scalar(
            sa.select(User).where(User.username_key == username_key(ref), User.deleted_at.is_(None))
        )
    if user is None:
        raise NotFoundError(f"no user {ref!r}")
    return user


def listing(
    session: Session,
    *,
    status: UserStatus | None = None,
    source: str | None = None,
    limit: int = 1000,
    after: str | None = None,
    after_id: str | None = None,
) -> Sequence[User]:
    """Users ordered by username then id, optionally filtered.

    Keyset pagination: ``after`` (a username key) and ``after_id`` (the id of the last user of the previous
    page; usernames repeat when a deleted user's name was taken again).

    Users deleted in their source are included (PROVISIONING_DISABLED until purged after retention).
    """
    query = sa.select(User).order_by(User.username_key, User.id).limit(limit)
    if status is not None:
        query = query.where(User.status == status)
    if source is not None:
        query = query.where(User.managed_by == source)
    if after is not None and after_id is not None:
        query = query.where(
            sa.or_(User.username_key > after, sa.and_(User.username_key == after, User.id > after_id))
        )
    elif after is not None:
        query = query.where(User.username_key > after)
    return session.scalars(query).all()


def soft_delete(user: User) -> None:
    user.deleted_at = user.deleted_at or utcnow()


def undelete(user: User) -> None:
    user.deleted_at = None


def counts_by_status(session: Session) -> dict[str, int]:
    query = sa.select(User.status, sa.func.count()).group_by(User.status)
    return {status.value: n for status, n in session.execute(query)}


def insert_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert users in one executemany. Each row has ``id`` and the user fields; ``username_key``,
    ``status`` (what ``derive_status`` gives a user without devices) and timestamps are filled in here."""
    if not rows:
        return
    now = utcnow()
    insert_rows(
        session,
        User.__table__,  # type: ignore[arg-type]
        [
            {
                **row,
                "username_key": username_key(row["username"]),
                "status": derive_status(provisioned=row["provisioned"], devices=()),
                "deleted_at": None,
                "created_at": now,
                "updated_at": now,
            }
            for row in rows
        ],
    )


def preload(session: Session, user_ids: Iterable[str]) -> dict[str, User]:
    """These users as ORM objects (one query per 500), keyed by id."""
    out: dict[str, User] = {}
    ids = list(user_ids)
    for i in range(0, len(ids), 500):
        out.update({u.id: u for u in session.scalars(sa.select(User).where(User.id.in_(ids[i : i + 500])))})
    return out

"""Apply a judged plan to the store, one unit of work per batch; every status change audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent, derive_status
from syncd.domain.records import SourceUser
from syncd.store import audit, groups, links, users
from syncd.store.tables import Group, SourceLink, User, new_id, utcnow
from syncd.sync.plan import GroupAction, Op, UserAction, fingerprint, release_new_members, user_fields


@dataclass(slots=True)
class Counts:
    """What a run did (stored on the run record)."""

    created: int = 0
    updated: int = 0
    disabled: int = 0
    reenabled: int = 0
    errors: int = 0
    problems: list[str] = field(default_factory=list)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.problems) < 50:
            self.problems.append(message)


@dataclass(frozen=True, slots=True)
class Context:
    """Who applies the plan: source name, audit actor, run id, sources this one may take users over from."""

    source: str
    actor: str
    run_id: str
    take_over_from: frozenset[str]


def apply_users(session: Session, ctx: Context, actions: Sequence[UserAction], counts: Counts) -> None:
    """Apply one batch of user actions inside the caller's unit of work.

    Updates, disables and re-enables go first (a rename may free a username a new user takes), on users
    and links loaded in two queries; creations are then inserted in bulk (users, links, audit rows).
    """
    keys = {users.username_key(a.record.username) for a in actions if a.record is not None}
    owners = users.owners_of_usernames(session, keys)
    changes = [a for a in actions if a.op is not Op.CREATE]
    if changes:
        _apply_changes(session, ctx, changes, owners, counts)
    creates = [a for a in actions if a.op is Op.CREATE]
    if creates:
        session.flush()  # renames above must reach the database before the bulk insert
        _create_users(session, ctx, creates, owners, counts)


def _apply_changes(
    session: Session,
    ctx: Context,
    actions: Sequence[UserAction],
    owners: dict[str, tuple[str, str | None]],
    counts: Counts,
) -> None:
    ids = [a.user_id for a in actions if a.user_id is not None]
    devices = users.device_states(session, ids)
    loaded = users.preload(session, ids)
    linked = links.preload(session, ctx.source, "user", [a.anchor for a in actions])
    left: list[str] = []
    for action in actions:
        user = loaded.get(action.user_id or "")
        link = linked.get(action.anchor)
        if user is None or link is None:
            counts.error(f"user {action.username}: vanished while the run was applied")
            continue
        if action.record is not None:
            key = users.username_key(action.record.username)
            owner = owners.get(key)
            if owner is not None and owner[0] != user.id:
                counts.error(f"user {action.record.username}: username already used by user {owner[0]}")
                continue
            if user.username_key != key and owners.get(user.username_key, ("",))[0] == user.id:
                del owners[user.username_key]  # renamed: the old name is free for a new user
            users.update_fields(user, user_fields(action.record))
            owners[key] = (user.id, ctx.source)
            _touch(link, action)
        state = devices.get(user.id, {})
        if action.op is Op.UPDATE:
            counts.updated += 1
        elif action.op is Op.DISABLE:
            if action.left_scope:
                users.soft_delete(user)
                link.in_scope = False
                left.append(user.id)
            users.set_provisioned_status(
                session, user, False, state, actor=ctx.actor, reason=action.reason, run_id=ctx.run_id
            )
            counts.disabled += 1
        elif action.op is Op.REENABLE:
            users.undelete(user)
            link.in_scope = True
            users.set_provisioned_status(
                session, user, True, state, actor=ctx.actor, reason=action.reason, run_id=ctx.run_id
            )
            counts.reenabled += 1
    if left:
        session.flush()
        groups.remove_memberships_of(session, left, ctx.source)


def _create_users(
    session: Session,
    ctx: Context,
    actions: Sequence[UserAction],
    owners: dict[str, tuple[str, str | None]],
    counts: Counts,
) -> None:
    """Insert new users, their links and their audit rows, :data:`CREATE_CHUNK` users at a time."""
    for start in range(0, len(actions), CREATE_CHUNK):
        _create_some(session, ctx, actions[start : start + CREATE_CHUNK], owners, counts)


# Rows of a chunk are built, inserted and dropped before the next: a batch of 2,000 new users built at
# once is ~4 MB of row dicts, which is what a first sync's memory peaks on (docs/adr/0015).
CREATE_CHUNK = 500


def _create_some(
    session: Session,
    ctx: Context,
    actions: Sequence[UserAction],
    owners: dict[str, tuple[str, str | None]],
    counts: Counts,
) -> None:
    """Insert new users, their links and their audit rows with one executemany each."""
    user_rows: list[dict[str, Any]] = []
    link_rows: list[dict[str, Any]] = []
    events: list[AuditEvent] = []
    for action in actions:
        record = action.record
        assert record is not None
        key = users.username_key(record.username)
        if key in owners:
            _take_over_or_refuse(session, ctx, record, owners[key], counts)
            continue
        user_id = new_id()
        owners[key] = (user_id, ctx.source)
        provisioned = not record.disabled
        user_rows.append(
            {"id": user_id, **user_fields(record), "provisioned": provisioned, "managed_by": ctx.source}
        )
        link_rows.append(
            {
                "source": ctx.source,
                "object_type": "user",
                "anchor": record.anchor,
                "object_id": user_id,
                "dn": record.dn,
                "fingerprint": fingerprint(record),
            }
        )
        status = derive_status(provisioned=provisioned, devices=())
        events.append(
            AuditEvent(
                ctx.actor, "user.created", "user", user_id, None, status.value, action.reason, ctx.run_id
            )
        )
    users.insert_many(session, user_rows)
    links.insert_many(session, link_rows)
    audit.record_many(session, events)
    counts.created += len(user_rows)
    if user_rows and _invites_wanted(session, ctx.source):
        # Same unit of work as the users: their invites and outbox rows.
        from syncd.store import invites  # noqa: PLC0415 - see _invites_wanted

        for user in users.preload(session, [row["id"] for row in user_rows]).values():
            invites.after_user_created(session, user, source=ctx.source, actor=ctx.actor, run_id=ctx.run_id)


def _invites_wanted(session: Session, source: str) -> bool:
    if not session.info:  # nothing attached to this database's units of work: no enrollment settings
        return False
    from syncd.store import enrollment  # noqa: PLC0415 - loaded only where enrollment is configured

    settings = enrollment.of(session)
    return settings is not None and source in settings.invite_sources


def _take_over_or_refuse(
    session: Session,
    ctx: Context,
    record: SourceUser,
    owner: tuple[str, str | None],
    counts: Counts,
) -> None:
    """A new anchor whose username a user already has: take that user over if the config allows it."""
    user_id, owner_source = owner
    if owner_source is not None and owner_source in ctx.take_over_from:
        user = session.get(User, user_id)
        assert user is not None
        users.update_fields(user, user_fields(record))
        user.managed_by = ctx.source
        links.add(
            session, ctx.source, "user", record.anchor, user.id, dn=record.dn, fingerprint=fingerprint(record)
        )
        audit.record(
            session,
            AuditEvent(
                ctx.actor,
                "user.taken_over",
                "user",
                user.id,
                owner_source,
                ctx.source,
                f"username matched; taken over from {owner_source}",
                ctx.run_id,
            ),
        )
        counts.updated += 1
        return
    where = f"source {owner_source}" if owner_source else "no source (managed by admins)"
    counts.error(
        f"user {record.username}: username already belongs to user {user_id} of {where}; "
        "not taken over (see take_over_from)"
    )


def _touch(link: SourceLink, action: UserAction) -> None:
    assert action.record is not None
    link.dn = action.record.dn
    link.fingerprint = fingerprint(action.record)
    link.in_scope = True
    link.last_seen_at = utcnow()


def apply_groups(session: Session, ctx: Context, actions: Sequence[GroupAction], counts: Counts) -> None:
    """Apply group actions (after all users, so member anchors resolve) in the caller's unit of work.

    Group names are unique among live groups: a new group, or a rename, that would take a name another
    group has is refused and counted as an error, the rest of the run goes on.
    """
    names = groups.live_names(session, {a.record.name.casefold() for a in actions if a.record is not None})
    ids: dict[str, str] = {}
    accepted: list[GroupAction] = []
    new_rows: list[dict[str, Any]] = []
    for action in actions:
        if action.record is not None:
            key = action.record.name.casefold()
            holder = names.get(key)
            if holder is not None and holder != action.group_id:
                counts.error(f"group {action.record.name}: the name is already used by group {holder}")
                continue
            gid = action.group_id or new_id()
            names[key] = gid
        if action.op is Op.CREATE:
            assert action.record is not None
            new_rows.append({"id": gid, "name": action.record.name, "description": action.record.description})
        assert action.group_id is not None or action.op is Op.CREATE
        ids[action.anchor] = action.group_id or gid
        accepted.append(action)
    _insert_groups(session, ctx, [a for a in accepted if a.op is Op.CREATE], new_rows)
    group_anchors = set().union(*(a.add_groups | a.remove_groups for a in accepted)) if accepted else set()
    group_ids = {**_ids(session, ctx.source, "group", group_anchors), **ids}
    new = [(ids[a.anchor], a) for a in accepted if a.op is Op.CREATE]
    expected, unlinked = _stage_new_members(session, ctx, new)
    release_new_members(a for _, a in new)  # staged: a first sync's 300,000 anchors aren't needed here
    changed = (a for a in accepted if a.op is not Op.CREATE)
    user_ids = _ids(
        session, ctx.source, "user", {u for a in changed for u in chain(a.add_users, a.remove_users)}
    )
    created: list[tuple[str, GroupAction]] = []
    for action in accepted:
        group_id = ids[action.anchor]
        # set.difference(dict) probes the dict per member; `frozenset - dict.keys()` would copy every key
        not_linked: set[str] | frozenset[str]
        if action.op is Op.CREATE:
            not_linked = unlinked.get(group_id, set()) | action.add_groups.difference(group_ids)
        else:
            not_linked = action.add_users.difference(user_ids) | action.add_groups.difference(group_ids)
        missing = sorted(not_linked)
        if missing:
            counts.error(f"group {action.name}: {len(missing)} member(s) not linked (first: {missing[0]})")
        if action.op is Op.CREATE:  # a new group has no memberships yet: inserted in bulk below
            created.append((group_id, action))
            continue
        _update_group(session, ctx, action, group_id)
        groups.add_members(session, group_id, _resolve(action.add_users, user_ids), ctx.source)
        groups.remove_members(session, group_id, _resolve(action.remove_users, user_ids))
        groups.add_children(session, group_id, _resolve(action.add_groups, group_ids), ctx.source)
        groups.remove_children(session, group_id, _resolve(action.remove_groups, group_ids))
    session.flush()
    if expected:
        groups.insert_staged_members(session, ctx.source, expected=expected)
    children = ((gid, cid) for gid, action in created for cid in _resolve(action.add_groups, group_ids))
    groups.insert_children(session, children, ctx.source)


def _stage_new_members(
    session: Session, ctx: Context, new: Sequence[tuple[str, GroupAction]]
) -> tuple[int, dict[str, set[str]]]:
    """New groups' user members are resolved by the database (a first sync's 300,000 anchors would need
    an anchor → id dict of every user here): staged now, inserted after the other groups' changes.
    Returns how many were staged and, by group id, the anchors no user of this source is linked to."""
    expected = sum(len(a.add_users) for _, a in new)
    if not expected:
        return 0, {}
    groups.stage_members(session, ((gid, anchor) for gid, a in new for anchor in a.add_users))
    return expected, groups.unlinked_staged(session, ctx.source)


def _insert_groups(
    session: Session, ctx: Context, actions: Sequence[GroupAction], rows: list[dict[str, Any]]
) -> None:
    if not rows:
        return
    groups.insert_many(session, rows, managed_by=ctx.source)
    links.insert_many(
        session,
        [
            {
                "source": ctx.source,
                "object_type": "group",
                "anchor": action.anchor,
                "object_id": row["id"],
                "dn": action.record.dn if action.record else None,
                "fingerprint": None,
            }
            for action, row in zip(actions, rows, strict=True)
        ],
    )
    audit.record_many(
        session,
        [
            AuditEvent(
                ctx.actor, "group.created", "group", row["id"], None, row["name"], a.reason, ctx.run_id
            )
            for a, row in zip(actions, rows, strict=True)
        ],
    )


def _ids(session: Session, source: str, object_type: str, anchors: set[str]) -> dict[str, str]:
    """anchor → id: one query for all of the source's links when many are asked for, else by chunks."""
    if len(anchors) > 5000:
        return links.all_ids(session, source, object_type)
    return links.ids_by_anchor(session, source, object_type, anchors)


def _update_group(session: Session, ctx: Context, action: GroupAction, group_id: str) -> None:
    group = session.get(Group, group_id)
    link = links.get(session, ctx.source, "group", action.anchor)
    assert group is not None and link is not None
    if action.op is Op.DISABLE:
        group.deleted_at = utcnow()
        link.in_scope = False
        audit.record(
            session,
            AuditEvent(
                ctx.actor, "group.removed", "group", group.id, group.name, None, action.reason, ctx.run_id
            ),
        )
        return
    assert action.record is not None
    if not link.in_scope:
        group.deleted_at = None
        link.in_scope = True
    if group.name != action.record.name:
        audit.record(
            session,
            AuditEvent(
                ctx.actor,
                "group.renamed",
                "group",
                group.id,
                group.name,
                action.record.name,
                action.reason,
                ctx.run_id,
            ),
        )
    group.name, group.name_key = action.record.name, action.record.name.casefold()
    group.description = action.record.description
    link.dn = action.record.dn
    link.last_seen_at = utcnow()


def _resolve(anchors: frozenset[str], ids: dict[str, str]) -> list[str]:
    return sorted({ids[a] for a in anchors if a in ids})

"""Apply a judged plan to the store, one unit of work per batch; every status change audited."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.store import audit, groups, invites, links, users
from syncd.store.tables import Group, SourceLink, User, utcnow
from syncd.sync.plan import GroupAction, Op, UserAction, fingerprint, user_fields


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
    """Apply one batch of user actions inside the caller's unit of work."""
    keys = {users.username_key(a.record.username) for a in actions if a.record is not None}
    owners = users.owners_of_usernames(session, keys)
    devices = users.device_states(session, [a.user_id for a in actions if a.user_id is not None])
    for action in actions:
        if action.op is Op.CREATE:
            _create_user(session, ctx, action, owners, counts)
            continue
        user = session.get(User, action.user_id)
        link = links.get(session, ctx.source, "user", action.anchor)
        if user is None or link is None:
            counts.error(f"user {action.username}: vanished while the run was applied")
            continue
        if action.record is not None:
            key = users.username_key(action.record.username)
            owner = owners.get(key)
            if owner is not None and owner[0] != user.id:
                counts.error(f"user {action.record.username}: username already used by user {owner[0]}")
                continue
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


def _create_user(
    session: Session,
    ctx: Context,
    action: UserAction,
    owners: dict[str, tuple[str, str | None]],
    counts: Counts,
) -> None:
    record = action.record
    assert record is not None
    key = users.username_key(record.username)
    owner = owners.get(key)
    if owner is not None:
        user_id, owner_source = owner
        if owner_source is not None and owner_source in ctx.take_over_from:
            user = session.get(User, user_id)
            assert user is not None
            users.update_fields(user, user_fields(record))
            user.managed_by = ctx.source
            links.add(
                session,
                ctx.source,
                "user",
                record.anchor,
                user.id,
                dn=record.dn,
                fingerprint=fingerprint(record),
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
        return
    user = users.create(
        session,
        user_fields(record),
        provisioned=not record.disabled,
        managed_by=ctx.source,
        actor=ctx.actor,
        reason=action.reason,
        run_id=ctx.run_id,
    )
    links.add(
        session, ctx.source, "user", record.anchor, user.id, dn=record.dn, fingerprint=fingerprint(record)
    )
    owners[key] = (user.id, ctx.source)
    counts.created += 1
    # Same unit of work as the user: the invite and its outbox row (when the source invites new users).
    invites.after_user_created(session, user, source=ctx.source, actor=ctx.actor, run_id=ctx.run_id)


def _touch(link: SourceLink, action: UserAction) -> None:
    assert action.record is not None
    link.dn = action.record.dn
    link.fingerprint = fingerprint(action.record)
    link.in_scope = True
    link.last_seen_at = utcnow()


def apply_groups(session: Session, ctx: Context, actions: Sequence[GroupAction], counts: Counts) -> None:
    """Apply group actions (after all users, so member anchors resolve) in the caller's unit of work."""
    ids: dict[str, str] = {}
    for action in actions:
        if action.op is Op.CREATE:
            assert action.record is not None
            group = Group(
                name=action.record.name,
                name_key=action.record.name.casefold(),
                description=action.record.description,
                managed_by=ctx.source,
            )
            session.add(group)
            session.flush()
            links.add(session, ctx.source, "group", action.anchor, group.id, dn=action.record.dn)
            audit.record(
                session,
                AuditEvent(
                    ctx.actor, "group.created", "group", group.id, None, group.name, action.reason, ctx.run_id
                ),
            )
            ids[action.anchor] = group.id
        elif action.group_id is not None:
            ids[action.anchor] = action.group_id
    user_anchors = set().union(*(a.add_users | a.remove_users for a in actions)) if actions else set()
    group_anchors = set().union(*(a.add_groups | a.remove_groups for a in actions)) if actions else set()
    user_ids = links.ids_by_anchor(session, ctx.source, "user", user_anchors)
    group_ids = {**links.ids_by_anchor(session, ctx.source, "group", group_anchors), **ids}
    for action in actions:
        group_id = ids[action.anchor]
        if action.op is not Op.CREATE:
            _update_group(session, ctx, action, group_id)
        missing = sorted((action.add_users - user_ids.keys()) | (action.add_groups - group_ids.keys()))
        if missing:
            counts.error(f"group {action.name}: {len(missing)} member(s) not linked (first: {missing[0]})")
        groups.add_members(session, group_id, _resolve(action.add_users, user_ids), ctx.source)
        groups.remove_members(session, group_id, _resolve(action.remove_users, user_ids))
        groups.add_children(session, group_id, _resolve(action.add_groups, group_ids), ctx.source)
        groups.remove_children(session, group_id, _resolve(action.remove_groups, group_ids))


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

"""Planning beyond one whole snapshot: skipping unchanged users cheaply, and planning incremental reads.

Pure, like :mod:`syncd.sync.plan`, whose per-record rules both reuse.

* :func:`split_unchanged` compares each read user's fingerprint with the one stored when it was last
  applied; a user whose fingerprint, scope and provisioning all match needs nothing, and the engine
  loads stored fields only for the rest (a resync of 100,000 unchanged users loads none).
* :func:`plan_delta` turns a :class:`~syncd.domain.records.Delta` into the same :class:`Plan` a full run
  makes: changed records are planned exactly like a snapshot's; anchors the source reports deleted (or
  that are missing from a complete anchor set it reports) are disabled as "left scope". Skipped anchors
  (entries the source has but could not use) are never disabled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from syncd.domain.records import Delta, Snapshot, SourceUser
from syncd.sync.plan import (
    GroupAction,
    LinkedGroup,
    LinkedUser,
    Op,
    Plan,
    UserAction,
    fingerprint,
    plan_groups,
    plan_users,
)

GONE = "deleted or moved out of scope in source"


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the store says about one linked user, without its fields (cheap to load for every user)."""

    user_id: str
    provisioned: bool
    in_scope: bool
    fingerprint: str | None


def split_unchanged(
    records: Iterable[SourceUser], states: Mapping[str, LinkState]
) -> tuple[list[SourceUser], int]:
    """The records that may need an action, and how many need none (same fingerprint, scope, status)."""
    changed: list[SourceUser] = []
    unchanged = 0
    for record in records:
        state = states.get(record.anchor)
        if (
            state is not None
            and state.in_scope
            and state.provisioned != record.disabled
            and state.fingerprint is not None
            and state.fingerprint == fingerprint(record)
        ):
            unchanged += 1
        else:
            changed.append(record)
    return changed, unchanged


def gone_anchors(
    deleted: Iterable[str], present: frozenset[str] | None, linked: Iterable[str], keep: Iterable[str]
) -> set[str]:
    """Linked anchors the source no longer has: reported deleted, or absent from a complete anchor set;
    never one of ``keep`` (read this time, or skipped)."""
    linked_set = set(linked)
    gone = set(deleted) & linked_set
    if present is not None:
        gone |= linked_set - present
    return gone - set(keep)


def plan_delta(
    delta: Delta,
    users: Mapping[str, LinkedUser],
    groups: Mapping[str, LinkedGroup],
    *,
    linked_users: int,
    linked_memberships: int,
) -> Plan:
    """The plan of an incremental run.

    ``users`` / ``groups`` hold what syncd links for every anchor the delta names (all linked ones when
    the delta carries a complete anchor set); ``linked_users`` and ``linked_memberships`` are the
    source's totals, for the guard's percentages.
    """
    read_users = {record.anchor for record in delta.users}
    user_actions, unchanged = plan_users(
        Snapshot(users=delta.users, groups=()), {a: users[a] for a in read_users if a in users}
    )
    live_users = [a for a, u in users.items() if u.in_scope]
    keep_users = read_users | delta.skipped
    for anchor in sorted(gone_anchors(delta.deleted, delta.present_users, live_users, keep_users)):
        current = users[anchor]
        username = str(current.fields.get("username") or anchor)
        user_actions.append(
            UserAction(Op.DISABLE, anchor, username, GONE, user_id=current.user_id, left_scope=True)
        )
    read_groups = {record.anchor for record in delta.groups}
    group_actions = plan_groups(
        Snapshot(users=(), groups=delta.groups), {a: groups[a] for a in read_groups if a in groups}
    )
    live_groups = [a for a, g in groups.items() if g.in_scope]
    keep_groups = read_groups | delta.skipped
    for anchor in sorted(gone_anchors(delta.deleted, delta.present_groups, live_groups, keep_groups)):
        group = groups[anchor]
        group_actions.append(
            GroupAction(
                Op.DISABLE,
                anchor,
                group.name,
                group_id=group.group_id,
                remove_users=group.member_users,
                remove_groups=group.member_groups,
            )
        )
    return Plan(
        users=tuple(user_actions),
        groups=tuple(group_actions),
        unchanged=unchanged,
        source_users=estimated_size(user_actions, users, linked_users),
        linked_users=linked_users,
        linked_memberships=linked_memberships,
        complete=delta.complete,
        incomplete_reason=delta.incomplete_reason,
        warnings=delta.warnings,
    )


def estimated_size(actions: Sequence[UserAction], users: Mapping[str, LinkedUser], linked_users: int) -> int:
    """How many users the source has in scope after these actions (a delta does not say): linked live
    users, plus new ones and ones back in scope, minus those that left. Judged like a full read's count,
    so a delta that removes most of a directory meets the same empty-read and shrink-floor checks."""
    size = linked_users
    for action in actions:
        if action.op is Op.CREATE:
            size += 1
        elif action.op is Op.DISABLE and action.left_scope:
            size -= 1
        elif action.op is Op.REENABLE and not users[action.anchor].in_scope:
            size += 1
    return max(0, size)

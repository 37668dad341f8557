"""The plan: a pure diff between what a source says now and what syncd last applied from it.

Every action carries a reason, so ``syncd sync --dry-run`` shows exactly what a real run would do, and a
held run can be reviewed before approval. Nothing here touches the database.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from syncd.domain.records import Snapshot, SourceGroup, SourceUser

USER_FIELDS = ("username", "email", "given_name", "family_name", "display_name", "phone", "attributes")


class Op(enum.StrEnum):
    """What one action does."""

    CREATE = "create"
    UPDATE = "update"
    DISABLE = "disable"
    REENABLE = "reenable"


@dataclass(frozen=True, slots=True)
class LinkedUser:
    """What syncd holds for one anchor of this source (read from the store before planning)."""

    user_id: str
    provisioned: bool
    in_scope: bool
    fields: Mapping[str, Any]
    dn: str | None = None


@dataclass(frozen=True, slots=True)
class LinkedGroup:
    """What syncd holds for one group anchor of this source."""

    group_id: str
    name: str
    description: str | None
    in_scope: bool
    member_users: frozenset[str]
    member_groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class UserAction:
    """Create / update / disable / re-enable one user, and why."""

    op: Op
    anchor: str
    username: str
    reason: str
    user_id: str | None = None
    record: SourceUser | None = None
    left_scope: bool = False


@dataclass(frozen=True, slots=True)
class GroupAction:
    """Create / update / remove one group, including member changes (by anchor); ``reason`` says why."""

    op: Op
    anchor: str
    name: str
    group_id: str | None = None
    record: SourceGroup | None = None
    add_users: frozenset[str] = frozenset()
    remove_users: frozenset[str] = frozenset()
    add_groups: frozenset[str] = frozenset()
    remove_groups: frozenset[str] = frozenset()
    renamed: bool = False
    back_in_scope: bool = False

    @property
    def reason(self) -> str:
        if self.op is Op.CREATE:
            return "new"
        if self.op is Op.DISABLE:
            return "left scope"
        added, removed = (
            len(self.add_users) + len(self.add_groups),
            len(self.remove_users) + len(self.remove_groups),
        )
        parts = [
            text
            for text, present in (
                ("renamed", self.renamed),
                (f"+{added} members", added),
                (f"-{removed} members", removed),
                ("back in scope", self.back_in_scope),
            )
            if present
        ]
        return ", ".join(parts)

    @property
    def is_noop(self) -> bool:
        return self.op is Op.UPDATE and not self.reason


@dataclass(frozen=True, slots=True)
class Plan:
    """All actions of one run plus what the guard needs to judge it."""

    users: tuple[UserAction, ...]
    groups: tuple[GroupAction, ...]
    unchanged: int
    source_users: int
    linked_users: int
    linked_memberships: int = 0
    complete: bool = True
    incomplete_reason: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def count(self, op: Op) -> int:
        return sum(1 for action in self.users if action.op is op)

    @property
    def membership_removals(self) -> int:
        return sum(len(a.remove_users) + len(a.remove_groups) for a in self.groups)

    @property
    def is_empty(self) -> bool:
        return not self.users and not self.groups

    def without_disables(self) -> Plan:
        """The same plan minus every disable and every removal (for incomplete reads)."""
        users = tuple(a for a in self.users if a.op is not Op.DISABLE)
        stripped = (replace(a, remove_users=frozenset(), remove_groups=frozenset()) for a in self.groups)
        groups = tuple(a for a in stripped if a.op is not Op.DISABLE and not a.is_noop)
        return Plan(
            users,
            groups,
            self.unchanged,
            self.source_users,
            self.linked_users,
            self.linked_memberships,
            self.complete,
            self.incomplete_reason,
            self.warnings,
        )


def release_records(actions: Iterable[UserAction]) -> None:
    """Let go of the source records of applied user actions.

    Once a batch is applied, nothing reads its records again: the plan kept with the run's result is
    only described (op, anchor, username, reason) and counted. At a first sync of 100,000 users the
    records are ~85 MB; dropping them batch by batch lets the rest of the run reuse that memory.
    """
    for action in actions:
        if action.record is not None:
            object.__setattr__(action, "record", None)  # frozen for everyone else; see the docstring


def release_new_members(actions: Iterable[GroupAction]) -> None:
    """Let go of created groups' records and user member anchors once the groups are inserted and their
    members staged in the database (see :func:`release_group_records`): ~15 MB of sets at a first
    sync's 300,000 memberships, which the rest of the group step can then use."""
    empty: frozenset[str] = frozenset()
    for action in actions:
        if action.op is Op.CREATE:
            object.__setattr__(action, "record", None)
            object.__setattr__(action, "add_users", empty)


def release_group_records(actions: Iterable[GroupAction]) -> None:
    """Like :func:`release_records`, for applied group actions; a created group also lets go of its
    member anchors (its reason is "new" whatever they are; they are in the store now): a first sync's
    300,000 memberships are ~15 MB of sets."""
    empty: frozenset[str] = frozenset()
    for action in actions:
        if action.record is not None:
            object.__setattr__(action, "record", None)
        if action.op is Op.CREATE:
            object.__setattr__(action, "add_users", empty)
            object.__setattr__(action, "add_groups", empty)


def user_fields(record: SourceUser) -> dict[str, Any]:
    """The stored form of a source user's fields (compared against :attr:`LinkedUser.fields`)."""
    return {
        "username": record.username,
        "email": record.email,
        "given_name": record.given_name,
        "family_name": record.family_name,
        "display_name": record.display_name,
        "phone": record.phone,
        "attributes": attribute_map(record.attributes),
    }


def attribute_map(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``(name, value)`` pairs → ``{name: value}``, several values of one name as a sorted list."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return {
        name: values[0] if len(values) == 1 else sorted(values) for name, values in sorted(grouped.items())
    }


def fingerprint(record: SourceUser) -> str:
    """A stable hash of everything a source says about a user (cheap "unchanged" checks)."""
    data = {**user_fields(record), "disabled": record.disabled, "dn": record.dn}
    return hashlib.sha256(_FINGERPRINT_JSON.encode(data).encode()).hexdigest()


# json.dumps(data, sort_keys=True, ensure_ascii=False), without building an encoder per call
_FINGERPRINT_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False)


def plan_users(snapshot: Snapshot, linked: Mapping[str, LinkedUser]) -> tuple[list[UserAction], int]:
    """Diff users; returns the actions and the number of unchanged users."""
    actions: list[UserAction] = []
    unchanged = 0
    seen: set[str] = set()
    track = bool(linked)  # (a first sync links no one: no set of every anchor read)
    for record in snapshot.users:
        if track:
            seen.add(record.anchor)
        current = linked.get(record.anchor)
        if current is None:
            reason = "new, disabled in source" if record.disabled else "new"
            actions.append(UserAction(Op.CREATE, record.anchor, record.username, reason, record=record))
            continue
        changed = _changed_fields(current, record)
        if record.disabled and current.provisioned:
            actions.append(_user(Op.DISABLE, current, record, "disabled in source", changed))
        elif not record.disabled and not current.provisioned:
            why = "back in scope" if not current.in_scope else "enabled in source"
            actions.append(_user(Op.REENABLE, current, record, why, changed))
        elif changed or not current.in_scope or _dn_key(record.dn) != _dn_key(current.dn):
            reason = f"attributes changed: {', '.join(changed)}" if changed else "moved or renamed in source"
            actions.append(_user(Op.UPDATE, current, record, reason, changed))
        else:
            unchanged += 1
    for anchor, current in linked.items():
        if anchor not in seen and current.in_scope:
            username = str(current.fields.get("username", anchor))
            actions.append(
                UserAction(
                    Op.DISABLE, anchor, username, "left scope", user_id=current.user_id, left_scope=True
                )
            )
    return actions, unchanged


def plan_groups(snapshot: Snapshot, linked: Mapping[str, LinkedGroup]) -> list[GroupAction]:
    """Diff groups and their direct memberships (users and nested groups, by anchor)."""
    actions: list[GroupAction] = []
    seen: set[str] = set()
    for record in snapshot.groups:
        seen.add(record.anchor)
        current = linked.get(record.anchor)
        if current is None:
            actions.append(
                GroupAction(
                    Op.CREATE,
                    record.anchor,
                    record.name,
                    record=record,
                    add_users=record.member_users,
                    add_groups=record.member_groups,
                )
            )
            continue
        add_u, rem_u = record.member_users - current.member_users, current.member_users - record.member_users
        add_g, rem_g = (
            record.member_groups - current.member_groups,
            current.member_groups - record.member_groups,
        )
        renamed = record.name != current.name or record.description != current.description
        if not (add_u or rem_u or add_g or rem_g or renamed or not current.in_scope):
            continue
        actions.append(
            GroupAction(
                Op.UPDATE,
                record.anchor,
                record.name,
                group_id=current.group_id,
                record=record,
                add_users=add_u,
                remove_users=rem_u,
                add_groups=add_g,
                remove_groups=rem_g,
                renamed=renamed,
                back_in_scope=not current.in_scope,
            )
        )
    for anchor, current in linked.items():
        if anchor not in seen and current.in_scope:
            actions.append(
                GroupAction(
                    Op.DISABLE,
                    anchor,
                    current.name,
                    group_id=current.group_id,
                    remove_users=current.member_users,
                    remove_groups=current.member_groups,
                )
            )
    return actions


def make_plan(snapshot: Snapshot, users: Mapping[str, LinkedUser], groups: Mapping[str, LinkedGroup]) -> Plan:
    """The whole plan of one run."""
    user_actions, unchanged = plan_users(snapshot, users)
    group_actions = plan_groups(snapshot, groups)
    linked_live = sum(1 for u in users.values() if u.in_scope)
    return Plan(
        users=tuple(user_actions),
        groups=tuple(group_actions),
        unchanged=unchanged,
        source_users=len(snapshot.users),
        linked_users=linked_live,
        linked_memberships=sum(len(g.member_users) + len(g.member_groups) for g in groups.values()),
        complete=snapshot.complete,
        incomplete_reason=snapshot.incomplete_reason,
        warnings=snapshot.warnings,
    )


def describe(plan: Plan) -> list[dict[str, Any]]:
    """The plan as JSON-able rows (kept with held and dry runs, printed by the CLI)."""
    rows: list[dict[str, Any]] = [
        {"object": "user", "op": a.op.value, "anchor": a.anchor, "name": a.username, "reason": a.reason}
        for a in plan.users
    ]
    rows += [
        {"object": "group", "op": a.op.value, "anchor": a.anchor, "name": a.name, "reason": a.reason}
        for a in plan.groups
    ]
    return rows


def _changed_fields(current: LinkedUser, record: SourceUser) -> list[str]:
    new = user_fields(record)
    return [name for name in USER_FIELDS if _norm(current.fields.get(name)) != _norm(new[name])]


def _dn_key(dn: str | None) -> str | None:
    """DNs compare case-insensitively (a change of case only is no move)."""
    return dn.casefold() if dn else None


def _norm(value: Any) -> Any:
    return value if value not in ("", {}) else None


def _user(op: Op, current: LinkedUser, record: SourceUser, reason: str, changed: Iterable[str]) -> UserAction:
    changed = list(changed)
    if changed and op is not Op.UPDATE:
        reason = f"{reason}; attributes changed: {', '.join(changed)}"
    return UserAction(op, record.anchor, record.username, reason, user_id=current.user_id, record=record)

"""Unit tests of the plan: the pure diff between a source snapshot and what syncd holds for it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from syncd.domain.records import Snapshot, SourceGroup, SourceUser
from syncd.sync.plan import (
    GroupAction,
    LinkedGroup,
    LinkedUser,
    Op,
    Plan,
    UserAction,
    describe,
    fingerprint,
    make_plan,
    plan_groups,
    plan_users,
    user_fields,
)


def user(anchor: str = "a-1", username: str = "alice", **changes: Any) -> SourceUser:
    base = SourceUser(
        anchor=anchor,
        username=username,
        email=f"{username}@example.com",
        given_name=username.title(),
        family_name="Example",
        display_name=f"{username.title()} Example",
        phone="+1 555 0100",
        dn=f"uid={username},ou=Staff,dc=example,dc=com",
        attributes=(("department", "IT"),),
    )
    return dataclasses.replace(base, **changes)


def linked(record: SourceUser, user_id: str = "U1", **changes: Any) -> LinkedUser:
    """What syncd would hold after applying ``record``."""
    base = LinkedUser(
        user_id=user_id,
        provisioned=not record.disabled,
        in_scope=True,
        fields=user_fields(record),
        dn=record.dn,
    )
    return dataclasses.replace(base, **changes)


def snap(*users: SourceUser, groups: tuple[SourceGroup, ...] = (), **kw: Any) -> Snapshot:
    return Snapshot(users=users, groups=groups, **kw)


def only(actions: list[UserAction]) -> UserAction:
    assert len(actions) == 1, actions
    return actions[0]


# ---- users --------------------------------------------------------------------------------------
def test_new_user_is_created() -> None:
    record = user()
    actions, unchanged = plan_users(snap(record), {})
    action = only(actions)
    assert (action.op, action.anchor, action.username, action.reason) == (Op.CREATE, "a-1", "alice", "new")
    assert action.record == record
    assert action.user_id is None
    assert not action.left_scope
    assert unchanged == 0


def test_new_user_disabled_in_source_is_created_and_says_so() -> None:
    action = only(plan_users(snap(user(disabled=True)), {})[0])
    assert action.op is Op.CREATE
    assert action.reason == "new, disabled in source"
    assert action.record is not None
    assert action.record.disabled


def test_unchanged_user_is_only_counted() -> None:
    record = user()
    actions, unchanged = plan_users(snap(record), {"a-1": linked(record)})
    assert actions == []
    assert unchanged == 1


def test_empty_strings_and_missing_values_are_the_same() -> None:
    record = user(phone=None, attributes=())
    held = linked(record, fields={**user_fields(record), "phone": "", "attributes": {}})
    assert plan_users(snap(record), {"a-1": held}) == ([], 1)


def test_changed_email_is_an_update_naming_the_field() -> None:
    before = user()
    after = user(email="alice.new@example.com")
    action = only(plan_users(snap(after), {"a-1": linked(before)})[0])
    assert action.op is Op.UPDATE
    assert action.reason == "attributes changed: email"
    assert action.user_id == "U1"
    assert action.record == after


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"username": "alice2"}, "username"),
        ({"email": None}, "email"),
        ({"given_name": "Alicia"}, "given_name"),
        ({"family_name": "Other"}, "family_name"),
        ({"display_name": "A. E."}, "display_name"),
        ({"phone": "+1 555 0199"}, "phone"),
        ({"attributes": (("department", "Sales"),)}, "attributes"),
    ],
)
def test_every_mapped_field_is_compared(change: dict[str, Any], field: str) -> None:
    before = user()
    after = dataclasses.replace(before, **change)
    action = only(plan_users(snap(after), {"a-1": linked(before)})[0])
    assert action.op is Op.UPDATE
    assert action.reason == f"attributes changed: {field}"


def test_several_changed_fields_are_all_named_in_order() -> None:
    before = user()
    after = user(email="x@example.com", phone="+1 555 0111", given_name="Al")
    action = only(plan_users(snap(after), {"a-1": linked(before)})[0])
    assert action.reason == "attributes changed: email, given_name, phone"


def test_dn_change_only_is_moved_or_renamed() -> None:
    before = user()
    after = user(dn="uid=alice,ou=Sales,dc=example,dc=com")
    action = only(plan_users(snap(after), {"a-1": linked(before)})[0])
    assert action.op is Op.UPDATE
    assert action.reason == "moved or renamed in source"
    assert action.user_id == "U1"


def test_rename_keeps_the_same_anchor_and_never_creates() -> None:
    before = user()
    after = user(username="alice.smith", dn="uid=alice.smith,ou=Staff,dc=example,dc=com")
    actions, unchanged = plan_users(snap(after), {"a-1": linked(before)})
    action = only(actions)
    assert action.op is Op.UPDATE
    assert (action.anchor, action.user_id, action.username) == ("a-1", "U1", "alice.smith")
    assert "username" in action.reason
    assert unchanged == 0


def test_same_username_under_a_new_anchor_is_a_new_user_and_the_old_one_left_scope() -> None:
    """Anchors, never usernames, tie a user to its source."""
    old = user(anchor="a-1")
    new = user(anchor="a-2")
    actions, _ = plan_users(snap(new), {"a-1": linked(old)})
    assert {(a.op, a.anchor) for a in actions} == {(Op.CREATE, "a-2"), (Op.DISABLE, "a-1")}


def test_disabled_in_source_is_a_disable() -> None:
    before = user()
    action = only(plan_users(snap(user(disabled=True)), {"a-1": linked(before)})[0])
    assert (action.op, action.reason, action.user_id) == (Op.DISABLE, "disabled in source", "U1")
    assert not action.left_scope


def test_disabled_in_source_with_changes_names_them_too() -> None:
    before = user()
    action = only(plan_users(snap(user(disabled=True, email="gone@example.com")), {"a-1": linked(before)})[0])
    assert action.op is Op.DISABLE
    assert action.reason == "disabled in source; attributes changed: email"


def test_still_disabled_in_source_is_unchanged() -> None:
    record = user(disabled=True)
    assert plan_users(snap(record), {"a-1": linked(record)}) == ([], 1)


def test_enabled_again_in_source_is_a_reenable() -> None:
    record = user()
    held = linked(user(disabled=True))
    action = only(plan_users(snap(record), {"a-1": held})[0])
    assert (action.op, action.reason, action.user_id) == (Op.REENABLE, "enabled in source", "U1")


def test_missing_anchor_left_scope() -> None:
    held = linked(user())
    actions, unchanged = plan_users(snap(), {"a-1": held})
    action = only(actions)
    assert action.op is Op.DISABLE
    assert action.reason == "left scope"
    assert action.left_scope is True
    assert (action.anchor, action.user_id, action.username) == ("a-1", "U1", "alice")
    assert action.record is None
    assert unchanged == 0


def test_missing_anchor_already_out_of_scope_is_nothing() -> None:
    held = linked(user(), provisioned=False, in_scope=False)
    assert plan_users(snap(), {"a-1": held}) == ([], 0)


def test_user_back_in_scope_is_reenabled() -> None:
    record = user()
    held = linked(record, provisioned=False, in_scope=False)
    action = only(plan_users(snap(record), {"a-1": held})[0])
    assert (action.op, action.reason, action.user_id) == (Op.REENABLE, "back in scope", "U1")


def test_several_users_at_once() -> None:
    keep, change, gone = user("a-1", "alice"), user("a-2", "bob"), user("a-3", "carol")
    new = user("a-4", "dave")
    held = {"a-1": linked(keep, "U1"), "a-2": linked(change, "U2"), "a-3": linked(gone, "U3")}
    actions, unchanged = plan_users(snap(keep, user("a-2", "bob", phone=None), new), held)
    assert unchanged == 1
    assert sorted((a.op.value, a.anchor, a.reason) for a in actions) == [
        ("create", "a-4", "new"),
        ("disable", "a-3", "left scope"),
        ("update", "a-2", "attributes changed: phone"),
    ]


# ---- groups -------------------------------------------------------------------------------------
def group(anchor: str = "g-1", name: str = "staff", **changes: Any) -> SourceGroup:
    base = SourceGroup(anchor=anchor, name=name, description="All staff", dn=f"cn={name},ou=Groups")
    return dataclasses.replace(base, **changes)


def held_group(record: SourceGroup, group_id: str = "G1", **changes: Any) -> LinkedGroup:
    base = LinkedGroup(
        group_id=group_id,
        name=record.name,
        description=record.description,
        in_scope=True,
        member_users=record.member_users,
        member_groups=record.member_groups,
    )
    return dataclasses.replace(base, **changes)


def one_group(actions: list[GroupAction]) -> GroupAction:
    assert len(actions) == 1, actions
    return actions[0]


def test_new_group_is_created_with_its_members() -> None:
    record = group(member_users=frozenset({"a-1", "a-2"}), member_groups=frozenset({"g-9"}))
    action = one_group(plan_groups(snap(groups=(record,)), {}))
    assert (action.op, action.anchor, action.name, action.reason) == (Op.CREATE, "g-1", "staff", "new")
    assert action.add_users == {"a-1", "a-2"}
    assert action.add_groups == {"g-9"}
    assert action.remove_users == action.remove_groups == frozenset()
    assert action.record == record


def test_unchanged_group_is_nothing() -> None:
    record = group(member_users=frozenset({"a-1"}), member_groups=frozenset({"g-2"}))
    assert plan_groups(snap(groups=(record,)), {"g-1": held_group(record)}) == []


def test_member_add_and_remove_diff() -> None:
    before = group(member_users=frozenset({"a-1", "a-2", "a-3"}))
    after = group(member_users=frozenset({"a-2", "a-3", "a-4", "a-5"}))
    action = one_group(plan_groups(snap(groups=(after,)), {"g-1": held_group(before)}))
    assert action.op is Op.UPDATE
    assert action.group_id == "G1"
    assert action.add_users == {"a-4", "a-5"}
    assert action.remove_users == {"a-1"}
    assert action.add_groups == action.remove_groups == frozenset()
    assert action.reason == "+2 members, -1 members"


def test_nested_group_added() -> None:
    before = group(member_users=frozenset({"a-1"}))
    after = group(member_users=frozenset({"a-1"}), member_groups=frozenset({"g-2"}))
    action = one_group(plan_groups(snap(groups=(after,)), {"g-1": held_group(before)}))
    assert action.op is Op.UPDATE
    assert action.add_groups == {"g-2"}
    assert action.add_users == action.remove_users == action.remove_groups == frozenset()
    assert action.reason == "+1 members"


def test_nested_group_removed() -> None:
    before = group(member_groups=frozenset({"g-2", "g-3"}))
    after = group(member_groups=frozenset({"g-3"}))
    action = one_group(plan_groups(snap(groups=(after,)), {"g-1": held_group(before)}))
    assert action.remove_groups == {"g-2"}
    assert action.reason == "-1 members"


def test_member_counts_add_users_and_groups() -> None:
    """A user and a nested group are two members even when their anchors happen to be equal strings
    (a CSV source numbers users and groups independently)."""
    before = group()
    after = group(member_users=frozenset({"7"}), member_groups=frozenset({"7"}))
    action = one_group(plan_groups(snap(groups=(after,)), {"g-1": held_group(before)}))
    assert action.reason == "+2 members"


@pytest.mark.parametrize(
    ("change", "reason"), [({"name": "employees"}, "renamed"), ({"description": None}, "renamed")]
)
def test_group_rename_or_new_description(change: dict[str, Any], reason: str) -> None:
    before = group()
    action = one_group(
        plan_groups(snap(groups=(dataclasses.replace(before, **change),)), {"g-1": held_group(before)})
    )
    assert (action.op, action.reason) == (Op.UPDATE, reason)


def test_group_left_scope_removes_all_members() -> None:
    before = group(member_users=frozenset({"a-1", "a-2"}), member_groups=frozenset({"g-2"}))
    action = one_group(plan_groups(snap(), {"g-1": held_group(before)}))
    assert (action.op, action.reason, action.group_id, action.name) == (
        Op.DISABLE,
        "left scope",
        "G1",
        "staff",
    )
    assert action.remove_users == {"a-1", "a-2"}
    assert action.remove_groups == {"g-2"}
    assert action.add_users == action.add_groups == frozenset()


def test_group_already_out_of_scope_and_missing_is_nothing() -> None:
    assert plan_groups(snap(), {"g-1": held_group(group(), in_scope=False)}) == []


def test_group_back_in_scope() -> None:
    record = group(member_users=frozenset({"a-1"}))
    action = one_group(plan_groups(snap(groups=(record,)), {"g-1": held_group(record, in_scope=False)}))
    assert (action.op, action.reason) == (Op.UPDATE, "back in scope")


# ---- the whole plan ------------------------------------------------------------------------------
def test_make_plan_counts() -> None:
    a, b, c = user("a-1", "alice"), user("a-2", "bob"), user("a-3", "carol")
    users = {
        "a-1": linked(a, "U1"),
        "a-2": linked(b, "U2"),
        "a-3": linked(c, "U3", provisioned=False, in_scope=False),
    }
    g = group(member_users=frozenset({"a-1", "a-2"}), member_groups=frozenset({"g-2"}))
    plan = make_plan(
        snap(
            a, user("a-5", "eve"), groups=(g,), complete=False, incomplete_reason="sizelimit", warnings=("w",)
        ),
        users,
        {"g-1": held_group(g), "g-2": held_group(group("g-2", "sub", member_users=frozenset({"a-9"})), "G2")},
    )
    assert plan.unchanged == 1
    assert plan.source_users == 2
    assert plan.linked_users == 2  # only those in scope
    assert plan.linked_memberships == 4
    assert (plan.complete, plan.incomplete_reason, plan.warnings) == (False, "sizelimit", ("w",))
    assert plan.count(Op.CREATE) == 1
    assert plan.count(Op.DISABLE) == 1
    assert plan.membership_removals == 1  # g-2 left scope with one member
    assert not plan.is_empty


def test_empty_plan() -> None:
    record = user()
    plan = make_plan(snap(record), {"a-1": linked(record)}, {})
    assert plan.is_empty
    assert plan.unchanged == 1
    assert describe(plan) == []


def _mixed_plan() -> Plan:
    users = {
        "a-1": linked(user("a-1", "alice"), "U1"),
        "a-2": linked(user("a-2", "bob"), "U2"),
        "a-3": linked(user("a-3", "carol"), "U3"),
        "a-4": linked(user("a-4", "dan", disabled=True), "U4"),
    }
    source = snap(
        user("a-1", "alice", email="alice2@example.com"),
        user("a-2", "bob", disabled=True),
        user("a-4", "dan"),
        user("a-5", "eve"),
        groups=(
            group("g-1", "staff", member_users=frozenset({"a-1", "a-5"})),
            group("g-3", "new", member_users=frozenset({"a-5"})),
            group("g-4", "renamed-only"),
        ),
    )
    groups = {
        "g-1": held_group(group("g-1", "staff", member_users=frozenset({"a-1", "a-2"})), "G1"),
        "g-2": held_group(group("g-2", "gone", member_users=frozenset({"a-1"})), "G2"),
        "g-4": held_group(group("g-4", "old-name", member_users=frozenset({"a-3"})), "G4"),
    }
    return make_plan(source, users, groups)


def test_without_disables_drops_disables_and_removals_but_keeps_the_rest() -> None:
    plan = _mixed_plan()
    assert {(a.op, a.anchor) for a in plan.users} == {
        (Op.UPDATE, "a-1"),
        (Op.DISABLE, "a-2"),
        (Op.DISABLE, "a-3"),
        (Op.REENABLE, "a-4"),
        (Op.CREATE, "a-5"),
    }
    assert plan.membership_removals == 3
    safe = plan.without_disables()
    assert [a for a in safe.users] == [a for a in plan.users if a.op is not Op.DISABLE]
    assert {a.anchor for a in safe.groups} == {"g-1", "g-3", "g-4"}
    assert safe.membership_removals == 0
    assert all(a.op is not Op.DISABLE for a in safe.groups)
    staff = next(a for a in safe.groups if a.anchor == "g-1")
    assert staff.add_users == {"a-5"}
    assert (staff.op, staff.group_id, staff.record) == (Op.UPDATE, "G1", plan.groups[0].record)
    created = next(a for a in safe.groups if a.anchor == "g-3")
    assert created.op is Op.CREATE
    assert created.add_users == {"a-5"}
    # everything else about the plan is kept
    for name in ("unchanged", "source_users", "linked_users", "linked_memberships", "complete", "warnings"):
        assert getattr(safe, name) == getattr(plan, name)
    # the original plan is untouched
    assert plan.membership_removals == 3


def test_without_disables_describes_only_what_it_will_do() -> None:
    """A dry run prints exactly what a real run would do (DESIGN.md "Sync"). Once removals are dropped, a
    group action whose only change was a removal does nothing, so it must not be listed, and no remaining
    action may still claim "-N members"."""
    before = group(member_users=frozenset({"a-1", "a-2"}))
    after = group(member_users=frozenset({"a-1"}))
    plan = make_plan(snap(groups=(after,)), {}, {"g-1": held_group(before)})
    assert describe(plan) == [
        {"object": "group", "op": "update", "anchor": "g-1", "name": "staff", "reason": "-1 members"}
    ]
    assert describe(plan.without_disables()) == []

    mixed = _mixed_plan().without_disables()
    reasons = {row["anchor"]: row["reason"] for row in describe(mixed) if row["object"] == "group"}
    assert reasons == {"g-1": "+1 members", "g-3": "new", "g-4": "renamed"}


def test_describe_rows() -> None:
    plan = _mixed_plan()
    rows = describe(plan)
    assert len(rows) == len(plan.users) + len(plan.groups)
    assert rows[: len(plan.users)] == [
        {"object": "user", "op": a.op.value, "anchor": a.anchor, "name": a.username, "reason": a.reason}
        for a in plan.users
    ]
    by_anchor = {(r["object"], r["anchor"]): r for r in rows}
    assert by_anchor["user", "a-1"] == {
        "object": "user",
        "op": "update",
        "anchor": "a-1",
        "name": "alice",
        "reason": "attributes changed: email",
    }
    assert by_anchor["user", "a-3"]["reason"] == "left scope"
    assert by_anchor["user", "a-2"]["reason"] == "disabled in source"
    assert by_anchor["user", "a-4"]["op"] == "reenable"
    assert by_anchor["user", "a-5"]["op"] == "create"
    assert by_anchor["group", "g-2"] == {
        "object": "group",
        "op": "disable",
        "anchor": "g-2",
        "name": "gone",
        "reason": "left scope",
    }
    assert by_anchor["group", "g-1"]["reason"] == "+1 members, -1 members"
    assert by_anchor["group", "g-4"]["reason"] == "renamed, -1 members"
    assert by_anchor["group", "g-3"]["reason"] == "new"
    # JSON-able: only plain strings
    assert all(isinstance(v, str) for row in rows for v in row.values())


# ---- fingerprint ---------------------------------------------------------------------------------
def test_fingerprint_is_stable() -> None:
    a, b = user(), user()
    assert a is not b
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) == fingerprint(a)
    assert len(fingerprint(a)) == 64
    int(fingerprint(a), 16)


def test_fingerprint_ignores_the_order_of_attribute_pairs() -> None:
    record = SourceUser(anchor="x", username="ü", attributes=(("b", "2"), ("a", "1")))
    same_sorted = SourceUser(anchor="x", username="ü", attributes=(("a", "1"), ("b", "2")))
    assert fingerprint(record) == fingerprint(same_sorted)


FIELD_CHANGES: dict[str, Any] = {
    "username": "alice2",
    "email": "other@example.com",
    "given_name": "Alicia",
    "family_name": "Other",
    "display_name": "Someone",
    "phone": "+1 555 0199",
    "disabled": True,
    "dn": "uid=alice,ou=Sales,dc=example,dc=com",
    "attributes": (("department", "Sales"),),
}


def test_every_field_has_a_change_case() -> None:
    names = {f.name for f in dataclasses.fields(SourceUser)}
    # anchor is the key the fingerprint is stored under, not part of it
    assert set(FIELD_CHANGES) == names - {"anchor"}


@pytest.mark.parametrize("name", sorted(FIELD_CHANGES))
def test_fingerprint_is_sensitive_to_every_field(name: str) -> None:
    base = user()
    changed = dataclasses.replace(base, **{name: FIELD_CHANGES[name]})
    assert fingerprint(changed) != fingerprint(base)


@pytest.mark.parametrize("name", ["email", "given_name", "family_name", "display_name", "phone", "dn"])
def test_fingerprint_tells_none_from_a_value(name: str) -> None:
    base = user()
    change: dict[str, Any] = {name: None}
    assert fingerprint(dataclasses.replace(base, **change)) != fingerprint(base)


def test_fingerprint_and_plan_see_every_value_of_a_multi_valued_attribute() -> None:
    """Sources keep one (name, value) pair per value (LDIF: ``ou``, ``mobile``, … may repeat). Changing
    any value is a change, not just the last one."""
    before = user(attributes=(("mobile", "+1 555 0001"), ("mobile", "+1 555 0002")))
    after = user(attributes=(("mobile", "+1 555 0009"), ("mobile", "+1 555 0002")))
    assert fingerprint(after) != fingerprint(before)
    action = only(plan_users(snap(after), {"a-1": linked(before)})[0])
    assert action.reason == "attributes changed: attributes"

"""Unit tests of incremental planning, the fingerprint pre-diff, and approval bounds (all pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncd.config.models import Limit, Sync
from syncd.domain.records import Delta, SourceGroup, SourceUser
from syncd.sync.approval import Approval, exceeds, kept_rows
from syncd.sync.guard import Verdict, judge
from syncd.sync.plan import LinkedGroup, LinkedUser, Op, describe, fingerprint, user_fields
from syncd.sync.plan_delta import GONE, LinkState, gone_anchors, plan_delta, split_unchanged


def user(anchor: str, username: str | None = None, **changes: Any) -> SourceUser:
    base = SourceUser(
        anchor=anchor, username=username or f"user-{anchor}", email=f"{anchor}@x.org", dn=f"uid={anchor}"
    )
    return dataclasses.replace(base, **changes)


def linked(record: SourceUser, **changes: Any) -> LinkedUser:
    base = LinkedUser(f"U-{record.anchor}", not record.disabled, True, user_fields(record), record.dn)
    return dataclasses.replace(base, **changes)


def state(record: SourceUser, **changes: Any) -> LinkState:
    base = LinkState(f"U-{record.anchor}", not record.disabled, True, fingerprint(record))
    return dataclasses.replace(base, **changes)


def group(anchor: str, users: set[str], groups: set[str] = frozenset()) -> SourceGroup:  # type: ignore[assignment]
    return SourceGroup(anchor, f"g-{anchor}", member_users=frozenset(users), member_groups=frozenset(groups))


def linked_group(record: SourceGroup, **changes: Any) -> LinkedGroup:
    base = LinkedGroup(
        f"G-{record.anchor}", record.name, None, True, record.member_users, record.member_groups
    )
    return dataclasses.replace(base, **changes)


# ---- split_unchanged ------------------------------------------------------------------------------------
def test_split_unchanged_by_fingerprint_scope_and_status() -> None:
    same, changed, new = user("a"), user("b"), user("c")
    disabled_now = user("d", disabled=True)
    out_of_scope = user("e")
    states = {
        "a": state(same),
        "b": state(changed),
        "d": state(disabled_now, provisioned=True),  # stored enabled, source says disabled
        "e": state(out_of_scope, in_scope=False),
    }
    rest, unchanged = split_unchanged([same, dataclasses.replace(changed, email="new@x"), new, disabled_now,
                                       out_of_scope], states)  # fmt: skip
    assert unchanged == 1 and [r.anchor for r in rest] == ["b", "c", "d", "e"]


def test_split_unchanged_without_a_stored_fingerprint_plans_everything() -> None:
    record = user("a")
    rest, unchanged = split_unchanged([record], {"a": state(record, fingerprint=None)})
    assert (len(rest), unchanged) == (1, 0)


@given(
    st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True),
    st.lists(st.booleans(), min_size=4, max_size=4),
)
def test_split_unchanged_loses_nothing(anchors: list[str], changed: list[bool]) -> None:
    records = [user(a, email="changed@x" if c else None) for a, c in zip(anchors, changed, strict=False)]
    states = {a: state(user(a, email=None)) for a in "abcd"}
    rest, unchanged = split_unchanged(records, states)
    assert len(rest) + unchanged == len(records)


# ---- plan_delta -------------------------------------------------------------------------------------------
def test_delta_changes_creates_and_deletions() -> None:
    a, b, gone = user("a"), user("b"), user("gone")
    links = {"a": linked(a), "b": linked(b), "gone": linked(gone)}
    delta = Delta(
        users=(dataclasses.replace(a, email="new@x"), user("new")), deleted=frozenset({"gone", "unknown"})
    )
    plan = plan_delta(delta, links, {}, linked_users=3, linked_memberships=0)
    ops = {(x.op, x.anchor, x.reason) for x in plan.users}
    assert ops == {
        (Op.UPDATE, "a", "attributes changed: email"),
        (Op.CREATE, "new", "new"),
        (Op.DISABLE, "gone", GONE),
    }
    assert next(x for x in plan.users if x.anchor == "gone").left_scope
    assert (plan.source_users, plan.linked_users) == (3, 3)  # 3 linked + 1 new - 1 gone


def test_delta_with_a_complete_anchor_set_finds_the_missing() -> None:
    a, b, c = user("a"), user("b"), user("c")
    links = {"a": linked(a), "b": linked(b), "c": linked(c), "old": linked(user("old"), in_scope=False)}
    delta = Delta(users=(), present_users=frozenset({"a"}), skipped=frozenset({"c"}))
    plan = plan_delta(delta, links, {}, linked_users=3, linked_memberships=0)
    assert [(x.op, x.anchor) for x in plan.users] == [(Op.DISABLE, "b")]  # c skipped; old already out


def test_delta_that_empties_the_source_is_judged_incomplete() -> None:
    links = {a: linked(user(a)) for a in "abcde"}
    plan = plan_delta(Delta(deleted=frozenset("abcde")), links, {}, linked_users=5, linked_memberships=0)
    decision = judge(plan, Sync(max_disable=Limit(count=500, percent=100)), last_good_users=5)
    assert decision.verdict is Verdict.INCOMPLETE and decision.plan.count(Op.DISABLE) == 0


def test_delta_groups_changed_and_deleted() -> None:
    g1, g2 = group("g1", {"a"}), group("g2", {"a", "b"})
    groups = {"g1": linked_group(g1), "g2": linked_group(g2)}
    delta = Delta(groups=(group("g1", {"a", "b"}),), deleted=frozenset({"g2"}))
    plan = plan_delta(delta, {}, groups, linked_users=2, linked_memberships=3)
    by_anchor = {x.anchor: x for x in plan.groups}
    assert by_anchor["g1"].op is Op.UPDATE and by_anchor["g1"].add_users == {"b"}
    assert by_anchor["g2"].op is Op.DISABLE and by_anchor["g2"].remove_users == {"a", "b"}
    assert plan.membership_removals == 2 and plan.linked_memberships == 3


def test_incomplete_delta_keeps_its_reason() -> None:
    plan = plan_delta(
        Delta(complete=False, incomplete_reason="boom"), {}, {}, linked_users=0, linked_memberships=0
    )
    assert (plan.complete, plan.incomplete_reason) == (False, "boom")


def test_gone_anchors() -> None:
    assert gone_anchors({"a", "x"}, None, ["a", "b"], []) == {"a"}
    assert gone_anchors(set(), frozenset({"a"}), ["a", "b", "c"], ["c"]) == {"b"}


# ---- approvals ---------------------------------------------------------------------------------------------
def held_plan() -> Any:
    links = {a: linked(user(a)) for a in "abc"}
    groups = {"g": linked_group(group("g", {"a", "b", "c"}))}
    return plan_delta(
        Delta(deleted=frozenset({"a", "b"}), groups=(group("g", {"c"}),)), links, groups, linked_users=3,
        linked_memberships=3,
    )  # fmt: skip


def test_kept_rows_carry_membership_removals_and_approval_reads_them_back() -> None:
    plan = held_plan()
    rows = kept_rows(describe(plan), plan)
    assert next(r for r in rows if r["object"] == "group")["removed_members"] == 2
    approval = Approval.from_rows("R1", "admin:x", rows)
    assert (approval.user_disables, approval.membership_removals) == (frozenset({"a", "b"}), 2)
    assert exceeds(approval, plan) is None


def test_exceeds_more_users_groups_or_memberships() -> None:
    plan = held_plan()
    approval = Approval.from_rows("R1", "admin:x", kept_rows(describe(plan), plan))
    links = {a: linked(user(a)) for a in "abcd"}
    more_users = plan_delta(Delta(deleted=frozenset("abd")), links, {}, linked_users=4, linked_memberships=0)
    assert exceeds(approval, more_users) == "1 user(s) would now be disabled that run R1 did not show: user-d"
    groups = {"g": linked_group(group("g", {"a", "b", "c"}))}
    fewer = plan_delta(Delta(deleted=frozenset({"a"}), groups=(group("g", {"b", "c"}),)), links, groups,
                       linked_users=4, linked_memberships=3)  # fmt: skip
    assert exceeds(approval, fewer) is None
    all_members = plan_delta(
        Delta(groups=(group("g", set()),)), links, groups, linked_users=4, linked_memberships=3
    )
    assert "3 group memberships would now be removed, more than the 2" in (
        exceeds(approval, all_members) or ""
    )
    group_gone = plan_delta(Delta(deleted=frozenset({"g"})), {}, groups, linked_users=4, linked_memberships=3)
    assert "1 group(s) would now be removed" in (exceeds(approval, group_gone) or "")

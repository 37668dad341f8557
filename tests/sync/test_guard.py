"""Unit tests of the guard: safety limits on disables and removals, and incomplete reads."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncd.config.models import Limit, Sync
from syncd.sync.guard import Decision, Verdict, allowed, judge
from syncd.sync.plan import GroupAction, Op, Plan, UserAction


def users(op: Op, n: int, *, start: int = 0) -> tuple[UserAction, ...]:
    return tuple(
        UserAction(op, f"a-{i}", f"user{i}", "test", user_id=f"U{i}") for i in range(start, start + n)
    )


def plan(
    *,
    creates: int = 0,
    disables: int = 0,
    updates: int = 0,
    groups: tuple[GroupAction, ...] = (),
    source_users: int = 1000,
    linked_users: int = 1000,
    linked_memberships: int = 0,
    complete: bool = True,
    incomplete_reason: str | None = None,
) -> Plan:
    actions = users(Op.CREATE, creates) + users(Op.DISABLE, disables, start=creates)
    actions += users(Op.UPDATE, updates, start=creates + disables)
    return Plan(
        users=actions,
        groups=groups,
        unchanged=0,
        source_users=source_users,
        linked_users=linked_users,
        linked_memberships=linked_memberships,
        complete=complete,
        incomplete_reason=incomplete_reason,
    )


def removing(n: int, anchor: str = "g-1") -> GroupAction:
    return GroupAction(
        Op.UPDATE,
        anchor,
        anchor,
        group_id="G1",
        add_users=frozenset({"new"}),
        remove_users=frozenset(f"a-{i}" for i in range(n)),
    )


DEFAULTS = Sync()


def no_disables(decision: Decision) -> None:
    assert decision.plan.count(Op.DISABLE) == 0
    assert decision.plan.membership_removals == 0
    assert all(a.op is not Op.DISABLE for a in decision.plan.groups)


# ---- allowed -------------------------------------------------------------------------------------
def test_allowed_percent_binds_for_small_populations() -> None:
    assert allowed(Limit(count=500, percent=20), 1000) == 200


@pytest.mark.parametrize(("population", "expected"), [(2500, 500), (10_000, 500), (1_000_000, 500)])
def test_allowed_count_binds_for_large_populations(population: int, expected: int) -> None:
    assert allowed(Limit(count=500, percent=20), population) == expected


@pytest.mark.parametrize(
    ("limit", "population", "expected"),
    [
        (Limit(count=500, percent=20), 0, 0),
        (Limit(count=500, percent=20), 4, 0),  # 0.8 rounds down
        (Limit(count=500, percent=20), 5, 1),
        (Limit(count=500, percent=20), 2499, 499),
        (Limit(count=0, percent=100), 1000, 0),
        (Limit(count=10**9, percent=100), 1000, 1000),
        (Limit(count=10**9, percent=12.5), 1000, 125),
    ],
)
def test_allowed_edges(limit: Limit, population: int, expected: int) -> None:
    assert allowed(limit, population) == expected


@pytest.mark.parametrize(("percent", "population", "expected"), [(19.9, 3000, 597), (2.3, 3000, 69)])
def test_allowed_is_exact_for_decimal_percentages(percent: float, population: int, expected: int) -> None:
    """19.9% of 3000 is exactly 597; binary floating point makes ``3000 * 19.9 / 100`` 596.99…"""
    assert allowed(Limit(count=10**6, percent=percent), population) == expected


def test_allowed_is_exact_for_every_tenth_of_a_percent() -> None:
    """Every percentage an admin may write with one decimal, on round populations, against exact
    arithmetic (a deterministic grid: the float errors are too rare for random examples to find)."""
    wrong = [
        (tenths / 10, population)
        for tenths in range(1, 1001)
        for population in range(0, 20_001, 1000)
        if allowed(Limit(count=10**9, percent=tenths / 10), population)
        != math.floor(population * Fraction(tenths, 10) / 100)
    ]
    assert wrong == []


# ---- disables against max_disable ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("limit", "population", "disables"),
    [(Limit(count=500, percent=20), 1000, 200), (Limit(count=1000, percent=19.9), 3000, 597)],
)
def test_exactly_at_the_limit_applies(limit: Limit, population: int, disables: int) -> None:
    p = plan(disables=disables, source_users=population, linked_users=population)
    decision = judge(p, Sync(max_disable=limit), last_good_users=population)
    assert decision.verdict is Verdict.APPLY, decision.reason
    assert decision.reason is None
    assert decision.plan == p


def test_one_above_the_limit_holds_with_the_numbers() -> None:
    p = plan(disables=201)
    decision = judge(p, DEFAULTS, last_good_users=1000)
    assert decision.verdict is Verdict.HOLD
    assert decision.plan == p  # held as is, for an admin to approve
    assert decision.reason is not None
    for number in ("201", "1000", "200", "500", "20%"):
        assert number in decision.reason
    assert "max_disable" in decision.reason


def test_count_binds_for_large_directories() -> None:
    limits = Sync(max_disable=Limit(count=500, percent=20))
    at = plan(disables=500, source_users=10_000, linked_users=10_000)
    assert judge(at, limits, last_good_users=None).verdict is Verdict.APPLY
    held = judge(plan(disables=501, source_users=10_000, linked_users=10_000), limits, last_good_users=None)
    assert held.verdict is Verdict.HOLD
    assert held.reason is not None
    assert "501" in held.reason
    assert "500" in held.reason


def test_population_is_the_larger_of_source_and_linked() -> None:
    # 1000 linked users, the source now has 900 (above the 50% shrink floor): 20% of 1000 = 200
    assert (
        judge(plan(disables=200, source_users=900), DEFAULTS, last_good_users=1000).verdict is Verdict.APPLY
    )
    assert judge(plan(disables=201, source_users=900), DEFAULTS, last_good_users=1000).verdict is Verdict.HOLD


def test_creates_updates_and_reenables_do_not_count_as_disables() -> None:
    p = plan(creates=900, updates=900, disables=10)
    assert judge(p, DEFAULTS, last_good_users=1000).verdict is Verdict.APPLY


@pytest.mark.parametrize("creates", [1, 10, 5000])
@pytest.mark.parametrize("source_users", [1, 1000, 100_000])
def test_a_plan_with_only_creates_is_never_held(creates: int, source_users: int) -> None:
    limits = Sync(
        max_disable=Limit(count=0, percent=0.1), max_membership_removals=Limit(count=0, percent=0.1)
    )
    p = plan(creates=creates, source_users=source_users, linked_users=0)
    decision = judge(p, limits, last_good_users=None)
    assert decision.verdict is Verdict.APPLY
    assert decision.plan == p


# ---- incomplete reads ------------------------------------------------------------------------------
def test_incomplete_snapshot_applies_without_disables() -> None:
    p = plan(
        creates=3,
        updates=2,
        disables=5,
        groups=(
            removing(4),
            GroupAction(Op.DISABLE, "g-2", "gone", remove_users=frozenset({"x"})),
        ),
        linked_memberships=100,
        complete=False,
        incomplete_reason="LDAP sizeLimitExceeded after 1000 entries",
    )
    decision = judge(p, DEFAULTS, last_good_users=1000)
    assert decision.verdict is Verdict.INCOMPLETE
    assert decision.reason == "LDAP sizeLimitExceeded after 1000 entries"
    no_disables(decision)
    assert decision.plan.count(Op.CREATE) == 3
    assert decision.plan.count(Op.UPDATE) == 2
    assert [g.anchor for g in decision.plan.groups] == ["g-1"]
    assert decision.plan.groups[0].add_users == {"new"}


def test_incomplete_without_a_reason_still_says_why() -> None:
    decision = judge(plan(complete=False), DEFAULTS, last_good_users=None)
    assert decision.verdict is Verdict.INCOMPLETE
    assert decision.reason


def test_incomplete_wins_over_hold() -> None:
    """An incomplete read with too many disables is not held: its disables are dropped instead."""
    decision = judge(plan(disables=900, complete=False), DEFAULTS, last_good_users=1000)
    assert decision.verdict is Verdict.INCOMPLETE
    no_disables(decision)


def test_empty_read_with_linked_users_is_incomplete() -> None:
    p = plan(disables=3, source_users=0, linked_users=3)
    decision = judge(p, Sync(max_disable=Limit(count=10, percent=100)), last_good_users=None)
    assert decision.verdict is Verdict.INCOMPLETE
    assert decision.reason is not None
    assert "no users" in decision.reason
    assert "3" in decision.reason
    no_disables(decision)


def test_empty_read_of_an_empty_source_is_fine() -> None:
    decision = judge(plan(source_users=0, linked_users=0), DEFAULTS, last_good_users=None)
    assert decision.verdict is Verdict.APPLY


def test_below_the_shrink_floor_is_incomplete() -> None:
    p = plan(disables=10, source_users=499, linked_users=1000)
    decision = judge(p, DEFAULTS, last_good_users=1000)
    assert decision.verdict is Verdict.INCOMPLETE
    assert decision.reason is not None
    for number in ("499", "500", "50%", "1000"):
        assert number in decision.reason
    no_disables(decision)


def test_at_the_shrink_floor_is_complete() -> None:
    decision = judge(plan(source_users=500, linked_users=1000), DEFAULTS, last_good_users=1000)
    assert decision.verdict is Verdict.APPLY


def test_shrink_floor_is_exact_for_decimal_percentages() -> None:
    """1.1% of 3000 is exactly 33; ``ceil(3000 * 1.1 / 100)`` is 34 in floating point."""
    limits = Sync(shrink_floor_percent=1.1)
    decision = judge(plan(source_users=33, linked_users=33), limits, last_good_users=3000)
    assert decision.verdict is Verdict.APPLY


@pytest.mark.parametrize("last_good_users", [None, 0])
def test_no_last_good_run_means_no_shrink_floor(last_good_users: int | None) -> None:
    decision = judge(plan(source_users=1, linked_users=1), DEFAULTS, last_good_users=last_good_users)
    assert decision.verdict is Verdict.APPLY


def test_shrink_floor_zero_is_off() -> None:
    limits = Sync(shrink_floor_percent=0)
    assert judge(plan(source_users=1, linked_users=1), limits, last_good_users=10**6).verdict is Verdict.APPLY


# ---- membership removals ------------------------------------------------------------------------------
def test_membership_removals_at_the_limit_apply() -> None:
    limits = Sync(max_membership_removals=Limit(count=50, percent=10))
    decision = judge(
        plan(groups=(removing(30), removing(20, "g-2")), linked_memberships=1000),
        limits,
        last_good_users=None,
    )
    assert decision.verdict is Verdict.APPLY


def test_membership_removals_over_the_limit_hold() -> None:
    limits = Sync(max_membership_removals=Limit(count=50, percent=10))
    p = plan(groups=(removing(30), removing(21, "g-2")), linked_memberships=1000)
    decision = judge(p, limits, last_good_users=None)
    assert decision.verdict is Verdict.HOLD
    assert decision.plan == p
    assert decision.reason is not None
    assert "51" in decision.reason
    assert "50" in decision.reason
    assert "max_membership_removals" in decision.reason


def test_group_left_scope_counts_its_removals() -> None:
    limits = Sync(max_membership_removals=Limit(count=5, percent=100))
    gone = GroupAction(Op.DISABLE, "g-9", "gone", remove_users=frozenset(f"a-{i}" for i in range(6)))
    assert (
        judge(plan(groups=(gone,), linked_memberships=6), limits, last_good_users=None).verdict
        is Verdict.HOLD
    )


# ---- properties -------------------------------------------------------------------------------------
OPS = st.sampled_from(list(Op))


@st.composite
def group_actions(draw: st.DrawFn) -> GroupAction:
    op = draw(st.sampled_from([Op.CREATE, Op.UPDATE, Op.DISABLE]))
    members = st.frozensets(st.sampled_from([f"m{i}" for i in range(20)]), max_size=8)
    return GroupAction(
        op,
        draw(st.sampled_from(["g-1", "g-2", "g-3"])),
        "group",
        add_users=draw(members) if op is not Op.DISABLE else frozenset(),
        remove_users=draw(members) if op is not Op.CREATE else frozenset(),
        add_groups=draw(members) if op is not Op.DISABLE else frozenset(),
        remove_groups=draw(members) if op is not Op.CREATE else frozenset(),
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    ops = draw(st.lists(OPS, max_size=60))
    return Plan(
        users=tuple(
            UserAction(op, f"a-{i}", f"u{i}", "test", left_scope=op is Op.DISABLE) for i, op in enumerate(ops)
        ),
        groups=tuple(draw(st.lists(group_actions(), max_size=5))),
        unchanged=draw(st.integers(0, 1000)),
        source_users=draw(st.integers(0, 2000)),
        linked_users=draw(st.integers(0, 2000)),
        linked_memberships=draw(st.integers(0, 200)),
        complete=draw(st.booleans()),
        incomplete_reason=draw(st.none() | st.just("partial")),
    )


limits_strategy = st.builds(
    Sync,
    max_disable=st.builds(Limit, count=st.integers(0, 100), percent=st.integers(1, 100).map(float)),
    max_membership_removals=st.builds(
        Limit, count=st.integers(0, 100), percent=st.integers(1, 100).map(float)
    ),
    shrink_floor_percent=st.integers(0, 100).map(float),
)


@settings(max_examples=300, deadline=None)
@given(p=plans(), limits=limits_strategy, last_good_users=st.none() | st.integers(0, 3000))
def test_judged_plans_respect_the_limits(p: Plan, limits: Sync, last_good_users: int | None) -> None:
    decision = judge(p, limits, last_good_users=last_good_users)
    if decision.verdict is Verdict.INCOMPLETE:
        no_disables(decision)
        assert decision.reason
        # creates, updates and re-enables survive
        assert [a for a in decision.plan.users] == [a for a in p.users if a.op is not Op.DISABLE]
    elif decision.verdict is Verdict.APPLY:
        assert p.complete
        assert decision.plan == p
        population = max(p.linked_users, p.source_users)
        assert decision.plan.count(Op.DISABLE) <= allowed(limits.max_disable, population)
        assert decision.plan.membership_removals <= allowed(
            limits.max_membership_removals, p.linked_memberships
        )
    else:
        assert decision.verdict is Verdict.HOLD
        assert decision.plan == p
        assert decision.reason
        assert p.count(Op.DISABLE) > 0 or p.membership_removals > 0
    if not p.complete:
        assert decision.verdict is Verdict.INCOMPLETE
    if p.count(Op.DISABLE) == 0 and p.membership_removals == 0:
        assert decision.verdict is not Verdict.HOLD

"""The guard: refuses plans that would disable too much, and strips disables from incomplete reads.

Pure: it judges a :class:`~syncd.sync.plan.Plan` against the configured limits and the last good run.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from fractions import Fraction

from syncd.config.models import Limit, Sync
from syncd.sync.plan import Op, Plan


class Verdict(enum.StrEnum):
    """``apply`` the plan as is; apply it ``incomplete`` (no disables); ``hold`` it for an admin."""

    APPLY = "apply"
    INCOMPLETE = "incomplete"
    HOLD = "hold"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    plan: Plan
    reason: str | None = None


def allowed(limit: Limit, population: int) -> int:
    """The most changes a limit allows for a population: the smaller of the count and the percentage."""
    return min(limit.count, math.floor(population * _exact(limit.percent) / 100))


def judge(plan: Plan, limits: Sync, *, last_good_users: int | None) -> Decision:
    """Decide what happens to ``plan``.

    * An incomplete read, an empty read when the source had users, or a read below the shrink floor of the
      last good run is applied without any disable or removal (verdict ``incomplete``).
    * Otherwise, more user disables than :func:`allowed` by ``max_disable``, or more membership removals
      than ``max_membership_removals``, holds the whole run for approval (verdict ``hold``).
    """
    incomplete = _incomplete_reason(plan, limits, last_good_users)
    if incomplete is not None:
        return Decision(Verdict.INCOMPLETE, plan.without_disables(), incomplete)
    population = max(plan.linked_users, plan.source_users)
    disables = plan.count(Op.DISABLE)
    most = allowed(limits.max_disable, population)
    if disables > most:
        return Decision(
            Verdict.HOLD,
            plan,
            f"would disable {disables} of {population} users; the limit is {most} "
            f"(max_disable: {limits.max_disable.count} users or {limits.max_disable.percent:g}%)",
        )
    removals = plan.membership_removals
    most_removals = allowed(limits.max_membership_removals, plan.linked_memberships)
    if removals > most_removals:
        return Decision(
            Verdict.HOLD,
            plan,
            f"would remove {removals} group memberships; the limit is {most_removals} "
            f"(max_membership_removals: {limits.max_membership_removals.count} or "
            f"{limits.max_membership_removals.percent:g}%)",
        )
    return Decision(Verdict.APPLY, plan)


def _incomplete_reason(plan: Plan, limits: Sync, last_good_users: int | None) -> str | None:
    if not plan.complete:
        return plan.incomplete_reason or "the read was incomplete"
    if plan.source_users == 0 and plan.linked_users > 0:
        return f"the source returned no users, but {plan.linked_users} are linked to it"
    if last_good_users:
        floor = math.ceil(last_good_users * _exact(limits.shrink_floor_percent) / 100)
        if plan.source_users < floor:
            return (
                f"the source returned {plan.source_users} users, below the shrink floor of {floor} "
                f"({limits.shrink_floor_percent:g}% of the last good run's {last_good_users})"
            )
    return None


def _exact(percent: float) -> Fraction:
    """The percentage as written (19.9 is 199/10, not the nearest binary float), so limits are exact."""
    return Fraction(repr(percent))

"""What an admin approved when they approved a held run, and whether a fresh plan stays within it.

Approving a held run does not replay its stored plan (the directory may have changed since): the source
is read again and planned again, and the guard's hold is lifted only if the new plan disables no user
and removes no group the held plan did not already show, and removes no more memberships than it did
(docs/adr/0011-held-runs.md). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from syncd.sync.plan import Op, Plan

REMOVED_MEMBERS = "removed_members"  # key added to group rows of a kept plan


@dataclass(frozen=True, slots=True)
class Approval:
    """The held run an admin approved, reduced to what bounds a new plan."""

    run_id: str
    actor: str
    user_disables: frozenset[str]
    group_disables: frozenset[str]
    membership_removals: int

    @classmethod
    def from_rows(cls, run_id: str, actor: str, rows: Iterable[Mapping[str, Any]]) -> Approval:
        """From the plan rows kept with a held run."""
        rows = list(rows)
        return cls(
            run_id=run_id,
            actor=actor,
            user_disables=frozenset(
                str(r["anchor"])
                for r in rows
                if r.get("object") == "user" and r.get("op") == Op.DISABLE.value
            ),
            group_disables=frozenset(
                str(r["anchor"])
                for r in rows
                if r.get("object") == "group" and r.get("op") == Op.DISABLE.value
            ),
            membership_removals=sum(
                int(r.get(REMOVED_MEMBERS, 0)) for r in rows if r.get("object") == "group"
            ),
        )


def exceeds(approval: Approval, plan: Plan) -> str | None:
    """Why ``plan`` goes beyond what was approved, or None if it stays within it."""
    users = {a.anchor: a.username for a in plan.users if a.op is Op.DISABLE}
    extra_users = sorted(name for anchor, name in users.items() if anchor not in approval.user_disables)
    if extra_users:
        shown = ", ".join(extra_users[:5]) + (", …" if len(extra_users) > 5 else "")
        count = len(extra_users)
        return f"{count} user(s) would now be disabled that run {approval.run_id} did not show: {shown}"
    extra_groups = sorted(
        a.name for a in plan.groups if a.op is Op.DISABLE and a.anchor not in approval.group_disables
    )
    if extra_groups:
        return f"{len(extra_groups)} group(s) would now be removed that run {approval.run_id} did not show"
    removals = plan.membership_removals
    if removals > approval.membership_removals:
        return (
            f"{removals} group memberships would now be removed, more than the "
            f"{approval.membership_removals} run {approval.run_id} showed"
        )
    return None


def kept_rows(rows: list[dict[str, Any]], plan: Plan) -> list[dict[str, Any]]:
    """``describe(plan)`` rows with each group row's number of membership removals added (an approval
    is bounded by it)."""
    removed = {a.anchor: len(a.remove_users) + len(a.remove_groups) for a in plan.groups}
    for row in rows:
        if row["object"] == "group" and removed.get(row["anchor"]):
            row[REMOVED_MEMBERS] = removed[row["anchor"]]
    return rows

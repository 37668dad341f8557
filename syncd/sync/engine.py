"""One sync run: lock the source → read → plan → guard → apply → record.

The reader is passed in by the shell (CLI or scheduler), so this module does no network I/O itself and
never holds a transaction open while a source is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from syncd.config.models import Sync
from syncd.config.sources import SourceBase
from syncd.domain.records import Snapshot
from syncd.errors import SourceError
from syncd.store import groups, runs, users
from syncd.store.db import Database
from syncd.store.tables import SyncRun
from syncd.sync.apply import Context, Counts, apply_groups, apply_users
from syncd.sync.guard import Decision, Verdict, judge
from syncd.sync.plan import LinkedGroup, LinkedUser, Op, Plan, describe, make_plan

Reader = Callable[[], Snapshot]
Progress = Callable[[int, int], None]

BATCH = 500


@dataclass(slots=True)
class RunResult:
    """What a run did, for the CLI and the scheduler."""

    run_id: str
    status: str
    reason: str | None
    plan: Plan | None = None
    counts: Counts = field(default_factory=Counts)
    mode: str = "full"


def run_sync(
    db: Database,
    source: SourceBase,
    kind: str,
    read: Reader,
    limits: Sync,
    *,
    mode: str = "full",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Run one sync of ``source`` (whose ``kind`` names the audit actor, e.g. ``file:demo``)."""
    with db.write() as session:
        run_id = runs.start(session, source.name, mode, dry_run=dry_run).id
    result = RunResult(run_id, "failed", None, mode=mode)
    try:
        _run(db, source, kind, read, limits, dry_run, progress, result)
    except SourceError as error:
        result.status, result.reason = "failed", str(error)
    except BaseException as error:
        result.status, result.reason = "failed", f"internal error: {type(error).__name__}"
        _record(db, result, dry_run)
        raise
    _record(db, result, dry_run)
    return result


def _run(
    db: Database,
    source: SourceBase,
    kind: str,
    read: Reader,
    limits: Sync,
    dry_run: bool,
    progress: Progress | None,
    result: RunResult,
) -> None:
    snapshot = read()  # no transaction is open here
    with db.read() as session:
        linked_users = {
            r.anchor: LinkedUser(r.user_id, r.provisioned, r.in_scope, r.fields, r.dn)
            for r in users.linked(session, source.name)
        }
        linked_groups = {
            r.anchor: LinkedGroup(
                r.group_id, r.name, r.description, r.in_scope, r.member_users, r.member_groups
            )
            for r in groups.linked(session, source.name)
        }
        last_good = runs.last_good_user_count(session, source.name)
    plan = make_plan(snapshot, linked_users, linked_groups)
    decision = judge(plan, limits, last_good_users=last_good)
    result.plan = decision.plan
    if dry_run:
        result.status, result.reason = "ok", _dry_run_reason(decision)
        return
    if decision.verdict is Verdict.HOLD:
        result.status, result.reason = "held", decision.reason
        return
    ctx = Context(source.name, f"{kind}:{source.name}", result.run_id, frozenset(source.take_over_from))
    total = len(decision.plan.users) + len(decision.plan.groups)
    done = 0
    for start in range(0, len(decision.plan.users), BATCH):
        batch = decision.plan.users[start : start + BATCH]
        with db.write() as session:
            apply_users(session, ctx, batch, result.counts)
        done += len(batch)
        if progress is not None:
            progress(done, total)
    if decision.plan.groups:
        with db.write() as session:
            apply_groups(session, ctx, decision.plan.groups, result.counts)
        if progress is not None:
            progress(total, total)
    if decision.verdict is Verdict.INCOMPLETE:
        result.status, result.reason = "incomplete", f"{decision.reason}; no user was disabled"
    else:
        result.status = "ok"
        problems = result.counts.problems
        result.reason = f"{result.counts.errors} error(s): " + "; ".join(problems[:5]) if problems else None


def _dry_run_reason(decision: Decision) -> str:
    if decision.verdict is Verdict.HOLD:
        return f"dry run; a real run would be held: {decision.reason}"
    if decision.verdict is Verdict.INCOMPLETE:
        return f"dry run; a real run would disable no one: {decision.reason}"
    return "dry run"


def _record(db: Database, result: RunResult, dry_run: bool) -> None:
    plan, counts = result.plan, result.counts
    with db.write() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None
        kept = describe(plan) if plan is not None and (dry_run or result.status == "held") else None
        if dry_run and plan is not None:
            numbers = {
                "created": plan.count(Op.CREATE),
                "updated": plan.count(Op.UPDATE),
                "disabled": plan.count(Op.DISABLE),
                "reenabled": plan.count(Op.REENABLE),
            }
        else:
            numbers = {
                "created": counts.created,
                "updated": counts.updated,
                "disabled": counts.disabled,
                "reenabled": counts.reenabled,
            }
        complete_read = plan is not None and plan.complete and result.status == "ok"
        runs.finish(
            session,
            run,
            result.status,
            reason=result.reason,
            **numbers,
            errors=counts.errors,
            unchanged=plan.unchanged if plan is not None else 0,
            plan=kept,
            source_users=plan.source_users if plan is not None and complete_read else None,
        )

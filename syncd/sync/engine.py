"""One sync run: lock the source → read → plan → guard → apply → record.

The reader is passed in by the shell (CLI or scheduler), so this module does no network I/O itself and
never holds a transaction open while a source is read. A reader that is also a :class:`ChangeFeed`
(the LDAP reader) can serve incremental runs: the engine hands it the cursor stored by the last run
and gets a :class:`~syncd.domain.records.Delta`; without a usable cursor, or when the reader says the
cursor expired, the run is full. The new cursor is stored in the same unit of work as the run's last
batch, and only when the run applied everything it read (never after an incomplete or held run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from syncd.config.models import Sync
from syncd.config.sources import SourceBase
from syncd.domain.records import CursorExpired, Delta, Known, Snapshot
from syncd.errors import SourceError, SyncdError
from syncd.store import bulk, cursors, groups, links, runs, users
from syncd.store.db import Database
from syncd.store.tables import SyncRun
from syncd.sync.apply import Context, Counts, apply_groups, apply_users
from syncd.sync.approval import Approval, exceeds, kept_rows
from syncd.sync.guard import Decision, Verdict, judge
from syncd.sync.plan import (
    LinkedGroup,
    LinkedUser,
    Op,
    Plan,
    describe,
    make_plan,
    release_group_records,
    release_records,
)
from syncd.sync.plan_delta import LinkState, plan_delta, split_unchanged

Reader = Callable[[], Snapshot]
Progress = Callable[[int, int], None]
KnownLinks = Callable[[], Iterable[Known]]
Mode = Literal["full", "incremental"]

BATCH = 2000
BULK = 2000  # a run creating at least this many users (and more than are linked) refreshes statistics


@runtime_checkable
class ChangeFeed(Protocol):
    """A reader that can also read what changed since a cursor it produced."""

    @property
    def cursor_kind(self) -> str: ...

    def read_changes(self, cursor: str, known: KnownLinks) -> Delta: ...


def announcing(reader: Reader, started: Callable[[], None]) -> Reader:
    """``reader`` calling ``started()`` first, keeping its change feed (incremental reads) if it has one."""
    if isinstance(reader, ChangeFeed):
        feed = reader

        class _Feed:
            cursor_kind = feed.cursor_kind

            def __call__(self) -> Snapshot:
                started()
                return reader()

            def read_changes(self, cursor: str, known: KnownLinks) -> Delta:
                started()
                return feed.read_changes(cursor, known)

        return _Feed()

    def read() -> Snapshot:
        started()
        return reader()

    return read


@dataclass(slots=True)
class RunResult:
    """What a run did, for the CLI and the scheduler."""

    run_id: str
    status: str
    reason: str | None
    plan: Plan | None = None
    counts: Counts = field(default_factory=Counts)
    mode: str = "full"
    notes: list[str] = field(default_factory=list)


def run_sync(
    db: Database,
    source: SourceBase,
    kind: str,
    read: Reader,
    limits: Sync,
    *,
    mode: Mode = "full",
    dry_run: bool = False,
    progress: Progress | None = None,
    approval: Approval | None = None,
) -> RunResult:
    """Run one sync of ``source`` (whose ``kind`` names the audit actor, e.g. ``ldap:corp``).

    ``mode="incremental"`` reads only changes when the reader and a stored cursor allow it. ``approval``
    (from :mod:`syncd.sync.review`) lifts the guard's hold when the new plan stays within the held one.
    """
    with db.write() as session:
        run_id = runs.start(session, source.name, mode, dry_run=dry_run).id
    result = RunResult(run_id, "failed", None, mode=mode)
    try:
        _run(db, source, kind, read, limits, mode, dry_run, progress, approval, result)
    except SourceError as error:
        result.status, result.reason = "failed", str(error)
    except SyncdError as error:  # e.g. the database went away: record why, and let the caller know
        result.status, result.reason = "failed", str(error)
        _record(db, result, dry_run, approval)
        raise
    except BaseException as error:
        result.status, result.reason = "failed", f"internal error: {type(error).__name__}"
        _record(db, result, dry_run, approval)
        raise
    _record(db, result, dry_run, approval)
    return result


def _run(
    db: Database,
    source: SourceBase,
    kind: str,
    read: Reader,
    limits: Sync,
    mode: Mode,
    dry_run: bool,
    progress: Progress | None,
    approval: Approval | None,
    result: RunResult,
) -> None:
    feed = read if isinstance(read, ChangeFeed) else None
    plan: Plan | None = None
    new_cursor: str | None = None
    if mode == "incremental":
        stored = _stored_cursor(db, source.name, feed)
        if feed is None:
            result.notes.append("this source has no change feed: full run")
        elif stored is None:
            result.notes.append("no change-feed position stored yet: full run")
        else:
            try:
                delta = feed.read_changes(stored, lambda: _known(db, source.name))  # no transaction open
            except CursorExpired as error:
                result.notes.append(f"{error}: full run instead")
            else:
                plan, new_cursor = _plan_delta(db, source.name, delta), delta.cursor
    if plan is None:
        result.mode = "full"
        snapshot = read()  # no transaction is open here
        plan, new_cursor = _plan_full(db, source.name, snapshot), snapshot.cursor
        del snapshot  # the plan holds the records still needed; _apply lets go of them batch by batch
    with db.read() as session:
        last_good = runs.last_good_user_count(session, source.name)
    decision = judge(plan, limits, last_good_users=last_good)
    if decision.verdict is Verdict.HOLD and approval is not None and not dry_run:
        beyond = exceeds(approval, plan)
        if beyond is None:
            decision = Decision(Verdict.APPLY, plan)
            result.notes.append(f"approved by {approval.actor} (held run {approval.run_id})")
        else:
            decision = Decision(
                Verdict.HOLD,
                plan,
                f"{decision.reason}; the approval of run {approval.run_id} does not cover it: {beyond}",
            )
    result.plan = decision.plan
    if dry_run:
        result.status, result.reason = "ok", _dry_run_reason(decision)
        return
    if decision.verdict is Verdict.HOLD:
        result.status, result.reason = "held", decision.reason
        return
    cursor = (
        (feed.cursor_kind, new_cursor) if feed and new_cursor and decision.verdict is Verdict.APPLY else None
    )
    ctx = Context(source.name, f"{kind}:{source.name}", result.run_id, frozenset(source.take_over_from))
    _apply(db, ctx, source.name, decision.plan, result.counts, cursor, progress)
    if decision.verdict is Verdict.INCOMPLETE:
        result.status, result.reason = "incomplete", f"{decision.reason}; no user was disabled"
    else:
        result.status = "ok"
        problems = result.counts.problems
        result.reason = f"{result.counts.errors} error(s): " + "; ".join(problems[:5]) if problems else None


def _apply(
    db: Database,
    ctx: Context,
    source: str,
    plan: Plan,
    counts: Counts,
    cursor: tuple[str, str] | None,
    progress: Progress | None,
) -> None:
    """Apply in units of work of :data:`BATCH` users, then the groups; the cursor goes with the last one."""
    batches = [plan.users[i : i + BATCH] for i in range(0, len(plan.users), BATCH)]
    steps = len(batches) + (1 if plan.groups else 0)
    total, done = len(plan.users) + len(plan.groups), 0
    if steps == 0 and cursor is not None:
        with db.write() as session:
            cursors.put(session, source, *cursor)
    creates = plan.count(Op.CREATE)
    for index, batch in enumerate(batches):
        with db.write() as session, bulk.lean_cache(session):
            apply_users(session, ctx, batch, counts)
            if index == 0 and creates >= BULK and creates > plan.linked_users:
                bulk.analyze(session, bulk.USER_TABLES)  # the tables are about to grow several times over
            if cursor is not None and index == steps - 1:
                cursors.put(session, source, *cursor)
        release_records(batch)  # applied: the plan kept with the result needs no source record
        done += len(batch)
        if progress is not None:
            progress(done, total)
    if plan.groups:
        many_members = sum(len(a.add_users) for a in plan.groups) >= BULK * 10
        with db.write() as session, bulk.lean_cache(session):
            apply_groups(session, ctx, plan.groups, counts)
            if creates >= BULK or many_members:
                # so that the next (incremental) run is planned on real figures, not on empty tables
                bulk.analyze(session, (*bulk.USER_TABLES, *bulk.GROUP_TABLES))
            if cursor is not None:
                cursors.put(session, source, *cursor)
        release_group_records(plan.groups)
        if progress is not None:
            progress(total, total)


def _stored_cursor(db: Database, source: str, feed: ChangeFeed | None) -> str | None:
    if feed is None:
        return None
    with db.read() as session:
        stored = cursors.get(session, source)
        if stored is None or stored.kind != feed.cursor_kind:
            return None
        return stored.value


def _known(db: Database, source: str) -> list[Known]:
    with db.read() as session:
        return links.known(session, source)


def _plan_full(db: Database, source: str, snapshot: Snapshot) -> Plan:
    """Plan a full read, loading stored fields only for users whose fingerprint changed or who are gone."""
    with db.read() as session:
        states = {
            r.anchor: LinkState(r.user_id, r.provisioned, r.in_scope, r.fingerprint)
            for r in links.user_states(session, source)
        }
        changed, unchanged = split_unchanged(snapshot.users, states)
        needed = [r.anchor for r in changed if r.anchor in states]
        if states:  # (a first sync links no one: no set of 100,000 anchors to build)
            read = {record.anchor for record in snapshot.users}
            read.update(snapshot.skipped)
            needed += [a for a, state in states.items() if state.in_scope and a not in read]
        linked_users = _linked_users(session, source, needed)
        linked_groups = {
            a: g for a, g in _linked_groups(session, source, None).items() if a not in snapshot.skipped
        }
    source_users = len(snapshot.users) + len(snapshot.skipped & states.keys())
    # (nothing unchanged, e.g. a first sync: the snapshot itself, not a copy of 100,000 references)
    to_plan = dataclasses.replace(snapshot, users=tuple(changed)) if unchanged else snapshot
    del changed
    plan = make_plan(to_plan, linked_users, linked_groups)
    return dataclasses.replace(
        plan,
        unchanged=plan.unchanged + unchanged,
        source_users=source_users,
        linked_users=sum(1 for state in states.values() if state.in_scope),
    )


def _plan_delta(db: Database, source: str, delta: Delta) -> Plan:
    with db.read() as session:
        named_users = {u.anchor for u in delta.users} | delta.deleted
        named_groups = {g.anchor for g in delta.groups} | delta.deleted
        user_anchors = None if delta.present_users is not None else named_users
        group_anchors = None if delta.present_groups is not None else named_groups
        linked_users = _linked_users(session, source, user_anchors)
        linked_groups = _linked_groups(session, source, group_anchors)
        live = links.count_live(session, source, "user")
        memberships = groups.count_memberships(session, source)
    return plan_delta(delta, linked_users, linked_groups, linked_users=live, linked_memberships=memberships)


def _linked_users(session: Session, source: str, anchors: Iterable[str] | None) -> dict[str, LinkedUser]:
    return {
        r.anchor: LinkedUser(r.user_id, r.provisioned, r.in_scope, r.fields, r.dn)
        for r in users.linked(session, source, anchors)
    }


def _linked_groups(session: Session, source: str, anchors: Iterable[str] | None) -> dict[str, LinkedGroup]:
    return {
        r.anchor: LinkedGroup(r.group_id, r.name, r.description, r.in_scope, r.member_users, r.member_groups)
        for r in groups.linked(session, source, anchors)
    }


def _dry_run_reason(decision: Decision) -> str:
    if decision.verdict is Verdict.HOLD:
        return f"dry run; a real run would be held: {decision.reason}"
    if decision.verdict is Verdict.INCOMPLETE:
        return f"dry run; a real run would disable no one: {decision.reason}"
    return "dry run"


def _record(db: Database, result: RunResult, dry_run: bool, approval: Approval | None) -> None:
    plan, counts = result.plan, result.counts
    reason = "; ".join(filter(None, [result.reason, *result.notes, *_warnings(plan)])) or None
    with db.write() as session:
        bulk.release_cache(session)  # the units of work are over: their cached pages aren't needed
        run = session.get(SyncRun, result.run_id)
        assert run is not None
        run.mode = result.mode
        kept = None
        if plan is not None and (dry_run or result.status == "held"):
            kept = kept_rows(describe(plan), plan)
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
            reason=reason,
            **numbers,
            errors=counts.errors,
            unchanged=plan.unchanged if plan is not None else 0,
            plan=kept,
            source_users=plan.source_users if plan is not None and complete_read else None,
        )
        if result.status == "held" and not dry_run:
            runs.supersede_held(session, run.source, keep=run.id)
        if approval is not None and not dry_run and result.status == "ok":
            runs.decide(session, approval.run_id, "approved", approval.actor, f"applied by run {run.id}")


def _warnings(plan: Plan | None) -> list[str]:
    if plan is None or not plan.warnings:
        return []
    shown = list(plan.warnings[:5])
    if len(plan.warnings) > 5:
        shown.append(f"{len(plan.warnings) - 5} more warning(s)")
    return ["warnings: " + "; ".join(shown)]

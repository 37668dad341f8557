"""Admin API: sync runs — one run with its kept plan, and the decision on a held run (like ``syncd sync
show/approve/reject``; docs/adr/0011-held-runs.md).

Approving reads the source again (network I/O): the route is a plain ``def`` so FastAPI runs it in the
threadpool, and the read happens outside any unit of work, exactly as the CLI does it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.reports import RunCounts
from syncd.api.admin.schemas import ERRORS
from syncd.config.models import Config
from syncd.domain.lifecycle import AuditEvent
from syncd.errors import ConflictError, NotFoundError, UsageError
from syncd.sources.readers import kind_of, reader_for
from syncd.store import audit, runs
from syncd.store.db import Database
from syncd.store.tables import SyncRun
from syncd.sync import review

router = APIRouter(tags=["sync-runs"])

RunId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The run id.")]
COUNTS = ("created", "updated", "disabled", "reenabled", "unchanged", "errors")


class SyncRunOut(BaseModel):
    id: str
    source: str
    mode: str
    dryRun: bool
    status: str
    reason: str | None
    startedAt: datetime
    finishedAt: datetime | None
    counts: RunCounts
    sourceUsers: int | None
    decidedBy: str | None
    plan: list[dict[str, Any]] | None = Field(
        description="What the run planned, one row per action: kept for held and dry runs, else null."
    )


class ApproveOut(BaseModel):
    heldRun: SyncRunOut
    """The held run after the decision (``approved``, or ``superseded`` when the new plan went further)."""
    runId: str
    """The run that read the source again."""
    status: str
    """That run's outcome: ``ok`` (applied), ``held`` (the plan now goes further: review ``runId``), …"""
    reason: str | None
    notes: list[str]


class RejectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(default=None, max_length=1000, description="Why (kept with the run).")


def _out(run: SyncRun) -> SyncRunOut:
    return SyncRunOut(
        id=run.id,
        source=run.source,
        mode=run.mode,
        dryRun=run.dry_run,
        status=run.status,
        reason=run.reason,
        startedAt=run.started_at,
        finishedAt=run.finished_at,
        counts=RunCounts(**{k: getattr(run, k) or 0 for k in COUNTS}),
        sourceUsers=run.source_users,
        decidedBy=run.decided_by,
        plan=run.plan if (run.status == "held" or run.dry_run) else None,
    )


def _held(session: Any, run_id: str) -> SyncRun:
    run = runs.get(session, run_id)
    if run is None:
        raise NotFoundError(f"no sync run {run_id!r}")
    if run.dry_run or run.status != "held":
        what = "a dry run" if run.dry_run else run.status
        raise ConflictError(f"run {run_id} is {what}, not held: there is nothing to approve or reject")
    return run


@router.get("/sync-runs/{runId}", responses=ERRORS)
def get_sync_run(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    runId: RunId,
) -> SyncRunOut:
    """One sync run, with its plan when it was held or a dry run."""
    with request.app.state.db.read() as session:
        run = runs.get(session, runId)
        if run is None:
            raise NotFoundError(f"no sync run {runId!r}")
        return _out(run)


@router.post("/sync-runs/{runId}/approve", responses=ERRORS)
def approve_sync_run(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
    runId: RunId,
) -> ApproveOut:
    """Approve a held run: read the source again and apply if the new plan stays within the held one;
    otherwise nothing is applied and the new run is held for review instead."""
    db: Database = request.app.state.db
    config: Config = request.app.state.config
    with db.read() as session:
        source_name = _held(session, runId).source
    try:
        source = config.source(source_name)
    except KeyError:
        raise ConflictError(
            f"run {runId} is of source {source_name}, which is no longer configured"
        ) from None
    try:  # reads the source: no transaction is open here
        result = review.approve(
            db, source, kind_of(source), reader_for(source), config.sync, runId, actor=caller.actor
        )
    except UsageError as error:  # decided by someone else meanwhile
        raise ConflictError(str(error)) from error
    with db.write() as session:
        event = AuditEvent(
            caller.actor, "sync_run.approve", "sync_run", runId, "held", result.status, run_id=result.run_id
        )
        audit.record(session, event, {"appliedBy": result.run_id})
        held = runs.get(session, runId)
        assert held is not None
        held_out = _out(held)
    return ApproveOut(
        heldRun=held_out, runId=result.run_id, status=result.status, reason=result.reason, notes=result.notes
    )


@router.post("/sync-runs/{runId}/reject", responses=ERRORS)
def reject_sync_run(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
    runId: RunId,
    body: Annotated[RejectIn | None, Body()] = None,
) -> SyncRunOut:
    """Reject a held run: nothing it planned is applied (a later run planning the same is held again)."""
    note = body.note if body is not None else None
    with request.app.state.db.write() as session:
        _held(session, runId)
        run = runs.decide(session, runId, "rejected", caller.actor, note or "nothing was applied")
        assert run is not None
        audit.record(
            session,
            AuditEvent(caller.actor, "sync_run.reject", "sync_run", runId, "held", "rejected", note or ""),
        )
        return _out(run)

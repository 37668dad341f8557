"""An admin's decision on a held run: approve (read again, apply within what was shown) or reject.

``approve`` runs the source again with an :class:`~syncd.sync.approval.Approval` of the held run: the
guard's hold is lifted only if the new plan stays within the held one (docs/adr/0011-held-runs.md).
The held run is then marked ``approved`` (by whom, and which run applied it). If the new plan goes
further, the new run is held in its turn and the old one is marked ``superseded``: the admin reviews
what would happen *now*. ``reject`` marks the held run ``rejected`` and changes nothing else; a later
run that plans the same changes is held again.
"""

from __future__ import annotations

from syncd.config.models import Sync
from syncd.config.sources import SourceBase
from syncd.errors import NotFoundError, UsageError
from syncd.store import runs
from syncd.store.db import Database
from syncd.store.tables import SyncRun
from syncd.sync.approval import Approval
from syncd.sync.engine import Mode, Progress, Reader, RunResult, run_sync


def held_run(db: Database, run_id: str) -> SyncRun:
    """The run, if it is held and waiting for a decision; :class:`UsageError` saying why not otherwise."""
    with db.read() as session:
        run = runs.get(session, run_id)
    if run is None:
        raise NotFoundError(f"no sync run {run_id!r}")
    if run.dry_run:
        raise UsageError(f"run {run_id} was a dry run: there is nothing to approve or reject")
    if run.status != "held":
        where = f" ({run.reason})" if run.status == "superseded" and run.reason else ""
        raise UsageError(f"run {run_id} is {run.status}, not held{where}")
    return run


def approve(
    db: Database,
    source: SourceBase,
    kind: str,
    read: Reader,
    limits: Sync,
    run_id: str,
    *,
    actor: str,
    progress: Progress | None = None,
) -> RunResult:
    """Read ``source`` again and apply its plan if it stays within the held run ``run_id``."""
    run = held_run(db, run_id)
    if run.source != source.name:
        raise UsageError(f"run {run_id} is a run of source {run.source}, not {source.name}")
    approval = Approval.from_rows(run.id, actor, run.plan or [])
    mode: Mode = "incremental" if run.mode == "incremental" else "full"
    return run_sync(db, source, kind, read, limits, mode=mode, progress=progress, approval=approval)


def reject(db: Database, run_id: str, *, actor: str, note: str | None = None) -> SyncRun:
    """Mark a held run rejected; nothing it planned is applied."""
    held_run(db, run_id)
    with db.write() as session:
        run = runs.decide(session, run_id, "rejected", actor, note or "nothing was applied")
        assert run is not None
        return run

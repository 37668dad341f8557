"""Sync run records. A row with status ``running`` is also the per-source lock (unique partial index)."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session

from syncd.errors import AlreadyRunningError
from syncd.store.tables import SyncRun, utcnow

FINAL = ("ok", "failed", "held", "incomplete", "approved", "rejected", "superseded")


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def start(session: Session, source: str, mode: str, *, dry_run: bool) -> SyncRun:
    """Insert a running run; :class:`AlreadyRunningError` if another live process runs this source.

    A running row left by a process that no longer exists on this host is closed as failed first.
    """
    running = session.scalars(sa.select(SyncRun).where(SyncRun.source == source, SyncRun.status == "running"))
    for run in running:
        if _is_dead(run.owner):
            finish(session, run, "failed", reason="interrupted: the process running it is gone")
        else:
            raise AlreadyRunningError(f"a sync of {source} is already running (run {run.id}, {run.owner})")
    session.flush()
    run = SyncRun(source=source, mode=mode, dry_run=dry_run, status="running", owner=this_process())
    try:
        with session.begin_nested():
            session.add(run)
    except exc.IntegrityError as error:
        raise AlreadyRunningError(f"a sync of {source} is already running") from error
    return run


def finish(session: Session, run: SyncRun, status: str, *, reason: str | None = None, **counts: Any) -> None:
    """Close a run with its outcome, reason and counts."""
    assert status in FINAL, status
    run.status = status
    run.reason = reason
    run.finished_at = utcnow()
    for name, value in counts.items():
        setattr(run, name, value)


def last_good_user_count(session: Session, source: str) -> int | None:
    """Users read by the last complete, applied run of a source (for the shrink floor)."""
    query = (
        sa.select(SyncRun.source_users)
        .where(SyncRun.source == source, SyncRun.status.in_(("ok", "approved")), SyncRun.dry_run.is_(False))
        .order_by(SyncRun.started_at.desc())
        .limit(1)
    )
    return session.scalar(query)


def get(session: Session, run_id: str) -> SyncRun | None:
    return session.get(SyncRun, run_id)


def recent(session: Session, source: str | None = None, limit: int = 20) -> Sequence[SyncRun]:
    query = sa.select(SyncRun).order_by(SyncRun.started_at.desc()).limit(limit)
    if source is not None:
        query = query.where(SyncRun.source == source)
    return session.scalars(query).all()


def _is_dead(owner: str | None) -> bool:
    if not owner or ":" not in owner:
        return False
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's run: its own restart closes it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def supersede_held(session: Session, source: str, *, keep: str) -> list[str]:
    """Mark the older held runs of ``source`` superseded by ``keep`` (one held run awaits a decision)."""
    older = session.scalars(
        sa.select(SyncRun).where(SyncRun.source == source, SyncRun.status == "held", SyncRun.id != keep)
    ).all()
    for run in older:
        run.status = "superseded"
        run.reason = f"{run.reason or ''}; superseded by held run {keep}".lstrip("; ")
    return [run.id for run in older]


def decide(session: Session, run_id: str, status: str, actor: str, note: str | None = None) -> SyncRun | None:
    """Record an admin's decision on a held run: ``approved`` or ``rejected``, by whom, and a note."""
    assert status in ("approved", "rejected"), status
    run = session.get(SyncRun, run_id)
    if run is None:
        return None
    run.status = status
    run.decided_by = actor
    if note:
        run.reason = f"{run.reason or ''}; {status}: {note}".lstrip("; ")
    return run

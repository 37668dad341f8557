"""Run rows seen from the daemon: the run this process runs, closing one it must abandon, the last runs.

A scheduled run that loses the leadership half-way is refused its commits (fencing), including the one
that would close its run row; the daemon then closes that row itself, through a unit of work that is not
fenced, so the next leader is not told "already running" by a run nobody is running any more.
Store functions: they take a Session and never commit.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.store.runs import finish
from syncd.store.tables import SyncRun


def running_run_of(session: Session, source: str, owner: str) -> str | None:
    """The id of the run of ``source`` that ``owner`` (``host:pid``) is running, if any."""
    return session.scalar(
        sa.select(SyncRun.id).where(
            SyncRun.source == source, SyncRun.status == "running", SyncRun.owner == owner
        )
    )


def close_running_of(session: Session, source: str, owner: str, reason: str) -> list[str]:
    """Close as failed the running run of ``source`` owned by ``owner``; the ids closed."""
    rows = session.scalars(
        sa.select(SyncRun).where(
            SyncRun.source == source, SyncRun.status == "running", SyncRun.owner == owner
        )
    ).all()
    for run in rows:
        finish(session, run, "failed", reason=reason)
    return [run.id for run in rows]


def close_orphaned(session: Session, source: str, this_host: str) -> list[str]:
    """PostgreSQL: close the running runs of ``source`` left by a process on another host that has no
    session in ``pg_stat_activity`` any more (every syncd process names its sessions ``syncd host:pid``).

    Runs of this host are left to :func:`syncd.store.runs.start`, which checks the pid itself.
    """
    rows = session.scalars(
        sa.select(SyncRun).where(SyncRun.source == source, SyncRun.status == "running")
    ).all()
    foreign = [run for run in rows if run.owner and run.owner.rpartition(":")[0] not in ("", this_host)]
    if not foreign:
        return []
    live = set(
        session.scalars(
            sa.text("SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'syncd %'")
        )
    )
    closed = []
    for run in foreign:
        if f"syncd {run.owner}"[:63] not in live:
            reason = f"interrupted: its process ({run.owner}) no longer has a database session"
            finish(session, run, "failed", reason=reason)
            closed.append(run.id)
    return closed


def last_runs(session: Session) -> dict[str, dict[str, str | None]]:
    """Each source's last finished (not dry) run: status, reason and end time, for ``/readyz``."""
    newest = (
        sa.select(SyncRun.source, sa.func.max(SyncRun.started_at).label("started_at"))
        .where(SyncRun.status != "running", SyncRun.dry_run.is_(False))
        .group_by(SyncRun.source)
        .subquery()
    )
    rows = session.scalars(
        sa.select(SyncRun).join(
            newest, sa.and_(SyncRun.source == newest.c.source, SyncRun.started_at == newest.c.started_at)
        )
    ).all()
    return {
        run.source: {
            "last_run": run.id,
            "status": run.status,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "reason": run.reason,
        }
        for run in sorted(rows, key=lambda r: r.source)
    }

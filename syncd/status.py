"""What ``syncd status`` shows: users by status, each source's last run, the outbox, who leads."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from syncd import leader
from syncd.config.models import Config
from syncd.store import outbox, schema, users
from syncd.store.db import Database
from syncd.store.stale_runs import last_runs
from syncd.store.tables import SyncRun


@dataclass
class Summary:
    database: str
    schema: str
    leader: str
    users: dict[str, int]
    outbox: dict[str, int]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    running: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "schema": self.schema,
            "leader": self.leader,
            "users": self.users,
            "outbox": self.outbox,
            "sources": self.sources,
            "running": self.running,
        }


def summary(config: Config, db: Database) -> Summary:
    """Read everything ``syncd status`` prints (one read transaction; raises StoreError when unreachable)."""
    current, head = schema.current_revision(db), schema.head_revision()
    shown = f"{current or 'empty'}" + ("" if current == head else f" (this syncd needs {head})")
    with db.read() as session:
        by_status = users.counts_by_status(session)
        mail = outbox.counts_by_status(session)
        last = last_runs(session)
        running = [
            {
                "source": run.source,
                "run": run.id,
                "mode": run.mode,
                "owner": run.owner,
                "since": run.started_at.isoformat(),
            }
            for run in session.scalars(sa.select(SyncRun).where(SyncRun.status == "running"))
        ]
        holder = _leader(db, session)
    sources: dict[str, dict[str, Any]] = {}
    for source in config.sources:
        entry: dict[str, Any] = {"kind": getattr(source, "kind", "?"), "enabled": source.enabled}
        entry.update(last.get(source.name, {"status": "never run"}))
        sources[source.name] = entry
    for name, run in last.items():
        sources.setdefault(name, {"kind": "not in config", "enabled": False, **run})
    return Summary(db.display_url, shown, holder, by_status, mail, sources, running)


def _leader(db: Database, session: Any) -> str:
    if db.is_sqlite:
        path = db.url.database
        if not path or path == ":memory:":
            return "none (in-memory database)"
        return _sqlite_daemon(Path(path))
    row = session.execute(
        sa.text(
            "SELECT a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = 0 "
            "AND l.objid = :key AND l.objsubid = 1 AND l.granted"
        ),
        {"key": leader.LEADER_KEY},
    ).first()
    if row is None:
        return "none (no replica holds the leader lock)"
    name = str(row[0] or "").removeprefix("syncd-leader ") or "unknown"
    return f"{name} (from {row[1]})" if row[1] else name


def _sqlite_daemon(database: Path) -> str:
    lock = database.with_name(database.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return "no daemon running"
    except OSError as error:
        return f"unknown ({lock}: {error.strerror})"
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return f"daemon running ({holder or 'pid unknown'})"
        return "no daemon running"
    finally:
        os.close(fd)

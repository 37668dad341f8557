"""Who runs the scheduled jobs: exactly one daemon per database.

* SQLite: one daemon per database file, enforced by an ``flock`` on ``<db>.lock``; that daemon is the
  leader for good. A second daemon is refused with a clear message (the CLI still works alongside).
* PostgreSQL: every replica serves the API; the holder of a session-level advisory lock, taken on a
  dedicated connection outside the pool (TCP keepalives on both ends, so a dead leader's session and
  lock are reaped in about half a minute), runs the jobs. Followers retry every ``poll`` seconds.

Fencing: every write unit of work of a scheduled job (the jobs' own :class:`Database`) checks, right
before it commits and under a shared "fence" lock, that this process's leader session still holds the
leader lock. A new leader takes the fence lock exclusively once before it starts any job, which waits
for every fenced transaction of the old leader that passed its check to end; after that no stale leader
can commit. See docs/adr/0040-leader-election-and-fencing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.errors import AlreadyRunningError, NotLeaderError, StoreError
from syncd.store.db import Database, first_line

log = logging.getLogger("syncd.leader")

LEADER_KEY = 0x5F5C_D002  # pg advisory lock: the leader
FENCE_KEY = 0x5F5C_D003  # pg advisory lock: the fence between an old and a new leader
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
SERVER_KEEPALIVE = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 "
    "-c tcp_user_timeout=30000"
)
HOLDS_LEADER_LOCK = """
SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = 0 AND l.objid = :key AND l.objsubid = 1 AND l.granted
  AND l.pid = :pid AND a.backend_start = :started
"""

OnChange = Callable[[bool], None]


class Leadership:
    """The single-daemon case (SQLite): this process is the leader as long as it lives."""

    def __init__(self) -> None:
        self._leader = True

    @property
    def is_leader(self) -> bool:
        return self._leader

    @property
    def role(self) -> str:
        return "leader" if self._leader else "follower"

    def ensure(self) -> None:
        """Raise :class:`NotLeaderError` unless this process leads (cheap; jobs call it between batches)."""
        if not self._leader:
            raise NotLeaderError("this replica is not the leader")

    def fence(self, db: Database) -> None:
        """Make ``db`` refuse to commit unless this process leads (nothing to do for a single daemon)."""

    async def campaign(self, stop: asyncio.Event, on_change: OnChange) -> None:
        """Become leader (at once here) and tell ``on_change``; return when ``stop`` is set."""
        on_change(True)
        await stop.wait()

    def close(self) -> None:
        """Give the leadership up."""


class SqliteSingleInstance(Leadership):
    """Holds ``flock(<db>.lock)`` while the daemon lives; a second daemon gets AlreadyRunningError."""

    def __init__(self, database_path: Path) -> None:
        super().__init__()
        self.path = database_path.with_name(database_path.name + ".lock")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise StoreError(f"can't open the daemon lock file {self.path}: {error.strerror}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunningError(
                f"another syncd daemon ({holder}) is already running on {database_path}: SQLite allows one "
                "daemon per database file (stop it first, or use PostgreSQL to run several replicas)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock; the file stays (removing it would race a new daemon)
            self._fd = None


class PostgresLeader(Leadership):
    """Leader election with ``pg_try_advisory_lock`` on a dedicated, non-pooled connection."""

    def __init__(self, db: Database, *, poll: float = 5.0) -> None:
        super().__init__()
        self._leader = False
        self.db = db
        self.poll = poll
        self._conn: psycopg.Connection[Any] | None = None
        self._identity: tuple[int, datetime] | None = None  # (backend pid, backend start) while leading
        self._io = threading.Lock()  # one statement at a time on the leader connection

    # ---- the campaign (event loop) -----------------------------------------------------------------------
    async def campaign(self, stop: asyncio.Event, on_change: OnChange) -> None:
        """Try for the lock every ``poll`` seconds; while leading, check the lock is still held as often.

        ``on_change(True)`` after the lock and the fence are taken, ``on_change(False)`` when it is lost.
        """
        while not stop.is_set():
            was = self._leader
            try:
                now = await asyncio.to_thread(self._step)
            except (psycopg.Error, OSError) as error:
                now = False
                self._drop(f"leader connection failed: {first_line(error)}")
            if now != was:
                self._leader = now
                log.info("leadership changed", extra={"role": self.role})
                on_change(now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll)

    def _step(self) -> bool:
        with self._io:
            conn = self._connection()
            if self._identity is not None:
                held = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 "
                    "AND objid = %s AND objsubid = 1 AND granted AND pid = pg_backend_pid()",
                    (LEADER_KEY,),
                ).fetchone()
                if held and held[0]:
                    return True
                self._drop("the leader lock is no longer held")
                return False
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_KEY,)).fetchone()
            if not (row and row[0]):
                return False
            # Wait for any fenced transaction of a previous leader to end, then start leading.
            conn.execute("SELECT pg_advisory_lock(%s)", (FENCE_KEY,))
            conn.execute("SELECT pg_advisory_unlock(%s)", (FENCE_KEY,))
            me = conn.execute(
                "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
            ).fetchone()
            assert me is not None
            self._identity = (int(me[0]), me[1])
            return True

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(**self._conninfo(), autocommit=True)
        return self._conn

    def _conninfo(self) -> dict[str, Any]:
        url = self.db.url
        info: dict[str, Any] = {
            "host": url.host or "",
            "port": url.port or 5432,
            "user": url.username or "",
            "dbname": url.database or "",
            "connect_timeout": 10,
            "application_name": f"syncd-leader {socket.gethostname()}:{os.getpid()}"[:63],
            "options": SERVER_KEEPALIVE,
            "tcp_user_timeout": 30_000,
            **KEEPALIVE,
            **{k: v for k, v in url.query.items() if isinstance(v, str)},
        }
        if self.db.config.password is not None:
            info["password"] = self.db.config.password.get()
        return {k: v for k, v in info.items() if v != ""}

    def _drop(self, reason: str) -> None:
        if self._identity is not None:
            log.warning("leadership lost", extra={"reason": reason})
        self._identity = None
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.close()

    # ---- checks used by jobs (worker threads) ------------------------------------------------------------
    def ensure(self) -> None:
        if not self._leader or self._identity is None:
            raise NotLeaderError("this replica is no longer the leader")

    def fence(self, db: Database) -> None:
        db.add_commit_check(self._fence_check)

    def _fence_check(self, session: Session) -> None:
        identity = self._identity
        if identity is None:
            raise NotLeaderError(
                "this replica is not the leader: the scheduled job's changes were rolled back"
            )
        session.execute(sa.text("SELECT pg_advisory_xact_lock_shared(:key)"), {"key": FENCE_KEY})
        held = session.execute(
            sa.text(HOLDS_LEADER_LOCK), {"key": LEADER_KEY, "pid": identity[0], "started": identity[1]}
        ).scalar()
        if not held:
            self._leader = False
            raise NotLeaderError(
                "this replica lost the leader lock: the scheduled job's changes were rolled back (fencing)"
            )

    def close(self) -> None:
        """Release the lock by closing the leader session (the next leader takes over at its next poll)."""
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                conn.cancel_safe()
        with self._io:
            self._leader = False
            self._identity = None
            self._drop("stopping")


def for_database(db: Database, *, poll: float = 5.0) -> Leadership:
    """The leadership for this database: PostgreSQL election, or the single-daemon SQLite lock."""
    if not db.is_sqlite:
        return PostgresLeader(db, poll=poll)
    database = db.url.database
    if not database or database == ":memory:":
        return Leadership()
    return SqliteSingleInstance(Path(database))

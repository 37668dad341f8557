"""Leader election on PostgreSQL (advisory lock on a dedicated connection) and fencing; SQLite's lock."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from harness.postgres import make_database_url, to_psycopg_dsn
from sqlalchemy.engine import make_url

from syncd.config.models import Database as DatabaseConfig
from syncd.config.secrets import SecretRef
from syncd.errors import AlreadyRunningError, NotLeaderError
from syncd.leader import LEADER_KEY, PostgresLeader, SqliteSingleInstance, for_database
from syncd.store import schema, stale_runs
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, SyncRun


class Campaign:
    """A leader's campaign on its own event loop in a thread, as in the daemon."""

    def __init__(self, leader: PostgresLeader) -> None:
        self.leader = leader
        self.changes: list[bool] = []
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.loop.run_until_complete(self.leader.campaign(self.stop, self.changes.append))

    def end(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        self.leader.close()
        self.loop.close()


def _wait(predicate: object, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def pg_config(pg_admin_url: str, tmp_path: Path) -> Iterator[DatabaseConfig]:
    with make_database_url("postgresql", tmp_path, pg_admin_url) as url:
        parsed = make_url(url)
        (tmp_path / "pw").write_text(str(parsed.password))
        bare = parsed._replace(password=None).render_as_string(hide_password=False)
        config = DatabaseConfig(url=bare, password=SecretRef(file=tmp_path / "pw"))
        db = Database(config)
        schema.upgrade(db)
        db.dispose()
        yield config


def _audit(db: Database, note: str) -> None:
    with db.write() as session:
        session.add(AuditRecord(actor="test", action="fence", target_type="test", target_id=note))


def _count(db: Database, note: str) -> int:
    with db.read() as session:
        return int(session.scalar(sa.select(sa.func.count()).where(AuditRecord.target_id == note)) or 0)


def test_one_leader_fencing_and_takeover(pg_config: DatabaseConfig, pg_admin_url: str) -> None:
    plain = Database(pg_config)
    a_jobs, b_jobs = Database(pg_config), Database(pg_config)
    a, b = PostgresLeader(plain, poll=0.2), PostgresLeader(plain, poll=0.2)
    a.fence(a_jobs)
    b.fence(b_jobs)
    first = Campaign(a)
    try:
        assert _wait(lambda: a.is_leader)
        second = Campaign(b)
        try:
            time.sleep(1)
            assert (a.role, b.role) == ("leader", "follower")
            _audit(a_jobs, "a-1")
            with pytest.raises(NotLeaderError):
                _audit(b_jobs, "b-1")  # a follower's job can't commit
            assert (_count(plain, "a-1"), _count(plain, "b-1")) == (1, 0)

            # The leader's session dies (as when its host or network goes): B takes over, A is fenced.
            with psycopg.connect(to_psycopg_dsn(pg_admin_url), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND objid = %s AND granted",
                    (LEADER_KEY,),
                )
            started = time.monotonic()
            assert _wait(lambda: b.is_leader, timeout=60)
            assert time.monotonic() - started < 60
            with pytest.raises(NotLeaderError):
                _audit(a_jobs, "a-stale")  # even if A has not noticed yet, its commit is refused
            assert _count(plain, "a-stale") == 0
            _audit(b_jobs, "b-2")
            assert _count(plain, "b-2") == 1
            assert _wait(lambda: not a.is_leader)
            assert first.changes == [True, False] and second.changes == [True]
        finally:
            second.end()
    finally:
        first.end()
        for db in (plain, a_jobs, b_jobs):
            db.dispose()


def test_released_lock_passes_to_the_follower(pg_config: DatabaseConfig) -> None:
    plain = Database(pg_config)
    a, b = PostgresLeader(plain, poll=0.2), PostgresLeader(plain, poll=0.2)
    first = Campaign(a)
    try:
        assert _wait(lambda: a.is_leader)
        second = Campaign(b)
        try:
            first.end()  # a clean stop closes the leader session: the lock is free at once
            assert _wait(lambda: b.is_leader, timeout=10)
        finally:
            second.end()
    finally:
        plain.dispose()


def test_sqlite_refuses_a_second_daemon(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    db = Database(DatabaseConfig(url=f"sqlite:///{path}"))
    first = for_database(db)
    assert isinstance(first, SqliteSingleInstance) and first.role == "leader"
    with pytest.raises(
        AlreadyRunningError, match=r"another syncd daemon \(pid \d+ .*\) is already running on"
    ):
        for_database(db)
    first.close()
    again = for_database(db)  # released: the next daemon may start
    again.close()
    db.dispose()


def test_orphaned_run_of_a_dead_process_on_another_host_is_closed(pg_config: DatabaseConfig) -> None:
    db = Database(pg_config)
    alive_url = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    info = {"password": pg_config.password.get() if pg_config.password else None}
    try:
        with db.write() as session:
            session.add(SyncRun(source="a", mode="full", status="running", owner="gone.example:4242"))
            session.add(SyncRun(source="b", mode="full", status="running", owner="alive.example:77"))
            session.add(SyncRun(source="c", mode="full", status="running", owner="here:1"))
        alive = psycopg.connect(alive_url, application_name="syncd alive.example:77", **info)
        with alive, db.write() as session:
            closed_a = stale_runs.close_orphaned(session, "a", "here")
            closed_b = stale_runs.close_orphaned(session, "b", "here")
            closed_c = stale_runs.close_orphaned(session, "c", "here")
        assert len(closed_a) == 1 and closed_b == [] and closed_c == []  # same host: runs.start checks pids
        with db.read() as session:
            run = session.scalars(sa.select(SyncRun).where(SyncRun.source == "a")).one()
        assert run.status == "failed" and run.reason == (
            "interrupted: its process (gone.example:4242) no longer has a database session"
        )
    finally:
        db.dispose()

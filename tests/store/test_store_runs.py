"""Sync run records (syncd.store.runs): the running row as the per-source lock, stale locks of dead
processes, finishing a run, and the shrink floor's last good user count."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import exc

from syncd.errors import AlreadyRunningError
from syncd.store import runs
from syncd.store.db import Database
from syncd.store.tables import SyncRun

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def start(db: Database, source: str = "ldap", *, dry_run: bool = False) -> SyncRun:
    with db.write() as session:
        return runs.start(session, source, "full", dry_run=dry_run)


def running(db: Database, source: str) -> list[SyncRun]:
    with db.read() as session:
        query = sa.select(SyncRun).where(SyncRun.source == source, SyncRun.status == "running")
        return list(session.scalars(query))


def add_run(db: Database, **values: Any) -> str:
    values = {"source": "ldap", "mode": "full", **values}
    with db.write() as session:
        run = SyncRun(**values)
        session.add(run)
        session.flush()
        return run.id


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as child:
        child.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)
    return child.pid


def test_start_inserts_a_running_run_owned_by_this_process(db: Database) -> None:
    run = start(db, dry_run=True)
    with db.read() as session:
        stored = runs.get(session, run.id)
        assert stored is not None
        assert (stored.source, stored.mode, stored.dry_run, stored.status) == (
            "ldap",
            "full",
            True,
            "running",
        )
        assert stored.owner == runs.this_process() == f"{socket.gethostname()}:{os.getpid()}"
        assert stored.started_at.tzinfo is not None
        assert stored.finished_at is None


def test_a_second_start_of_the_same_source_is_refused(db: Database) -> None:
    first = start(db)
    with pytest.raises(AlreadyRunningError, match="ldap"):
        start(db)
    assert [run.id for run in running(db, "ldap")] == [first.id]


def test_two_units_starting_the_same_source_at_once_one_wins(db: Database) -> None:
    """The second unit starts while the first has inserted its running row but not committed: the
    unique partial index (PostgreSQL) or the write lock (SQLite) makes it lose cleanly."""
    inserted, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def first() -> None:
        try:
            with db.write() as session:
                outcome["first"] = runs.start(session, "ldap", "full", dry_run=False).id
                inserted.set()
                release.wait(timeout=30)
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["first_error"] = error
            inserted.set()

    def second() -> None:
        try:
            outcome["second"] = start(db).id
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome["second_error"] = error

    first_thread = threading.Thread(target=first)
    first_thread.start()
    assert inserted.wait(timeout=30)
    second_thread = threading.Thread(target=second)
    second_thread.start()
    second_thread.join(timeout=0.5)  # it has to wait for the first unit, or it has already lost
    release.set()
    first_thread.join(timeout=30)
    second_thread.join(timeout=30)
    assert not first_thread.is_alive() and not second_thread.is_alive()

    assert "first_error" not in outcome, outcome
    error = outcome.get("second_error")
    assert isinstance(error, AlreadyRunningError), outcome
    if db.is_sqlite:  # BEGIN IMMEDIATE queued the second unit; it then saw the committed running row
        assert error.__cause__ is None
    else:  # PostgreSQL: the second unit's insert waited on the unique partial index, then lost
        assert isinstance(error.__cause__, exc.IntegrityError)
    assert [run.id for run in running(db, "ldap")] == [outcome["first"]]


def test_a_running_row_of_a_dead_process_on_this_host_is_closed_as_interrupted(db: Database) -> None:
    stale = add_run(
        db,
        status="running",
        owner=f"{socket.gethostname()}:{dead_pid()}",
        started_at=datetime.now(UTC) - timedelta(hours=1),
    )
    new = start(db)
    with db.read() as session:
        old = runs.get(session, stale)
        assert old is not None
        assert old.status == "failed"
        assert old.reason is not None and "interrupted" in old.reason
        assert old.finished_at is not None
    assert [run.id for run in running(db, "ldap")] == [new.id]


def test_a_running_row_of_a_live_or_unknown_owner_is_respected(db: Database) -> None:
    owners = [
        "build-host-that-is-not-this-one:1234",  # another machine's run: only its own restart closes it
        f"{socket.gethostname()}:1",  # a live process on this host (pid 1 always exists)
        "garbage-without-a-pid",
        None,
    ]
    for owner in owners:
        held = add_run(db, status="running", owner=owner)
        with pytest.raises(AlreadyRunningError):
            start(db)
        assert [run.id for run in running(db, "ldap")] == [held], owner
        with db.write() as session:
            session.execute(sa.update(SyncRun).where(SyncRun.id == held).values(status="failed"))


def test_different_sources_run_at_the_same_time(db: Database) -> None:
    ldap, csv = start(db, "ldap"), start(db, "csv")
    assert [run.id for run in running(db, "ldap")] == [ldap.id]
    assert [run.id for run in running(db, "csv")] == [csv.id]


def test_finish_records_outcome_and_counts_and_releases_the_source(db: Database) -> None:
    run = start(db)
    with db.write() as session:
        stored = runs.get(session, run.id)
        assert stored is not None
        runs.finish(
            session,
            stored,
            "ok",
            reason="all good",
            created=3,
            updated=2,
            disabled=1,
            reenabled=4,
            unchanged=90,
            errors=0,
            source_users=100,
        )
    with db.read() as session:
        done = runs.get(session, run.id)
        assert done is not None
        assert (done.status, done.reason) == ("ok", "all good")
        assert done.finished_at is not None and done.finished_at >= done.started_at
        counts = (done.created, done.updated, done.disabled, done.reenabled, done.unchanged, done.errors)
        assert counts == (3, 2, 1, 4, 90, 0)
        assert done.source_users == 100
    assert running(db, "ldap") == []
    start(db)  # the source is free again


def test_last_good_user_count_ignores_dry_failed_held_and_running_runs(db: Database) -> None:
    with db.read() as session:
        assert runs.last_good_user_count(session, "ldap") is None

    def at(minutes: int) -> datetime:
        return T0 + timedelta(minutes=minutes)

    add_run(db, status="ok", started_at=at(0), source_users=100)
    add_run(db, status="ok", dry_run=True, started_at=at(1), source_users=50)
    add_run(db, status="failed", started_at=at(2), source_users=10)
    add_run(db, status="held", started_at=at(3), source_users=5)
    add_run(db, status="incomplete", started_at=at(4), source_users=6)
    add_run(db, status="rejected", started_at=at(5), source_users=7)
    add_run(db, status="approved", dry_run=True, started_at=at(6), source_users=8)
    add_run(db, status="running", started_at=at(7), source_users=9, owner=runs.this_process())
    add_run(db, source="csv", status="ok", started_at=at(8), source_users=999)
    with db.read() as session:
        assert runs.last_good_user_count(session, "ldap") == 100
        assert runs.last_good_user_count(session, "csv") == 999

    add_run(db, status="approved", started_at=at(9), source_users=120)  # an approved held run was applied
    with db.read() as session:
        assert runs.last_good_user_count(session, "ldap") == 120

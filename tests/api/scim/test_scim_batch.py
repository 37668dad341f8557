"""Group commit of SCIM writes on SQLite (syncd.api.scim.batch), on a real database file: writes that
queue share one transaction, a failing write loses only its own changes, a failed COMMIT stores none and
tells every caller, and the writer thread ends when idle and comes back."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from syncd.api.scim.batch import BatchWriter
from syncd.config.models import Database as DatabaseConfig
from syncd.store.db import Database
from syncd.store.prepared import statements_for


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'batch.db'}"))
    with database.write() as session:
        session.execute(sa.text("CREATE TABLE t (v TEXT NOT NULL UNIQUE)"))
    yield database
    database.dispose()


def stored(db: Database) -> set[str]:
    with db.read() as session:
        return set(session.scalars(sa.text("SELECT v FROM t")))


def insert(writer: BatchWriter, *values: str, fail: bool = False) -> Any:
    def func() -> str:
        with writer.session() as session:
            for value in values:
                session.execute(sa.text("INSERT INTO t (v) VALUES (:v)"), {"v": value})
            if fail:
                raise ValueError(f"refused {values}")
        return ",".join(values)

    return func


async def one_batch(writer: BatchWriter, funcs: list[Any]) -> list[Any]:
    """Run ``funcs`` as one batch: the writer is held busy by a first write until all are queued."""
    go = threading.Event()

    def hold() -> str:
        assert go.wait(5)
        with writer.session() as session:
            session.execute(sa.text("INSERT INTO t (v) VALUES ('held')"))
        return "held"

    first = asyncio.ensure_future(writer.run(hold))
    await asyncio.sleep(0.05)  # the thread has taken `hold` alone
    rest = [asyncio.ensure_future(writer.run(func)) for func in funcs]
    await asyncio.sleep(0)  # every task has queued its write
    go.set()
    assert await first == "held"
    return await asyncio.gather(*rest, return_exceptions=True)


def count_commits(db: Database) -> list[int]:
    commits = [0]

    def on_commit(_conn: Any) -> None:
        commits[0] += 1

    event.listen(db.write_engine, "commit", on_commit)
    return commits


def test_queued_writes_share_one_commit_and_a_failing_one_loses_only_its_own(db: Database) -> None:
    writer = BatchWriter(db)
    commits = count_commits(db)
    a, b, c = insert(writer, "a"), insert(writer, "b1", "b2", fail=True), insert(writer, "c")
    queued = [a, b, c, insert(writer, "a")]
    results = asyncio.run(one_batch(writer, queued))
    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], sa.exc.IntegrityError)  # the second "a": its savepoint alone rolled back
    assert stored(db) == {"held", "a", "c"}
    assert commits[0] == 2  # the holding write, then the four queued ones together


def test_a_failed_commit_stores_nothing_of_the_batch_and_tells_every_caller(db: Database) -> None:
    writer = BatchWriter(db)

    def fencing(session: Session) -> None:  # the leader's fencing check, refusing the batch of x, y, z
        if session.execute(sa.text("SELECT count(*) FROM t")).scalar():
            raise RuntimeError("no longer the leader")

    db.add_commit_check(fencing)

    async def scenario() -> list[Any]:
        go = threading.Event()

        def hold() -> None:
            assert go.wait(5)

        first = asyncio.ensure_future(writer.run(hold))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(writer.run(insert(writer, v))) for v in ("x", "y", "z")]
        await asyncio.sleep(0)
        go.set()
        await first
        return await asyncio.gather(*rest, return_exceptions=True)

    results = asyncio.run(scenario())
    assert [str(r) for r in results] == ["no longer the leader"] * 3
    assert all(isinstance(r, RuntimeError) for r in results)
    assert stored(db) == set()


def test_the_writer_thread_ends_when_idle_and_comes_back(db: Database) -> None:
    writer = BatchWriter(db, idle_seconds=0.1)
    assert asyncio.run(writer.run(insert(writer, "first"))) == "first"
    deadline = time.monotonic() + 5
    while writer.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not writer.running
    assert asyncio.run(writer.run(insert(writer, "second"))) == "second"
    assert stored(db) == {"first", "second"}


# ---- writes of prepared statements (BatchWriter.driver: the hot SCIM writes) ----------------------------
T = sa.table("t", sa.column("v", sa.String))
INSERT_V = sa.insert(T).values(v=sa.bindparam("v"))
COUNT_V = sa.select(sa.func.count()).select_from(T).where(T.c.v == sa.bindparam("v"))


def insert_prepared(writer: BatchWriter, *values: str, fail: bool = False) -> Any:
    def func() -> str:
        with writer.driver(statements_for(writer.db.write_engine.dialect)) as work:
            for value in values:
                work.run(INSERT_V, {"v": value})
            if fail:
                raise ValueError(f"refused {values}")
        return ",".join(values)

    return func


def test_prepared_writes_share_the_batch_and_a_failing_one_loses_only_its_own(db: Database) -> None:
    writer = BatchWriter(db)
    commits = count_commits(db)
    queued = [
        insert_prepared(writer, "p1"),
        insert_prepared(writer, "p2", "p3", fail=True),
        insert(writer, "orm"),  # an ORM write between them, in the same transaction
        insert_prepared(writer, "p1"),  # a duplicate: the driver's error, as SQLAlchemy's IntegrityError
        insert_prepared(writer, "p4"),
    ]
    results = asyncio.run(one_batch(writer, queued))
    assert results[0] == "p1" and results[2] == "orm" and results[4] == "p4"
    assert isinstance(results[1], ValueError)
    assert isinstance(results[3], sa.exc.IntegrityError)
    assert stored(db) == {"held", "p1", "orm", "p4"}
    assert commits[0] == 2


def test_prepared_statements_see_what_an_earlier_orm_write_of_the_batch_left(db: Database) -> None:
    writer = BatchWriter(db)
    seen: list[int] = []

    def count_after() -> None:
        with writer.driver(statements_for(db.write_engine.dialect)) as work:
            seen.append(work.all(COUNT_V, {"v": "from-orm"})[0][0])

    results = asyncio.run(one_batch(writer, [insert(writer, "from-orm"), count_after]))
    assert results == ["from-orm", None]
    assert seen == [1]


@pytest.mark.parametrize("write", [insert, insert_prepared], ids=["orm", "prepared"])
def test_a_write_outside_the_writer_thread_is_a_unit_of_work_of_its_own(db: Database, write: Any) -> None:
    writer = BatchWriter(db)
    assert write(writer, "alone")() == "alone"
    with pytest.raises(ValueError, match="refused"):
        write(writer, "rolled-back", fail=True)()
    assert stored(db) == {"alone"}

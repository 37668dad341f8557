"""PointReader (syncd.store.point_reads) on a real SQLite file: rows equal to what the engine returns for
the same statements (UTC timestamps, decoded JSON, booleans, the statements' own literals), a broken
database is a StoreError, and PostgreSQL or an in-memory database gets no reader."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from syncd.api.scim.users import BY_ID, BY_ID_WITH_GROUPS, BY_USERNAME, BY_USERNAME_WITH_GROUPS, GROUPS_OF_ONE
from syncd.config.models import Database as DatabaseConfig
from syncd.errors import StoreError
from syncd.store.db import Database
from syncd.store.point_reads import AsyncPointReader, PointReader
from syncd.store.tables import Group, GroupMember, User

T0 = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)


def store(db: Database) -> None:
    with db.write() as session:
        for i, (name, active) in enumerate([("Ann.Lee@x.com", True), ("bob@x.com", False)]):
            attributes = {"externalId": f"e{i}", "name": {"givenName": "Ä"}, "emails": [{"value": name}]}
            session.add(
                User(id=f"u{i}", username=name, username_key=name.casefold(), status="UNENROLLED",
                     provisioned=active, managed_by="okta", attributes=attributes, created_at=T0,
                     updated_at=T0 + timedelta(seconds=i))
            )  # fmt: skip
        session.add(
            User(id="u9", username="other", username_key="other", status="UNENROLLED", managed_by="hr")
        )
        for j, source in enumerate(["okta", "okta", "entra"]):
            session.add(Group(id=f"g{j}", name=f"G{j}", name_key=f"g{j}", managed_by=source))
        session.flush()
        session.add_all([GroupMember(group_id=f"g{j}", user_id="u0", managed_by="okta") for j in range(3)])


# The statements the SCIM app runs on the readers, with parameters that find rows, groups, or nothing.
CASES = [
    (BY_USERNAME_WITH_GROUPS, {"key": "ann.lee@x.com", "source": "okta"}),
    (BY_USERNAME_WITH_GROUPS, {"key": "bob@x.com", "source": "okta"}),
    (BY_USERNAME_WITH_GROUPS, {"key": "other", "source": "okta"}),  # another source's user: nothing
    (BY_USERNAME, {"key": "ann.lee@x.com", "source": "okta"}),
    (BY_ID, {"id": "u1", "source": "okta"}),
    (BY_ID_WITH_GROUPS, {"id": "u0", "source": "okta"}),
    (BY_ID_WITH_GROUPS, {"id": "u9", "source": "okta"}),  # hr's user: nothing
    (GROUPS_OF_ONE, {"id": "u0", "source": "okta"}),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rows_equal_the_engines_for_the_scim_lookups(db: Database) -> None:
    store(db)
    reader = PointReader.for_database(db)
    assert reader is not None
    for statement, params in CASES:
        with db.read_engine.connect() as conn:
            expected = [tuple(row) for row in conn.execute(statement, params)]
        got = reader.all(statement, params)
        assert [tuple(row) for row in got] == expected
    rows = reader.all(BY_USERNAME_WITH_GROUPS, {"key": "ann.lee@x.com", "source": "okta"})
    groups = [(r.group_id, r.group_name) for r in rows if r.group_id is not None]
    assert groups == [("g0", "G0"), ("g1", "G1")]  # not entra's g2
    assert rows[0].updated_at == T0 and rows[0].updated_at.tzinfo is not None
    assert rows[0].attributes["name"] == {"givenName": "Ä"} and rows[0].provisioned is True
    assert reader.all(BY_ID, {"id": "u1", "source": "okta"})[0].provisioned is False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_broken_database_is_a_store_error(db: Database) -> None:
    reader = PointReader.for_database(db)
    assert reader is not None
    with db.write() as session:
        session.execute(sa.text("ALTER TABLE users RENAME TO users_gone"))
    with pytest.raises(StoreError, match="no such table: users"):
        reader.all(BY_ID, {"id": "u1", "source": "okta"})


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_readers_connections_are_read_only(db: Database) -> None:
    reader = PointReader.for_database(db)
    assert reader is not None
    reader.all(BY_ID, {"id": "u1", "source": "okta"})
    connection = reader._connection()
    with pytest.raises(Exception, match="readonly"):
        connection.execute("DELETE FROM users")


def test_each_database_gets_its_own_kind_of_reader(db: Database, tmp_path: Path) -> None:
    if db.is_sqlite:
        memory = Database(DatabaseConfig(url="sqlite://"))
        assert PointReader.for_database(memory) is None
        memory.dispose()
        assert PointReader.for_database(db) is not None and AsyncPointReader.for_database(db) is None
    else:
        assert PointReader.for_database(db) is None and AsyncPointReader.for_database(db) is not None


# ---- PostgreSQL: AsyncPointReader --------------------------------------------------------------------------
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_async_rows_equal_the_engines_and_a_connection_broken_while_idle_is_replaced(db: Database) -> None:
    store(db)
    reader = AsyncPointReader.for_database(db)
    assert reader is not None
    cases = CASES
    expected = []
    for statement, params in cases:
        with db.read_engine.connect() as conn:
            expected.append([tuple(row) for row in conn.execute(statement, params)])

    async def scenario() -> None:
        for (statement, params), rows in zip(cases, expected, strict=True):
            assert [tuple(row) for row in await reader.all(statement, params)] == rows
        first = await reader.all(BY_ID, {"id": "u0", "source": "okta"})
        assert first[0].updated_at == T0 and first[0].attributes["name"] == {"givenName": "Ä"}
        (idle,) = reader._idle
        pid = idle.info.backend_pid
        with db.read_engine.connect() as conn:  # the server ends the idle session (as a restart would)
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert [tuple(row) for row in await reader.all(*cases[0])] == expected[0]  # retried on a new one
        (replacement,) = reader._idle
        assert replacement.info.backend_pid != pid and idle.closed

    asyncio.run(scenario())
    (connection,) = reader._open
    db.dispose()
    assert connection.closed and not reader._open


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_async_reader_parallel_reads_stay_within_its_size(db: Database) -> None:
    store(db)
    reader = AsyncPointReader(db, size=3)

    async def scenario() -> list[list[Any]]:
        params = {"key": "bob@x.com", "source": "okta"}
        return await asyncio.gather(*(reader.all(BY_USERNAME_WITH_GROUPS, params) for _ in range(20)))

    results = asyncio.run(scenario())
    assert {len(rows) for rows in results} == {1} and len(reader._open) <= 3
    reader.close()


def test_async_reader_without_a_server_is_a_store_error(tmp_path: Path) -> None:
    db = Database(DatabaseConfig(url="postgresql+psycopg://syncd@127.0.0.1:1/nowhere"))
    reader = AsyncPointReader.for_database(db)
    assert reader is not None
    with pytest.raises(StoreError, match=r"database .*nowhere: "):
        asyncio.run(reader.all(BY_ID, {"id": "u1", "source": "okta"}))
    db.dispose()

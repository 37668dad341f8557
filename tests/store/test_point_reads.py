"""PointReader (syncd.store.point_reads) on a real SQLite file: rows equal to what the engine returns for
the same statements (UTC timestamps, decoded JSON, booleans, the statements' own literals), a broken
database is a StoreError, and PostgreSQL or an in-memory database gets no reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncd.api.scim.users import BY_ID, BY_USERNAME, BY_USERNAME_WITH_GROUPS
from syncd.config.models import Database as DatabaseConfig
from syncd.errors import StoreError
from syncd.store.db import Database
from syncd.store.point_reads import PointReader
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


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rows_equal_the_engines_for_the_scim_lookups(db: Database) -> None:
    store(db)
    reader = PointReader.for_database(db)
    assert reader is not None
    cases = [
        (BY_USERNAME_WITH_GROUPS, {"key": "ann.lee@x.com", "source": "okta"}),
        (BY_USERNAME_WITH_GROUPS, {"key": "bob@x.com", "source": "okta"}),
        (BY_USERNAME_WITH_GROUPS, {"key": "other", "source": "okta"}),  # another source's user: nothing
        (BY_USERNAME, {"key": "ann.lee@x.com", "source": "okta"}),
        (BY_ID, {"id": "u1", "source": "okta"}),
    ]
    for statement, params in cases:
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


def test_no_reader_for_postgresql_or_memory(db: Database, tmp_path: Path) -> None:
    if db.is_sqlite:
        memory = Database(DatabaseConfig(url="sqlite://"))
        assert PointReader.for_database(memory) is None
        memory.dispose()
        assert PointReader.for_database(db) is not None
    else:
        assert PointReader.for_database(db) is None

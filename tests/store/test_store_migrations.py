"""Schema migrations (syncd.store.schema): one head, up/down/up, the models match the migrated schema,
refusal of empty and newer databases, idempotence, and simultaneous starts (reliability.md D8)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event

from syncd.errors import SchemaMismatchError, StoreError
from syncd.store import schema
from syncd.store.db import Database
from syncd.store.tables import Base

FUTURE_REVISION = "ffff0000beef"  # a revision this code has never heard of
MODEL_TABLES = set(Base.metadata.tables)

MakeDb = Callable[..., Database]  # the make_db fixture (tests/store/conftest.py)


def table_names(db: Database) -> set[str]:
    with db.read_engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def schema_objects(db: Database) -> set[str]:
    """Every table, index, sequence, view… in the database, by name (internal SQLite objects excluded)."""
    with db.read_engine.connect() as conn:
        if db.is_sqlite:
            query = "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        else:
            query = (
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() "
                "UNION ALL SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = current_schema() AND t.typtype IN ('e', 'd')"  # enums, domains
            )
        return set(conn.exec_driver_sql(query).scalars())


def schema_diff(db: Database) -> list[Any]:
    with db.read_engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def version_rows(db: Database) -> list[str]:
    with db.read_engine.connect() as conn:
        return list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


def stamp(db: Database, revision: str) -> None:
    with db.write_engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :rev"), {"rev": revision})


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(schema.alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1, f"several migration heads {heads}: merge them"
    assert heads[0] == schema.head_revision()
    bases = script.get_bases()
    assert len(bases) == 1, f"several migration bases {bases}"


def test_upgrade_from_empty_reaches_head_and_creates_every_model_table(make_db: MakeDb) -> None:
    db = make_db()
    try:
        assert schema.current_revision(db) is None
        before, after = schema.upgrade(db)
        assert (before, after) == (None, schema.head_revision())
        assert schema.current_revision(db) == schema.head_revision()
        assert version_rows(db) == [schema.head_revision()]
        assert table_names(db) == MODEL_TABLES | {"alembic_version"}
        schema.check_current(db)  # does not raise
    finally:
        db.dispose()


def test_schema_at_head_matches_the_models(make_db: MakeDb) -> None:
    db = make_db()
    try:
        schema.upgrade(db)
        assert schema_diff(db) == []
    finally:
        db.dispose()


def test_downgrade_to_base_leaves_only_alembic_version_and_upgrade_works_again(make_db: MakeDb) -> None:
    db = make_db()
    try:
        schema.upgrade(db)
        schema.downgrade(db, "base")
        assert table_names(db) == {"alembic_version"}
        # no index, sequence or type survives either (alembic_version's primary key aside)
        assert schema_objects(db) - {"alembic_version", "alembic_version_pkc"} == set()
        assert schema.current_revision(db) is None
        assert version_rows(db) == []

        assert schema.upgrade(db) == (None, schema.head_revision())
        assert table_names(db) == MODEL_TABLES | {"alembic_version"}
        assert schema_diff(db) == []
        schema.check_current(db)
    finally:
        db.dispose()


def test_check_current_refuses_an_empty_database_and_says_how_to_fix_it(make_db: MakeDb) -> None:
    db = make_db()
    try:
        with pytest.raises(SchemaMismatchError) as caught:
            schema.check_current(db)
        message = str(caught.value)
        assert "syncd db upgrade" in message
        assert schema.head_revision() in message
        assert isinstance(caught.value, StoreError)
    finally:
        db.dispose()


def test_a_database_stamped_with_an_unknown_revision_is_newer_than_the_code(make_db: MakeDb) -> None:
    db = make_db()
    try:
        schema.upgrade(db)
        stamp(db, FUTURE_REVISION)
        objects = schema_objects(db)

        with pytest.raises(SchemaMismatchError, match="newer than the code") as caught:
            schema.upgrade(db)
        assert FUTURE_REVISION in str(caught.value)
        with pytest.raises(SchemaMismatchError, match="newer than the code"):
            schema.check_current(db)

        # the refused upgrade touched nothing
        assert version_rows(db) == [FUTURE_REVISION]
        assert schema_objects(db) == objects
    finally:
        db.dispose()


def test_downgrade_refuses_a_database_newer_than_the_code(make_db: MakeDb) -> None:
    """Like ``upgrade``: an operator running an older syncd's downgrade gets the same clear refusal, not
    Alembic's "Can't locate revision" (foreign errors are translated at the edge, DESIGN.md)."""
    db = make_db()
    try:
        schema.upgrade(db)
        stamp(db, FUTURE_REVISION)
        with pytest.raises(SchemaMismatchError, match="newer than the code"):
            schema.downgrade(db, "base")
        assert version_rows(db) == [FUTURE_REVISION]
    finally:
        db.dispose()


def test_upgrade_twice_is_a_noop(make_db: MakeDb) -> None:
    db = make_db()
    try:
        schema.upgrade(db)
        objects = schema_objects(db)
        statements: list[str] = []

        @event.listens_for(db.write_engine, "before_cursor_execute")
        def _log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            statements.append(statement)

        assert schema.upgrade(db) == (schema.head_revision(), schema.head_revision())
        ddl = [s for s in statements if s.lstrip().upper().startswith(("CREATE", "ALTER", "DROP"))]
        assert ddl == []
        assert not any(s.lstrip().upper().startswith(("INSERT", "UPDATE")) for s in statements)
        assert schema_objects(db) == objects
        assert version_rows(db) == [schema.head_revision()]
    finally:
        db.dispose()


def test_three_replicas_upgrading_an_empty_database_at_once_migrate_it_exactly_once(
    make_db: MakeDb,
) -> None:
    """D8: the PostgreSQL advisory lock (SQLite: BEGIN IMMEDIATE) serialises the upgrades, so one replica
    migrates and the others then find the database at head; nobody fails on duplicate DDL."""
    replicas = [make_db() for _ in range(3)]
    barrier = threading.Barrier(len(replicas))
    results: list[tuple[str | None, str]] = []
    failures: list[BaseException] = []

    def start(db: Database) -> None:
        barrier.wait(timeout=10)
        try:
            results.append(schema.upgrade(db))
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    threads = [threading.Thread(target=start, args=(db,)) for db in replicas]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "an upgrade hung"
        assert failures == []
        head = schema.head_revision()
        assert sorted(results, key=lambda r: r[0] or "") == [(None, head), (head, head), (head, head)]
        assert version_rows(replicas[0]) == [head]
        assert schema_diff(replicas[0]) == []
        for db in replicas:
            schema.check_current(db)
    finally:
        for db in replicas:
            db.dispose()

"""Schema migrations (Alembic, shipped inside the package) and the "is the schema current?" check.

Migrations run under a lock so several replicas starting together migrate once: on PostgreSQL a
transaction-scoped advisory lock (DDL is transactional there), on SQLite the ``BEGIN IMMEDIATE`` write lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from syncd.errors import SchemaMismatchError
from syncd.store.db import Database, translate_errors

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x5F5C_D001  # pg_advisory_xact_lock key for migrations


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with translate_errors(db.display_url), db.read_engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(db: Database, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade to ``revision`` under the migration lock; returns (before, after) revisions."""
    _refuse_unknown(db)
    config = alembic_config()
    with translate_errors(db.display_url), db.write_engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        before = MigrationContext.configure(connection).get_current_revision()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    assert after is not None
    return before, after


def downgrade(db: Database, revision: str) -> None:
    """Downgrade (used by the migration tests and by operators rolling back a release)."""
    _refuse_unknown(db)
    config = alembic_config()
    with translate_errors(db.display_url), db.write_engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def check_current(db: Database) -> None:
    """Raise :class:`SchemaMismatchError` unless the database is exactly at this code's head."""
    _refuse_unknown(db)
    current, head = current_revision(db), head_revision()
    if current != head:
        shown = current or "empty"
        raise SchemaMismatchError(
            f"database {db.display_url} is at schema revision {shown}, this syncd needs {head}: "
            "run `syncd db upgrade`"
        )


def _refuse_unknown(db: Database) -> None:
    current = current_revision(db)
    if current is None:
        return
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaMismatchError(
            f"database {db.display_url} is at schema revision {current}, which this syncd "
            f"(schema {head_revision()}) does not know: the database is newer than the code. "
            "Run the newer syncd, or restore a backup made for this version"
        )

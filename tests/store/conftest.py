"""Fixtures for the store tests: ``Database`` handles built from the ``database_url`` fixture.

``syncd.config.models.Database`` refuses a password inside a PostgreSQL URL (it belongs in
``database.password``), while the harness URL carries one; ``make_db`` moves it into an environment
variable read through a ``SecretRef``, which is how an operator would configure it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import URL, make_url

from syncd.config.models import Database as DatabaseConfig
from syncd.store import schema
from syncd.store.db import Database

PASSWORD_ENV = "SYNCD_TEST_STORE_DB_PASSWORD"

MakeDb = Callable[..., Database]


def config_for(url: str, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> DatabaseConfig:
    """A database config for ``url`` (password, if any, moved into ``password`` via the environment)."""
    parsed = make_url(url)
    if parsed.password is None:
        return DatabaseConfig(url=url, **settings)
    monkeypatch.setenv(PASSWORD_ENV, str(parsed.password))
    bare = URL.create(
        parsed.drivername, parsed.username, None, parsed.host, parsed.port, parsed.database, parsed.query
    )
    return DatabaseConfig(
        url=bare.render_as_string(hide_password=False), password={"env": PASSWORD_ENV}, **settings
    )


@pytest.fixture
def db_kind(database_url: str) -> str:
    """``sqlite`` or ``postgresql``."""
    return make_url(database_url).get_backend_name()


@pytest.fixture
def make_db(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDb]:
    """``make_db(**settings)`` → a new :class:`Database` on the test database (empty, not migrated).

    Every handle made is disposed at the end of the test (disposing twice is harmless).
    """
    made: list[Database] = []

    def factory(**settings: Any) -> Database:
        db = Database(config_for(database_url, monkeypatch, **settings))
        made.append(db)
        return db

    yield factory
    for db in made:
        db.dispose()


@pytest.fixture
def db(make_db: MakeDb) -> Iterator[Database]:
    """A database migrated to head."""
    database = make_db()
    schema.upgrade(database)
    yield database
    database.dispose()

"""The API served for real over a migrated database (both kinds); see harness/served.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness.served import Served, serve

from syncd.config.models import Database as DatabaseConfig
from syncd.store import schema
from syncd.store.db import Database


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def served(db: Database) -> Iterator[Served]:
    with serve(db) as running:
        yield running

"""A migrated database (both kinds) for the mail tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from syncd.config.models import Database as DatabaseConfig
from syncd.store import schema
from syncd.store.db import Database


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()

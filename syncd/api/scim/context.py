"""What every SCIM operation needs: the database, the public base URL, the dialect; units of work that
turn constraint races into SCIM errors; ETag preconditions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, exc
from sqlalchemy.orm import Session

from syncd.api.scim.batch import BatchWriter
from syncd.api.scim.errors import PreconditionFailedError, UniquenessError
from syncd.api.scim.resources import version
from syncd.store.db import Database, translate_errors
from syncd.store.point_reads import AsyncPointReader, PointReader
from syncd.store.prepared import DriverWork, statements_for


@dataclass(frozen=True, slots=True)
class Context:
    db: Database
    base: str  # e.g. https://mfa.example.com/scim/v2 (from org.base_url, never from the Host header)
    # SQLite in the app: every write on the one writer thread, group-committed (syncd.api.scim.batch),
    # rather than threads waiting in SQLite's busy handler (sleeps of up to 100 ms: seconds of p99).
    batch: BatchWriter | None = None
    points: PointReader | None = None  # SQLite in the app: hot lookups on the driver's connection
    async_points: AsyncPointReader | None = None  # PostgreSQL in the app: hot lookups on the event loop

    @property
    def dialect(self) -> str:
        return "sqlite" if self.db.is_sqlite else "postgresql"

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only connection (Core statements: the lookups IdPs make are the hot path)."""
        with translate_errors(self.db.display_url), self.db.read_engine.connect() as connection:
            yield connection

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A unit of work; a unique-index race (two clients creating one userName) is a 409."""
        unit = self.batch.session() if self.batch is not None else self.db.write()
        with _unique(), unit as session:
            yield session

    @contextlib.contextmanager
    def driver(self) -> Iterator[DriverWork]:
        """A unit of work of prepared statements (syncd.store.prepared): the hot writes. As :meth:`write`."""
        statements = statements_for(self.db.write_engine.dialect)
        if self.batch is not None:
            with _unique(), self.batch.driver(statements) as work:
                yield work
            return
        with _unique(), self.db.write() as session:
            yield DriverWork(session, statements)


@contextlib.contextmanager
def _unique() -> Iterator[None]:
    try:
        yield
    except exc.IntegrityError:
        raise UniquenessError("the value is already in use (a concurrent request created it)") from None


def owned_by_source(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """``managed_by = :source`` for a statement that finds a row by its id: written ``managed_by || ''`` so
    that no planner answers it through a ``managed_by`` index. Without statistics (a freshly loaded
    database, before ANALYZE) PostgreSQL took ``ix_users_managed_by_live`` for ``id = … AND managed_by = …``
    and scanned every user of the source: 6 ms at 100,000 users instead of the primary key's 0.05."""
    return column + "" == sa.bindparam("source")


def check_version(updated_at: datetime, if_match: str | None) -> None:
    """RFC 7644 §3.14: If-Match with none of the current version (or ``*``) is 412."""
    if if_match is None:
        return
    tags = [tag.strip() for tag in if_match.split(",")]
    current = version(updated_at)
    if "*" in tags or current in tags or current.removeprefix("W/") in tags:
        return
    raise PreconditionFailedError("the resource has changed since that version (If-Match)")

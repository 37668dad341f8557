"""SQLite point reads on the driver's own connection, for the statements of the hottest request paths.

A SCIM ``userName eq`` lookup is one indexed statement that SQLite answers in ~20 µs; run through a
SQLAlchemy connection (pool checkout, execution context, result wrapping, reset on return) it costs
~0.1 ms more, most of the request's own work. :class:`PointReader` runs a statement that SQLAlchemy
compiled once on a plain ``sqlite3`` connection in autocommit mode (one statement, one implicit read
transaction: in WAL mode it never waits for a writer) and applies the columns' own SQLAlchemy result
processors, so rows are what the engine would return (timestamps UTC-aware, JSON decoded, booleans).
Only for single SELECTs whose parameters are plain values (no expanding ``IN``). See docs/adr/0033.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from syncd.errors import StoreError
from syncd.store.db import Database

_Compiled = tuple[
    str, tuple[str, ...], dict[str, Any], Callable[..., Any], tuple[Callable[[Any], Any] | None, ...]
]


class PointReader:
    """Prebuilt SELECTs on a small pool of read-only ``sqlite3`` connections (any thread)."""

    def __init__(self, db: Database) -> None:
        self.path = str(db.url.database)
        self.where = db.display_url
        self.timeout = db.config.busy_timeout_ms / 1000
        self.dialect = db.read_engine.dialect
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._compiled: dict[sa.Select[Any], _Compiled] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_database(cls, db: Database) -> PointReader | None:
        """A reader for a SQLite database file; None for PostgreSQL or an in-memory database."""
        if not db.is_sqlite or db.url.database in (None, "", ":memory:") or db.url.query.get("uri"):
            return None
        return cls(db)

    def all(self, statement: sa.Select[Any], params: dict[str, Any]) -> list[Any]:
        """The rows of ``statement`` (named tuples with the statement's column keys)."""
        sql, names, fixed, row_type, processors = self._compile(statement)
        values = [params[name] if name in params else fixed[name] for name in names]
        connection = self._connection()
        try:
            raw = connection.execute(sql, values).fetchall()
        except sqlite3.Error as error:
            connection.close()
            raise StoreError(f"database {self.where}: {error}") from error
        self._idle.put(connection)
        return [
            row_type(*(value if p is None else p(value) for value, p in zip(row, processors, strict=True)))
            for row in raw
        ]

    def _compile(self, statement: sa.Select[Any]) -> _Compiled:
        compiled = self._compiled.get(statement)
        if compiled is None:
            with self._lock:
                done = statement.compile(dialect=self.dialect)
                names = tuple(done.positiontup or ())
                columns = list(statement.selected_columns)
                row_type = namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
                processors = tuple(
                    column.type.dialect_impl(self.dialect).result_processor(self.dialect, None)
                    for column in columns
                )
                fixed = done.params  # the statement's own literal values (e.g. ``managed_by || ''``)
                compiled = (done.string, names, fixed, row_type, processors)
                self._compiled[statement] = compiled
        return compiled

    def _connection(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA query_only=ON")
        except sqlite3.Error as error:
            raise StoreError(f"database {self.where}: {error}") from error
        return connection

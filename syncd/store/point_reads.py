"""Point reads apart from the SQLAlchemy engine, for the statements of the hottest request paths.

A SCIM ``userName eq`` lookup is one indexed statement. Through a SQLAlchemy connection it also pays a
pool checkout, an execution context and result wrapping (on SQLite most of the request's own work), and on
PostgreSQL a pre-ping, ``BEGIN`` and the rollback on return (four round trips for one) from a thread-pool
thread. The readers here run a statement compiled once (``syncd.store.prepared``) in autocommit mode (one
statement, one implicit transaction), rows through the columns' own result processors:

* :class:`PointReader` (SQLite): plain ``sqlite3`` connections, read-only; in WAL mode a reader never
  waits for a writer, so the SCIM app calls it on the event loop.
* :class:`AsyncPointReader` (PostgreSQL): psycopg's async connections with the engine's connect arguments
  and adapters, awaited on the event loop: one round trip and no thread hand-off.

Only for single SELECTs whose parameters are plain values (no expanding ``IN``). See docs/adr/0033.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
from typing import Any

import psycopg
import sqlalchemy as sa

from syncd.errors import StoreError
from syncd.store.db import Database, first_line
from syncd.store.prepared import statements_for


class PointReader:
    """SQLite: prebuilt SELECTs on a small pool of read-only ``sqlite3`` connections (any thread)."""

    def __init__(self, db: Database) -> None:
        self.path = str(db.url.database)
        self.where = db.display_url
        self.timeout = db.config.busy_timeout_ms / 1000
        self.statements = statements_for(db.read_engine.dialect)
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    @classmethod
    def for_database(cls, db: Database) -> PointReader | None:
        """A reader for a SQLite database file; None for PostgreSQL or an in-memory database."""
        if not db.is_sqlite or db.url.database in (None, "", ":memory:") or db.url.query.get("uri"):
            return None
        return cls(db)

    def all(self, statement: sa.Select[Any], params: dict[str, Any]) -> list[Any]:
        """The rows of ``statement`` (named tuples with the statement's column keys)."""
        prepared = self.statements.get(statement)
        values = prepared.values(params)
        connection = self._connection()
        try:
            raw = connection.execute(prepared.sql, values).fetchall()
        except sqlite3.Error as error:
            connection.close()
            raise StoreError(f"database {self.where}: {first_line(error)}") from error
        self._idle.put(connection)
        return prepared.rows(raw)

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
            raise StoreError(f"database {self.where}: {first_line(error)}") from error
        return connection


class AsyncPointReader:
    """PostgreSQL: prebuilt SELECTs on up to ``size`` psycopg async connections in autocommit mode, for one
    event loop. No pre-ping: a connection that broke while idle (a server restart) is replaced and the
    read retried once. Closed with the database (:meth:`Database.dispose`)."""

    def __init__(self, db: Database, size: int | None = None) -> None:
        engine = db.read_engine
        _args, params = engine.dialect.create_connect_args(engine.url)  # host, dbname, … and SA's adapters
        self.connect_kwargs = {**params, **db.connect_args, "autocommit": True}
        self.where = db.display_url
        self.size = size or db.config.pool_size
        self.statements = statements_for(engine.dialect)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open: set[psycopg.AsyncConnection[Any]] = set()
        self._slots: asyncio.Semaphore | None = None
        db.on_dispose(self.close)

    @classmethod
    def for_database(cls, db: Database) -> AsyncPointReader | None:
        return None if db.is_sqlite else cls(db)

    async def all(self, statement: sa.Select[Any], params: dict[str, Any]) -> list[Any]:
        """The rows of ``statement`` (named tuples with the statement's column keys)."""
        prepared = self.statements.get(statement)
        values = prepared.values(params)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        async with self._slots:
            for attempt in (1, 2):
                reused = bool(self._idle)
                connection = self._idle.pop() if reused else await self._connect()
                try:
                    cursor = await connection.execute(prepared.sql, values)
                    raw = await cursor.fetchall()
                except (psycopg.OperationalError, psycopg.InterfaceError) as error:
                    self._discard(connection)
                    if reused and attempt == 1:
                        continue  # broke while idle: once more on a new connection
                    raise StoreError(f"database {self.where}: {first_line(error)}") from error
                except BaseException:  # cancelled mid-statement, or a programming error: state unknown
                    self._discard(connection)
                    raise
                self._idle.append(connection)
                return prepared.rows(raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close every connection (synchronously: also from outside the event loop, after it stopped)."""
        for connection in list(self._open):
            self._discard(connection)
        self._idle.clear()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            connection = await psycopg.AsyncConnection.connect(**self.connect_kwargs)
        except psycopg.Error as error:
            raise StoreError(f"database {self.where}: {first_line(error)}") from error
        self._open.add(connection)
        return connection

    def _discard(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._open.discard(connection)
        connection.pgconn.finish()  # no await: the socket is closed, the server ends the session

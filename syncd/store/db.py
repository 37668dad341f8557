"""Engine, sessions and units of work for SQLite (embedded) and PostgreSQL (production).

* SQLite: WAL, foreign keys, a busy timeout and the configured ``synchronous`` on every connection; write
  units of work start with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of failing
  with "database is locked" on a read→write upgrade; read sessions use a plain deferred ``BEGIN``.
* PostgreSQL (psycopg 3): pre-ping, TCP keepalives, the password passed apart from the URL.

Store functions take a :class:`~sqlalchemy.orm.Session` and never commit: :meth:`Database.write` is the
unit of work that commits or rolls back. Foreign errors are translated to :class:`StoreError` here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from syncd.config.models import Database as DatabaseConfig
from syncd.errors import ConflictError, StoreError


class Database:
    """One database: a read engine and a write engine (the same engine on PostgreSQL)."""

    def __init__(self, config: DatabaseConfig, *, flush_commits: bool = True) -> None:
        """``flush_commits=False``: commits don't wait for the disk (SQLite ``synchronous=NORMAL``, PostgreSQL
        ``synchronous_commit=off``); a commit can then be lost to a power cut or a server crash, never to a
        crash of this process. Only for writes whose loss is harmless (the relay's SENT marks)."""
        if not flush_commits and config.synchronous != "NORMAL":
            config = config.model_copy(update={"synchronous": "NORMAL"})
        self.config = config
        self.flush_commits = flush_commits
        self.url: URL = make_url(config.url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.connect_args: dict[str, Any] = {}
        if self.is_sqlite:
            _check_sqlite_path(self.url)
            self.read_engine = self._sqlite_engine(begin="BEGIN")
            self.write_engine = self._sqlite_engine(begin="BEGIN IMMEDIATE")
        else:
            self.read_engine = self.write_engine = self._postgres_engine()
        self.session_info: dict[str, Any] = {}  # copied into every write session's ``info``
        self._disposers: list[Callable[[], None]] = []
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        """The URL without any password, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back on any exception."""
        info = dict(self.session_info)
        with translate_errors(self.display_url), self._write(info=info) as session, session.begin():
            yield session

    @contextlib.contextmanager
    def one_statement(self) -> Iterator[sa.Connection]:
        """A connection for a unit of work of **one** statement, for hot paths (the relay's mark after each
        message): no ORM session and no commit checks, about a fifth of the cost of :meth:`write` on SQLite
        (``BEGIN IMMEDIATE`` … ``COMMIT``); on PostgreSQL the statement runs in autocommit mode, one round
        trip instead of three. A second statement would commit on its own on PostgreSQL: use :meth:`write`."""
        with translate_errors(self.display_url):
            if self.is_sqlite:
                with self.write_engine.begin() as connection:
                    yield connection
            else:
                with self.write_engine.connect() as connection:
                    yield connection.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closed (its transaction rolled back) at the end, objects stay usable."""
        with translate_errors(self.display_url), self._read() as session:
            yield session

    def add_commit_check(self, check: Callable[[Session], None]) -> None:
        """Run ``check(session)`` in every write unit of work right before it commits; whatever it raises
        aborts the commit (the transaction rolls back). The scheduler's fencing uses it (docs/adr/0040)."""
        event.listen(self._write, "before_commit", check)

    def ping(self) -> None:
        """Raise :class:`StoreError` unless the database answers a trivial query."""
        with self.read() as session:
            session.execute(sa.text("SELECT 1"))

    def release_caches(self) -> None:
        """SQLite: give back the page caches of the pooled connections (up to ``cache_size`` each, filled by
        a large sync); the next statements read what they need from the file, in the OS's cache. Nothing to
        do on PostgreSQL. With ``malloc_trim`` after it, RSS after a 100,000-user sync is the idle level
        (docs/adr/0044)."""
        if not self.is_sqlite:
            return
        for engine in {self.read_engine, self.write_engine}:
            with translate_errors(self.display_url), contextlib.ExitStack() as stack:
                pooled = max(1, getattr(engine.pool, "checkedin", lambda: 1)())  # QueuePool (a file)
                for _ in range(pooled):  # hold them all at once: each checkout is another connection
                    connection = stack.enter_context(engine.connect())
                    connection.exec_driver_sql("PRAGMA shrink_memory")

    def on_dispose(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (closing connections made apart from the engines) in :meth:`dispose`."""
        self._disposers.append(callback)

    def dispose(self) -> None:
        for callback in self._disposers:
            callback()
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()

    def _sqlite_engine(self, *, begin: str) -> Engine:
        engine = sa.create_engine(self.url, connect_args={"timeout": self.config.busy_timeout_ms / 1000})
        pragmas = (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={self.config.busy_timeout_ms}",
            f"PRAGMA synchronous={self.config.synchronous}",
            "PRAGMA cache_size=-32768",
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            try:
                for pragma in pragmas:
                    cursor.execute(pragma)
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: sa.Connection) -> None:
            connection.exec_driver_sql(begin)

        return engine

    def _postgres_engine(self) -> Engine:
        url = self.url.set(drivername="postgresql+psycopg")
        connect_args: dict[str, Any] = {
            "connect_timeout": 10,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "application_name": application_name(),
            # psycopg prepares a statement after 5 runs, and PostgreSQL then may switch to a generic plan,
            # which is bad for `IN (<500 values>)` lookups (200 ms instead of 5 ms on 100k users).
            # Custom plans cost a fraction of a millisecond of planning each time.
            "options": "-c plan_cache_mode=force_custom_plan"
            + ("" if self.flush_commits else " -c synchronous_commit=off"),
        }
        if self.config.password is not None:
            connect_args["password"] = self.config.password.get()
        self.connect_args = connect_args  # for connections made apart from the engine (store.point_reads)
        return sa.create_engine(
            url, pool_pre_ping=True, pool_size=self.config.pool_size, connect_args=connect_args
        )


def flush_unique(session: Session, conflict: str, *new: object) -> None:
    """Add ``new`` and flush now, in a savepoint: a unique index another request filled since the caller's
    check raises ``ConflictError(conflict)`` (a 409) instead of failing the whole unit of work."""
    try:
        with session.begin_nested():
            session.add_all(new)
            session.flush()
    except exc.IntegrityError:
        raise ConflictError(conflict) from None


def application_name() -> str:
    """``syncd host:pid``: names this process's sessions in ``pg_stat_activity`` (as run owners do)."""
    return f"syncd {socket.gethostname()}:{os.getpid()}"[:63]


def _check_sqlite_path(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        directory_ok, exists = path.parent.is_dir(), path.exists()
    except OSError as error:  # e.g. a parent directory we may not search
        raise StoreError(f"database directory {path.parent} can't be accessed: {error.strerror}") from error
    if not directory_ok:
        raise StoreError(f"database directory {path.parent} does not exist")
    if exists and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"database file {path} is not readable and writable by this user")
    if not exists and not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"can't create database file {path}: directory is not writable")


@contextlib.contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """Turn driver-level connection/operational failures into :class:`StoreError` (no SQL, no secrets)."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as error:
        raise StoreError(f"database {where}: {first_line(error.orig)}") from error


def first_line(error: BaseException | None) -> str:
    """An error's first line, for messages (drivers append context lines and SQL)."""
    text = str(error) if error is not None else "unknown error"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def rowcount(result: sa.Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE/INSERT (what compare-and-set statements check)."""
    return int(cast("sa.CursorResult[Any]", result).rowcount)

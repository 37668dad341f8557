"""Inserting many rows at once: ``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite.

A first sync of a large directory inserts hundreds of thousands of rows (users, links, audit rows, group
memberships). Going through SQLAlchemy's executemany costs tens of microseconds of Python per row
(parameter dicts, type processing), and psycopg then sends one INSERT per row. Here the column types'
own bind processors convert the values once per row into tuples, which go to ``COPY … FROM STDIN``
(psycopg's C row writer) on PostgreSQL and to ``sqlite3``'s ``executemany`` on SQLite, in chunks so
that no second copy of a large insert is ever held in memory. Both run inside the caller's unit of work.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

if TYPE_CHECKING:  # imported where used: a process syncing into SQLite never loads psycopg (~9 MB)
    import psycopg

CHUNK = 2000
USER_TABLES = ("users", "source_links", "audit_log")  # what creating users fills
GROUP_TABLES = ("groups", "group_members", "group_nesting")  # what creating groups fills


def insert_rows(session: Session, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert ``rows`` (dicts with the same keys) into ``table``; returns how many were inserted."""
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    columns = list(first)
    connection = session.connection()
    dialect = connection.dialect
    processors = [_processor(table.c[name].type, dialect) for name in columns]
    driver = connection.connection.driver_connection
    assert driver is not None
    all_rows = itertools.chain([first], iterator)
    count = 0
    if dialect.name == "postgresql":
        from psycopg import sql  # noqa: PLC0415 - see the imports

        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in columns)
        )
        convert = _Converter(columns, processors)
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in all_rows:
                copy.write_row(convert(row))
                count += 1
        return count
    compiled = sa.insert(table).compile(dialect=dialect, column_keys=columns)
    columns = list(compiled.positiontup or ())  # the statement's parameter order (the table's)
    processors = [_processor(table.c[name].type, dialect) for name in columns]
    statement_text = str(compiled)
    convert = _Converter(columns, processors)
    cursor = driver.cursor()
    try:
        while chunk := [convert(row) for row in itertools.islice(all_rows, CHUNK)]:
            cursor.executemany(statement_text, chunk)
            count += len(chunk)
    finally:
        cursor.close()
    return count


def analyze(session: Session, tables: Iterable[str]) -> None:
    """Refresh PostgreSQL's statistics of ``tables`` (SQLite: nothing to do).

    A bulk load into near-empty tables leaves the planner with no statistics: it then takes
    ``deleted_at IS NULL`` for a selective condition and answers each batch's 500-key lookups with a
    scan of the whole table, so the load slows down as it grows. ``ANALYZE`` samples at most 30,000 rows
    (milliseconds at this size); a role that doesn't own a table gets a warning and nothing is done.
    Run inside the unit of work that loaded the rows: PostgreSQL counts a transaction's own inserts.
    """
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return
    from psycopg import sql  # noqa: PLC0415 - see the imports

    names = sql.SQL(", ").join(sql.Identifier(table) for table in tables)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor:
        cursor.execute(sql.SQL("ANALYZE {}").format(names))


LEAN_CACHE_KIB = 2048


@contextlib.contextmanager
def lean_cache(session: Session) -> Iterator[None]:
    """SQLite: a unit of work of a bulk load runs with a 2 MiB page cache, then the connection gets its
    configured size back. A load touches each index page a few times per batch and the file's pages are
    in the OS cache anyway: a 32 MiB cache per connection made the first sync of 100,000 users no faster,
    only 28 MB bigger, and 2 MiB is no slower than 8 (docs/adr/0015-ldap-sync-speed.md). Nothing to do
    on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    before = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size=-{LEAN_CACHE_KIB}")
    try:
        yield
    finally:
        with contextlib.suppress(sa.exc.DBAPIError):  # the unit of work's own error matters more
            connection.exec_driver_sql(f"PRAGMA cache_size={before}")


def release_cache(session: Session) -> None:
    """SQLite: give back the memory of the connection's page cache (the pages of the units of work it
    committed), e.g. once a sync run has applied everything. A long-lived process otherwise keeps up to
    the cache size per pooled connection; the next unit of work reads what it needs from the file (the
    OS cache). Nothing to do on PostgreSQL."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA shrink_memory")


BULK_KEYS = 20_000  # rows from which a load checks foreign keys once, at the end (PostgreSQL)


@contextlib.contextmanager
def foreign_keys_checked_at_end(session: Session, table: str, rows: int) -> Iterator[None]:
    """Load ``rows`` rows into ``table`` with its foreign keys checked once, by a join, at the end.

    On PostgreSQL each inserted row otherwise runs one query per foreign key, which locks the row it
    refers to (``FOR KEY SHARE``): 600,000 such queries for a first sync's 300,000 memberships, most of
    its time. For a load of at least :data:`BULK_KEYS` rows into a table holding under a tenth of that
    (a first sync), the table's foreign keys are dropped, the rows loaded, and the same constraints
    (``pg_get_constraintdef``) added back, which validates them with one join each — all in the caller's
    transaction: a violation fails the unit of work as the per-row checks would have, and other sessions
    never see the table without its constraints. They wait instead: dropping a foreign key takes ACCESS
    EXCLUSIVE locks on the table and the tables it refers to (``users``, ``groups``) until the unit of
    work commits (~2 s for 300,000 memberships). When the locks can't be had within 2 s, or this role
    may not alter the table, the rows are loaded the usual way. SQLite: the usual way (cheap checks).
    """
    connection = session.connection()
    keys: list[tuple[str, str]] = []
    if connection.dialect.name == "postgresql" and rows >= BULK_KEYS:
        import psycopg  # noqa: PLC0415 - see the imports

        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        keys = _drop_foreign_keys(driver, table, rows)
    yield
    if keys:
        import psycopg  # noqa: PLC0415 - see the imports
        from psycopg import sql  # noqa: PLC0415

        driver = connection.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        with driver.cursor() as cursor:
            for name, definition in keys:
                cursor.execute(
                    sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                    + sql.SQL(definition)  # the server's own text of the constraint
                )


def _drop_foreign_keys(driver: psycopg.Connection[Any], table: str, rows: int) -> list[tuple[str, str]]:
    """Drop ``table``'s foreign keys if it holds under a tenth of ``rows``; their names and definitions."""
    import psycopg  # noqa: PLC0415 - see the imports
    from psycopg import sql  # noqa: PLC0415

    with driver.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (table,))
        row = cursor.fetchone()
        if row is None or row[0] * 10 >= rows:  # only into a (nearly) empty table: see the docstring
            return []
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
            (table,),
        )
        keys = [(str(name), str(definition)) for name, definition in cursor.fetchall()]
        if not keys:
            return []
        cursor.execute("SHOW lock_timeout")
        timeout = cursor.fetchone()
        cursor.execute("SAVEPOINT syncd_bulk_keys")
        try:
            cursor.execute("SET LOCAL lock_timeout = '2s'")
            for name, _ in keys:
                cursor.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.Identifier(table), sql.Identifier(name)
                    )
                )
        except (psycopg.errors.LockNotAvailable, psycopg.errors.InsufficientPrivilege):
            cursor.execute("ROLLBACK TO SAVEPOINT syncd_bulk_keys")
            cursor.execute("RELEASE SAVEPOINT syncd_bulk_keys")
            return []
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", (timeout[0] if timeout else "0",))
        cursor.execute("RELEASE SAVEPOINT syncd_bulk_keys")
        return keys


Processor = Callable[[Any], Any] | None


def _processor(column_type: sa.types.TypeEngine[Any], dialect: sa.Dialect) -> Processor:
    if isinstance(column_type, sa.JSON) and dialect.name == "postgresql":
        return _json_text  # COPY takes JSON as text
    return column_type.bind_processor(dialect)


def _json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class _Converter:
    """Row dicts → tuples in column order, bind processors applied. Fast: values are fetched in C
    (``itemgetter``) and a processor runs once for a run of identical values (a batch's timestamps)."""

    def __init__(self, columns: list[str], processors: list[Processor]) -> None:
        self._get = operator.itemgetter(*columns)
        self._single = len(columns) == 1
        self._processed = [(i, p) for i, p in enumerate(processors) if p is not None]
        self._last: list[tuple[Any, Any]] = [(_NOTHING, None)] * len(self._processed)

    def __call__(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        got = self._get(row)
        values = [got] if self._single else list(got)
        for n, (i, process) in enumerate(self._processed):
            value = values[i]
            if value is None:
                continue
            seen, out = self._last[n]
            if value is not seen:
                out = process(value)
                self._last[n] = (value, out)
            values[i] = out
        return tuple(values)


_NOTHING = object()

"""Inserting many rows at once: ``COPY`` on PostgreSQL, the driver's ``executemany`` on SQLite.

A first sync of a large directory inserts hundreds of thousands of rows (users, links, audit rows, group
memberships). Going through SQLAlchemy's executemany costs tens of microseconds of Python per row
(parameter dicts, type processing), and psycopg then sends one INSERT per row. Here the column types'
own bind processors convert the values once per row into tuples, which go to ``COPY … FROM STDIN``
(psycopg's C row writer) on PostgreSQL and to ``sqlite3``'s ``executemany`` on SQLite, in chunks so
that no second copy of a large insert is ever held in memory. Both run inside the caller's unit of work.
"""

from __future__ import annotations

import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.orm import Session

CHUNK = 2000


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

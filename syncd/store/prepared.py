"""SQLAlchemy Core statements compiled once and run on the driver's own connection.

The hottest request paths (an IdP's lookups and its deactivate / create / member-add writes) are a few
indexed statements each. Through SQLAlchemy each statement also pays an execution context, parameter and
result wrapping and, with the ORM, the unit of work's bookkeeping: on SQLite ten times the statement itself.
Here a statement is compiled once per dialect; its parameters go through the columns' own bind processors
and its rows through their result processors, so values are what the engine would write and return
(timestamps UTC-aware, JSON, booleans).

* :class:`Statements` (:func:`statements_for`): the per-dialect cache; ``syncd.store.point_reads`` uses it
  for its autocommit reads.
* :class:`DriverWork`: runs prepared statements inside a session's transaction (on its connection), so they
  commit or roll back with the unit of work. Driver errors become SQLAlchemy's (an ``IntegrityError`` is
  still one), so the callers' error mapping is the same as for ORM writes.

Only for statements whose parameters are plain values (no expanding ``IN``). See docs/adr/0033.
"""

from __future__ import annotations

import threading
import weakref
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Prepared:
    sql: str
    names: tuple[str, ...]  # the parameters in the statement's order
    fixed: dict[str, Any]  # the statement's own literal values (e.g. ``managed_by || ''``)
    binds: tuple[Processor, ...]  # by position in ``names``
    row_type: Callable[..., Any] | None  # None: the statement returns no rows
    processors: tuple[Processor, ...]
    positional: bool  # qmark (SQLite) rather than named (psycopg)

    def values(self, params: dict[str, Any]) -> list[Any] | dict[str, Any]:
        """The driver's parameters: bind-processed, in the dialect's style."""
        out: list[Any] = []
        for name, bind in zip(self.names, self.binds, strict=True):
            value = params[name] if name in params else self.fixed[name]
            out.append(value if bind is None else bind(value))
        return out if self.positional else dict(zip(self.names, out, strict=True))

    def rows(self, raw: Sequence[Sequence[Any]]) -> list[Any]:
        assert self.row_type is not None
        return [
            self.row_type(*(v if p is None else p(v) for v, p in zip(row, self.processors, strict=True)))
            for row in raw
        ]


class Statements:
    """Statements compiled once for one dialect (any thread)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[sa.Executable, Prepared] = {}
        self._lock = threading.Lock()

    def get(self, statement: sa.Executable) -> Prepared:
        prepared = self._prepared.get(statement)
        if prepared is None:
            with self._lock:
                prepared = self._prepared.get(statement) or self._compile(statement)
                self._prepared[statement] = prepared
        return prepared

    def _compile(self, statement: sa.Executable) -> Prepared:
        dialect = self.dialect
        done = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        positional = bool(done.positional)
        names = tuple(done.positiontup or ()) if positional else tuple(done.params)
        by_name = {name: bind for bind, name in done.bind_names.items()}
        binds = tuple(by_name[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
        columns = list(statement.selected_columns) if isinstance(statement, sa.Select) else []
        return Prepared(
            sql=done.string,
            names=names,
            fixed=done.params,
            binds=binds,
            row_type=namedtuple("Row", [str(c.key) for c in columns], rename=True) if columns else None,
            processors=tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns),
            positional=positional,
        )


_FOR_DIALECT: weakref.WeakKeyDictionary[sa.Dialect, Statements] = weakref.WeakKeyDictionary()
_FOR_DIALECT_LOCK = threading.Lock()


def statements_for(dialect: sa.Dialect) -> Statements:
    """The one cache of a dialect (an engine's: compiled SQL can depend on the server's version)."""
    found = _FOR_DIALECT.get(dialect)
    if found is None:
        with _FOR_DIALECT_LOCK:
            found = _FOR_DIALECT.setdefault(dialect, Statements(dialect))
    return found


class DriverWork:
    """Prepared statements on the connection of a session's transaction (begun here if need be), after the
    session's pending changes (flushed first). They bypass the ORM: don't change rows it has loaded."""

    def __init__(self, session: Session, statements: Statements | None = None) -> None:
        if session.new or session.dirty or session.deleted:
            session.flush()  # what the ORM holds goes first (rows these statements refer to)
        connection = session.connection()
        driver = connection.connection.driver_connection
        assert driver is not None
        self.session = session  # for what else its unit of work holds (session.info)
        self.driver: Any = driver
        self.dialect = connection.dialect
        self.statements = statements or statements_for(connection.dialect)

    def all(self, statement: sa.Executable, params: dict[str, Any]) -> list[Any]:
        """The rows of a SELECT (named tuples with the statement's column keys)."""
        prepared = self.statements.get(statement)
        cursor = self._execute(prepared, params)
        try:
            return prepared.rows(cursor.fetchall())
        finally:
            cursor.close()

    def run(self, statement: sa.Executable, params: dict[str, Any]) -> int:
        """Run an INSERT, UPDATE or DELETE; the rows it matched."""
        cursor = self._execute(self.statements.get(statement), params)
        count = int(cursor.rowcount)
        cursor.close()
        return count

    def execute_text(self, sql: str) -> None:
        """A statement without parameters (``SAVEPOINT name``)."""
        self._execute(Prepared(sql, (), {}, (), None, (), True), {}).close()

    def _execute(self, prepared: Prepared, params: dict[str, Any]) -> Any:
        values = prepared.values(params)
        cursor = self.driver.cursor()
        try:
            cursor.execute(prepared.sql, values)
        except self.dialect.loaded_dbapi.Error as error:
            cursor.close()
            raise exc.DBAPIError.instance(
                prepared.sql, values, error, self.dialect.loaded_dbapi.Error, dialect=self.dialect
            ) from error
        return cursor

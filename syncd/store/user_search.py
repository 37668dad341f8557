"""The admin user listing's text search: ``q`` as a case-insensitive prefix of the name columns, an OR of
index ranges that both databases serve (docs/adr/0051-admin-users-and-groups.md, "Text search")."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from syncd.store.tables import PREFIX_COLUMNS, User, fold_case

_ASCII_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ASCII_LOWER = str.maketrans(_ASCII_UPPER, _ASCII_UPPER.lower())


def prefix_keys(q: str) -> list[str]:
    """The keys ``q`` is looked up as in the :class:`~syncd.store.tables.fold_case` indexes.

    ASCII letters are folded (every database folds them). Other letters are folded by PostgreSQL under a
    UTF-8 LC_CTYPE but by neither SQLite nor PostgreSQL under ``C``, so ``q`` is also tried as typed, in
    lower case, in upper case and capitalised: "öl", "Öl" and "ÖL" each find "Ölsen" and "ÖLSEN" everywhere.
    """
    forms = (q, q.lower(), q.upper(), q[:1].upper() + q[1:].lower())
    return sorted({form.translate(_ASCII_LOWER) for form in forms})


def prefix_end(key: str) -> str | None:
    """The least folded string after every string that starts with ``key`` (code-point order, which is
    UTF-8 byte order), or None when there is none (``key`` is all U+10FFFF).

    A successor in A-Z becomes ``[``: folded keys hold no capital ASCII letters, and SQLite's NOCASE would
    fold the bound itself (``x@`` .. ``xA`` would mean ``x@`` .. ``xa``).
    """
    stripped = key.rstrip(chr(0x10FFFF))
    if not stripped:
        return None
    code = ord(stripped[-1]) + 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates are never stored (nor encodable)
        code = 0xE000
    elif ord("A") <= code <= ord("Z"):
        code = ord("[")
    return stripped[:-1] + chr(code)


class _at_least(FunctionElement[bool]):
    """``a >= b`` in code-point order (PostgreSQL: the ``text_pattern_ops`` operator)."""

    type = sa.Boolean()
    inherit_cache = True
    name = "at_least"
    _is_implicitly_boolean = True  # a comparison: no "= 1" on SQLite


class _below(FunctionElement[bool]):
    """``a < b`` in code-point order (PostgreSQL: the ``text_pattern_ops`` operator)."""

    type = sa.Boolean()
    inherit_cache = True
    name = "below"
    _is_implicitly_boolean = True


def _binary(operator: str) -> Any:
    def compile_binary(element: FunctionElement[bool], compiler: SQLCompiler, **kw: Any) -> str:
        left, right = element.clauses
        return f"{compiler.process(left, **kw)} {operator} {compiler.process(right, **kw)}"

    return compile_binary


compiles(_at_least, "sqlite")(_binary(">="))
compiles(_at_least, "postgresql")(_binary("~>=~"))
compiles(_below, "sqlite")(_binary("<"))
compiles(_below, "postgresql")(_binary("~<~"))


class unindexed(FunctionElement[str]):
    """A column no SQLite index may serve (``+col``); the column itself elsewhere."""

    type = sa.String()
    inherit_cache = True
    name = "unindexed"


@compiles(unindexed)
def unindexed_default(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return str(compiler.process(column, **kw))


@compiles(unindexed, "sqlite")
def unindexed_sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"(+{compiler.process(column, **kw)})"


def prefix_clause(q: str, *, indexed: bool = True) -> sa.ColumnElement[bool]:
    """Users with a column of :data:`~syncd.store.tables.PREFIX_COLUMNS` that starts with ``q``, case
    ignored (:func:`prefix_keys`): per key and column one range on ``ix_users_<column>_prefix``, OR-ed
    (SQLite: MULTI-INDEX OR; PostgreSQL: BitmapOr). The range is exact, so no LIKE re-check is needed; and
    ``%``, ``_`` and ``\\`` in ``q`` are plain characters. ``indexed=False`` keeps SQLite off those indexes
    (see :data:`BROAD_PREFIX`)."""
    branches = []
    for key in prefix_keys(q):
        end = prefix_end(key)
        for name in PREFIX_COLUMNS:
            column = getattr(User, name)
            folded = fold_case(column if indexed else unindexed(column))
            start = _at_least(folded, sa.literal(key, sa.String))
            branches.append(
                start if end is None else sa.and_(start, _below(folded, sa.literal(end, sa.String)))
            )
    return sa.or_(*branches)


BROAD_PREFIX = 1000
"""SQLite has no histograms, so its planner can't tell a rare prefix from a common one and always takes the
prefix indexes, then sorts every match: fine for a few hundred, ~100 ms for a letter matching 15% of 100,000
users. So on SQLite ``user_admin.page`` first counts up to this many matches (index entries only, about a
millisecond); at the cap it walks the users in username order instead and filters, which finds a page of a
prefix this common within a few thousand rows. Below the cap, the order is made unindexable on SQLite
(``ORDER BY +username_key``) so that it doesn't walk username order anyway: without statistics it does so for
ten ranges (two keys). PostgreSQL's planner makes these choices itself."""


def broad_on_sqlite(session: Session, q: str) -> bool:
    if session.get_bind().dialect.name != "sqlite":
        return False
    matches = sa.select(User.id).where(prefix_clause(q)).limit(BROAD_PREFIX).subquery()
    return (session.scalar(sa.select(sa.func.count()).select_from(matches)) or 0) >= BROAD_PREFIX

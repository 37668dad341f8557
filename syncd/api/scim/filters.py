"""SCIM filters (RFC 7644 §3.4.2.2) compiled to SQLAlchemy expressions with bound parameters.

scim2-models parses the filter into a typed syntax tree (its lark grammar handles every operator, value
paths, numbers, escaped quotes and case-insensitive operators); this module compiles that tree. Each
attribute is resolved in the catalogue (case-insensitively, URN-qualified or not) and mapped by a
:class:`Mapper` to a column, a JSON path in ``attributes``, or an ``EXISTS`` over the elements of a
multi-valued attribute. Anything unknown or ill-typed raises :class:`InvalidFilterError`, never "all rows".

Every comparison is null-safe (``x IS NOT NULL AND …``), so ``not (…)`` keeps two-valued logic. String
comparisons honour ``caseExact``: case-insensitive ones compare ``lower()`` forms (``userName`` and a group's
``displayName`` use the casefolded, indexed key columns); ``co``/``sw``/``ew`` escape LIKE wildcards, and
case-exact ones use ``instr``/``substr`` (SQLite, whose LIKE ignores case) or ``strpos``/``left``/``right``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path.expressions import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)

from syncd.api.scim.catalogue import Attr, Resolved, ResourceType
from syncd.api.scim.errors import InvalidFilterError
from syncd.api.scim.validation import text

Expr = Any  # a SQLAlchemy boolean expression (ColumnElement[bool]; typed loosely, SQLAlchemy returns Any)
ORDERING = frozenset({CompareOperator.gt, CompareOperator.ge, CompareOperator.lt, CompareOperator.le})
SUBSTRING = frozenset({CompareOperator.co, CompareOperator.sw, CompareOperator.ew})
MAX_FILTER_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Scalar:
    """A single value in SQL: ``folded`` when the column holds ``casefold()``-ed text."""

    expr: Any  # a column, JSON path or function expression
    attr: Attr
    folded: bool = False


@dataclass(frozen=True, slots=True)
class Elements:
    """A multi-valued attribute: ``exists(scope_to_predicate)`` builds ``EXISTS (… WHERE predicate)``."""

    attr: Attr
    exists: Callable[[Callable[[Callable[[str], Scalar | None]], Expr]], Expr]


class Mapper:
    """Where a resource type's attributes live in SQL (see :mod:`syncd.api.scim.mappers`)."""

    rt: ResourceType

    def scalar(self, resolved: Resolved) -> Scalar | None:
        raise NotImplementedError

    def elements(self, resolved: Resolved) -> Elements | None:
        raise NotImplementedError


def parse(expression: str) -> FilterNode:
    """Parse a filter string; syntax errors are 400 ``invalidFilter``."""
    if len(expression) > MAX_FILTER_LENGTH:
        raise InvalidFilterError(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    try:
        return ScimFilter(expression).ast
    except InvalidFilterException as error:
        raise InvalidFilterError(f"invalid filter: {error.detail}") from None
    except (ValueError, RecursionError):
        raise InvalidFilterError("invalid filter") from None


def compile_filter(mapper: Mapper, expression: str, dialect: str, *, lenient: bool = False) -> Expr:
    """The WHERE clause of ``expression`` for ``mapper``'s resource type.

    ``lenient`` (searches across resource types, RFC 7644 §3.4.2.1): an attribute this type does not have
    makes its comparison false instead of an error; the caller checks that some type knows it.
    """
    return _Compiler(mapper, dialect, lenient).node(parse(expression))


class _Unknown(Exception):
    """An attribute this resource type does not have (lenient compilation only)."""


class _Compiler:
    def __init__(self, mapper: Mapper, dialect: str, lenient: bool = False) -> None:
        self.mapper = mapper
        self.dialect = dialect
        self.lenient = lenient

    def node(self, node: FilterNode) -> Expr:
        if isinstance(node, LogicalExpr):
            terms = [self.node(term) for term in node.terms]
            return sa.and_(*terms) if node.op is LogicalOperator.and_ else sa.or_(*terms)
        if isinstance(node, Not):
            return sa.not_(self.node(node.expr))
        try:
            if isinstance(node, ValuePath):
                elements = self._elements(node.attr_path)
                inner = node.val_filter
                return elements.exists(lambda scope: self._in_element(elements.attr, scope, inner))
            if isinstance(node, Comparison | Present):
                return self._test(node)
        except _Unknown:
            return sa.false()
        raise InvalidFilterError("unsupported filter expression")

    def _resolve(self, path: AttrPath) -> Resolved:
        resolved = self.mapper.rt.resolve(path.attr, path.sub_attr, path.uri)
        if resolved is None:
            if self.lenient:
                raise _Unknown
            raise InvalidFilterError(f"unknown attribute {path} in filter")
        if resolved.target.returned == "never":
            raise InvalidFilterError(f"{path} can't be used in a filter")
        return resolved

    def _elements(self, path: AttrPath) -> Elements:
        resolved = self._resolve(path)
        if path.sub_attr is not None or not resolved.attr.multi:
            raise InvalidFilterError(f"{path} is not a multi-valued attribute")
        elements = self.mapper.elements(resolved)
        if elements is None:
            raise InvalidFilterError(f"filtering on {path} is not supported")
        return elements

    def _test(self, node: Comparison | Present) -> Expr:
        path = node.attr_path
        resolved = self._resolve(path)
        if resolved.attr.multi:
            elements = self.mapper.elements(resolved)
            if elements is None:
                raise InvalidFilterError(f"filtering on {path} is not supported")
            if isinstance(node, Present) and resolved.sub is None:
                return elements.exists(lambda _scope: sa.true())
            sub = resolved.sub.name if resolved.sub is not None else "value"
            leaf = Comparison(AttrPath(sub), node.op, node.value) if isinstance(node, Comparison) else None
            inner: FilterNode = leaf if leaf is not None else Present(AttrPath(sub))
            return elements.exists(lambda scope: self._in_element(resolved.attr, scope, inner))
        scalar = self.mapper.scalar(resolved)
        if scalar is None:
            raise InvalidFilterError(f"filtering on {path} is not supported")
        return self._leaf(scalar, node, str(path))

    def _in_element(self, parent: Attr, scope: Callable[[str], Scalar | None], node: FilterNode) -> Expr:
        if isinstance(node, LogicalExpr):
            terms = [self._in_element(parent, scope, term) for term in node.terms]
            return sa.and_(*terms) if node.op is LogicalOperator.and_ else sa.or_(*terms)
        if isinstance(node, Not):
            return sa.not_(self._in_element(parent, scope, node.expr))
        if isinstance(node, Comparison | Present):
            path = node.attr_path
            if path.uri is not None or path.sub_attr is not None or parent.child(path.attr) is None:
                raise InvalidFilterError(f"{parent.name} has no sub-attribute {path}")
            scalar = scope(path.attr)
            if scalar is None:
                raise InvalidFilterError(f"filtering on {parent.name}.{path.attr} is not supported")
            return self._leaf(scalar, node, f"{parent.name}.{path.attr}")
        raise InvalidFilterError("value filters can't be nested")

    def _leaf(self, scalar: Scalar, node: Comparison | Present, where: str) -> Expr:
        expr, attr = scalar.expr, scalar.attr
        if isinstance(node, Present):
            if attr.type in ("string", "reference", "binary"):
                return sa.and_(expr.is_not(None), expr != "")
            return expr.is_not(None)
        op, value = node.op, node.value
        if value is None:
            if op is CompareOperator.eq:
                return expr.is_(None)
            if op is CompareOperator.ne:
                return expr.is_not(None)
            raise InvalidFilterError(f"{where}: null can only be compared with eq or ne")
        if op is CompareOperator.ne:
            return sa.not_(self._leaf(scalar, Comparison(node.attr_path, CompareOperator.eq, value), where))
        return sa.and_(expr.is_not(None), self._compare(scalar, op, value, where))

    def _compare(self, scalar: Scalar, op: CompareOperator, value: Any, where: str) -> Expr:
        kind = scalar.attr.type
        if kind == "complex":
            raise InvalidFilterError(f"{where} is complex: compare one of its sub-attributes")
        if kind == "boolean":
            if op is not CompareOperator.eq or not isinstance(value, bool):
                raise InvalidFilterError(f"{where} is a boolean: only 'eq true/false' (or ne, pr) apply")
            return scalar.expr == value
        if kind in ("integer", "decimal"):
            if op in SUBSTRING or isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidFilterError(f"{where} is a number: compare it with a number")
            return _ordered(scalar.expr, op, value)
        if not isinstance(value, str):
            raise InvalidFilterError(f"{where} is a {kind}: compare it with a string")
        text(value, where, InvalidFilterError)
        if kind == "dateTime":
            if op in SUBSTRING:
                raise InvalidFilterError(f"{where} is a dateTime: co, sw and ew don't apply")
            return _ordered(scalar.expr, op, _datetime(value, where))
        return self._string(scalar, op, value)

    def _string(self, scalar: Scalar, op: CompareOperator, value: str) -> Expr:
        expr = scalar.expr
        if scalar.folded:
            value = value.casefold()
        elif not scalar.attr.case_exact:
            expr, value = sa.func.lower(expr), value.lower()
        if op not in SUBSTRING:
            return _ordered(expr, op, value)
        if not scalar.attr.case_exact or scalar.folded or self.dialect != "sqlite":
            if op is CompareOperator.co:
                return expr.contains(value, autoescape=True)
            if op is CompareOperator.sw:
                return expr.startswith(value, autoescape=True)
            return expr.endswith(value, autoescape=True)
        # SQLite's LIKE ignores ASCII case: case-exact substrings use instr/substr instead.
        if not value:
            return sa.true()
        if op is CompareOperator.co:
            return sa.func.instr(expr, value) > 0
        if op is CompareOperator.sw:
            return sa.func.substr(expr, 1, len(value)) == value
        return sa.func.substr(expr, -len(value)) == value


def _ordered(expr: Any, op: CompareOperator, value: Any) -> Any:
    if op is CompareOperator.eq:
        return expr == value
    if op is CompareOperator.gt:
        return expr > value
    if op is CompareOperator.ge:
        return expr >= value
    if op is CompareOperator.lt:
        return expr < value
    if op is CompareOperator.le:
        return expr <= value
    raise InvalidFilterError(f"operator {op.value} does not apply here")


def _datetime(value: str, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFilterError(f"{where}: {value!r} is not an xsd:dateTime") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

"""PATCH (RFC 7644 §3.5.2) on a canonical document: pure functions, no storage.

The operations apply in order to a copy; the caller validates the result like a PUT body (types,
required attributes) and stores it in one unit of work, so a PATCH is all or nothing. Tolerated on
purpose (research/scim.md §4.6): ``op`` in any case; pathless ``add``/``replace`` whose keys are paths
(``name.givenName``, URN-qualified) with readOnly keys (``id``, ``meta``, ``schemas``) ignored; ``add`` or
``replace`` through a value filter that matches nothing creates the element from the filter's ``eq``
terms; ``remove`` of a multi-valued attribute with a ``value`` list removes only those values.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidPathException, Path
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
from syncd.api.scim.errors import InvalidPathError, InvalidSyntaxError, InvalidValueError, MutabilityError

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
OPS = ("add", "remove", "replace")
MAX_OPERATIONS = 1000


@dataclass(frozen=True, slots=True)
class Operation:
    op: str  # add | remove | replace
    path: str | None
    value: Any


@dataclass(frozen=True, slots=True)
class Target:
    """What a path designates: an attribute, optionally a value filter and a sub-attribute."""

    resolved: Resolved | None  # None: a whole extension
    extension: str | None
    filter: FilterNode | None = None
    sub: Attr | None = None

    @property
    def attr_name(self) -> str | None:
        return self.resolved.attr.name if self.resolved is not None else None


def operations(body: Any) -> list[Operation]:
    """Read a PatchOp message."""
    if not isinstance(body, dict):
        raise InvalidSyntaxError("a PatchOp must be a JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_URN not in schemas:
        raise InvalidSyntaxError(f"schemas must be [{PATCH_URN!r}]")
    raw = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == "operations"), None)
    if not isinstance(raw, list) or not raw:
        raise InvalidSyntaxError("Operations must be a non-empty list")
    if len(raw) > MAX_OPERATIONS:
        raise InvalidValueError(f"at most {MAX_OPERATIONS} operations per PATCH")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidSyntaxError("each operation must be an object")
        fields = {k.lower(): v for k, v in item.items() if isinstance(k, str)}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in OPS:
            raise InvalidSyntaxError("op must be add, remove or replace")
        path = fields.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise InvalidPathError("path must be a non-empty string")
        out.append(Operation(op.lower(), path.strip() if path else None, fields.get("value")))
    return out


def target(rt: ResourceType, path: str) -> Target:
    """Resolve a PATCH path; unknown attributes are 400 ``invalidPath``."""
    extension = rt.extensions.get(path.lower())
    if extension is not None:
        return Target(None, extension[0])
    try:
        node = Path(path).ast
    except (InvalidPathException, ValueError, RecursionError):
        raise InvalidPathError(f"invalid path {path!r}") from None
    value_filter: FilterNode | None = None
    sub_name: str | None = None
    if isinstance(node, ValuePath):
        attr_path, value_filter, sub_name = node.attr_path, node.val_filter, node.sub_attr
    elif isinstance(node, AttrPath):
        attr_path = node
    else:
        raise InvalidPathError(f"invalid path {path!r}")
    resolved = rt.resolve(attr_path.attr, attr_path.sub_attr, attr_path.uri)
    if resolved is None:
        raise InvalidPathError(f"unknown attribute in path {path!r}")
    sub = resolved.sub
    if value_filter is not None:
        if not resolved.attr.multi or resolved.sub is not None:
            raise InvalidPathError(f"{path!r}: a value filter needs a multi-valued attribute")
        if sub_name is not None:
            sub = resolved.attr.child(sub_name)
            if sub is None:
                raise InvalidPathError(f"unknown sub-attribute in path {path!r}")
    return Target(resolved, resolved.extension, value_filter, sub)


def apply(rt: ResourceType, doc: dict[str, Any], ops: list[Operation]) -> dict[str, Any]:
    """The document after ``ops`` (``doc`` is not modified)."""
    out = copy.deepcopy(doc)
    for operation in ops:
        if operation.path is None:
            _pathless(rt, out, operation)
        else:
            where = target(rt, operation.path)
            if where.resolved is not None and not where.resolved.target.writable:
                raise MutabilityError(f"{operation.path} is read-only")
            _at(out, where, operation.op, operation.value)
    return out


def _pathless(rt: ResourceType, doc: dict[str, Any], operation: Operation) -> None:
    if operation.op == "remove":
        raise InvalidPathError("remove needs a path") from None
    if not isinstance(operation.value, dict):
        raise InvalidValueError(f"{operation.op} without a path needs an object value")
    for key, value in operation.value.items():
        if not isinstance(key, str) or key.lower() == "schemas":
            continue
        try:
            where = target(rt, key)
        except InvalidPathError:
            continue  # unknown attribute or schema URN: ignored (Entra sends some)
        if where.resolved is not None and not where.resolved.target.writable:
            continue  # id, meta, groups…: ignored in pathless values
        _at(doc, where, operation.op, value)


def _container(doc: dict[str, Any], extension: str | None) -> dict[str, Any]:
    if extension is None:
        return doc
    block = doc.get(extension)
    if not isinstance(block, dict):
        block = doc[extension] = {}
    return block


def _at(doc: dict[str, Any], where: Target, op: str, value: Any) -> None:
    if where.resolved is None:  # the whole extension object
        assert where.extension is not None
        if op == "remove":
            doc.pop(where.extension, None)
        elif isinstance(value, dict):
            _container(doc, where.extension).update(value)
        else:
            raise InvalidValueError(f"{where.extension} needs an object value")
        return
    attr = where.resolved.attr
    box = _container(doc, where.extension)
    name = attr.name
    if attr.multi:
        _multi(box, attr, where, op, value)
    elif where.sub is not None:
        block = box.get(name)
        if op == "remove":
            if isinstance(block, dict):
                block.pop(where.sub.name, None)
        else:
            if not isinstance(block, dict):
                block = box[name] = {}
            block[where.sub.name] = value
    elif op == "remove":
        box.pop(name, None)
    elif attr.type == "complex":
        value = _as_complex(attr, value)
        current = box.get(name)
        box[name] = {**current, **value} if isinstance(current, dict) else value
    else:
        box[name] = value


def _as_complex(attr: Attr, value: Any) -> Any:
    if isinstance(value, str) and "value" in attr.sub:
        return {"value": value}
    if not isinstance(value, dict):
        raise InvalidValueError(f"{attr.name} needs an object value")
    return value


def _multi(box: dict[str, Any], attr: Attr, where: Target, op: str, value: Any) -> None:
    name, sub = attr.name, where.sub
    items: list[Any] = list(box.get(name) or [])
    if where.filter is None and sub is None:
        values = [] if value is None else value if isinstance(value, list) else [value]
        if attr.type == "complex":
            values = [_as_complex(attr, v) for v in values]
        if op == "add":
            items += [v for v in values if v not in items]
        elif op == "replace":
            items = values
        elif values:  # remove listed values only (Entra, authentik send members this way)
            keys = {_identity(v) for v in values}
            items = [item for item in items if _identity(item) not in keys]
        else:
            items = []
        _store(box, name, items, values if op != "remove" else [])
        return
    matched = [item for item in items if isinstance(item, dict) and _matches(attr, where.filter, item)]
    if op == "remove":
        if sub is None:
            items = [item for item in items if not any(item is m for m in matched)]
        else:
            for item in matched:
                item.pop(sub.name, None)
        _store(box, name, items, [])
        return
    if not matched:  # add/replace through a filter that matches nothing: create the element
        seed = _seed(where.filter)
        new = {**seed, sub.name: value} if sub is not None else {**seed, **_as_complex(attr, value)}
        items.append(new)
        _store(box, name, items, [new])
        return
    for item in matched:
        if sub is not None:
            item[sub.name] = value
        elif op == "add":
            item.update(_as_complex(attr, value))
        else:
            item.clear()
            item.update(_as_complex(attr, value))
    _store(box, name, items, matched)


def _store(box: dict[str, Any], name: str, items: list[Any], changed: list[Any]) -> None:
    """Put the list back, keeping at most one ``primary: true`` (the one just written wins)."""
    winners = [item for item in changed if isinstance(item, dict) and item.get("primary") is True]
    keep = (
        winners[-1]
        if winners
        else next(
            (item for item in reversed(items) if isinstance(item, dict) and item.get("primary") is True), None
        )
    )
    for item in items:
        if isinstance(item, dict) and item.get("primary") is True and item is not keep:
            item["primary"] = False
    if items:
        box[name] = items
    else:
        box.pop(name, None)


def _identity(value: Any) -> Any:
    if isinstance(value, dict) and "value" in value:
        return ("value", str(value["value"]))
    return ("json", repr(value))


def _seed(node: FilterNode | None) -> dict[str, Any]:
    """The element a filter describes: the ``eq`` terms of a conjunction (``type eq "work"``)."""
    if isinstance(node, Comparison) and node.op is CompareOperator.eq and node.attr_path.sub_attr is None:
        return {node.attr_path.attr: node.value}
    if isinstance(node, LogicalExpr) and node.op is LogicalOperator.and_:
        out: dict[str, Any] = {}
        for term in node.terms:
            out.update(_seed(term))
        return out
    return {}


def matches(where: Target, item: dict[str, Any]) -> bool:
    """Whether an element (a dict of sub-attributes) matches the target's value filter."""
    assert where.resolved is not None
    return _matches(where.resolved.attr, where.filter, item)


def _matches(attr: Attr, node: FilterNode | None, item: dict[str, Any]) -> bool:
    if node is None:
        return True
    if isinstance(node, LogicalExpr):
        results = (_matches(attr, term, item) for term in node.terms)
        return all(results) if node.op is LogicalOperator.and_ else any(results)
    if isinstance(node, Not):
        return not _matches(attr, node.expr, item)
    if isinstance(node, Comparison | Present):
        sub = attr.child(node.attr_path.attr)
        if sub is None or node.attr_path.sub_attr is not None:
            raise InvalidPathError(f"{attr.name} has no sub-attribute {node.attr_path}")
        current = next((v for k, v in item.items() if k.lower() == sub.name.lower()), None)
        if isinstance(node, Present):
            return current not in (None, "", [])
        return _compare(sub, node.op, current, node.value)
    raise InvalidPathError("unsupported value filter")


def _compare(sub: Attr, op: CompareOperator, current: Any, wanted: Any) -> bool:
    if isinstance(current, str) and isinstance(wanted, str) and not sub.case_exact:
        current, wanted = current.lower(), wanted.lower()
    if sub.type == "boolean" and isinstance(current, str):
        current = current.lower() == "true"
    if op is CompareOperator.eq:
        return bool(current == wanted)
    if op is CompareOperator.ne:
        return bool(current != wanted)
    if not isinstance(current, str) or not isinstance(wanted, str):
        if current is None or wanted is None or isinstance(current, bool) or isinstance(wanted, bool):
            return False
        if op is CompareOperator.gt:
            return bool(current > wanted)
        if op is CompareOperator.ge:
            return bool(current >= wanted)
        if op is CompareOperator.lt:
            return bool(current < wanted)
        if op is CompareOperator.le:
            return bool(current <= wanted)
        return False
    checks = {
        CompareOperator.co: wanted in current,
        CompareOperator.sw: current.startswith(wanted),
        CompareOperator.ew: current.endswith(wanted),
        CompareOperator.gt: current > wanted,
        CompareOperator.ge: current >= wanted,
        CompareOperator.lt: current < wanted,
        CompareOperator.le: current <= wanted,
    }
    return checks[op]

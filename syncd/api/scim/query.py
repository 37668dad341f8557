"""List and search requests (RFC 7644 §3.4.2, §3.4.3): parameters, paging, sorting, the ListResponse.

``GET /Users?…`` and ``POST /Users/.search`` read into the same :class:`Query`. Paging is by offset over a
stable order (the sort key, then the unique id); ``startIndex`` below 1 counts as 1, a negative ``count``
as 0, and a ``count`` above :data:`MAX_COUNT` is cut to it (the RFC lets a server return fewer).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from syncd.api.scim.catalogue import ResourceType
from syncd.api.scim.errors import InvalidSyntaxError, InvalidValueError
from syncd.api.scim.filters import Expr, Mapper, compile_filter
from syncd.api.scim.mappers import sort_key
from syncd.api.scim.resources import Projection, projection

LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
DEFAULT_COUNT = 100
MAX_COUNT = 1000


@dataclass(frozen=True, slots=True)
class Query:
    filter: str | None = None
    start_index: int = 1
    count: int = DEFAULT_COUNT
    sort_by: str | None = None
    descending: bool = False
    attributes: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def projection(self, rt: ResourceType) -> Projection:
        return projection(rt, self.attributes, self.excluded)


def _int(raw: Any, name: str) -> int:
    if isinstance(raw, bool):
        raise InvalidValueError(f"{name} must be an integer")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and re.fullmatch(r"[+-]?[0-9]{1,18}", raw.strip()):
        return int(raw)  # ASCII digits only: "¹".isdigit() is True but int("¹") fails
    raise InvalidValueError(f"{name} must be an integer")


def _names(raw: Any, name: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return tuple(part for part in raw.split(",") if part.strip())
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        return tuple(part for item in raw for part in item.split(",") if part.strip())
    raise InvalidValueError(f"{name} must be a comma-separated list of attribute names")


def _order(raw: Any) -> bool:
    if raw is None:
        return False
    if isinstance(raw, str) and raw.lower() in ("ascending", "descending"):
        return raw.lower() == "descending"
    raise InvalidValueError("sortOrder must be ascending or descending")


def from_params(params: Mapping[str, str]) -> Query:
    """A query from the URL's parameters (names case-insensitive, as most servers read them)."""
    lowered = {k.lower(): v for k, v in params.items()}
    return _query(lowered)


def from_search(body: Any) -> Query:
    """A query from a SearchRequest body."""
    if not isinstance(body, dict):
        raise InvalidSyntaxError("a SearchRequest must be a JSON object")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or SEARCH_URN not in schemas:
        raise InvalidSyntaxError(f"schemas must be [{SEARCH_URN!r}]")
    return _query({k.lower(): v for k, v in body.items() if isinstance(k, str)})


def _query(values: Mapping[str, Any]) -> Query:
    raw_filter = values.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, str):
        raise InvalidValueError("filter must be a string")
    start = _int(values["startindex"], "startIndex") if values.get("startindex") is not None else 1
    count = _int(values["count"], "count") if values.get("count") is not None else DEFAULT_COUNT
    sort_by = values.get("sortby")
    if sort_by is not None and not isinstance(sort_by, str):
        raise InvalidValueError("sortBy must be an attribute name")
    return Query(
        filter=raw_filter if raw_filter and raw_filter.strip() else None,
        start_index=max(start, 1),
        count=min(max(count, 0), MAX_COUNT),
        sort_by=sort_by or None,
        descending=_order(values.get("sortorder")),
        attributes=_names(values.get("attributes"), "attributes"),
        excluded=_names(values.get("excludedattributes"), "excludedAttributes"),
    )


def page(
    conn: Connection,
    mapper: Mapper,
    dialect: str,
    table: Any,
    columns: Sequence[Any],
    visible: Sequence[Expr],
    query: Query,
    *,
    lenient: bool = False,
) -> tuple[list[Any], int]:
    """One page of rows (``columns``) matching ``visible`` and the query's filter, and the total count."""
    conditions = list(visible)
    if query.filter is not None:
        conditions.append(compile_filter(mapper, query.filter, dialect, lenient=lenient))
    order: list[Any] = []
    if query.sort_by is not None:
        key = sort_key(mapper, query.sort_by)
        if key is None:
            raise InvalidValueError("sortBy must name a single-valued attribute syncd can sort on")
        order = [key.is_(None), key.desc() if query.descending else key.asc()]
    rows: list[Any] = []
    if query.count:
        statement = sa.select(*columns).where(*conditions).order_by(*order, table.c.id)
        statement = statement.offset(query.start_index - 1).limit(query.count)
        rows = list(conn.execute(statement))
    if query.start_index == 1 and len(rows) < query.count:
        return rows, len(rows)
    total = conn.scalar(sa.select(sa.func.count()).select_from(table).where(*conditions)) or 0
    return rows, int(total)


def list_response(resources: list[dict[str, Any]], total: int, query: Query) -> dict[str, Any]:
    return {
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": query.start_index,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }

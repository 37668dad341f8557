"""SCIM Users and Groups ↔ syncd's rows: the columns a document fills, the representation a row renders
to, ``meta.version``, and ``attributes``/``excludedAttributes`` projection (RFC 7644 §3.4.2.5).

A user's stored ``attributes`` hold the client's canonical document without ``userName`` (the ``username``
column); ``active`` is shown from ``provisioned`` (syncd's state) while the client has it set. The columns
the MFA side uses (email, names, phone) are derived from the document on every write. Groups keep
``externalId`` and other attributes in ``groups.attributes``; their members are rows of ``group_members`` /
``group_nesting`` (with the ``display`` the client sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncd.api.scim.catalogue import ENTERPRISE_URN, GROUP_URN, USER_URN, ResourceType
from syncd.api.scim.errors import InvalidValueError

COLUMN_LIMITS = {"username": 256, "email": 320, "given_name": 256, "family_name": 256, "display_name": 512}
PHONE_LIMIT = 64


@dataclass(frozen=True, slots=True)
class Member:
    """A member of a group as SCIM shows it."""

    id: str
    type: str  # User | Group
    display: str | None


def version(updated_at: datetime) -> str:
    """The weak ETag of a row: changes whenever syncd writes the row."""
    return f'W/"{int(updated_at.timestamp() * 1_000_000):x}"'


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _first(items: Any) -> str | None:
    """The primary value of a multi-valued attribute, else the first one."""
    if not isinstance(items, list):
        return None
    values = [item for item in items if isinstance(item, dict) and isinstance(item.get("value"), str)]
    primary = next((item for item in values if item.get("primary") is True), None)
    chosen = primary or (values[0] if values else None)
    return chosen["value"] if chosen is not None else None


def user_columns(doc: dict[str, Any]) -> tuple[dict[str, Any], bool | None]:
    """The ``users`` columns a canonical User document fills, and its ``active`` (None when absent)."""
    name: dict[str, Any] = doc["name"] if isinstance(doc.get("name"), dict) else {}
    phone = _first(doc.get("phoneNumbers"))
    fields: dict[str, Any] = {
        "username": doc["userName"],
        "email": _first(doc.get("emails")),
        "given_name": name.get("givenName"),
        "family_name": name.get("familyName"),
        "display_name": doc.get("displayName"),
        "phone": phone[:PHONE_LIMIT] if phone else None,
        "attributes": {k: v for k, v in doc.items() if k != "userName"},
    }
    for column, limit in COLUMN_LIMITS.items():
        value = fields[column]
        if value is not None and len(value) > limit:
            raise InvalidValueError(f"{column.replace('_', ' ')} is longer than {limit} characters")
    return fields, doc.get("active")


def user_document(username: str, provisioned: bool, attributes: dict[str, Any] | None) -> dict[str, Any]:
    """The canonical document PATCH starts from (``active`` only when the client has set it)."""
    doc = {**(attributes or {}), "userName": username}
    if "active" in doc:
        doc["active"] = provisioned
    return doc


def render_user(row: Any, base: str, groups: Sequence[tuple[str, str]] | None) -> dict[str, Any]:
    """A user row (ORM object or result row with the ``users`` columns) as a SCIM User."""
    doc: dict[str, Any] = row.attributes or {}
    schemas = [USER_URN, ENTERPRISE_URN] if ENTERPRISE_URN in doc else [USER_URN]
    out: dict[str, Any] = {"schemas": schemas, "id": row.id}
    if "externalId" in doc:
        out["externalId"] = doc["externalId"]
    out["userName"] = row.username
    out.update((k, v) for k, v in doc.items() if k not in ("externalId", "active"))
    if "active" in doc:  # the client's attribute; its value is syncd's provisioning state
        out["active"] = row.provisioned
    if groups:
        out["groups"] = [
            {"value": gid, "$ref": f"{base}/Groups/{gid}", "display": name, "type": "direct"}
            for gid, name in groups
        ]
    out["meta"] = _meta("User", base, "/Users/", row)
    return out


def render_group(row: Any, base: str, members: Iterable[Member] | None) -> dict[str, Any]:
    """A group row as a SCIM Group (``members`` None: not asked for)."""
    doc: dict[str, Any] = row.attributes or {}
    out: dict[str, Any] = {"schemas": [GROUP_URN], "id": row.id}
    if "externalId" in doc:
        out["externalId"] = doc["externalId"]
    out["displayName"] = row.name
    out.update((k, v) for k, v in doc.items() if k not in ("externalId", "displayName"))
    listed = [
        {
            "value": m.id,
            "$ref": f"{base}/{m.type}s/{m.id}",
            "type": m.type,
            **({"display": m.display} if m.display else {}),
        }
        for m in members or ()
    ]
    if listed:
        out["members"] = listed
    out["meta"] = _meta("Group", base, "/Groups/", row)
    return out


def _meta(kind: str, base: str, endpoint: str, row: Any) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "created": _iso(row.created_at),
        "lastModified": _iso(row.updated_at),
        "location": f"{base}{endpoint}{row.id}",
        "version": version(row.updated_at),
    }


@dataclass(frozen=True, slots=True)
class Projection:
    """``attributes`` / ``excludedAttributes``: (schema URN or None for core, attribute, sub or None)."""

    only: frozenset[tuple[str | None, str, str | None]] = frozenset()
    without: frozenset[tuple[str | None, str, str | None]] = frozenset()

    def wants(self, attr: str) -> bool:
        """Whether a core attribute is in the output at all (skip work such as loading members)."""
        if self.only:
            return any(ext is None and name == attr for ext, name, _ in self.only)
        return (None, attr, None) not in self.without

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        if not self.only and not self.without:
            return resource
        if self.only:
            out = {"schemas": resource["schemas"], "id": resource["id"]}
            for ext, name, sub in sorted(self.only, key=lambda t: (t[0] or "", t[1], t[2] or "")):
                source = resource.get(ext, {}) if ext else resource
                if name not in source:
                    continue
                value = source[name] if sub is None else _only_sub(source[name], sub)
                if value in (None, [], {}):
                    continue
                target = out.setdefault(ext, {}) if ext else out
                if isinstance(target.get(name), dict) and isinstance(value, dict):
                    target[name].update(value)
                else:
                    target[name] = value
            return out
        out = dict(resource)
        for ext, name, sub in self.without:
            source = out.get(ext) if ext else out
            if not isinstance(source, dict) or name not in source or name in ("id", "schemas"):
                continue
            if ext:
                source = out[ext] = dict(source)
            if sub is None:
                del source[name]
            else:
                source[name] = _without_sub(source[name], sub)
        return out


def _only_sub(value: Any, sub: str) -> Any:
    if isinstance(value, list):
        return [{sub: v[sub]} for v in value if isinstance(v, dict) and sub in v]
    if isinstance(value, dict):
        return {sub: value[sub]} if sub in value else None
    return None


def _without_sub(value: Any, sub: str) -> Any:
    if isinstance(value, list):
        return [
            {k: v for k, v in item.items() if k != sub} if isinstance(item, dict) else item for item in value
        ]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != sub}
    return value


def projection(rt: ResourceType, attributes: Iterable[str], excluded: Iterable[str]) -> Projection:
    """Resolve the names (case-insensitive, URN-qualified or dotted); unknown names are ignored."""

    def keys(names: Iterable[str]) -> frozenset[tuple[str | None, str, str | None]]:
        out: set[tuple[str | None, str, str | None]] = set()
        for raw in names:
            name = raw.strip()
            if not name:
                continue
            whole = rt.extensions.get(name.lower())
            if whole is not None:
                out.update((whole[0], a.name, None) for a in whole[1].values())
                continue
            resolved = rt.resolve_name(name)
            if resolved is not None and resolved.attr.returned != "never":
                sub = resolved.sub.name if resolved.sub is not None else None
                out.add((resolved.extension, resolved.attr.name, sub))
        return frozenset(out)

    return Projection(keys(attributes), keys(excluded))

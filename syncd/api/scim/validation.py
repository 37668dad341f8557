"""Validate a client's resource document into syncd's canonical form.

The canonical form is a plain dict keyed by the catalogue's attribute names (``userName``, not
``USERNAME``), each extension under its URN, values of the declared types, no nulls and no empty lists.
What the RFC and the identity providers' documented behaviour ask for (research/scim.md §4.6):

* unknown attributes and unknown schema URNs (Entra's ``…/ADSCIM/2.0/Group``) are ignored, not refused;
* readOnly attributes (``id``, ``meta``, ``groups``, ``manager.displayName``) and ``password`` are ignored;
* ``"True"``/``"False"`` strings are booleans (Entra), a bare string for a complex attribute with a
  ``value`` sub-attribute is ``{"value": s}`` (Entra's ``manager``);
* anything else of the wrong type, a string holding NUL or unpaired surrogates, or a missing required
  attribute is a 400 ``invalidValue``; a body that is not an object is ``invalidSyntax``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from syncd.api.scim.catalogue import Attr, ResourceType
from syncd.api.scim.errors import InvalidSyntaxError, InvalidValueError, ScimError

IGNORED_ON_WRITE = frozenset({"schemas", "password"})


def document(rt: ResourceType, data: Any) -> dict[str, Any]:
    """A POST/PUT body (or a patched document) → canonical document; raises on invalid input."""
    if not isinstance(data, dict):
        raise InvalidSyntaxError(f"a {rt.name} must be a JSON object")
    _check_schemas(rt, data.get("schemas"))
    out: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key.lower() in IGNORED_ON_WRITE:
            continue
        extension = rt.extensions.get(key.lower())
        if extension is not None:
            urn, attrs = extension
            block = _complex_block(attrs, value, urn)
            if block:
                out.setdefault(urn, {}).update(block)
            continue
        resolved = rt.resolve_name(key)
        if resolved is None or resolved.sub is not None or not resolved.attr.writable:
            continue  # unknown (kept out, see module doc), readOnly, or a sub-attribute path
        checked = _value(resolved.attr, value, key)
        if checked is None:
            continue
        if resolved.extension is not None:
            out.setdefault(resolved.extension, {})[resolved.attr.name] = checked
        else:
            out[resolved.attr.name] = checked
    required = out.get(rt.required_attr)
    if not isinstance(required, str) or not required.strip():
        raise InvalidValueError(f"{rt.required_attr} is required and must be a non-empty string")
    return out


def _check_schemas(rt: ResourceType, schemas: Any) -> None:
    if schemas is None:
        return
    if not isinstance(schemas, list) or not all(isinstance(s, str) for s in schemas):
        raise InvalidSyntaxError("schemas must be a list of schema URNs")
    if rt.core.lower() not in {s.lower() for s in schemas}:
        raise InvalidSyntaxError(f"schemas must include {rt.core}")


def _complex_block(attrs: dict[str, Attr], value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidValueError(f"{where} must be an object")
    out: dict[str, Any] = {}
    for key, item in value.items():
        definition = attrs.get(key.lower()) if isinstance(key, str) else None
        if definition is None or not definition.writable:
            continue
        checked = _value(definition, item, f"{where}:{definition.name}")
        if checked is not None:
            out[definition.name] = checked
    return out


def value(definition: Attr, raw: Any, where: str) -> Any:
    """Check one attribute's value (public for PATCH); None means "no value"."""
    return _value(definition, raw, where)


def _value(definition: Attr, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if definition.multi:
        if not isinstance(raw, list):
            raise InvalidValueError(f"{where} is multi-valued and must be a list")
        items = [_single(definition, item, where) for item in raw]
        kept = [item for item in items if item is not None]
        return kept or None
    return _single(definition, raw, where)


def _single(definition: Attr, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    kind = definition.type
    if kind == "complex":
        if isinstance(raw, str) and "value" in definition.sub:
            raw = {"value": raw}  # Entra sends manager (and some IdPs emails) as a bare string
        block = _complex_block(definition.sub, raw, where)
        return block or None
    if kind == "boolean":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise InvalidValueError(f"{where} must be a boolean")
    if kind == "integer":
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        raise InvalidValueError(f"{where} must be an integer")
    if kind == "decimal":
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return raw
        raise InvalidValueError(f"{where} must be a number")
    if not isinstance(raw, str):
        raise InvalidValueError(f"{where} must be a string")
    text(raw, where)
    if kind == "dateTime":
        try:
            datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidValueError(f"{where} must be an xsd:dateTime such as 2026-11-22T08:00:00Z") from None
    return raw


def text(raw: str, where: str, error: type[ScimError] = InvalidValueError) -> str:
    """Refuse strings no database can store: NUL characters, unpaired surrogates."""
    if "\x00" in raw:
        raise error(f"{where} must not contain NUL characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{where} is not valid Unicode text") from None
    return raw

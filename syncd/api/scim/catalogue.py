"""The attribute catalogue: every attribute syncd accepts, filters, patches and returns, per resource type.

It is built once from the RFC 7643 schemas that scim2-models publishes (core User, the enterprise User
extension, core Group) plus the common attributes (``id``, ``externalId``, ``meta``). Filters, PATCH paths,
``attributes``/``excludedAttributes`` and body validation all resolve names here, case-insensitively, so an
attribute that is not in the catalogue is refused in one place (docs/adr/0032-scim-filters.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from scim2_models import EnterpriseUser, Group, User

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@dataclass(frozen=True, slots=True)
class Attr:
    """One attribute (or sub-attribute) definition, as RFC 7643 §2.2 characterises it."""

    name: str
    type: str  # string boolean decimal integer dateTime reference binary complex
    multi: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    returned: str = "default"  # always never default request
    required: bool = False
    sub: dict[str, Attr] = field(default_factory=dict)  # lower-case name -> definition

    def child(self, name: str) -> Attr | None:
        return self.sub.get(name.lower())

    @property
    def writable(self) -> bool:
        return self.mutability != "readOnly"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A name resolved against a resource type: the attribute, its sub-attribute, and its schema."""

    schema: str  # the URN of the schema that defines ``attr``
    attr: Attr
    sub: Attr | None = None

    @property
    def extension(self) -> str | None:
        """The extension URN the value is stored under, or None for core attributes."""
        return None if self.schema in (USER_URN, GROUP_URN) else self.schema

    @property
    def target(self) -> Attr:
        return self.sub or self.attr


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One resource type: its core schema, its extensions and its endpoint."""

    name: str
    endpoint: str
    core: str
    attrs: dict[str, Attr]  # lower-case name -> definition (core schema + common attributes)
    extensions: dict[str, tuple[str, dict[str, Attr]]]  # lower-case URN -> (URN, attributes)
    required_attr: str

    def schema_of(self, urn: str) -> tuple[str, dict[str, Attr]] | None:
        """The (URN, attributes) of the core schema or an extension, by URN (case-insensitive)."""
        if urn.lower() == self.core.lower():
            return self.core, self.attrs
        return self.extensions.get(urn.lower())

    def resolve(self, attr: str, sub: str | None = None, uri: str | None = None) -> Resolved | None:
        """Resolve ``[uri:]attr[.sub]``; None when any part is unknown."""
        if uri is not None:
            found = self.schema_of(uri)
            if found is None:
                return None
            schema, attrs = found
        else:
            schema, attrs = self.core, self.attrs
        definition = attrs.get(attr.lower())
        if definition is None:
            return None
        if sub is None:
            return Resolved(schema, definition)
        child = definition.child(sub)
        return Resolved(schema, definition, child) if child is not None else None

    def resolve_name(self, name: str) -> Resolved | None:
        """Resolve a dotted, maybe URN-qualified name (``name.givenName``, ``urn:…:User:department``)."""
        uri = None
        lowered = name.lower()
        for candidate in (self.core, *(urn for urn, _ in self.extensions.values())):
            if lowered.startswith(candidate.lower() + ":"):
                uri, name = candidate, name[len(candidate) + 1 :]
                break
            if lowered == candidate.lower():
                return None
        attr, _, sub = name.partition(".")
        return self.resolve(attr, sub or None, uri)


def _convert(definition: Any) -> Attr:
    subs = {s.name.lower(): _convert(s) for s in definition.sub_attributes or ()}
    return Attr(
        name=definition.name,
        type=definition.type.value,
        multi=bool(definition.multi_valued),
        case_exact=bool(definition.case_exact),
        mutability=definition.mutability.value,
        returned=definition.returned.value,
        required=bool(definition.required),
        sub=subs,
    )


def _attrs(model: Any) -> dict[str, Attr]:
    return {a.name.lower(): _convert(a) for a in model.to_schema().attributes}


def _common() -> dict[str, Attr]:
    meta_sub = {
        "resourcetype": Attr("resourceType", "string", case_exact=True, mutability="readOnly"),
        "created": Attr("created", "dateTime", mutability="readOnly"),
        "lastmodified": Attr("lastModified", "dateTime", mutability="readOnly"),
        "location": Attr("location", "reference", case_exact=True, mutability="readOnly"),
        "version": Attr("version", "string", case_exact=True, mutability="readOnly"),
    }
    return {
        "id": Attr("id", "string", case_exact=True, mutability="readOnly", returned="always"),
        "externalid": Attr("externalId", "string", case_exact=True),
        "meta": Attr("meta", "complex", mutability="readOnly", sub=meta_sub),
    }


def _build() -> tuple[ResourceType, ResourceType]:
    user_attrs = {**_common(), **_attrs(User)}
    enterprise = _attrs(EnterpriseUser)
    user = ResourceType(
        name="User",
        endpoint="/Users",
        core=USER_URN,
        attrs=user_attrs,
        extensions={ENTERPRISE_URN.lower(): (ENTERPRISE_URN, enterprise)},
        required_attr="userName",
    )
    group = ResourceType(
        name="Group",
        endpoint="/Groups",
        core=GROUP_URN,
        attrs={**_common(), **_attrs(Group)},
        extensions={},
        required_attr="displayName",
    )
    return user, group


USERS, GROUPS = _build()

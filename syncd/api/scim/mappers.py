"""Where each SCIM attribute of a User or Group lives in SQL, for filters and sorting.

Columns where syncd keeps the value itself (``id``, ``userName`` → the casefolded ``username_key``,
``active`` → ``provisioned``, ``meta.created``/``lastModified``, a group's ``displayName`` → ``name_key``),
memberships from ``group_members``/``group_nesting`` (``groups``, ``members``), and everything else from
the stored document in the ``attributes`` JSON column: a JSON path for single values, ``json_each``
(SQLite) / ``json_array_elements`` (PostgreSQL) for the elements of multi-valued attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from syncd.api.scim.catalogue import GROUPS, USERS, Attr, Resolved, ResourceType
from syncd.api.scim.filters import Elements, Expr, Mapper, Scalar
from syncd.store.tables import Group, GroupMember, GroupNesting, User

USERS_T, GROUPS_T = User.__table__, Group.__table__
MEMBERS_T, NESTING_T = GroupMember.__table__, GroupNesting.__table__

Scope = Callable[[str], Scalar | None]
Predicate = Callable[[Scope], Expr]


class _JsonMapper(Mapper):
    """Shared part: attributes kept in a JSON column."""

    def __init__(self, rt: ResourceType, column: Any, dialect: str) -> None:
        self.rt = rt
        self.column = column
        self.dialect = dialect

    def json_scalar(self, resolved: Resolved) -> Scalar | None:
        attr = resolved.target
        path = [resolved.extension] if resolved.extension else []
        path += [resolved.attr.name] + ([resolved.sub.name] if resolved.sub is not None else [])
        node = self.column[tuple(path)]
        if attr.type == "boolean":
            return Scalar(node.as_boolean(), attr)
        if attr.type in ("integer", "decimal"):
            return Scalar(node.as_float(), attr)
        return Scalar(node.as_string(), attr)

    def json_elements(self, resolved: Resolved) -> Elements:
        attr = resolved.attr
        path = ([resolved.extension] if resolved.extension else []) + [attr.name]
        dialect, column = self.dialect, self.column

        def exists(predicate: Predicate) -> Expr:
            if dialect == "sqlite":
                json_path = "$" + "".join(f'."{part}"' for part in path)
                table = sa.func.json_each(column, json_path).table_valued("value").alias("element")

                def field(name: str) -> Any:
                    return sa.func.json_extract(table.c.value, f'$."{name}"')
            else:
                table = (
                    sa.func.json_array_elements(column[tuple(path)]).table_valued("value").alias("element")
                )

                def field(name: str) -> Any:
                    return table.c.value.op("->>")(name)

            def scope(name: str) -> Scalar | None:
                sub = attr.child(name)
                if sub is None or sub.type == "complex":
                    return None
                value = field(sub.name)
                if sub.type == "boolean" and dialect != "sqlite":
                    value = sa.cast(value, sa.Boolean)
                return Scalar(value, sub)

            return sa.exists().select_from(table).where(predicate(scope))

        return Elements(attr, exists)


class UserMapper(_JsonMapper):
    def __init__(self, dialect: str, source: str) -> None:
        super().__init__(USERS, USERS_T.c.attributes, dialect)
        self.source = source

    def scalar(self, resolved: Resolved) -> Scalar | None:
        name = resolved.attr.name
        if resolved.extension is None:
            if name == "id":
                return Scalar(USERS_T.c.id, resolved.attr)
            if name == "userName":
                return Scalar(USERS_T.c.username_key, resolved.attr, folded=True)
            if name == "active":
                return Scalar(USERS_T.c.provisioned, resolved.attr)
            if name == "meta":
                return _meta(resolved, USERS_T.c.created_at, USERS_T.c.updated_at, "User")
            if name in ("password", "groups"):
                return None
        return self.json_scalar(resolved)

    def elements(self, resolved: Resolved) -> Elements | None:
        if resolved.extension is None and resolved.attr.name == "groups":
            return _memberships(resolved.attr, self.source)
        return self.json_elements(resolved)


class GroupMapper(_JsonMapper):
    def __init__(self, dialect: str, source: str) -> None:
        super().__init__(GROUPS, GROUPS_T.c.attributes, dialect)
        self.source = source

    def scalar(self, resolved: Resolved) -> Scalar | None:
        name = resolved.attr.name
        if name == "id":
            return Scalar(GROUPS_T.c.id, resolved.attr)
        if name == "displayName":
            return Scalar(GROUPS_T.c.name_key, resolved.attr, folded=True)
        if name == "meta":
            return _meta(resolved, GROUPS_T.c.created_at, GROUPS_T.c.updated_at, "Group")
        if name == "members":
            return None
        return self.json_scalar(resolved)

    def elements(self, resolved: Resolved) -> Elements | None:
        if resolved.attr.name == "members":
            return _members(resolved.attr, self.source)
        return self.json_elements(resolved)


def _meta(resolved: Resolved, created: Any, modified: Any, resource_type: str) -> Scalar | None:
    sub = resolved.sub
    if sub is None:
        return None
    if sub.name == "created":
        return Scalar(created, sub)
    if sub.name == "lastModified":
        return Scalar(modified, sub)
    if sub.name == "resourceType":
        return Scalar(sa.literal(resource_type, sa.String), sub)
    return None


def _memberships(attr: Attr, source: str) -> Elements:
    """A user's ``groups``: the source's groups it is a direct member of (value = id, display = name)."""

    def exists(predicate: Predicate) -> Expr:
        member, group = MEMBERS_T.alias(), GROUPS_T.alias()
        columns = {"value": group.c.id, "display": group.c.name, "type": sa.literal("direct", sa.String)}

        def scope(name: str) -> Scalar | None:
            sub = attr.child(name)
            return Scalar(columns[sub.name], sub) if sub is not None and sub.name in columns else None

        return (
            sa.select(member.c.user_id)
            .join(group, group.c.id == member.c.group_id)
            .where(
                member.c.user_id == USERS_T.c.id,
                group.c.managed_by == source,
                group.c.deleted_at.is_(None),
                predicate(scope),
            )
            .exists()
        )

    return Elements(attr, exists)


def _members(attr: Attr, source: str) -> Elements:
    """A group's ``members``: the source's users (type User) and nested groups (type Group)."""

    def exists(predicate: Predicate) -> Expr:
        member, child, user, group = MEMBERS_T.alias(), NESTING_T.alias(), USERS_T.alias(), GROUPS_T.alias()
        user_cols = {"value": member.c.user_id, "type": sa.literal("User", sa.String)}
        group_cols = {"value": child.c.child_id, "type": sa.literal("Group", sa.String)}

        def scope_of(columns: dict[str, Any]) -> Scope:
            def scope(name: str) -> Scalar | None:
                sub = attr.child(name)
                return Scalar(columns[sub.name], sub) if sub is not None and sub.name in columns else None

            return scope

        users = (
            sa.select(member.c.user_id)
            .join(user, user.c.id == member.c.user_id)
            .where(
                member.c.group_id == GROUPS_T.c.id,
                user.c.managed_by == source,
                predicate(scope_of(user_cols)),
            )
            .exists()
        )
        groups = (
            sa.select(child.c.child_id)
            .join(group, group.c.id == child.c.child_id)
            .where(
                child.c.parent_id == GROUPS_T.c.id,
                group.c.managed_by == source,
                predicate(scope_of(group_cols)),
            )
            .exists()
        )
        return sa.or_(users, groups)

    return Elements(attr, exists)


def sort_key(mapper: Mapper, name: str) -> Any:
    """The ORDER BY expression of ``sortBy`` (single-valued attributes only); None when unknown."""
    resolved = mapper.rt.resolve_name(name)
    if resolved is None or resolved.attr.multi or resolved.target.type == "complex":
        return None
    scalar = mapper.scalar(resolved)
    if scalar is None:
        return None
    if scalar.attr.type in ("string", "reference") and not scalar.attr.case_exact and not scalar.folded:
        return sa.func.lower(scalar.expr)
    return scalar.expr

"""Source records: what any source (file, LDAP, SCIM) says about users and groups, before storage."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SourceUser:
    """One user as a source sees it.

    ``anchor`` is the source's immutable identifier (entryUUID, objectGUID, a file's id column, a SCIM
    client's id); ``disabled`` is the source's own "account disabled" flag. ``attributes`` keeps extra
    mapped attributes as sorted ``(name, value)`` pairs so records stay hashable and comparable.
    """

    anchor: str
    username: str
    email: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    display_name: str | None = None
    phone: str | None = None
    disabled: bool = False
    dn: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """One group as a source sees it; members are the anchors of users and of nested groups."""

    anchor: str
    name: str
    description: str | None = None
    dn: str | None = None
    member_users: frozenset[str] = field(default_factory=frozenset)
    member_groups: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A complete read of one source: every user and group in scope.

    ``complete`` is False when the read was partial for any reason; a partial snapshot may add and
    update but never disable (see ``sync.guard``).
    """

    users: tuple[SourceUser, ...]
    groups: tuple[SourceGroup, ...]
    complete: bool = True
    incomplete_reason: str | None = None
    warnings: tuple[str, ...] = ()

"""Source records: what any source (file, LDAP, SCIM) says about users and groups, before storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from syncd.errors import SourceError


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
    update but never disable (see ``sync.guard``). ``skipped`` holds the anchors of entries the source
    has but that could not be used this time (no username, a username used twice): they are neither
    created, updated nor disabled. ``cursor`` is the change-feed position taken *before* the read, so an
    incremental run after this one sees every change made while it was read.
    """

    users: tuple[SourceUser, ...]
    groups: tuple[SourceGroup, ...]
    complete: bool = True
    incomplete_reason: str | None = None
    warnings: tuple[str, ...] = ()
    skipped: frozenset[str] = frozenset()
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class Delta:
    """What changed in a source since a stored cursor (an incremental read).

    ``users`` and ``groups`` are the entries added or changed since, complete records (a changed group
    carries its whole member list). ``deleted`` holds anchors (of users or groups) the source says are
    gone or out of scope. ``present_users`` / ``present_groups``, when given, are the complete anchor
    sets of the source right now: anything linked but absent left scope (a change feed that can't report
    deletions is paired with an anchor-set comparison). ``cursor`` is the position to store once the
    delta is applied; ``None`` keeps the stored one.
    """

    users: tuple[SourceUser, ...] = ()
    groups: tuple[SourceGroup, ...] = ()
    deleted: frozenset[str] = frozenset()
    present_users: frozenset[str] | None = None
    present_groups: frozenset[str] | None = None
    cursor: str | None = None
    complete: bool = True
    incomplete_reason: str | None = None
    warnings: tuple[str, ...] = ()
    skipped: frozenset[str] = frozenset()


class Known(NamedTuple):
    """An object syncd already links to a source: what an incremental read needs to resolve group
    members it did not read this time (by DN, or by username for ``memberUid``)."""

    object_type: str
    anchor: str
    dn: str | None
    name: str


class CursorExpired(SourceError):
    """The stored cursor can't be used (the server forgot it, another DC answers, its format changed):
    the engine falls back to a full run."""

"""Incremental reads: what changed since a stored cursor, by the best feed the server offers.

The cursor is a small JSON document naming its feed (docs/adr/0012-incremental-ldap-sync.md):

``syncrepl`` (OpenLDAP, syncprov)
    RFC 4533 refreshOnly with the stored cookies (one for users, one for groups). Changed entries come
    with their attributes; deletions, moves out of the base and entries that stopped matching the filter
    come as deletes from the server's session log. A cookie older than that log gets a present phase
    (deletions found as "not named"); a cookie the server rejects or ``e-syncRefreshRequired`` means a
    full run.
``usn`` (Active Directory)
    ``uSNChanged`` above the stored USN on the same DC and database (see :mod:`syncd.sources.ldap_ad`).
``timestamp`` (389-ds, FreeIPA, OpenLDAP without syncprov)
    ``modifyTimestamp >=`` the stored time, plus an anchor-only scan of the whole scope to find what
    is gone. The stored time is the client's clock at the start of the read minus
    :data:`TIMESTAMP_MARGIN`, so clock skew below that margin can't lose a change (entries changed in
    the margin are read again and found unchanged).

A changed group's members are resolved against the users changed in this delta and the objects syncd
already links (``known``, read from the store only when a group changed).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import ldap3
from ldap3.utils.conv import escape_filter_chars

from syncd.domain.records import CursorExpired, Delta, Known
from syncd.sources import ldap_ad, ldap_syncrepl, ldap_wire
from syncd.sources.ldap_ber import Done, Entry, Intermediate, Reference
from syncd.sources.ldap_entries import GroupCollector, Notes, UserCollector, dn_key
from syncd.sources.ldap_groups import groups_by_dn, resolve
from syncd.sources.ldap_read import Incomplete, Search, describe

if TYPE_CHECKING:
    from syncd.sources.ldap import LdapReader

TIMESTAMP_MARGIN = timedelta(minutes=15)
_NEVER = "(!(objectClass=*))"


# ---- cursors taken before a full read -------------------------------------------------------------
def syncrepl_start(reader: LdapReader, connection: ldap3.Connection) -> str:
    """Cookies for "now", from refreshes that match nothing; the timestamp feed if syncrepl is refused."""
    cookies: dict[str, str | None] = {}
    for what, search in _scopes(reader):
        refresh = ldap_syncrepl.Refresh(on_change=lambda _entry, _uuid: None)
        probe = Search(
            what, search.base, f"(&{search.filter}{_NEVER})", [reader.settings.anchor], search.scope
        )
        try:
            _refresh(connection, probe, None, refresh)
        except Incomplete as error:
            if error.result_code in (
                2,
                12,
                53,
            ):  # protocolError, unavailableCriticalExtension, unwillingToPerform
                return timestamp_start()
            raise
        if not refresh.cookie:
            return timestamp_start()
        cookies[what] = _b64(refresh.cookie)
    return json.dumps({"v": 1, "feed": "syncrepl", **cookies})


def timestamp_start() -> str:
    since = (datetime.now(UTC) - TIMESTAMP_MARGIN).strftime("%Y%m%d%H%M%SZ")
    return json.dumps({"v": 1, "feed": "timestamp", "since": since})


# ---- incremental reads -----------------------------------------------------------------------------
def read(
    reader: LdapReader, connection: ldap3.Connection, cursor: str, known: Callable[[], Iterable[Known]]
) -> Delta:
    """Read the changes since ``cursor`` with the feed it names."""
    try:
        data: dict[str, Any] = json.loads(cursor)
        feed = data["feed"]
    except (ValueError, KeyError, TypeError) as error:
        raise CursorExpired(f"the stored cursor is not one this syncd can read ({error})") from error
    notes = Notes()
    users = UserCollector(reader.settings, notes)
    lookups = _Lookups(known, users)
    groups = GroupCollector(reader.settings, notes, lookups.users_by_dn)
    deleted: set[str] = set()
    present: dict[str, frozenset[str] | None] = {"users": None, "groups": None}
    if feed == "syncrepl":
        new_cursor = _syncrepl(reader, connection, data, users, groups, deleted, present, notes)
    elif feed == "usn":
        new_cursor = _usn(reader, connection, data, users, groups, deleted, present, notes)
    elif feed == "timestamp":
        new_cursor = _timestamp(reader, connection, data, users, groups, present, notes)
    else:
        raise CursorExpired(f"unknown change feed {feed!r} in the stored cursor")
    reader.apply_disabled_filter(connection, users, notes, only=True)
    records = users.finish()
    group_records = lookups.resolve(groups, notes) if groups.groups else []
    complete = not notes.incomplete
    return Delta(
        users=tuple(records),
        groups=tuple(group_records),
        deleted=frozenset(deleted),
        present_users=present["users"],
        present_groups=present["groups"],
        cursor=new_cursor if complete else None,
        complete=complete,
        incomplete_reason=None if complete else "; ".join(notes.incomplete[:5]),
        warnings=notes.summary(),
        skipped=frozenset(users.skipped | groups.skipped),
    )


def _syncrepl(
    reader: LdapReader,
    connection: ldap3.Connection,
    data: dict[str, Any],
    users: UserCollector,
    groups: GroupCollector,
    deleted: set[str],
    present: dict[str, frozenset[str] | None],
    notes: Notes,
) -> str:
    new: dict[str, str | None] = {}
    for what, search in _scopes(reader):
        if what not in data:
            raise CursorExpired(f"the stored cursor has no {what} cookie")
        collector: UserCollector | GroupCollector = users if what == "users" else groups
        refresh = ldap_syncrepl.Refresh(on_change=_adder(collector))
        try:
            _refresh(connection, search, _unb64(data[what]), refresh)
        except Incomplete as error:
            if error.result_code == ldap_syncrepl.REFRESH_REQUIRED:
                raise CursorExpired(f"the server asks for a full refresh of {what}") from error
            notes.incomplete.append(str(error))
            return ""
        if refresh.cookie_rejected:
            raise CursorExpired(f"the server did not accept the stored {what} cookie")
        deleted |= refresh.deleted
        if refresh.present_phase:
            present[what] = frozenset(refresh.mentioned)
        new[what] = _b64(refresh.cookie) if refresh.cookie else data[what]
    return json.dumps({"v": 1, "feed": "syncrepl", **new})


def _usn(
    reader: LdapReader,
    connection: ldap3.Connection,
    data: dict[str, Any],
    users: UserCollector,
    groups: GroupCollector,
    deleted: set[str],
    present: dict[str, frozenset[str] | None],
    notes: Notes,
) -> str:
    try:
        state = ldap_ad.dc_state(connection, reader.time_limit)
    except Incomplete as error:
        raise CursorExpired(f"can't read the domain controller's state: {error}") from error
    usn = state.check(data)
    changed = f"(uSNChanged>={usn + 1})"
    reader.read_users(connection, users, notes, reader.users_search(changed))
    if reader.source.groups is not None:
        reader.read_groups(connection, groups, notes, reader.groups_search(changed))
    try:
        deleted |= ldap_ad.tombstones(
            connection,
            state.naming_context,
            usn,
            page_size=reader.source.page_size,
            time_limit=reader.time_limit,
            controls=reader.settings.search_controls,
        )
    except Incomplete as error:
        notes.incomplete.append(str(error))
    _present_scan(reader, connection, present, notes)  # authoritative for deletions, see ldap_ad
    return json.dumps(state.cursor())


def _timestamp(
    reader: LdapReader,
    connection: ldap3.Connection,
    data: dict[str, Any],
    users: UserCollector,
    groups: GroupCollector,
    present: dict[str, frozenset[str] | None],
    notes: Notes,
) -> str:
    since = data.get("since")
    if not isinstance(since, str) or not since.endswith("Z"):
        raise CursorExpired("the stored cursor has no time")
    next_cursor = timestamp_start()
    changed = f"(modifyTimestamp>={escape_filter_chars(since)})"
    reader.read_users(connection, users, notes, reader.users_search(changed))
    if reader.source.groups is not None:
        reader.read_groups(connection, groups, notes, reader.groups_search(changed))
    _present_scan(reader, connection, present, notes)
    return next_cursor


def _present_scan(
    reader: LdapReader, connection: ldap3.Connection, present: dict[str, frozenset[str] | None], notes: Notes
) -> None:
    """The complete anchor sets of users and groups (deletions are what is linked but absent)."""
    anchor = [reader.settings.anchor]
    for what, search in _scopes(reader):
        scoped = dataclasses.replace(search, attributes=anchor)
        present[what] = frozenset(reader.anchors(connection, scoped, notes))


# ---- helpers ----------------------------------------------------------------------------------------
def _scopes(reader: LdapReader) -> list[tuple[str, Search]]:
    scopes = [("users", reader.users_search())]
    if reader.source.groups is not None:
        scopes.append(("groups", reader.groups_search()))
    return scopes


def _refresh(
    connection: ldap3.Connection, search: Search, cookie: bytes | None, refresh: ldap_syncrepl.Refresh
) -> None:
    """One refreshOnly search (unpaged: RFC 4533 and paging don't mix), streamed into ``refresh``."""
    referrals: list[str] = []
    try:
        for message in ldap_wire.search(
            connection,
            search.base,
            search.filter,
            search.attributes,
            scope=search.scope,
            controls=[ldap_syncrepl.request_control(cookie)],
        ):
            if isinstance(message, Entry):
                refresh.entry(message)
            elif isinstance(message, Intermediate) and message.name == ldap_syncrepl.SYNC_INFO:
                refresh.info(message.value)
            elif isinstance(message, Reference):
                referrals += message.urls  # read on to the end: the connection stays usable
            elif isinstance(message, Done):
                if referrals:
                    raise Incomplete(
                        f"{search.what} refresh: referral to {', '.join(referrals)} not followed", 10
                    )
                if message.code != 0:
                    raise Incomplete(f"{search.what} refresh: {describe(message)}", message.code)
                refresh.done(message.controls.get(ldap_syncrepl.SYNC_DONE))
    except ldap_wire.ConnectionLost as error:
        raise Incomplete(f"{search.what} refresh: {error}") from error
    except ValueError as error:  # BerError: a malformed sync control
        raise Incomplete(f"{search.what} refresh: {error}") from error


class _Lookups:
    """What a changed group's members resolve against: the users changed in this delta, and the users and
    groups syncd already links (read from the store once, and only if a group changed)."""

    def __init__(self, known: Callable[[], Iterable[Known]], users: UserCollector) -> None:
        self._known = known
        self._users = users
        self._by_dn: dict[str, str] | None = None
        self._by_uid: dict[str, str] = {}
        self._groups: dict[str, str] = {}

    def users_by_dn(self) -> dict[str, str]:
        if self._by_dn is None:
            self._by_dn = {}
            for item in self._known():
                if item.dn is None:
                    continue
                if item.object_type == "user":
                    self._by_dn[dn_key(item.dn)] = item.anchor
                    self._by_uid[item.name.casefold()] = item.anchor
                else:
                    self._groups[dn_key(item.dn)] = item.anchor
            self._by_dn.update(self._users.by_dn)
            self._by_uid.update({r.username.casefold(): r.anchor for r in self._users.records.values()})
        return self._by_dn

    def resolve(self, groups: GroupCollector, notes: Notes) -> list[Any]:
        by_dn = self.users_by_dn()
        groups_dn = {**self._groups, **groups_by_dn(groups.groups.values())}
        return resolve(groups.groups.values(), by_dn, self._by_uid, groups_dn, notes)


def _adder(collector: UserCollector | GroupCollector) -> Callable[[Entry, str], None]:
    def add(entry: Entry, _uuid: str) -> None:
        collector.add(entry)

    return add


def _b64(cookie: bytes) -> str:
    return base64.b64encode(cookie).decode("ascii")


def _unb64(text: Any) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError) as error:
        raise CursorExpired("the stored cookie is not base64") from error

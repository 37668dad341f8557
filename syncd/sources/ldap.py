"""Reading an LDAP directory or Active Directory: full snapshots and incremental deltas.

:class:`LdapReader` is what :func:`syncd.sources.readers.reader_for` returns for an LDAP source. Calling
it reads the whole source into a :class:`~syncd.domain.records.Snapshot`: the users (paged, page by
page), the accounts matching ``disabled_filter`` if one is set, the groups (AD ranges completed) and
their members resolved to anchors. Before the read it takes the change-feed position, so an incremental
run (:meth:`LdapReader.read_changes`, see :mod:`syncd.sources.ldap_changes`) sees everything that
changed while the directory was being read.

How a read ends:

* nothing could be read — no server accepted the connection or the bind, the filter is malformed, the
  base does not exist, the first page already failed: :class:`~syncd.errors.SourceError`, and the run
  fails without changing anything;
* something went wrong after entries were read (size or time limit, referral, timeout, dropped
  connection, an entry without its anchor, a failed group search): the snapshot is *incomplete*, with
  the reason; the guard then applies additions and updates but disables no one.

Everything here is blocking network I/O: the daemon's scheduler runs whole sync runs in a worker thread
(``asyncio.to_thread``), never on the event loop.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

import ldap3
from ldap3.utils.conv import escape_filter_chars

from syncd.config.sources import LdapSource
from syncd.domain.records import Delta, Known, Snapshot
from syncd.errors import SourceError
from syncd.sources import ldap_ad, ldap_changes, ldap_wire
from syncd.sources.ldap_ber import Entry
from syncd.sources.ldap_entries import GroupCollector, Notes, UserCollector
from syncd.sources.ldap_flavours import Settings, anchor_text, settings_for
from syncd.sources.ldap_groups import groups_by_dn, resolve
from syncd.sources.ldap_read import Incomplete, PageHook, Search, gc_paused, open_connection, paged
from syncd.sources.ldap_wire import RequestError

KnownLinks = Callable[[], Iterable[Known]]


class LdapReader:
    """Reads one configured LDAP source. ``on_page(entries_read)`` is called after every page."""

    def __init__(self, source: LdapSource, *, on_page: PageHook | None = None) -> None:
        self.source = source
        self.settings: Settings = settings_for(source)
        self.on_page = on_page

    @property
    def cursor_kind(self) -> str:
        """Names the scope a stored cursor belongs to: a cursor stored under another flavour, anchor, base,
        filter or attribute mapping is not used (the next run is full, and reads the new scope whole)."""
        groups = self.source.groups
        scope = [
            self.settings.flavour,
            self.settings.anchor,
            self.source.users.model_dump(mode="json"),
            groups.model_dump(mode="json") if groups else None,
            dict(self.settings.mapping),
            list(self.settings.extra),
            self.settings.disabled_filter,
        ]
        digest = hashlib.sha256(json.dumps(scope, sort_keys=True).encode()).hexdigest()
        return f"ldap-{digest[:16]}"

    def __call__(self) -> Snapshot:
        return self.read_full()

    def read_full(self) -> Snapshot:
        """Read everything in scope."""
        self.check_filters()
        connection, _ = open_connection(self.source)
        try:
            with gc_paused():
                return self._full(connection)
        finally:
            close(connection)

    def read_changes(self, cursor: str, known: KnownLinks) -> Delta:
        """Read what changed since ``cursor``; :class:`~syncd.domain.records.CursorExpired` if it can't."""
        self.check_filters()
        connection, _ = open_connection(self.source)
        try:
            with gc_paused():
                return ldap_changes.read(self, connection, cursor, known)
        finally:
            close(connection)

    def check_filters(self) -> None:
        """Refuse a malformed users, groups or disabled filter before anything is sent."""
        filters = {
            "users.filter": self.settings.user_filter,
            "disabled_filter": self.settings.disabled_filter,
        }
        if self.source.groups is not None:
            filters["groups.filter"] = self.settings.group_filter
        for name, value in filters.items():
            if value is not None:
                try:
                    ldap_wire.check_filter(value)
                except RequestError as error:
                    raise SourceError(f"source {self.source.name}: {name}: {error}") from error

    # ---- the full read ----------------------------------------------------------------------------
    def _full(self, connection: ldap3.Connection) -> Snapshot:
        notes = Notes()
        cursor = self._cursor_before_read(connection, notes)
        users = UserCollector(self.settings, notes)
        self.read_users(connection, users, notes, self.users_search(), fail_if_empty=True)
        self.apply_disabled_filter(connection, users, notes)
        records = users.finish()
        users.records.clear()  # the list holds them now; groups need only users.by_dn
        groups = GroupCollector(self.settings, notes, lambda: users.by_dn)
        group_records = []
        if self.source.groups is not None:
            self.read_groups(connection, groups, notes, self.groups_search())
            # memberUid values are resolved by username: the lookup (100,000 new strings and a dict at
            # 100,000 users, ~11 MB) is only built when a group has some
            uids = any(group.member_uids for group in groups.groups.values())
            by_uid = {r.username.casefold(): r.anchor for r in records} if uids else {}
            group_records = resolve(
                groups.groups.values(), users.by_dn, by_uid, groups_by_dn(groups.groups.values()), notes
            )
        complete = not notes.incomplete
        return Snapshot(
            users=tuple(records),
            groups=tuple(group_records),
            complete=complete,
            incomplete_reason=None if complete else "; ".join(notes.incomplete[:5]),
            warnings=notes.summary(),
            skipped=frozenset(users.skipped | groups.skipped),
            cursor=cursor if complete else None,
        )

    def _cursor_before_read(self, connection: ldap3.Connection, notes: Notes) -> str | None:
        try:
            if self.settings.feed == "syncrepl":
                return ldap_changes.syncrepl_start(self, connection)
            if self.settings.feed == "usn":
                return json.dumps(ldap_ad.dc_state(connection, self.time_limit).cursor())
            return ldap_changes.timestamp_start()
        except Incomplete as error:
            notes.warn("no change feed", f"no change-feed position ({error}); the next run will be full")
            return None

    # ---- building blocks shared with the incremental readers --------------------------------------
    @property
    def time_limit(self) -> int:
        return self.source.timeouts.search

    def users_search(self, extra_filter: str | None = None, attributes: list[str] | None = None) -> Search:
        flt = self.settings.user_filter
        if extra_filter:
            flt = f"(&{flt}{extra_filter})"
        return Search(
            "users",
            self.source.users.base,
            flt,
            attributes if attributes is not None else self.settings.user_attributes,
            "subtree" if self.source.users.scope == "subtree" else "one",
            self.settings.search_controls,
        )

    def groups_search(self, extra_filter: str | None = None, attributes: list[str] | None = None) -> Search:
        spec = self.source.groups
        assert spec is not None
        flt = self.settings.group_filter
        if extra_filter:
            flt = f"(&{flt}{extra_filter})"
        return Search(
            "groups",
            spec.base,
            flt,
            attributes if attributes is not None else self.settings.group_attributes,
            "subtree" if spec.scope == "subtree" else "one",
            self.settings.search_controls,
        )

    def read_users(
        self,
        connection: ldap3.Connection,
        users: UserCollector,
        notes: Notes,
        search: Search,
        *,
        fail_if_empty: bool = False,
    ) -> None:
        """Page through ``search`` into ``users``. A failure before the first entry raises (nothing was
        read: the run fails) when ``fail_if_empty``; any later failure only makes the read incomplete."""
        read = 0
        try:
            for entry in self._paged(connection, search):
                read += 1
                users.add(entry)
        except Incomplete as error:
            if fail_if_empty and read == 0:
                raise SourceError(f"source {self.source.name}: {error}") from error
            notes.incomplete.append(str(error))
        except RequestError as error:
            raise SourceError(f"source {self.source.name}: {search.what}: {error}") from error

    def read_groups(
        self, connection: ldap3.Connection, groups: GroupCollector, notes: Notes, search: Search
    ) -> None:
        """Page through the groups, then complete AD range-retrieved member lists."""
        try:
            for entry in self._paged(connection, search):
                groups.add(entry)
            for group in groups.range_pending:
                ldap_ad.complete_ranges(connection, groups, group, self.time_limit)
        except Incomplete as error:
            notes.incomplete.append(str(error))
        except RequestError as error:
            raise SourceError(f"source {self.source.name}: {search.what}: {error}") from error

    def apply_disabled_filter(
        self, connection: ldap3.Connection, users: UserCollector, notes: Notes, *, only: bool = False
    ) -> None:
        """Mark the users matching ``disabled_filter``: one anchor-only search over the whole scope, or,
        with ``only``, over the users collected (incremental runs; chunks of 100 anchors)."""
        if not self.settings.disabled_filter or not users.records:
            return
        problems = len(notes.incomplete)
        disabled: set[str] = set()
        if not only:
            search = self.users_search(self.settings.disabled_filter, [self.settings.anchor])
            disabled.update(self.anchors(connection, search, notes))
        else:
            anchors = sorted(users.records)
            for start in range(0, len(anchors), 100):
                chunk = self.anchor_filter(anchors[start : start + 100])
                search = self.users_search(f"{self.settings.disabled_filter}{chunk}", [self.settings.anchor])
                disabled.update(self.anchors(connection, search, notes))
        if len(notes.incomplete) > problems:
            # Who is disabled is unknown: use none of these users this time (no update, no re-enable).
            users.skip_all()
            return
        users.set_disabled(disabled)

    def anchors(self, connection: ldap3.Connection, search: Search, notes: Notes) -> list[str]:
        """The anchors ``search`` matches (an anchor-only paged read); failures make the read incomplete."""
        key = self.settings.anchor.lower()
        out: list[str] = []
        try:
            for entry in paged(
                connection, search, page_size=self.source.page_size, time_limit=self.time_limit
            ):
                raw = entry.attributes.get(key)
                if raw:
                    out.append(anchor_text(self.settings.anchor, raw[0]))
                else:
                    notes.incomplete.append(f"{entry.dn} has no {self.settings.anchor}")
        except (Incomplete, ValueError) as error:
            notes.incomplete.append(f"{search.what}: {error}")
        except RequestError as error:
            raise SourceError(f"source {self.source.name}: {search.what}: {error}") from error
        return out

    def anchor_filter(self, anchors: Iterable[str]) -> str:
        """``(|(anchor=a)(anchor=b)…)`` with every value escaped (RFC 4515)."""
        name = self.settings.anchor
        if name.lower() in ("objectguid", "ms-ds-consistencyguid"):
            parts = [f"({name}={ldap_ad.guid_value(a)})" for a in anchors]
        else:
            parts = [f"({name}={escape_filter_chars(a)})" for a in anchors]
        return "(|" + "".join(parts) + ")"

    def _paged(self, connection: ldap3.Connection, search: Search) -> Iterable[Entry]:
        return paged(
            connection,
            search,
            page_size=self.source.page_size,
            time_limit=self.time_limit,
            on_page=self.on_page,
        )


def close(connection: ldap3.Connection) -> None:
    """Unbind, ignoring a connection that is already gone (its socket is closed either way)."""
    ldap_wire.close(connection)

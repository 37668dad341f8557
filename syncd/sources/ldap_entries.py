"""Turning directory entries into source records, and the checks a read must pass to count as complete.

:class:`UserCollector` maps user entries to :class:`~syncd.domain.records.SourceUser` as pages arrive:

* an entry without the anchor attribute makes the read incomplete: syncd can't tell which known user it
  is, so it can't tell who is missing either;
* two entries with the same anchor make it incomplete too (a paging fault: RFC 2696 reads must not
  repeat entries);
* an entry without a username, and every entry of a username used twice (case-insensitively), is
  *skipped*: not created, not updated, not disabled, and named in the run's warnings.

:class:`GroupCollector` keeps group entries with their raw member values until every user is known.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from syncd.domain.records import SourceUser
from syncd.sources.ldap_ber import Entry
from syncd.sources.ldap_flavours import FIELDS, Settings, anchor_text, value_text
from syncd.sources.ldif_file import normalize_dn

MAX_LISTED = 10


def dn_key(dn: str) -> str:
    """A form of ``dn`` that compares equal for equal DNs (case, spacing, escapes, RDN order)."""
    if not (
        "\\" in dn
        or '"' in dn
        or "+" in dn
        or ";" in dn
        or ", " in dn
        or " ," in dn
        or "= " in dn
        or " =" in dn
        or "  " in dn
        or dn[:1] == " "
        or dn[-1:] == " "
    ):
        folded = dn.casefold()  # the common case, 20 times faster than parsing
        return dn if folded == dn else folded  # an equal string: keep one object, not two
    normal = normalize_dn(dn)
    if normal is None:
        return dn.casefold()
    return ",".join("+".join(f"{kind}={_escape(value)}" for kind, value in rdn) for rdn in normal)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+").replace("=", "\\=")


def first_text(attributes: Mapping[str, list[bytes]], name: str) -> str | None:
    """The first value of an attribute as text, blank values as None."""
    return _text(attributes.get(name))


def _text(values: list[bytes] | None) -> str | None:
    if not values:
        return None
    try:
        text = values[0].decode("utf-8").strip()
    except UnicodeDecodeError:
        text = value_text(values[0])
    return text or None


@dataclass(slots=True)
class Notes:
    """Problems of one read: ``incomplete`` ones (no disables this run) and ``warnings`` (listed)."""

    incomplete: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def warn(self, kind: str, message: str) -> None:
        """A warning, listed up to :data:`MAX_LISTED` times per kind, then only counted."""
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        if n <= MAX_LISTED:
            self.warnings.append(message)

    def summary(self) -> tuple[str, ...]:
        more = [
            f"... and {n - MAX_LISTED} more of: {kind}" for kind, n in self.counts.items() if n > MAX_LISTED
        ]
        return (*self.warnings, *more)


class Values:
    """Shares equal values between records: directories repeat titles, departments, given names… A value
    seen again is the same ``str`` object (or ``(name, value)`` pair); an attribute with more than
    :data:`SHARED` distinct values stops being cached (it is mostly unique: ids, numbers)."""

    SHARED = 1000

    def __init__(self) -> None:
        self._texts: dict[str, dict[bytes, str | None] | None] = {}
        self._pairs: dict[str, dict[bytes, tuple[str, str]] | None] = {}

    def text(self, name: str, values: list[bytes] | None) -> str | None:
        if not values:
            return None
        raw = values[0]
        cache = self._texts.get(name, {})
        if cache is not None and raw in cache:
            return cache[raw]
        text = _text(values)
        if cache is not None:
            if len(cache) >= self.SHARED:
                self._texts[name] = None
            else:
                cache[raw] = text
                self._texts[name] = cache
        return text

    def pair(self, name: str, raw: bytes) -> tuple[str, str]:
        cache = self._pairs.get(name, {})
        if cache is not None and (pair := cache.get(raw)) is not None:
            return pair
        pair = (name, value_text(raw))
        if cache is not None:
            if len(cache) >= self.SHARED:
                self._pairs[name] = None
            else:
                cache[raw] = pair
                self._pairs[name] = cache
        return pair


class UserCollector:
    """Maps user entries to records, page by page, keeping the lookups groups need."""

    def __init__(self, settings: Settings, notes: Notes) -> None:
        self.settings = settings
        self.notes = notes
        self._anchor = settings.anchor.lower()
        self._keys = [settings.mapping[name].lower() for name in FIELDS]
        self._extra = [(attr, attr.lower()) for attr in settings.extra]
        self._values = Values()
        self.records: dict[str, SourceUser] = {}
        self.by_dn: dict[str, str] = {}
        self._usernames: dict[str, str] = {}
        self._duplicates: dict[str, list[str]] = {}
        self.skipped: set[str] = set()
        self.missing_anchor = 0

    def add(self, entry: Entry) -> SourceUser | None:
        """Map one user entry; None if it can't be used (the reason is noted). Hot path: keep it lean."""
        attributes = entry.attributes
        anchor = self._anchor_of(entry, attributes)
        if anchor is None:
            return None
        if anchor in self.records or anchor in self.skipped:
            self.notes.incomplete.append(f"the directory returned {anchor} twice (paging fault?)")
            return None
        self.by_dn[dn_key(entry.dn)] = anchor
        get = attributes.get
        keys = self._keys
        username = _text(get(keys[0]))
        if username is None:
            self.skipped.add(anchor)
            attr = self.settings.mapping["username"]
            self.notes.warn("no username", f"{entry.dn}: no {attr}; skipped (neither created nor disabled)")
            return None
        text = self._values.text
        extra: list[tuple[str, str]] = []
        for name, key in self._extra:
            for raw in get(key, ()):
                extra.append(self._values.pair(name, raw))
        if len(extra) > 1:
            extra.sort()
        record = SourceUser(
            anchor,
            username,
            _text(get(keys[1])),
            text(keys[2], get(keys[2])),
            text(keys[3], get(keys[3])),
            _text(get(keys[4])),
            _text(get(keys[5])),
            self.settings.is_disabled(attributes),
            entry.dn,
            tuple(extra),
        )
        self.records[anchor] = record
        key = username.casefold()
        if key == username:
            key = username  # one object, not two equal ones
        first = self._usernames.setdefault(key, anchor)
        if first != anchor:
            self._duplicates.setdefault(key, [first]).append(anchor)
        return record

    def _anchor_of(self, entry: Entry, attributes: dict[str, list[bytes]]) -> str | None:
        raw = attributes.get(self._anchor)
        if not raw:
            self.missing_anchor += 1
            if self.missing_anchor == 1:
                self.notes.incomplete.append(
                    f"{entry.dn} has no {self.settings.anchor}, so syncd can't tell which user it is"
                )
            return None
        try:
            return anchor_text(self.settings.anchor, raw[0])
        except ValueError as error:
            self.notes.incomplete.append(f"{entry.dn}: {error}")
            return None

    def set_disabled(self, anchors: set[str]) -> None:
        """Mark these users disabled (from a ``disabled_filter`` search)."""
        for anchor in anchors & self.records.keys():
            record = self.records[anchor]
            self.records[anchor] = SourceUser(
                record.anchor,
                record.username,
                record.email,
                record.given_name,
                record.family_name,
                record.display_name,
                record.phone,
                True,
                record.dn,
                record.attributes,
            )

    def skip_all(self) -> None:
        """Use none of the users read so far (their disabled flags could not be read)."""
        self.skipped.update(self.records)
        self.records.clear()
        self._usernames.clear()
        self._duplicates.clear()

    def finish(self) -> list[SourceUser]:
        """The usable records: duplicate usernames are skipped (every holder of one) and noted."""
        if self.missing_anchor > 1:
            self.notes.incomplete.append(
                f"{self.missing_anchor} entries in all have no {self.settings.anchor}"
            )
        for key, anchors in self._duplicates.items():
            dns = sorted(str(self.records[a].dn) for a in anchors)
            self.notes.warn(
                "duplicate username",
                f"username {key!r} is used by {len(anchors)} entries ({'; '.join(dns)}); "
                "none of them was applied",
            )
            for anchor in anchors:
                self.skipped.add(anchor)
                del self.records[anchor]
        self._usernames.clear()
        return list(self.records.values())


@dataclass(slots=True)
class RawGroup:
    """A group entry while its members are resolved: user members found at once go to ``member_users``;
    the other member values (nested groups, members out of scope) wait in ``member_dns``.
    ``values_read`` counts the member values received (AD range retrieval continues from there)."""

    anchor: str
    dn: str
    name: str
    description: str | None
    member_dns: list[str]
    member_uids: list[str]
    member_users: list[str] = field(default_factory=list)  # a list while reading: 8 bytes a member
    values_read: int = 0


class GroupCollector:
    """Maps group entries; member DNs of users already known are resolved as the entries arrive (a
    2,000-group read then holds anchors, not hundreds of thousands of DN strings)."""

    def __init__(
        self, settings: Settings, notes: Notes, users_by_dn: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        self.settings = settings
        self.notes = notes
        self._anchor = settings.anchor.lower()
        self._name = settings.group_name.lower()
        self._users_by_dn = users_by_dn
        self._resolved: Mapping[str, str] | None = None
        self.groups: dict[str, RawGroup] = {}
        self.skipped: set[str] = set()
        self.range_pending: list[RawGroup] = []

    def users(self) -> Mapping[str, str]:
        """DN key → user anchor, obtained once, at the first group."""
        if self._resolved is None:
            self._resolved = self._users_by_dn() if self._users_by_dn is not None else {}
        return self._resolved

    def add(self, entry: Entry) -> RawGroup | None:
        attributes = entry.attributes
        raw = attributes.get(self._anchor)
        if not raw:
            self.notes.incomplete.append(f"group {entry.dn} has no {self.settings.anchor}")
            return None
        try:
            anchor = anchor_text(self.settings.anchor, raw[0])
        except ValueError as error:
            self.notes.incomplete.append(f"group {entry.dn}: {error}")
            return None
        if anchor in self.groups:
            self.notes.incomplete.append(f"the directory returned group {anchor} twice (paging fault?)")
            return None
        name = first_text(attributes, self._name)
        if name is None:
            self.skipped.add(anchor)
            self.notes.warn(
                "group without name", f"group {entry.dn} has no {self.settings.group_name}; skipped"
            )
            return None
        group = RawGroup(
            anchor,
            entry.dn,
            name,
            first_text(attributes, "description"),
            [],
            [value_text(v) for v in attributes.get("memberuid", ())],
        )
        ranged = False
        for key, values in attributes.items():
            if key in ("member", "uniquemember") or key.startswith("member;range="):
                self.add_members(group, values)
                ranged = ranged or (key.startswith("member;range=") and not key.endswith("-*"))
        self.groups[anchor] = group
        if ranged:
            self.range_pending.append(group)
        return group

    def add_members(self, group: RawGroup, values: list[bytes]) -> None:
        """Member values of ``group``: users known now are resolved, the rest kept as DN strings."""
        users = self.users()
        group.values_read += len(values)
        for raw in values:
            value = value_text(raw)
            anchor = users.get(dn_key(value))
            if anchor is None:
                group.member_dns.append(value)
            else:
                group.member_users.append(anchor)

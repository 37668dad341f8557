"""The LDIF file source: one RFC 2849 content file of users and groups, read into a :class:`Snapshot`.

Users are entries of class inetOrgPerson, organizationalPerson or person; groups are groupOfNames
(``member``), groupOfUniqueNames (``uniqueMember``) and posixGroup (``memberUid``, matched to users'
``uid``). Other entries (OUs, the base) are passed over. Mapping: the anchor attribute (entryUUID unless
told otherwise) → anchor, uid → username, mail → email, givenName, sn → family_name, displayName (else
cn) → display_name, telephoneNumber → phone, ``disabled_attribute`` present → disabled, and
:data:`EXTRA_ATTRIBUTES` → attributes. Member DNs are matched to entries of the file with DN
normalisation; a member that is not a user or group of the file is skipped with a warning.

The parser is our own (see docs/adr/0004-file-source-formats.md): comments, folded lines, ``::`` base64
values and ``version: 1`` are read; ``:<`` URL values and change records are refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path

from syncd.domain.records import Snapshot, SourceGroup, SourceUser
from syncd.sources.file import Problems, is_email, read_text

USER_CLASSES = frozenset({"inetorgperson", "organizationalperson", "person"})
GROUP_CLASSES = frozenset({"groupofnames", "groupofuniquenames", "posixgroup"})
EXTRA_ATTRIBUTES = (
    "departmentNumber",
    "employeeNumber",
    "employeeType",
    "mobile",
    "ou",
    "preferredLanguage",
    "title",
)
"""Person attributes kept in ``SourceUser.attributes`` (under these names, one pair per value)."""

Value = str | bytes
"""An attribute value: text, or bytes for a base64 value that is not UTF-8 (a photo, a binary GUID)."""
NormalDN = tuple[tuple[tuple[str, str], ...], ...]

_ATTR_LINE = re.compile(r"([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)((?:;[A-Za-z0-9-]+)*):(.*)", re.DOTALL)
_ATTR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*")
_DN_TOKEN = re.compile(r'\\.|"(?:\\.|[^"\\])*"|[,+]|[^\\",+]+|.', re.DOTALL)
_ESCAPE = re.compile(r"\\([0-9A-Fa-f]{2}|.)", re.DOTALL)
_UNIQUE_MEMBER_UID = re.compile(r"#'[01]*'B$")


@dataclass(slots=True)
class Entry:
    """One content record: its DN, the line of its ``dn:``, and values by lower-case attribute name."""

    dn: str
    line: int
    values: dict[str, list[tuple[int, Value]]] = field(default_factory=dict)

    def get(self, attribute: str) -> list[tuple[int, Value]]:
        return self.values.get(attribute.lower(), [])


def read_ldif(
    path: Path,
    *,
    anchor_attribute: str = "entryUUID",
    disabled_attribute: str | None = "pwdAccountLockedTime",
) -> Snapshot:
    """Read one LDIF file of users and groups into a complete :class:`Snapshot`.

    Raises :class:`~syncd.errors.SourceError` listing every problem (with file name and line) if there is
    any; nothing is returned half-read. Member DNs not in the file are skipped and listed in
    ``Snapshot.warnings``.
    """
    problems = Problems()
    file = path.name
    entries = parse_ldif(read_text(path), file, problems)
    return _Mapper(file, problems, anchor_attribute, disabled_attribute).snapshot(entries)


# --- RFC 2849 ------------------------------------------------------------------------------------------


def parse_ldif(text: str, file: str, problems: Problems) -> list[Entry]:
    """The content records of ``text``; every syntax problem is recorded in ``problems``."""
    entries: list[Entry] = []
    for index, record in enumerate(_records(text, file, problems)):
        if index == 0 and record[0][1].lower().startswith("version:"):
            line, version = record.pop(0)
            if version.partition(":")[2].strip() != "1":
                problems.add(file, line, f"version: only LDIF version 1 is supported, not {version!r}")
            if not record:
                continue
        entry = _entry(record, file, problems)
        if entry is not None:
            entries.append(entry)
    return entries


def _records(text: str, file: str, problems: Problems) -> list[list[tuple[int, str]]]:
    """The records of ``text`` as logical lines with the line each starts on: folds joined, comments out."""
    records: list[list[tuple[int, str]]] = [[]]
    in_comment = False
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if line.startswith(" "):
            if not in_comment and not records[-1]:
                problems.add(file, number, "line starts with a space but there is no line to continue")
            elif not in_comment:
                start, previous = records[-1][-1]
                records[-1][-1] = (start, previous + line[1:])
            continue
        in_comment = line.startswith("#")
        if not line and records[-1]:
            records.append([])
        elif line and not in_comment:
            records[-1].append((number, line))
    return [record for record in records if record]


def _entry(record: list[tuple[int, str]], file: str, problems: Problems) -> Entry | None:
    """One content record, or None (recorded as a problem) if it can't be read as one."""
    first_line = record[0][0]
    pairs = [(line, _attribute(text, file, line, problems)) for line, text in record]
    if pairs[0][1] is None or pairs[0][1][0].lower() != "dn":
        if pairs[0][1] is not None:
            problems.add(file, first_line, "record does not start with 'dn:'")
        return None
    dn = pairs[0][1][1]
    if isinstance(dn, bytes) or normalize_dn(dn) is None:
        problems.add(
            file, first_line, f"dn: {dn if isinstance(dn, str) else 'binary value'!r} is not a valid DN"
        )
        return None
    entry = Entry(dn=dn, line=first_line)
    for line, pair in pairs[1:]:
        if pair is None:
            continue
        name, value = pair
        if name.lower() in {"changetype", "control"}:
            problems.add(file, line, f"{name}: change records are not supported, only entries")
            return None
        entry.values.setdefault(name.lower(), []).append((line, value))
    return entry


def _attribute(text: str, file: str, line: int, problems: Problems) -> tuple[str, Value] | None:
    """``(attribute description, value)`` of one logical line, or None (recorded) if it is malformed."""
    match = _ATTR_LINE.fullmatch(text)
    if match is None:
        problems.add(file, line, f"expected 'attribute: value', got {text[:60]!r}")
        return None
    name, rest = match[1] + match[2], match[3]
    if rest.startswith("<"):
        problems.add(file, line, f"{name}: URL values (':<') are not supported; put the value in the file")
        return None
    if not rest.startswith(":"):
        return name, rest.strip(" \t")
    try:
        data = base64.b64decode(rest[1:].strip(" "), validate=True)
    except binascii.Error:
        problems.add(file, line, f"{name}: the '::' value is not valid base64")
        return None
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError:
        return name, data


def normalize_dn(dn: str) -> NormalDN | None:
    """``dn`` in a form that compares equal for equal DNs, or None if it is not a DN.

    Attribute types and values compare ignoring case; whitespace around ``,``, ``+`` and ``=`` and runs
    of spaces inside values are ignored; escapes (``\\,`` and ``\\2C``) and quoted values are undone;
    the parts of a multi-valued RDN may come in any order.
    """
    rdns: list[tuple[tuple[str, str], ...]] = []
    avas: list[tuple[str, str]] = []
    current: list[str] = []
    for part in [*_DN_TOKEN.findall(dn), ","]:
        if part not in {",", "+"}:
            current.append(part)
            continue
        kind, equals, raw = "".join(current).partition("=")
        value = _unescape(raw.strip())
        if not equals or _ATTR_TYPE.fullmatch(kind.strip()) is None or value is None:
            return None
        avas.append((kind.strip().lower(), " ".join(value.casefold().split())))
        current = []
        if part == ",":
            rdns.append(tuple(sorted(avas)))
            avas = []
    return tuple(rdns)


def _unescape(value: str) -> str | None:
    """``value`` with its quotes and escapes undone, or None if it is malformed."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    data = bytearray()
    position = 0
    for match in [*_ESCAPE.finditer(value), None]:
        literal = value[position : match.start() if match else len(value)]
        if "\\" in literal:
            return None
        data += literal.encode()
        if match:
            data += bytes.fromhex(match[1]) if len(match[1]) == 2 else match[1].encode()
            position = match.end()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _normal(entry: Entry) -> NormalDN:
    dn = normalize_dn(entry.dn)
    assert dn is not None, "parse_ldif keeps only entries with a valid DN"
    return dn


# --- mapping -------------------------------------------------------------------------------------------


class _Mapper:
    """Turns parsed entries into users and groups, recording problems and warnings on the way."""

    def __init__(self, file: str, problems: Problems, anchor: str, disabled: str | None) -> None:
        self.file = file
        self.problems = problems
        self.anchor_attribute = anchor
        self.disabled_attribute = disabled
        self.anchor_lines: dict[str, int] = {}
        self.user_dns: dict[NormalDN, str] = {}
        self.group_dns: dict[NormalDN, str] = {}
        self.uids: dict[str, str] = {}
        self.uid_lines: dict[str, int] = {}

    def snapshot(self, entries: list[Entry]) -> Snapshot:
        if not entries and not self.problems:
            self._add(1, "file holds no entries")
        seen: dict[NormalDN, Entry] = {}
        people: list[tuple[Entry, str | None]] = []
        groups: list[tuple[Entry, str | None]] = []
        for entry in entries:
            dn = _normal(entry)
            if (first := seen.setdefault(dn, entry)) is not entry:
                self._add(entry.line, f"dn: duplicate entry (first on line {first.line})")
                continue
            classes = {str(value).lower() for _, value in entry.get("objectClass")}
            if not classes:
                self.problems.warn(self.file, entry.line, "entry has no objectClass; skipped")
            elif classes & USER_CLASSES and classes & GROUP_CLASSES:
                self._add(entry.line, "entry is both a person and a group")
            elif classes & USER_CLASSES:
                people.append((entry, self._anchor(entry)))
            elif classes & GROUP_CLASSES:
                groups.append((entry, self._anchor(entry)))
        for entry, anchor in groups:
            if anchor is not None:
                self.group_dns[_normal(entry)] = anchor
        users = [user for entry, anchor in people if (user := self._user(entry, anchor)) is not None]
        built = [self._group(entry, anchor, seen) for entry, anchor in groups]
        self.problems.raise_if_any()
        return Snapshot(
            users=tuple(users),
            groups=tuple(group for group in built if group is not None),
            warnings=self.problems.warnings,
        )

    def _user(self, entry: Entry, anchor: str | None) -> SourceUser | None:
        before = len(self.problems)
        username = self._naming(entry, "uid")
        if username is not None:
            line = next(line for line, value in entry.get("uid") if value == username)
            first = self.uid_lines.setdefault(username.casefold(), line)
            if first != line:
                self._add(line, f"uid: duplicate username {username!r} (first on line {first})")
        email = self._first(entry, "mail")
        if email is not None and not is_email(email):
            self._add(entry.get("mail")[0][0], f"mail: {email!r} is not an email address")
        extra = sorted(
            (name, value)
            for name in EXTRA_ATTRIBUTES
            for _, value in self._texts_with_lines(entry, name)
            if value
        )
        display_name = self._first(entry, "displayName") or self._first(entry, "cn")
        given_name, family_name = self._first(entry, "givenName"), self._first(entry, "sn")
        phone = self._first(entry, "telephoneNumber")
        if anchor is None or username is None or len(self.problems) > before:
            return None
        self.user_dns[_normal(entry)] = anchor
        self.uids[username.casefold()] = anchor
        return SourceUser(
            anchor=anchor,
            username=username,
            email=email,
            given_name=given_name,
            family_name=family_name,
            display_name=display_name,
            phone=phone,
            disabled=self.disabled_attribute is not None and bool(entry.get(self.disabled_attribute)),
            dn=entry.dn,
            attributes=tuple(extra),
        )

    def _group(self, entry: Entry, anchor: str | None, seen: dict[NormalDN, Entry]) -> SourceGroup | None:
        before = len(self.problems)
        name = self._naming(entry, "cn")
        users: set[str] = set()
        nested: set[str] = set()
        for attribute in ("member", "uniqueMember"):
            for line, value in self._texts_with_lines(entry, attribute):
                if attribute == "uniqueMember":
                    value = _UNIQUE_MEMBER_UID.sub("", value)  # noqa: PLW2901 (drop the optional UID)
                if not value.strip():
                    continue
                dn = normalize_dn(value)
                if dn is None:
                    self._add(line, f"{attribute}: {value!r} is not a valid DN")
                elif dn in self.user_dns:
                    users.add(self.user_dns[dn])
                elif dn in self.group_dns:
                    nested.add(self.group_dns[dn])
                else:
                    why = "is not a user or group" if dn in seen else "is not in this file"
                    self.problems.warn(self.file, line, f"{attribute}: {value!r} {why}; skipped")
        for line, uid in self._texts_with_lines(entry, "memberUid"):
            if (user := self.uids.get(uid.casefold())) is not None:
                users.add(user)
            else:
                self.problems.warn(
                    self.file, line, f"memberUid: no user with uid {uid!r} in this file; skipped"
                )
        if anchor is None or name is None or len(self.problems) > before:
            return None
        return SourceGroup(
            anchor=anchor,
            name=name,
            description=self._first(entry, "description"),
            dn=entry.dn,
            member_users=frozenset(users),
            member_groups=frozenset(nested),
        )

    def _anchor(self, entry: Entry) -> str | None:
        """The entry's anchor value if it has exactly one, not seen before; else record why not."""
        attribute = self.anchor_attribute
        values = self._texts_with_lines(entry, attribute)
        if not values or not values[0][1]:
            self._add(entry.line, f"entry has no {attribute}")
            return None
        if len(values) > 1:
            self._add(values[1][0], f"{attribute}: {len(values)} values; an anchor must have exactly one")
            return None
        line, anchor = values[0]
        if (first := self.anchor_lines.setdefault(anchor, line)) != line:
            self._add(line, f"{attribute}: duplicate {attribute} {anchor!r} (first on line {first})")
            return None
        return anchor

    def _naming(self, entry: Entry, attribute: str) -> str | None:
        """The entry's ``attribute`` (the RDN's value when it has several), or None if it has none."""
        values = [value for _, value in self._texts_with_lines(entry, attribute) if value]
        if not values:
            self._add(entry.line, f"entry has no {attribute}")
            return None
        rdn = dict(_normal(entry)[0])
        for value in values:
            if " ".join(value.casefold().split()) == rdn.get(attribute.lower()):
                return value
        if len(values) > 1:
            self.problems.warn(
                self.file, entry.line, f"{attribute}: {len(values)} values; using {values[0]!r}"
            )
        return values[0]

    def _first(self, entry: Entry, attribute: str) -> str | None:
        return next((value for _, value in self._texts_with_lines(entry, attribute) if value), None)

    def _texts_with_lines(self, entry: Entry, attribute: str) -> list[tuple[int, str]]:
        """The entry's values of ``attribute`` that are text; a binary one is recorded as a problem."""
        texts: list[tuple[int, str]] = []
        for line, value in entry.get(attribute):
            if isinstance(value, bytes):
                self._add(line, f"{attribute}: value is not UTF-8 text")
            else:
                texts.append((line, value))
        return texts

    def _add(self, line: int, message: str) -> None:
        self.problems.add(self.file, line, message)

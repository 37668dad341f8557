"""The CSV file source: a users CSV and an optional groups CSV, read into a :class:`Snapshot`.

users CSV (UTF-8, header row required; column names are matched case-insensitively):

==============  ==========================================================================
``id``          required, unique: the anchor that ties the user to this source
``username``    required, unique ignoring case
``email``       optional; must look like ``name@domain.tld``
``given_name``, ``family_name``, ``display_name``, ``phone``: optional text
``disabled``    optional: true/false, yes/no, 1/0 (any case); empty means false
anything else   kept in ``SourceUser.attributes`` as sorted ``(column, value)`` pairs, empty values dropped
==============  ==========================================================================

groups CSV: ``id`` and ``name`` (both required and unique), optional ``description``, ``members`` (user
ids separated by ``;``) and ``member_groups`` (group ids separated by ``;``). Every member must be an id in
the files (CSV ids are self-contained, so a dangling one is an error); a group may contain itself or form
a cycle, which is recorded as is (the resolver protects against cycles).

Values are stripped of surrounding whitespace; rows whose cells are all empty are skipped. Line numbers
in messages are the physical line a row starts on (a quoted cell may span lines).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from pathlib import Path

from syncd.domain.records import Snapshot, SourceGroup, SourceUser
from syncd.sources.file import Problems, is_email, read_text

USER_COLUMNS = ("id", "username", "email", "given_name", "family_name", "display_name", "phone", "disabled")
GROUP_COLUMNS = ("id", "name", "description", "members", "member_groups")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0", ""})

Row = dict[str, str]
"""One data row: known columns under their canonical (lower-case) name, others as written."""


def read_csv(users_path: Path, groups_path: Path | None = None) -> Snapshot:
    """Read a users CSV and, optionally, a groups CSV into a complete :class:`Snapshot`.

    Raises :class:`~syncd.errors.SourceError` listing every problem in either file (with file name and
    line) if there is any; nothing is returned half-read.
    """
    problems = Problems()
    users, user_lines = _read_users(users_path, problems)
    groups: list[SourceGroup] = []
    if groups_path is not None:
        groups = _read_groups(groups_path, problems, user_lines)
    problems.raise_if_any()
    return Snapshot(users=tuple(users), groups=tuple(groups), warnings=problems.warnings)


def _read_users(path: Path, problems: Problems) -> tuple[list[SourceUser], dict[str, int]]:
    """The valid users of ``path``, and the line of every id seen (valid row or not) for member checks."""
    name = path.name
    users: list[SourceUser] = []
    id_lines: dict[str, int] = {}
    username_lines: dict[str, int] = {}
    for line, row in _rows(path, USER_COLUMNS, ("id", "username"), problems):
        before = len(problems)
        anchor = _check_id(name, line, row["id"], id_lines, problems)
        username = row["username"]
        if not username:
            problems.add(name, line, "username: missing")
        elif (first := username_lines.setdefault(username.casefold(), line)) != line:
            problems.add(name, line, f"username: duplicate username {username!r} (first on line {first})")
        email = row.get("email", "")
        if email and not is_email(email):
            problems.add(name, line, f"email: {email!r} is not an email address")
        flag = row.get("disabled", "").casefold()
        if flag not in _TRUE | _FALSE:
            problems.add(
                name, line, f"disabled: {row['disabled']!r} is not one of true/false, yes/no, 1/0 or empty"
            )
        if len(problems) > before or anchor is None:
            continue
        extra = sorted((col, value) for col, value in row.items() if col not in USER_COLUMNS and value)
        users.append(
            SourceUser(
                anchor=anchor,
                username=username,
                email=email or None,
                given_name=row.get("given_name") or None,
                family_name=row.get("family_name") or None,
                display_name=row.get("display_name") or None,
                phone=row.get("phone") or None,
                disabled=flag in _TRUE,
                attributes=tuple(extra),
            )
        )
    return users, id_lines


def _read_groups(path: Path, problems: Problems, user_lines: Mapping[str, int]) -> list[SourceGroup]:
    name = path.name
    id_lines: dict[str, int] = {}
    name_lines: dict[str, int] = {}
    parsed: list[tuple[int, Row, str | None]] = []
    ignored: set[str] = set()
    for line, row in _rows(path, GROUP_COLUMNS, ("id", "name"), problems):
        anchor = _check_id(name, line, row["id"], id_lines, problems)
        group_name = row["name"]
        if not group_name:
            problems.add(name, line, "name: missing")
        elif (first := name_lines.setdefault(group_name.casefold(), line)) != line:
            problems.add(name, line, f"name: duplicate group name {group_name!r} (first on line {first})")
        for col in sorted(set(row) - set(GROUP_COLUMNS) - ignored):
            if row[col]:
                ignored.add(col)
                problems.warn(name, line, f"{col}: groups have no such column; its values are ignored")
        parsed.append((line, row, anchor))

    groups: list[SourceGroup] = []
    for line, row, anchor in parsed:
        before = len(problems)
        users = _members(name, line, row, "members", user_lines, "user", problems)
        nested = _members(name, line, row, "member_groups", id_lines, "group", problems)
        if anchor is None or len(problems) > before:
            continue
        groups.append(
            SourceGroup(
                anchor=anchor,
                name=row["name"],
                description=row.get("description") or None,
                member_users=users,
                member_groups=nested,
            )
        )
    return groups


def _check_id(file: str, line: int, anchor: str, seen: dict[str, int], problems: Problems) -> str | None:
    """``anchor`` if it is a usable, first-seen id; otherwise record why not and return None."""
    if not anchor:
        problems.add(file, line, "id: missing")
        return None
    if ";" in anchor:
        problems.add(file, line, f"id: {anchor!r} contains ';', which separates ids in groups.csv")
        return None
    first = seen.setdefault(anchor, line)
    if first != line:
        problems.add(file, line, f"id: duplicate id {anchor!r} (first on line {first})")
        return None
    return anchor


def _members(
    file: str,
    line: int,
    row: Row,
    column: str,
    known: Mapping[str, int],
    kind: str,
    problems: Problems,
) -> frozenset[str]:
    ids = [part.strip() for part in row.get(column, "").split(";")]
    for member in ids:
        if member and member not in known:
            problems.add(file, line, f"{column}: no {kind} with id {member!r}")
    return frozenset(member for member in ids if member)


def _rows(
    path: Path, columns: tuple[str, ...], required: tuple[str, ...], problems: Problems
) -> Iterator[tuple[int, Row]]:
    """Yield ``(line, row)`` for each non-blank data row; header and row-shape problems are recorded.

    Stops at a problem that makes the rest of the file unreadable (a bad header, broken quoting).
    """
    name = path.name
    reader = csv.reader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            problems.add(name, 1, "file is empty; a header row is required")
            return
        keys = _header(name, header, columns, required, problems)
        if keys is None:
            return
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(keys):
                problems.add(name, line, f"row has {len(cells)} fields, the header has {len(keys)}")
                continue
            yield line, {key: cell.strip() for key, cell in zip(keys, cells, strict=True)}
    except csv.Error as exc:
        problems.add(name, reader.line_num or 1, f"not valid CSV: {exc}")


def _header(
    file: str, header: list[str], columns: tuple[str, ...], required: tuple[str, ...], problems: Problems
) -> list[str] | None:
    """The row keys for ``header`` (known columns in canonical case), or None if it is unusable."""
    keys: list[str] = []
    ok = True
    for position, raw in enumerate(header, start=1):
        cell = raw.strip()
        key = cell.casefold() if cell.casefold() in columns else cell
        if not key:
            problems.add(file, 1, f"header: column {position} has no name")
            ok = False
        elif key in keys:
            problems.add(file, 1, f"header: column {cell!r} appears twice")
            ok = False
        keys.append(key)
    for column in required:
        if column not in keys:
            problems.add(file, 1, f"header: missing required column {column!r}")
            ok = False
    return keys if ok else None

"""What the file source's readers share: reading a file as text, and reporting bad input.

The file source reads CSV (:mod:`syncd.sources.csv_file`) and LDIF (:mod:`syncd.sources.ldif_file`)
exports into the same :class:`~syncd.domain.records.Snapshot` a directory read gives, so a demo or an
air-gapped site works without an LDAP server. Both readers are exported from :mod:`syncd.sources`.

Bad input is never half-applied: a reader collects every problem of its file(s), one line each in the
form ``users.csv:7: email: 'bob' is not an email address``, and raises a single
:class:`~syncd.errors.SourceError` listing them (the first :data:`MAX_LISTED`, then a count of the rest).
"""

from __future__ import annotations

import re
from pathlib import Path

from syncd.errors import SourceError

MAX_LISTED = 20
"""How many problems a :class:`SourceError` message lists before it only counts the rest."""

_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")


def is_email(value: str) -> bool:
    """Whether ``value`` looks like a deliverable address: ``local@domain.tld``, no spaces, one ``@``."""
    return _EMAIL.fullmatch(value) is not None


def read_text(path: Path) -> str:
    """The whole of ``path`` as text: UTF-8, a leading byte order mark dropped.

    Raises :class:`SourceError` naming the file (and, for bad UTF-8, the line) if it can't be read.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise SourceError(f"{path.name}: file not found ({path})") from exc
    except OSError as exc:
        raise SourceError(f"{path.name}: can't read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(
            f"{path.name}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from exc
    return text.removeprefix("\ufeff")


class Problems:
    """The problems found in one read, each tied to a file and a line, raised together at the end."""

    def __init__(self) -> None:
        self._items: list[tuple[str, int, int, str]] = []
        self._warnings: list[str] = []

    def add(self, file: str, line: int, message: str) -> None:
        """Record one problem at ``file:line``; the message names the field first when there is one."""
        self._items.append((file, line, len(self._items), message))

    def warn(self, file: str, line: int, message: str) -> None:
        """Record something worth telling the admin that doesn't stop the read."""
        self._warnings.append(f"{file}:{line}: {message}")

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(self._warnings)

    def raise_if_any(self) -> None:
        """Raise one :class:`SourceError` listing every problem (by file, then line), if there are any."""
        if not self._items:
            return
        files: dict[str, int] = {}
        for file, *_ in self._items:
            files.setdefault(file, len(files))
        ordered = sorted(self._items, key=lambda item: (files[item[0]], item[1], item[2]))
        count = len(ordered)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{', '.join(files)}: {count} {noun}, nothing was read:"]
        lines += [f"{file}:{line}: {message}" for file, line, _, message in ordered[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"... and {count - MAX_LISTED} more")
        raise SourceError("\n".join(lines))

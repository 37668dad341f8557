"""Which reader serves which configured source (the shell calls this; the engine gets the callable)."""

from __future__ import annotations

from collections.abc import Callable

from syncd.config.sources import FileSource, LdapSource, ScimSource, SourceBase
from syncd.domain.records import Snapshot
from syncd.errors import UsageError
from syncd.sources.csv_file import read_csv
from syncd.sources.ldap import LdapReader
from syncd.sources.ldif_file import read_ldif


def reader_for(source: SourceBase) -> Callable[[], Snapshot]:
    """A no-argument callable that reads the whole source into a :class:`Snapshot`.

    The LDAP reader also reads changes since a cursor (``read_changes``, ``cursor_kind``): the engine
    uses that for incremental runs.
    """
    if isinstance(source, FileSource):
        if source.format == "csv":
            return lambda: read_csv(source.users, source.groups)
        return lambda: read_ldif(
            source.users,
            anchor_attribute=source.anchor_attribute,
            disabled_attribute=source.disabled_attribute,
        )
    if isinstance(source, ScimSource):
        raise UsageError(
            f"source {source.name} is a SCIM client: it pushes changes, there is nothing to pull"
        )
    if isinstance(source, LdapSource):
        return LdapReader(source)
    raise UsageError(f"source {source.name}: unknown kind")


def kind_of(source: SourceBase) -> str:
    """The audit-actor prefix of a source: ``ldap``, ``scim`` or ``file``."""
    return str(getattr(source, "kind", "source"))

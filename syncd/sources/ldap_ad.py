"""Active Directory specifics: DC identity for uSNChanged deltas, tombstones, range retrieval.

Incremental runs against AD follow Microsoft's "Polling for Changes Using uSNChanged": remember which DC
answered (``dsServiceName``), its ``invocationId`` and its ``highestCommittedUSN`` read *before* the
queries; next time ask that DC for ``uSNChanged`` above it. Another DC, or the same DC with a new
invocationId (restored from backup), makes the cursor unusable: the engine runs a full sync instead.

Deletions: tombstones (``isDeleted=TRUE`` below ``CN=Deleted Objects``, Show Deleted control) name the
objects deleted since the stored USN, but an account without rights on them gets *success and no
entries* (seen on Samba; AD hides them the same way), which can't be told from "nothing was deleted". So
every AD delta also compares the anchor set (an objectGUID-only read of the scope) and the plan disables
what is linked but absent; tombstones only add what that comparison also finds. Objects that left
scope (moved to another OU, no longer matching the filter) are found the same way.

Group members beyond AD's ``MaxValRange`` (1,500) come as ``member;range=0-1499``: the rest is fetched
with base-scope reads of ``member;range=<next>-*`` until a range ends in ``*``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import ldap3

from syncd.domain.records import CursorExpired
from syncd.sources.ldap_entries import GroupCollector, RawGroup, first_text
from syncd.sources.ldap_read import Incomplete, Search, paged, single

SHOW_DELETED = ("1.2.840.113556.1.4.417", True, None)
IN_CHAIN = "1.2.840.113556.1.4.1941"  # LDAP_MATCHING_RULE_IN_CHAIN
MAX_RANGE_ROUNDS = 10_000
INSUFFICIENT_ACCESS = 50
NO_SUCH_OBJECT = 32


@dataclass(frozen=True, slots=True)
class DcState:
    """Which DC answers, its database identity, and how far its changes go."""

    server: str
    invocation_id: str
    highest_usn: int
    naming_context: str

    def cursor(self) -> dict[str, Any]:
        return {
            "v": 1,
            "feed": "usn",
            "server": self.server,
            "invocation_id": self.invocation_id,
            "usn": self.highest_usn,
        }

    def check(self, cursor: dict[str, Any]) -> int:
        """The USN to continue from, or :class:`CursorExpired` if another DC or database answers."""
        if cursor.get("server") != self.server:
            raise CursorExpired(
                f"another domain controller answers ({self.server}, was {cursor.get('server')})"
            )
        if cursor.get("invocation_id") != self.invocation_id:
            raise CursorExpired(f"the domain controller's invocationId changed (restored?): {self.server}")
        usn = int(cursor.get("usn", -1))
        if usn < 0 or usn > self.highest_usn:
            raise CursorExpired(
                f"stored USN {usn} is not below the DC's highestCommittedUSN {self.highest_usn}"
            )
        return usn


def dc_state(connection: ldap3.Connection, time_limit: int) -> DcState:
    """Read the root DSE and the DC's NTDS Settings (its invocationId)."""
    root = single(
        connection,
        Search(
            "root DSE",
            "",
            "(objectClass=*)",
            ["dsServiceName", "highestCommittedUSN", "defaultNamingContext"],
            "base",
        ),
        time_limit=time_limit,
    )
    attributes = root[0].attributes if root else {}
    service = first_text(attributes, "dsservicename")
    usn = first_text(attributes, "highestcommittedusn")
    naming = first_text(attributes, "defaultnamingcontext")
    if service is None or usn is None or naming is None:
        raise Incomplete("the root DSE has no dsServiceName/highestCommittedUSN: is this Active Directory?")
    ntds = single(
        connection,
        Search("DC settings", service, "(objectClass=*)", ["invocationId"], "base"),
        time_limit=time_limit,
    )
    raw = ntds[0].attributes.get("invocationid") if ntds else None
    if not raw or len(raw[0]) != 16:
        raise Incomplete(f"can't read the invocationId of {service}")
    return DcState(service, str(uuid.UUID(bytes_le=raw[0])), int(usn), naming)


def guid_value(anchor: str) -> str:
    """An objectGUID anchor as an RFC 4515 escaped binary filter value (``\\1a\\b5…``)."""
    return "".join(f"\\{byte:02x}" for byte in uuid.UUID(anchor).bytes_le)


def complete_ranges(
    connection: ldap3.Connection, groups: GroupCollector, group: RawGroup, time_limit: int
) -> None:
    """Fetch the member values of an AD group beyond the first range into ``group`` (via ``groups``)."""
    for _ in range(MAX_RANGE_ROUNDS):
        attribute = f"member;range={group.values_read}-*"
        entries = single(
            connection,
            Search(f"members of {group.name}", group.dn, "(objectClass=*)", [attribute], "base"),
            time_limit=time_limit,
        )
        if not entries:
            raise Incomplete(f"group {group.dn} vanished while its members were read")
        ranged = [(k, v) for k, v in entries[0].attributes.items() if k.startswith("member;range=")]
        if not ranged:
            return
        key, values = ranged[0]
        groups.add_members(group, values)
        if key.endswith("-*") or not values:
            return
    raise Incomplete(f"group {group.dn}: range retrieval did not end")


def tombstones(
    connection: ldap3.Connection,
    naming_context: str,
    usn: int,
    *,
    page_size: int,
    time_limit: int,
    controls: tuple[Any, ...] = (),
) -> set[str]:
    """Anchors of objects deleted since ``usn`` that this account may see (maybe none: see the module)."""
    search = Search(  # tombstones of the domain live one level below CN=Deleted Objects
        "deleted objects",
        f"CN=Deleted Objects,{naming_context}",
        f"(&(isDeleted=TRUE)(uSNChanged>={usn + 1}))",
        ["objectGUID"],
        "one",
        (SHOW_DELETED, *controls),
    )
    found: set[str] = set()
    try:
        for entry in paged(connection, search, page_size=page_size, time_limit=time_limit):
            raw = entry.attributes.get("objectguid")
            if raw and len(raw[0]) == 16:
                found.add(str(uuid.UUID(bytes_le=raw[0])))
    except Incomplete as error:
        if error.result_code in (INSUFFICIENT_ACCESS, NO_SUCH_OBJECT):
            return set()
        raise
    return found

"""RFC 4533 content synchronisation (syncrepl), refreshOnly mode, as a consumer.

ldap3 2.9 knows the OIDs but has no implementation. The request control and the syncInfo / syncDone
values are encoded and decoded with pyasn1 here (they are rare: one request, a few messages per refresh);
the per-entry syncState control is decoded by hand because a present phase sends one per entry.

A refresh with a stored cookie returns entries added or changed since (state ``add`` or ``modify``, with
attributes) and deletions: as ``delete`` states, or as ``syncIdSet`` messages with ``refreshDeletes``
(OpenLDAP's syncprov answers from its session log). When the server can't tell deletions (the cookie is
older than its session log) it runs a *present phase* instead: every unchanged entry is named as present
and the consumer must drop whatever was not named; :class:`Refresh` records which of the two happened.
Entry UUIDs are 16 raw bytes in network order (``uuid.UUID(bytes=…)`` gives OpenLDAP's entryUUID text).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import namedtype, tag, univ

from syncd.sources.ldap_ber import BerError, Entry

SYNC_REQUEST = "1.3.6.1.4.1.4203.1.9.1.1"
SYNC_STATE = "1.3.6.1.4.1.4203.1.9.1.2"
SYNC_DONE = "1.3.6.1.4.1.4203.1.9.1.3"
SYNC_INFO = "1.3.6.1.4.1.4203.1.9.1.4"
REFRESH_REQUIRED = 4096  # e-syncRefreshRequired: the cookie can't be used, start over

PRESENT, ADD, MODIFY, DELETE = 0, 1, 2, 3


class SyncRequestValue(univ.Sequence):  # type: ignore[misc]  # pyasn1 has no type hints
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("mode", univ.Enumerated(namedValues={"refreshOnly": 1, "refreshAndPersist": 3})),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("reloadHint", univ.Boolean(False)),
    )


class SyncDoneValue(univ.Sequence):  # type: ignore[misc]  # pyasn1 has no type hints
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
    )


def _tagged(number: int, value: univ.Sequence) -> univ.Sequence:
    return value.subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatConstructed, number))


class _RefreshPhase(univ.Sequence):  # type: ignore[misc]  # pyasn1 has no type hints
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDone", univ.Boolean(True)),
    )


class _SyncIdSet(univ.Sequence):  # type: ignore[misc]  # pyasn1 has no type hints
    componentType = namedtype.NamedTypes(
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
        namedtype.DefaultedNamedType("refreshDeletes", univ.Boolean(False)),
        namedtype.NamedType("syncUUIDs", univ.SetOf(componentType=univ.OctetString())),
    )


class SyncInfoValue(univ.Choice):  # type: ignore[misc]  # pyasn1 has no type hints
    componentType = namedtype.NamedTypes(
        namedtype.NamedType(
            "newcookie",
            univ.OctetString().subtype(implicitTag=tag.Tag(tag.tagClassContext, tag.tagFormatSimple, 0)),
        ),
        namedtype.NamedType("refreshDelete", _tagged(1, _RefreshPhase())),
        namedtype.NamedType("refreshPresent", _tagged(2, _RefreshPhase())),
        namedtype.NamedType("syncIdSet", _tagged(3, _SyncIdSet())),
    )


def request_control(cookie: bytes | None) -> tuple[str, bool, bytes]:
    """The critical refreshOnly sync request control, with ``cookie`` if there is one."""
    value = SyncRequestValue()
    value["mode"] = "refreshOnly"
    if cookie:
        value["cookie"] = cookie
    value["reloadHint"] = False
    return (SYNC_REQUEST, True, encoder.encode(value))


def uuid_text(raw: bytes) -> str:
    """An RFC 4533 syncUUID as OpenLDAP writes entryUUID (``uuid.UUID(bytes=raw)``)."""
    if len(raw) != 16:
        raise BerError(f"syncUUID of {len(raw)} bytes")
    return str(uuid.UUID(bytes=raw))


def sync_state(value: bytes | None) -> tuple[int, str, bytes | None]:
    """Decode a syncState control value → (state, entry UUID text, cookie or None)."""
    if not value or value[0] != 0x30:
        raise BerError("syncState control without a value")
    try:
        i = 2 if value[1] < 0x80 else 2 + (value[1] & 0x7F)
        if value[i] != 0x0A:
            raise BerError("syncState without a state")
        size = value[i + 1]
        state = int.from_bytes(value[i + 2 : i + 2 + size], "big")
        i += 2 + size
        if value[i] != 0x04 or value[i + 1] != 16:
            raise BerError("syncState without a 16-byte entryUUID")
        entry_uuid = uuid_text(value[i + 2 : i + 18])
        i += 18
        cookie: bytes | None = None
        if i < len(value) and value[i] == 0x04:
            size, start = value[i + 1], i + 2
            if size & 0x80:
                count = size & 0x7F
                size, start = int.from_bytes(value[i + 2 : i + 2 + count], "big"), i + 2 + count
            cookie = value[start : start + size]
    except IndexError as error:
        raise BerError("truncated syncState control") from error
    return state, entry_uuid, cookie


@dataclass(slots=True)
class Refresh:
    """What one refreshOnly search said, fed message by message (:meth:`entry`, :meth:`info`, :meth:`done`).

    Added and changed entries go to ``on_change`` as they arrive (nothing accumulates but UUIDs).
    """

    on_change: Callable[[Entry, str], None]
    deleted: set[str] = field(default_factory=set)
    mentioned: set[str] = field(default_factory=set)
    present_named: bool = False
    refresh_deletes: bool | None = None
    cookie: bytes | None = None
    cookie_rejected: bool = False

    @property
    def present_phase(self) -> bool:
        """Whether deletions must be found as "not mentioned" (RFC 4533 3.3.1) rather than read.

        Without refreshDeletes the refresh was a present phase. Only a refresh that named entries counts:
        one that named nothing is read as "nothing changed", never as "everything was deleted".
        """
        return self.present_named or (self.refresh_deletes is False and bool(self.mentioned))

    def entry(self, entry: Entry) -> None:
        """A search result entry carrying a syncState control."""
        state, entry_uuid, cookie = sync_state(entry.controls.get(SYNC_STATE))
        if state in (ADD, MODIFY):
            self.mentioned.add(entry_uuid)
            self.on_change(entry, entry_uuid)
        elif state == DELETE:
            self.deleted.add(entry_uuid)
        else:
            self.mentioned.add(entry_uuid)
            self.present_named = True
        if cookie:
            self.cookie = cookie

    def info(self, value: bytes | None) -> None:
        """A syncInfo intermediate response."""
        if not value:
            raise BerError("syncInfo without a value")
        try:
            decoded, _ = decoder.decode(value, asn1Spec=SyncInfoValue())
        except PyAsn1Error as error:
            raise BerError(f"malformed syncInfo: {error}") from error
        kind = decoded.getName()
        part = decoded.getComponent()
        if kind == "newcookie":
            self.cookie = bytes(part)
            return
        if part["cookie"].isValue:
            self.cookie = bytes(part["cookie"])
        if kind == "refreshPresent":
            self.present_named = True
        elif kind == "syncIdSet":
            uuids = {uuid_text(bytes(raw)) for raw in part["syncUUIDs"]}
            if bool(part["refreshDeletes"]):
                self.deleted |= uuids
            else:
                self.mentioned |= uuids
                self.present_named = True

    def done(self, value: bytes | None) -> None:
        """The syncDone control of the final result.

        An empty cookie there means the server did not accept ours and sent its whole content as if
        this were a first refresh (OpenLDAP does that for a malformed cookie): ``cookie_rejected``.
        """
        if not value:
            self.refresh_deletes = False
            return
        try:
            decoded, _ = decoder.decode(value, asn1Spec=SyncDoneValue())
        except PyAsn1Error as error:
            raise BerError(f"malformed syncDone: {error}") from error
        if decoded["cookie"].isValue:
            cookie = bytes(decoded["cookie"])
            self.cookie_rejected = not cookie
            self.cookie = cookie or self.cookie
        self.refresh_deletes = bool(decoded["refreshDeletes"])

"""RFC 4533 pieces: the request control, syncState/syncInfo/syncDone decoding, and how a refresh is read
(deletions reported vs. a present phase, rejected cookies). Values are encoded with pyasn1 from the
RFC's ASN.1, independently of the decoders under test."""

from __future__ import annotations

import uuid

import pytest
from pyasn1.codec.ber import decoder, encoder
from pyasn1.type import namedtype, univ

from syncd.sources.ldap_ber import BerError, Entry
from syncd.sources.ldap_syncrepl import (
    ADD,
    DELETE,
    MODIFY,
    PRESENT,
    SYNC_STATE,
    Refresh,
    SyncDoneValue,
    SyncInfoValue,
    SyncRequestValue,
    request_control,
    sync_state,
    uuid_text,
)


class SyncStateValue(univ.Sequence):  # type: ignore[misc]
    componentType = namedtype.NamedTypes(
        namedtype.NamedType("state", univ.Enumerated()),
        namedtype.NamedType("entryUUID", univ.OctetString()),
        namedtype.OptionalNamedType("cookie", univ.OctetString()),
    )


U1, U2, U3 = (uuid.uuid4() for _ in range(3))


def state(value: int, entry_uuid: uuid.UUID, cookie: bytes | None = None) -> bytes:
    sv = SyncStateValue()
    sv["state"] = value
    sv["entryUUID"] = entry_uuid.bytes
    if cookie is not None:
        sv["cookie"] = cookie
    return bytes(encoder.encode(sv))


def entry(value: int, entry_uuid: uuid.UUID, cookie: bytes | None = None) -> Entry:
    return Entry(f"uid={entry_uuid},dc=x", {"uid": [b"x"]}, {SYNC_STATE: state(value, entry_uuid, cookie)})


def info(kind: str, **fields: object) -> bytes:
    value = SyncInfoValue()
    if kind == "newcookie":
        value["newcookie"] = fields["cookie"]
    else:
        part = value.getComponentByName(kind)
        for name, field_value in fields.items():
            if name == "uuids":
                for i, u in enumerate(field_value):  # type: ignore[arg-type]
                    part["syncUUIDs"].setComponentByPosition(i, u.bytes)
            else:
                part[name] = field_value
    return bytes(encoder.encode(value))


def sync_done(cookie: bytes | None, refresh_deletes: bool) -> bytes:
    value = SyncDoneValue()
    if cookie is not None:
        value["cookie"] = cookie
    value["refreshDeletes"] = refresh_deletes
    return bytes(encoder.encode(value))


def refresh() -> tuple[Refresh, list[str]]:
    changed: list[str] = []
    return Refresh(on_change=lambda _entry, entry_uuid: changed.append(entry_uuid)), changed


def test_request_control_is_critical_refresh_only_with_the_cookie() -> None:
    oid, critical, value = request_control(b"rid=000,csn=1")
    decoded, _ = decoder.decode(value, asn1Spec=SyncRequestValue())
    assert (oid, critical) == ("1.3.6.1.4.1.4203.1.9.1.1", True)
    assert (int(decoded["mode"]), bytes(decoded["cookie"]), bool(decoded["reloadHint"])) == (
        1,
        b"rid=000,csn=1",
        False,
    )
    first, _ = decoder.decode(request_control(None)[2], asn1Spec=SyncRequestValue())
    assert not first["cookie"].isValue


@pytest.mark.parametrize("value", [PRESENT, ADD, MODIFY, DELETE])
@pytest.mark.parametrize("cookie", [None, b"", b"c" * 200])
def test_sync_state_decodes_what_pyasn1_encodes(value: int, cookie: bytes | None) -> None:
    assert sync_state(state(value, U1, cookie)) == (value, str(U1), cookie)


@pytest.mark.parametrize(
    "bad", [None, b"", b"\x04\x00", b"\x30\x03\x0a\x01\x01", b"\x30\x05\x0a\x01\x01\x04\x00"]
)
def test_malformed_sync_state(bad: bytes | None) -> None:
    with pytest.raises(BerError):
        sync_state(bad)


def test_uuid_text_is_openldaps_entryuuid() -> None:
    assert uuid_text(U1.bytes) == str(U1)
    with pytest.raises(BerError):
        uuid_text(b"short")


def test_changes_and_deletes_from_the_session_log() -> None:
    r, changed = refresh()
    r.entry(entry(ADD, U1))
    r.entry(entry(MODIFY, U2, b"cookie-1"))
    r.info(info("syncIdSet", cookie=b"cookie-2", refreshDeletes=True, uuids=[U3]))
    r.done(sync_done(b"cookie-3", refresh_deletes=True))
    assert changed == [str(U1), str(U2)]
    assert r.deleted == {str(U3)} and not r.present_phase
    assert (r.cookie, r.cookie_rejected) == (b"cookie-3", False)


def test_nothing_changed_keeps_no_cookie() -> None:
    r, changed = refresh()
    r.done(sync_done(None, refresh_deletes=True))
    assert (changed, r.deleted, r.present_phase, r.cookie) == ([], set(), False, None)


def test_present_phase_names_what_is_still_there() -> None:
    r, changed = refresh()
    r.entry(entry(ADD, U1))
    r.entry(entry(PRESENT, U2))
    r.info(info("syncIdSet", refreshDeletes=False, uuids=[U3]))
    r.info(info("refreshPresent", cookie=b"c2", refreshDone=True))
    r.done(sync_done(b"c3", refresh_deletes=False))
    assert r.present_phase and r.mentioned == {str(U1), str(U2), str(U3)}
    assert changed == [str(U1)]


def test_old_cookie_reload_is_a_present_phase() -> None:
    """OpenLDAP answers a cookie older than its session log with every entry as 'add' and no refreshDeletes:
    whatever was not sent is gone."""
    r, _ = refresh()
    r.entry(entry(ADD, U1))
    r.done(sync_done(b"new", refresh_deletes=False))
    assert r.present_phase and r.mentioned == {str(U1)}


def test_a_present_phase_that_names_nothing_deletes_nothing() -> None:
    r, _ = refresh()
    r.done(sync_done(b"new", refresh_deletes=False))
    assert not r.present_phase


def test_rejected_cookie() -> None:
    """A cookie the server can't parse gets an initial refresh and an empty cookie back."""
    r, _ = refresh()
    r.entry(entry(ADD, U1))
    r.done(sync_done(b"", refresh_deletes=True))
    assert r.cookie_rejected


def test_new_cookie_message_and_malformed_info() -> None:
    r, _ = refresh()
    r.info(info("newcookie", cookie=b"fresh"))
    assert r.cookie == b"fresh"
    with pytest.raises(BerError):
        r.info(b"\x30\x00")
    with pytest.raises(BerError):
        r.info(None)

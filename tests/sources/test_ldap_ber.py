"""The BER decoder of search responses, checked against messages encoded by ldap3's own ASN.1 classes
(pyasn1's BER encoder): every response type, long-form lengths, controls, and malformed input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ldap3.protocol import rfc4511 as asn
from ldap3.protocol.rfc2696 import RealSearchControlValue
from pyasn1.codec.ber import encoder

from syncd.sources.ldap_ber import (
    BerError,
    Done,
    Entry,
    Intermediate,
    Reference,
    decode_message,
    message_size,
    paged_cookie,
)
from syncd.sources.ldap_read import PAGED_RESULTS


def message(
    message_id: int, op: str, body: Any, controls: list[tuple[str, bool, bytes | None]] = ()
) -> bytes:
    msg = asn.LDAPMessage()
    msg["messageID"] = asn.MessageID(message_id)
    msg["protocolOp"] = asn.ProtocolOp().setComponentByName(op, body)
    if controls:
        built = asn.Controls()
        for i, (oid, critical, value) in enumerate(controls):
            control = asn.Control()
            control["controlType"] = asn.LDAPOID(oid)
            control["criticality"] = asn.Criticality(critical)
            if value is not None:
                control["controlValue"] = value
            built.setComponentByPosition(i, control)
        msg["controls"] = built
    return bytes(encoder.encode(msg))


def entry(dn: str, attributes: dict[str, list[bytes]]) -> asn.SearchResultEntry:
    body = asn.SearchResultEntry()
    body["object"] = asn.LDAPDN(dn)
    partial = asn.PartialAttributeList()
    for i, (name, values) in enumerate(attributes.items()):
        attribute = asn.PartialAttribute()
        attribute["type"] = asn.AttributeDescription(name)
        vals = asn.Vals()
        for j, value in enumerate(values):
            vals.setComponentByPosition(j, asn.AttributeValue(value))
        attribute["vals"] = vals
        partial.setComponentByPosition(i, attribute)
    body["attributes"] = partial
    return body


def done(code: int, message_text: str = "", referrals: list[str] = ()) -> asn.SearchResultDone:
    body = asn.SearchResultDone()
    body["resultCode"] = asn.ResultCode(code)
    body["matchedDN"] = asn.LDAPDN("")
    body["diagnosticMessage"] = asn.LDAPString(message_text)
    if referrals:
        referral = asn.Referral()
        for i, url in enumerate(referrals):
            referral.setComponentByPosition(i, asn.URI(url))
        body["referral"] = referral
    return body


def decode(data: bytes) -> tuple[int, Any]:
    assert message_size(data, 0) == len(data)
    return decode_message(data, 0, len(data))


def test_entry_with_values_long_lengths_and_non_ascii() -> None:
    big = b"x" * 70_000  # three length octets
    data = message(
        7, "searchResEntry", entry("uid=jürgen,dc=example,dc=org", {"CN": [b"a", big], "mail": []})
    )
    message_id, decoded = decode(data)
    assert message_id == 7 and isinstance(decoded, Entry)
    assert decoded.dn == "uid=jürgen,dc=example,dc=org"
    assert decoded.attributes == {"cn": [b"a", big], "mail": []}  # descriptions lowercased
    assert decoded.controls == {}


def test_entry_controls() -> None:
    data = message(3, "searchResEntry", entry("dc=x", {}), [("1.3.6.1.4.1.4203.1.9.1.2", False, b"\x30\x00"),
                                                           ("1.2.3", True, None)])  # fmt: skip
    _, decoded = decode(data)
    assert decoded.controls == {"1.3.6.1.4.1.4203.1.9.1.2": b"\x30\x00", "1.2.3": None}


def test_done_with_diagnostic_referrals_and_paged_cookie() -> None:
    value = RealSearchControlValue()  # ldap3's encoder of the RFC 2696 control value
    value["size"] = 0
    value["cookie"] = b"\x00\x01cookie"
    data = message(
        9,
        "searchResDone",
        done(4, "size limit exceeded", ["ldap://elsewhere/dc=x", "ldap://b/"]),
        [(PAGED_RESULTS, False, bytes(encoder.encode(value)))],
    )
    _, decoded = decode(data)
    assert isinstance(decoded, Done)
    assert (decoded.code, decoded.message) == (4, "size limit exceeded")
    assert decoded.referrals == ["ldap://elsewhere/dc=x", "ldap://b/"]
    assert paged_cookie(decoded.controls[PAGED_RESULTS]) == b"\x00\x01cookie"


def test_reference_and_intermediate() -> None:
    reference = asn.SearchResultReference()
    reference.setComponentByPosition(0, asn.URI("ldap://a/ou=b"))
    assert decode(message(2, "searchResRef", reference))[1] == Reference(["ldap://a/ou=b"])
    intermediate = asn.IntermediateResponse()
    intermediate["responseName"] = "1.3.6.1.4.1.4203.1.9.1.4"
    intermediate["responseValue"] = b"\xa0\x03abc"
    assert decode(message(2, "intermediateResponse", intermediate))[1] == Intermediate(
        "1.3.6.1.4.1.4203.1.9.1.4", b"\xa0\x03abc"
    )


def test_notice_of_disconnection() -> None:
    body = asn.ExtendedResponse()
    body["resultCode"] = asn.ResultCode(52)
    body["matchedDN"] = asn.LDAPDN("")
    body["diagnosticMessage"] = asn.LDAPString("going down")
    body["responseName"] = asn.ResponseName("1.3.6.1.4.1.1466.20036")
    message_id, decoded = decode(message(0, "extendedResp", body))
    assert message_id == 0 and isinstance(decoded, Done)
    assert (decoded.code, decoded.message, decoded.name) == (52, "going down", "1.3.6.1.4.1.1466.20036")


def test_message_size_needs_the_whole_header() -> None:
    data = message(1, "searchResEntry", entry("dc=x", {"a": [b"y" * 300]}))
    assert message_size(data[:1], 0) is None
    assert message_size(data[:3], 0) is None  # long form: the length octets are not all there
    assert message_size(data, 0) == len(data)
    assert message_size(b"\x00" + data, 1) == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x04\x03abc",  # not a SEQUENCE
        b"\x30\x80\x02\x01\x01",  # indefinite length
        b"\x30\x03\x04\x01a",  # no message id
        b"\x30\x05\x02\x01\x01\x66\x00",  # a modifyRequest, not a response to a search
        b"\x30\x08\x02\x01\x01\x64\x03\x04\x05a",  # entry DN longer than its message
    ],
)
def test_malformed_messages_raise_ber_error(data: bytes) -> None:
    with pytest.raises(BerError):
        decode_message(data, 0, len(data))


names = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-;=0123456789", min_size=1, max_size=20
)


@settings(max_examples=200, deadline=None)
@given(
    dn=st.text(min_size=0, max_size=300),
    attributes=st.dictionaries(
        names.map(str.lower), st.lists(st.binary(max_size=400), max_size=5), max_size=8
    ),
    message_id=st.integers(min_value=1, max_value=2**31 - 1),
)
def test_decodes_whatever_ldap3_encodes(dn: str, attributes: dict[str, list[bytes]], message_id: int) -> None:
    data = message(message_id, "searchResEntry", entry(dn, attributes))
    got_id, decoded = decode(data)
    assert (got_id, decoded.dn, decoded.attributes) == (message_id, dn, attributes)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_ber_error(data: bytes) -> None:
    try:
        size = message_size(data, 0)
        if size is not None and size <= len(data):
            decode_message(data, 0, size)
    except BerError:
        pass

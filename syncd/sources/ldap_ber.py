"""Decoding LDAP response messages (RFC 4511, BER with definite lengths) straight from bytes.

ldap3 decodes every message into generic nested lists, then into dicts of decoded and raw values, at
about 130 µs per directory entry: reading 100,000 users costs half a minute of pure client CPU (see
docs/adr/0010-ldap-wire-reader.md). The sync needs far less: the DN and the raw values of the attributes
it asked for. This module decodes just the response types a search produces, in one pass over the bytes:

* ``SearchResultEntry`` → :class:`Entry` (DN, ``{attribute description: [raw values]}``, controls;
  descriptions lowercased, as they compare case-insensitively),
* ``SearchResultReference`` → :class:`Reference`,
* ``IntermediateResponse`` → :class:`Intermediate` (RFC 4533 syncInfo messages),
* ``SearchResultDone`` and ``ExtendedResponse`` (the notice of disconnection) → :class:`Done`.

Requests are still encoded by ldap3. Pure functions; malformed input raises :class:`BerError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TAG_SEQUENCE = 0x30
TAG_ENTRY = 0x64  # [APPLICATION 4] constructed
TAG_DONE = 0x65  # [APPLICATION 5]
TAG_EXTENDED = 0x78  # [APPLICATION 24]
TAG_REFERENCE = 0x73  # [APPLICATION 19]
TAG_INTERMEDIATE = 0x79  # [APPLICATION 25]
TAG_CONTROLS = 0xA0  # [0] constructed
TAG_REFERRAL = 0xA3  # [3] constructed, inside LDAPResult
TAG_BOOLEAN = 0x01

Controls = dict[str, bytes | None]


class BerError(ValueError):
    """The bytes are not a well-formed LDAP message of a kind a search returns."""


@dataclass(slots=True)
class Entry:
    """One ``SearchResultEntry``: lowercased attribute descriptions, values undecoded."""

    dn: str
    attributes: dict[str, list[bytes]]
    controls: Controls = field(default_factory=dict)


@dataclass(slots=True)
class Reference:
    """A ``SearchResultReference`` (continuation to another server)."""

    urls: list[str]


@dataclass(slots=True)
class Intermediate:
    """An ``IntermediateResponse`` (RFC 4533 uses them for syncInfo messages)."""

    name: str | None
    value: bytes | None


@dataclass(slots=True)
class Done:
    """The end of an operation: ``SearchResultDone``, or an ``ExtendedResponse`` such as a notice of
    disconnection (``name`` set)."""

    code: int
    matched_dn: str
    message: str
    referrals: list[str] = field(default_factory=list)
    controls: Controls = field(default_factory=dict)
    name: str | None = None


Message = Entry | Reference | Intermediate | Done


def message_size(buf: bytes, start: int) -> int | None:
    """Size of the message starting at ``buf[start]``; None if ``buf`` does not hold its header yet."""
    have = len(buf) - start
    if have < 2:
        return None
    first = buf[start + 1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 8:
        raise BerError("indefinite or oversized length")
    if have < 2 + count:
        return None
    return 2 + count + int.from_bytes(buf[start + 2 : start + 2 + count], "big")


def _length(buf: bytes, i: int) -> tuple[int, int]:
    """Length octets at ``buf[i]`` → (content length, index of the first content octet)."""
    first = buf[i]
    if first < 0x80:
        return first, i + 1
    count = first & 0x7F
    if count == 0 or count > 8:
        raise BerError("indefinite or oversized length")
    return int.from_bytes(buf[i + 1 : i + 1 + count], "big"), i + 1 + count


_NAMES: dict[bytes, str] = {}


def _name(raw: bytes) -> str:
    """An attribute description, lowercased (names are case-insensitive), remembered for the next entry."""
    name = raw.decode("utf-8").lower()
    if len(_NAMES) < 4096:
        _NAMES[raw] = name
    return name


def decode_message(buf: bytes, start: int, end: int) -> tuple[int, Message]:
    """Decode the message in ``buf[start:end]`` → (message id, message)."""
    try:
        return _decode(buf, start, end)
    except (IndexError, UnicodeDecodeError) as error:
        raise BerError(f"malformed LDAP message: {error}") from error


def _decode(buf: bytes, start: int, end: int) -> tuple[int, Message]:
    if buf[start] != TAG_SEQUENCE:
        raise BerError(f"not an LDAPMessage (tag 0x{buf[start]:02x})")
    size, i = _length(buf, start + 1)
    if i + size != end:
        raise BerError("LDAPMessage length mismatch")
    if buf[i] != 0x02:
        raise BerError("LDAPMessage without a message id")
    size, i = _length(buf, i + 1)
    message_id = int.from_bytes(buf[i : i + size], "big", signed=True)
    i += size
    tag = buf[i]
    size, body = _length(buf, i + 1)
    body_end = body + size
    if body_end > end:
        raise BerError("protocolOp overruns the message")
    controls: Controls = _controls(buf, body_end, end) if body_end < end else {}
    if tag == TAG_ENTRY:
        dn, attributes = _entry(buf, body, body_end)
        return message_id, Entry(dn, attributes, controls)
    if tag in (TAG_DONE, TAG_EXTENDED):
        return message_id, _result(buf, body, body_end, controls)
    if tag == TAG_REFERENCE:
        return message_id, Reference(_strings(buf, body, body_end))
    if tag == TAG_INTERMEDIATE:
        return message_id, _intermediate(buf, body, body_end)
    raise BerError(f"unexpected protocolOp 0x{tag:02x} in a search response")


def _entry(buf: bytes, i: int, end: int) -> tuple[str, dict[str, list[bytes]]]:
    size, i = _length(buf, i + 1)
    dn = buf[i : i + size].decode("utf-8")
    i += size
    size, i = _length(buf, i + 1)  # PartialAttributeList
    stop = i + size
    if stop > end:
        raise BerError("entry overruns its message")
    attributes: dict[str, list[bytes]] = {}
    while i < stop:
        size, i = _length(buf, i + 1)  # PartialAttribute SEQUENCE
        next_attribute = i + size
        size, i = _length(buf, i + 1)  # type
        raw_name = buf[i : i + size]
        name = _NAMES.get(raw_name)
        if name is None:
            name = _name(raw_name)
        i += size
        size, i = _length(buf, i + 1)  # SET OF value
        values_end = i + size
        values: list[bytes] = []
        while i < values_end:
            size, i = _length(buf, i + 1)
            values.append(buf[i : i + size])
            i += size
        if i != next_attribute:
            raise BerError(f"attribute {name} length mismatch")
        attributes[name] = values
    return dn, attributes


def _result(buf: bytes, i: int, end: int, controls: Controls) -> Done:
    if buf[i] != 0x0A:
        raise BerError("LDAPResult without a result code")
    size, i = _length(buf, i + 1)
    code = int.from_bytes(buf[i : i + size], "big", signed=True)
    i += size
    size, i = _length(buf, i + 1)
    matched = buf[i : i + size].decode("utf-8", "replace")
    i += size
    size, i = _length(buf, i + 1)
    message = buf[i : i + size].decode("utf-8", "replace")
    i += size
    referrals: list[str] = []
    name: str | None = None
    while i < end:
        tag = buf[i]
        size, i = _length(buf, i + 1)
        if tag == TAG_REFERRAL:
            referrals = _strings(buf, i, i + size)
        elif tag == 0x8A:  # ExtendedResponse responseName [10]
            name = buf[i : i + size].decode("ascii", "replace")
        i += size
    return Done(code, matched, message, referrals, controls, name)


def _intermediate(buf: bytes, i: int, end: int) -> Intermediate:
    name: str | None = None
    value: bytes | None = None
    while i < end:
        tag = buf[i]
        size, i = _length(buf, i + 1)
        if tag == 0x80:
            name = buf[i : i + size].decode("ascii", "replace")
        elif tag == 0x81:
            value = buf[i : i + size]
        i += size
    return Intermediate(name, value)


def _strings(buf: bytes, i: int, end: int) -> list[str]:
    out: list[str] = []
    while i < end:
        size, i = _length(buf, i + 1)
        out.append(buf[i : i + size].decode("utf-8", "replace"))
        i += size
    return out


def _controls(buf: bytes, i: int, end: int) -> Controls:
    if buf[i] != TAG_CONTROLS:
        raise BerError(f"unexpected 0x{buf[i]:02x} after protocolOp")
    size, i = _length(buf, i + 1)
    stop = i + size
    if stop != end:
        raise BerError("controls length mismatch")
    controls: Controls = {}
    while i < stop:
        size, i = _length(buf, i + 1)  # Control SEQUENCE
        control_end = i + size
        size, i = _length(buf, i + 1)
        oid = buf[i : i + size].decode("ascii")
        i += size
        value: bytes | None = None
        while i < control_end:
            tag = buf[i]
            size, i = _length(buf, i + 1)
            if tag == 0x04:
                value = buf[i : i + size]
            elif tag != TAG_BOOLEAN:
                raise BerError(f"unexpected 0x{tag:02x} in control {oid}")
            i += size
        controls[oid] = value
    return controls


def paged_cookie(value: bytes | None) -> bytes:
    """The cookie of an RFC 2696 paged-results response control value (``SEQUENCE {size, cookie}``)."""
    if not value:
        return b""
    try:
        size, i = _length(value, 1)
        size, i = _length(value, i + 1)  # INTEGER size (estimate)
        i += size
        size, i = _length(value, i + 1)
        return value[i : i + size]
    except IndexError as error:
        raise BerError("malformed paged results control") from error

"""Hardware-token inventory files: OATH CSV and PSKC (RFC 6030). Pure parsers, no storage.

**OATH CSV** — one token a line, comma-separated, an optional header row (first cell ``serial``), blank
lines and lines starting with ``#`` ignored::

    serial,secret,type,digits,period_or_counter,algorithm
    HW-0001,3132333435363738393031323334353637383930,HOTP,6,0,SHA1
    HW-0002,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,TOTP,6,30,SHA1

* ``serial``: 1–128 characters of ``A–Z a–z 0–9 . _ : / -``, unique in the file and in the store.
* ``secret``: hex (only hex digits, even length) or base32 (any case, padding optional); a ``hex:`` or
  ``base32:`` prefix forces one reading. At least 128 bits (16 bytes), at most 64 bytes.
* ``type``: ``HOTP`` or ``TOTP`` (default ``TOTP``); ``digits``: 6–8 (default 6); the fifth column is the
  TOTP period in seconds (10–120, default 30) or the HOTP start counter (≥ 0, default 0); ``algorithm``:
  ``SHA1``, ``SHA256`` or ``SHA512`` (default ``SHA1``). Trailing columns may be left out.

**PSKC** — a ``KeyContainer`` whose ``KeyPackage``s hold ``DeviceInfo/SerialNo`` (or ``Key/@Id``),
``Key/@Algorithm`` (``…:hotp`` / ``…:totp``), ``AlgorithmParameters/ResponseFormat/@Length``,
``AlgorithmParameters/Suite`` (hash), ``Data/Secret/PlainValue`` (base64), ``Data/Counter``,
``Data/TimeInterval``. Encrypted secrets (``EncryptedValue``) are not supported (docs/adr/0052). XML is
parsed with defusedxml with DTDs forbidden, so entity-expansion bombs and external entities are refused.

A parse never stops at the first problem: :class:`Parsed` holds every good token and every problem with
where it is (``line 7`` or ``KeyPackage 3 (serial X)``), so an import can refuse the file listing them all.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal

import defusedxml
import defusedxml.ElementTree as DET

MIN_SEED_BYTES = 16  # 128 bits
MAX_SEED_BYTES = 64
MAX_PROBLEMS_SHOWN = 50
FORMATS = ("csv", "pskc")
ALGORITHMS = ("SHA1", "SHA256", "SHA512")
SERIAL = re.compile(r"^[A-Za-z0-9._:/-]{1,128}$")
PSKC_NS = "urn:ietf:params:xml:ns:keyprov:pskc"

Format = Literal["csv", "pskc"]


@dataclass(frozen=True, slots=True)
class TokenSpec:
    """One token of a file. ``where`` says where it came from (for error messages)."""

    serial: str
    secret: bytes = field(repr=False)
    otp_type: str  # "HOTP" | "TOTP"
    digits: int
    period: int
    counter: int
    algorithm: str
    where: str


@dataclass(frozen=True, slots=True)
class Parsed:
    tokens: list[TokenSpec]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def describe(problems: list[str]) -> str:
    """One message listing the problems (the first :data:`MAX_PROBLEMS_SHOWN` of them)."""
    shown = "; ".join(problems[:MAX_PROBLEMS_SHOWN])
    more = len(problems) - MAX_PROBLEMS_SHOWN
    tail = f"; and {more} more" if more > 0 else ""
    return f"token file refused, nothing imported ({len(problems)} problem(s)): {shown}{tail}"


def parse(text: str, fmt: str) -> Parsed:
    if fmt == "csv":
        return parse_csv(text)
    if fmt == "pskc":
        return parse_pskc(text)
    return Parsed([], [f"unknown format {fmt!r}: expected csv or pskc"])


# ----------------------------------------------------------------------------------------------- CSV


def decode_secret(text: str) -> bytes:
    """Hex or base32 (see the module docstring); ValueError when it is neither."""
    value = "".join(text.split())
    lowered = value.lower()
    if lowered.startswith("hex:"):
        return _hex(value[4:])
    if lowered.startswith("base32:"):
        return _b32(value[7:])
    if value and re.fullmatch(r"[0-9a-fA-F]+", value) and len(value) % 2 == 0:
        return _hex(value)
    return _b32(value)


def _hex(value: str) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise ValueError("secret is not valid hex") from None


def _b32(value: str) -> bytes:
    cleaned = value.upper().rstrip("=")
    if not cleaned or not re.fullmatch(r"[A-Z2-7]+", cleaned):
        raise ValueError("secret is neither hex nor base32")
    try:
        return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except binascii.Error:
        raise ValueError("secret is not valid base32") from None


def _int(text: str, name: str, low: int, high: int, problems: list[str]) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        problems.append(f"{name} {text.strip()!r} is not a number")
        return low
    if not low <= value <= high:
        problems.append(f"{name} {value} is outside {low}..{high}")
    return value


def _check_common(
    serial: str, secret: bytes | None, otp_type: str, digits: int, algorithm: str, problems: list[str]
) -> None:
    if not SERIAL.fullmatch(serial):
        problems.append(f"serial {serial[:40]!r} must be 1-128 characters of A-Z a-z 0-9 . _ : / -")
    if otp_type not in ("HOTP", "TOTP"):
        problems.append(f"type {otp_type[:20]!r} is not HOTP or TOTP")
    if not 6 <= digits <= 8:
        problems.append(f"digits {digits} is outside 6..8")
    if algorithm not in ALGORITHMS:
        problems.append(f"algorithm {algorithm[:20]!r} is not one of {', '.join(ALGORITHMS)}")
    if secret is not None:
        if len(secret) < MIN_SEED_BYTES:
            problems.append(f"seed is {len(secret) * 8} bits, at least {MIN_SEED_BYTES * 8} are required")
        elif len(secret) > MAX_SEED_BYTES:
            problems.append(f"seed is {len(secret) * 8} bits, at most {MAX_SEED_BYTES * 8} are allowed")


def parse_csv(text: str) -> Parsed:
    tokens: list[TokenSpec] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    reader = csv.reader(io.StringIO(text))
    first = True
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            cells = [cell.strip() for cell in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            if first and cells[0].lower() == "serial":
                first = False
                continue
            first = False
            spec = _csv_row(cells, where, problems)
            if spec is not None:
                _add(spec, tokens, seen, problems)
    except csv.Error as error:
        problems.append(f"line {reader.line_num}: not valid CSV ({error})")
    if not tokens and not problems:
        problems.append("the file holds no tokens")
    return Parsed(tokens, problems)


def _csv_row(cells: list[str], where: str, problems: list[str]) -> TokenSpec | None:
    if len(cells) < 2 or len(cells) > 6:
        problems.append(
            f"{where}: expected 2 to 6 columns (serial,secret,type,digits,period|counter,algorithm)"
        )
        return None
    cells = cells + [""] * (6 - len(cells))
    serial, secret_text, otp_type, digits_text, fifth, algorithm = cells
    otp_type = (otp_type or "TOTP").upper()
    algorithm = (algorithm or "SHA1").upper().replace("-", "")
    mine: list[str] = []
    secret: bytes | None = None
    try:
        secret = decode_secret(secret_text)
    except ValueError as error:
        mine.append(str(error))
    digits = _int(digits_text or "6", "digits", 6, 8, mine) if digits_text else 6
    period, counter = 30, 0
    if otp_type == "TOTP":
        period = _int(fifth, "period", 10, 120, mine) if fifth else 30
    else:
        counter = _int(fifth, "counter", 0, 2**62, mine) if fifth else 0
    _check_common(serial, secret, otp_type, digits, algorithm, mine)
    if mine or secret is None:
        problems.extend(f"{where}: {problem}" for problem in dict.fromkeys(mine))
        return None
    return TokenSpec(serial, secret, otp_type, digits, period, counter, algorithm, where)


def _add(spec: TokenSpec, tokens: list[TokenSpec], seen: dict[str, str], problems: list[str]) -> None:
    earlier = seen.get(spec.serial)
    if earlier is not None:
        problems.append(f"{spec.where}: serial {spec.serial!r} duplicates {earlier}")
        return
    seen[spec.serial] = spec.where
    tokens.append(spec)


# ---------------------------------------------------------------------------------------------- PSKC


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element | None, *names: str) -> ET.Element | None:
    """The first descendant path ``names`` (namespace-agnostic), or None."""
    for name in names:
        if element is None:
            return None
        element = next((c for c in element if _local(c.tag) == name), None)
    return element


def _text(element: ET.Element | None, *names: str) -> str | None:
    found = _child(element, *names)
    return found.text.strip() if found is not None and found.text is not None else None


def parse_pskc(text: str) -> Parsed:
    try:
        root = DET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as error:
        return Parsed([], [f"refused: the XML uses a DTD or entities ({type(error).__name__})"])
    except ET.ParseError as error:
        return Parsed([], [f"not well-formed XML ({error})"])
    if _local(root.tag) != "KeyContainer":
        return Parsed([], [f"the root element is {_local(root.tag)!r}, not a PSKC KeyContainer"])
    tokens: list[TokenSpec] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    if _child(root, "EncryptionKey") is not None:
        problems.append(
            "encrypted PSKC (EncryptionKey/EncryptedValue) is not supported: export the tokens with "
            "plaintext secrets (PlainValue) and import the file over a protected channel"
        )
        return Parsed([], problems)
    packages = [c for c in root if _local(c.tag) == "KeyPackage"]
    for index, package in enumerate(packages, start=1):
        spec = _package(package, index, problems)
        if spec is not None:
            _add(spec, tokens, seen, problems)
    if not tokens and not problems:
        problems.append("the file holds no KeyPackage")
    return Parsed(tokens, problems)


def _package(package: ET.Element, index: int, problems: list[str]) -> TokenSpec | None:
    key = _child(package, "Key")
    serial = _text(package, "DeviceInfo", "SerialNo") or (
        key.get("Id", "").strip() if key is not None else ""
    )
    where = f"KeyPackage {index}" + (f" (serial {serial[:40]!r})" if serial else "")
    mine: list[str] = []
    if key is None:
        problems.append(f"{where}: no Key element")
        return None
    if not serial:
        mine.append("no DeviceInfo/SerialNo and no Key Id")
    algorithm_uri = key.get("Algorithm", "").strip().lower()
    otp_type = (
        "HOTP"
        if algorithm_uri.endswith("hotp")
        else "TOTP"
        if algorithm_uri.endswith("totp")
        else algorithm_uri[-20:] or "(none)"
    )
    length = _child(key, "AlgorithmParameters", "ResponseFormat")
    digits = 6
    if length is not None and length.get("Length") is not None:
        digits = _int(length.get("Length", ""), "digits", 6, 8, mine)
    suite = (_text(key, "AlgorithmParameters", "Suite") or "SHA1").upper()
    hash_name = next((name for name in ALGORITHMS if name in suite.replace("-", "")), suite[:20])
    secret: bytes | None = None
    secret_element = _child(key, "Data", "Secret")
    if secret_element is None:
        mine.append("no Data/Secret")
    elif _child(secret_element, "EncryptedValue") is not None:
        mine.append(
            "the secret is encrypted (EncryptedValue), which is not supported: export plaintext secrets"
        )
    else:
        plain = _text(secret_element, "PlainValue")
        try:
            secret = base64.b64decode("".join((plain or "").split()), validate=True)
            if not plain:
                raise ValueError
        except (ValueError, binascii.Error):
            mine.append("Secret/PlainValue is missing or not base64")
    counter_text = _text(key, "Data", "Counter", "PlainValue")
    interval_text = _text(key, "Data", "TimeInterval", "PlainValue")
    counter = _int(counter_text, "counter", 0, 2**62, mine) if counter_text else 0
    period = _int(interval_text, "period", 10, 120, mine) if interval_text else 30
    _check_common(serial or "-", secret, otp_type, digits, hash_name, mine)
    if mine or secret is None:
        problems.extend(f"{where}: {problem}" for problem in dict.fromkeys(mine))
        return None
    return TokenSpec(serial, secret, otp_type, digits, period, counter, hash_name, where)

"""One-time passwords: HOTP (RFC 4226), TOTP (RFC 6238) with a window, secrets and otpauth URIs. Pure.

:func:`match_step` says *which* time step a code belongs to; it never decides alone whether to accept it.
Replay protection is the store's job: it accepts a step only through an atomic compare-and-set of the
authenticator's last accepted step (``UPDATE … WHERE last_step < :step``), so a code is good at most once
(reliability.md O1, O2). Times are Unix seconds (``int``/``float``), never naive datetimes.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass
from urllib.parse import quote, urlencode

SECRET_BYTES = 20  # 160 bits (RFC 4226 R6 recommends 160; reliability.md O5)
_DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


@dataclass(frozen=True, slots=True)
class TotpSettings:
    """The org's TOTP factor settings."""

    issuer: str
    digits: int = 6
    period: int = 30
    algorithm: str = "SHA1"
    window: int = 1


class Check(enum.StrEnum):
    """What a submitted code is, before the store's compare-and-set."""

    MATCH = "MATCH"  # matches a step newer than the last accepted one
    REPLAY = "REPLAY"  # matches a step already accepted (or older): never good again
    WRONG = "WRONG"  # matches nothing in the window (counts as a failure)


@dataclass(frozen=True, slots=True)
class StepMatch:
    check: Check
    step: int | None = None


def new_secret() -> bytes:
    """A fresh 160-bit seed from the operating system's CSPRNG."""
    return secrets.token_bytes(SECRET_BYTES)


def b32encode(secret: bytes) -> str:
    """Base32 without padding, as authenticator apps expect it (32 characters for 160 bits)."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def b32decode(text: str) -> bytes:
    """Decode base32 typed by a person: any case, spaces and missing padding tolerated."""
    cleaned = "".join(text.split()).upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def hotp(secret: bytes, counter: int, *, digits: int = 6, algorithm: str = "SHA1") -> str:
    """RFC 4226 HOTP value of ``counter`` (dynamic truncation, zero-padded to ``digits``)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), _DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    number = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def step_at(now: float, period: int = 30) -> int:
    """The RFC 6238 time step (T0 = 0) containing Unix time ``now``."""
    return int(now // period)


def totp(secret: bytes, now: float, settings: TotpSettings) -> str:
    """The code an authenticator shows at Unix time ``now``."""
    return hotp(secret, step_at(now, settings.period), digits=settings.digits, algorithm=settings.algorithm)


def match_step(
    secret: bytes, code: str, now: float, settings: TotpSettings, *, last_step: int | None
) -> StepMatch:
    """Find the step within ``now ± window`` whose code equals ``code`` (constant time per candidate).

    Every step in the window is computed and compared (no early exit), so the time taken does not tell
    which step matched. A match at or before ``last_step`` is a :attr:`Check.REPLAY`.
    """
    submitted = "".join(code.split())
    if len(submitted) != settings.digits or not (submitted.isascii() and submitted.isdigit()):
        return StepMatch(Check.WRONG)
    current = step_at(now, settings.period)
    matches = []
    for step in range(max(current - settings.window, 0), current + settings.window + 1):
        expected = hotp(secret, step, digits=settings.digits, algorithm=settings.algorithm)
        if hmac.compare_digest(expected.encode(), submitted.encode()):
            matches.append(step)
    if not matches:
        return StepMatch(Check.WRONG)
    fresh = [step for step in matches if last_step is None or step > last_step]
    if not fresh:
        return StepMatch(Check.REPLAY, matches[-1])
    return StepMatch(Check.MATCH, fresh[0])


def otpauth_uri(secret: bytes, account: str, settings: TotpSettings) -> str:
    """The ``otpauth://totp/…`` URI (Key Uri Format) for a QR code: issuer, algorithm, digits, period."""
    label = quote(f"{settings.issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": b32encode(secret),
            "issuer": settings.issuer,
            "algorithm": settings.algorithm,
            "digits": settings.digits,
            "period": settings.period,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"

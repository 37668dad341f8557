"""Hardware-token codes: the check at verification and the admin's resync (ADR 0052).

``counter`` is the next value a code may have (the next HOTP counter, or the first TOTP step not yet
accepted); it only grows, by compare-and-set, so a code is accepted once even across parallel requests.
``drift`` is the TOTP clock drift in steps, learned on resync and on each accepted code. Seeds are opened
with the token id as associated data (:func:`syncd.store.hardware_tokens.aad`).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import otp
from syncd.domain.lifecycle import AuditEvent, DeviceState, DeviceType
from syncd.errors import DomainError, UsageError
from syncd.store import audit
from syncd.store.db import rowcount
from syncd.store.hardware_tokens import aad, get
from syncd.store.keys import Keys
from syncd.store.tables import Device, HardwareToken, utcnow

HOTP_CHECK_WINDOW = 10  # look-ahead on a normal check
HOTP_RESYNC_WINDOW = 100  # look-ahead on a resync
TOTP_RESYNC_STEPS = 20  # ± steps searched on a resync


def _code(token: HardwareToken, seed: bytes, value: int) -> str:
    return otp.hotp(seed, value, digits=token.digits, algorithm=token.algorithm)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _advance(session: Session, token: HardwareToken, matched: int, **values: object) -> bool:
    """Compare-and-set: accept ``matched`` (counter or step) unless it was accepted already."""
    won = session.execute(
        sa.update(HardwareToken)
        .where(HardwareToken.id == token.id, HardwareToken.counter <= matched)
        .values(counter=matched + 1, **values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(won) == 1


def totp_window(period: int) -> int:
    """Steps of tolerance either side on a normal check: about ±30 seconds, at least one step."""
    return max(1, -(-30 // max(period, 1)))


def check(session: Session, user_id: str, code: str, *, keys: Keys, now: datetime) -> bool | None:
    """Check ``code`` against the user's ACTIVE hardware token. None when the user has none.

    HOTP: counters ``counter … counter + 9`` are tried; a match moves the counter past it. TOTP: the steps
    ``now + drift ± window`` not yet accepted are tried; a match is remembered (never good again) and the
    drift follows it. Every candidate is computed and compared (no early exit).
    """
    device = session.scalar(
        sa.select(Device).where(
            Device.user_id == user_id,
            Device.type == DeviceType.HARDWARE_TOKEN,
            Device.state == DeviceState.ACTIVE,
            Device.hardware_token_id.is_not(None),
        )
    )
    if device is None or device.hardware_token_id is None:
        return None
    token = session.get(HardwareToken, device.hardware_token_id, populate_existing=True)
    if token is None or token.user_id != user_id:
        return None
    submitted = "".join(code.split())
    if len(submitted) != token.digits or not (submitted.isascii() and submitted.isdigit()):
        return False
    seed = keys.unseal(token.seed_enc, aad(token.id))
    extra: dict[str, object] = {}
    raw = 0
    if token.otp_type == "HOTP":
        candidates = range(token.counter, token.counter + HOTP_CHECK_WINDOW)
    else:
        raw = otp.step_at(now.timestamp(), token.period)
        window = totp_window(token.period)
        centre = raw + token.drift
        candidates = range(max(centre - window, token.counter, 0), centre + window + 1)
    hits = [value for value in candidates if _equal(_code(token, seed, value), submitted)]
    if not hits:
        return False
    matched = hits[0]
    if token.otp_type != "HOTP":
        extra = {"drift": matched - raw}
    if not _advance(session, token, matched, **extra):
        return False  # a parallel request accepted this code first
    device.last_used_at = now
    device.last_step = matched
    session.flush()
    session.refresh(token)
    return True


def resync(
    session: Session,
    token_id: str,
    codes: Sequence[str],
    *,
    keys: Keys,
    actor: str,
    now: datetime | None = None,
) -> HardwareToken:
    """Find two consecutive codes: HOTP within ``counter … counter + 99`` (the counter moves past the second
    code); TOTP within ``now ± 20`` steps (the drift is stored, both codes are spent). DomainError when
    they match nowhere."""
    now = now or utcnow()
    token = get(session, token_id)
    first, second = ("".join(c.split()) for c in codes)
    if any(len(c) != token.digits for c in (first, second)):
        raise UsageError(f"hardware token {token.serial} shows {token.digits}-digit codes")
    seed = keys.unseal(token.seed_enc, aad(token.id))
    if token.otp_type == "HOTP":
        start, stop = token.counter, token.counter + HOTP_RESYNC_WINDOW
    else:
        raw = otp.step_at(now.timestamp(), token.period)
        start, stop = max(raw - TOTP_RESYNC_STEPS, 0), raw + TOTP_RESYNC_STEPS + 1
    values = [_code(token, seed, value) for value in range(start, stop + 1)]
    found = [
        start + i
        for i in range(len(values) - 1)
        if _equal(values[i], first) and _equal(values[i + 1], second)
    ]
    if not found:
        window = (
            f"the next {HOTP_RESYNC_WINDOW} counter values"
            if token.otp_type == "HOTP"
            else f"±{TOTP_RESYNC_STEPS} time steps"
        )
        raise DomainError(f"the two codes are not consecutive codes of token {token.serial} within {window}")
    matched = found[0] + 1  # the second code
    old = f"counter={token.counter} drift={token.drift}"
    if token.otp_type == "HOTP":
        token.counter = matched + 1
    else:
        token.counter = max(token.counter, matched + 1)
        token.drift = matched - raw
    audit.record(
        session,
        AuditEvent(
            actor,
            "hardware_token.resynced",
            "hardware_token",
            token.id,
            old,
            f"counter={token.counter} drift={token.drift}",
            token.serial,
        ),
    )
    session.flush()
    return token

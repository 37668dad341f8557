"""Hardware tokens (seed 000): inventory import, listing and assignment (ADR 0052); their codes and resync
are in :mod:`syncd.store.token_codes`.

* Seeds are sealed with ``keys.seal(seed, "hardware_token:<id>")`` — the token id is the associated data,
  so a ciphertext moved onto another row does not open.
* ``counter`` is the next value a code may have: the next HOTP counter, or for TOTP the first time step
  not yet accepted. It only grows, by compare-and-set (``… WHERE counter <= :matched``), so a code is
  accepted once even across parallel requests, and the replay guard stays with the token when it moves
  to another user. ``drift`` is the TOTP clock drift in steps (learned on resync and on each accepted code).
* A user holds at most one hardware token (``hardware_tokens.user_id`` is unique); assigning one creates
  an ACTIVE ``HARDWARE_TOKEN`` device through the lifecycle rules.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent, DeviceState, DeviceType, enroll_device, verify_device
from syncd.domain.token_files import SERIAL, Parsed, TokenSpec, describe
from syncd.errors import ConflictError, DomainError, NotFoundError, UsageError
from syncd.store import audit, devices, enrollment
from syncd.store.db import rowcount
from syncd.store.keys import Keys
from syncd.store.tables import Device, HardwareToken, new_id, utcnow


class TokenFileError(UsageError):
    """A token file has bad rows: every problem is in the message; nothing was imported (400)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(describe(problems))
        self.problems = problems


def aad(token_id: str) -> str:
    return f"hardware_token:{token_id}"


# --------------------------------------------------------------------------------------------- import


def import_tokens(session: Session, parsed: Parsed, *, keys: Keys, actor: str) -> int:
    """Store every token of ``parsed`` or none: TokenFileError lists the file's problems and the serials
    already stored. Returns how many were imported."""
    problems = list(parsed.problems)
    wanted = [spec.serial for spec in parsed.tokens]
    stored: set[str] = set()
    for chunk in range(0, len(wanted), 500):
        query = sa.select(HardwareToken.serial).where(HardwareToken.serial.in_(wanted[chunk : chunk + 500]))
        stored.update(session.scalars(query))
    problems.extend(
        f"{spec.where}: serial {spec.serial!r} is already stored"
        for spec in parsed.tokens
        if spec.serial in stored
    )
    if problems:
        raise TokenFileError(problems)
    rows = [_row(spec, keys) for spec in parsed.tokens]
    for chunk in range(0, len(rows), 1000):
        session.execute(sa.insert(HardwareToken), rows[chunk : chunk + 1000])
    audit.record(
        session,
        AuditEvent(actor, "hardware_tokens.imported", "hardware_token", "*", None, str(len(rows)), "import"),
        {"count": len(rows), "hotp": sum(1 for s in parsed.tokens if s.otp_type == "HOTP")},
    )
    return len(rows)


def _row(spec: TokenSpec, keys: Keys) -> dict[str, object]:
    token_id = new_id()
    return {
        "id": token_id,
        "serial": spec.serial,
        "otp_type": spec.otp_type,
        "seed_enc": keys.seal(spec.secret, aad(token_id)),
        "digits": spec.digits,
        "period": spec.period,
        "algorithm": spec.algorithm,
        "counter": spec.counter,
        "drift": 0,
        "user_id": None,
        "imported_at": utcnow(),
    }


# ------------------------------------------------------------------------------------------ listing


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[HardwareToken]
    next_cursor: str | None


def encode_cursor(serial: str) -> str:
    return base64.urlsafe_b64encode(serial.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        serial = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        serial = ""
    if not SERIAL.fullmatch(serial):
        raise UsageError("the cursor is not one this API returned")
    return serial


def listing(
    session: Session,
    *,
    assigned: bool | None = None,
    serial_prefix: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Tokens by serial (keyset pages)."""
    query = sa.select(HardwareToken).order_by(HardwareToken.serial).limit(limit + 1)
    if assigned is not None:
        query = query.where(
            HardwareToken.user_id.is_not(None) if assigned else HardwareToken.user_id.is_(None)
        )
    if serial_prefix:
        query = query.where(HardwareToken.serial.startswith(serial_prefix, autoescape=True))
    if cursor:
        query = query.where(HardwareToken.serial > decode_cursor(cursor))
    rows = session.scalars(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode_cursor(rows[-1].serial) if more and rows else None)


def get(session: Session, token_id: str) -> HardwareToken:
    token = session.get(HardwareToken, token_id, populate_existing=True)
    if token is None:
        raise NotFoundError(f"no hardware token {token_id!r}")
    return token


def of_user(session: Session, user_id: str) -> HardwareToken | None:
    return session.scalar(sa.select(HardwareToken).where(HardwareToken.user_id == user_id))


# ----------------------------------------------------------------------------------------- assignment


def assign(
    session: Session,
    user_id: str,
    serial: str,
    *,
    actor: str,
    host: str | None = None,
    now: datetime | None = None,
) -> tuple[HardwareToken, Device]:
    """Give the token ``serial`` to the user: an ACTIVE HARDWARE_TOKEN device, status derived again.

    ConflictError when the user already has a token or the token belongs to someone else; DomainError when
    the lifecycle refuses (the user may not enroll: DEVICES_DISABLED or PROVISIONING_DISABLED).
    """
    token = session.scalar(sa.select(HardwareToken).where(HardwareToken.serial == serial))
    if token is None:
        raise NotFoundError(f"no hardware token with serial {serial!r}")
    return _assign(session, user_id, token, actor=actor, host=host, now=now or utcnow())


def assign_from_pool(session: Session, user_id: str, *, actor: str) -> HardwareToken:
    """Give the user any unassigned token (Part C's bulk enroll). DomainError when the pool is empty or
    the user already has a token."""
    devices.load_user(session, user_id, lock=True)
    held = of_user(session, user_id)
    if held is not None:
        raise DomainError(f"user {user_id} already has hardware token {held.serial}")
    query = sa.select(HardwareToken).where(HardwareToken.user_id.is_(None)).order_by(HardwareToken.serial)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    token = session.scalar(query.limit(1))
    if token is None:
        raise DomainError("no unassigned hardware token is left in the inventory")
    try:
        return _assign(session, user_id, token, actor=actor, host=None, now=utcnow())[0]
    except ConflictError as error:
        raise DomainError(str(error)) from None


def _assign(
    session: Session, user_id: str, token: HardwareToken, *, actor: str, host: str | None, now: datetime
) -> tuple[HardwareToken, Device]:
    user = devices.load_user(session, user_id, lock=True)
    held = of_user(session, user.id)
    if held is not None:
        raise ConflictError(f"user {user_id} already has hardware token {held.serial}: unassign it first")
    if token.user_id is not None:
        raise ConflictError(f"hardware token {token.serial} is assigned to another user")
    device_id = new_id()
    state = devices.state_of(session, user)
    started = enroll_device(state, device_id, actor=actor, reason="hardware token assigned")
    proven = verify_device(started.state, device_id, actor=actor, reason="hardware token assigned")
    won = session.execute(
        sa.update(HardwareToken)
        .where(HardwareToken.id == token.id, HardwareToken.user_id.is_(None))
        .values(user_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(won):
        raise ConflictError(f"hardware token {token.serial} is assigned to another user")
    device = Device(
        id=device_id,
        user_id=user.id,
        type=DeviceType.HARDWARE_TOKEN,
        state=DeviceState.ACTIVE,
        name=f"Hardware token {token.serial}"[:128],
        hardware_token_id=token.id,
    )
    session.add(device)
    session.flush()
    devices.apply(session, user, started)
    devices.apply(session, user, proven)
    audit.record(
        session,
        AuditEvent(actor, "hardware_token.assigned", "hardware_token", token.id, None, user.id, token.serial),
    )
    audit.record(
        session, devices.device_event(actor, "device.created", device, None, "ACTIVE", "hardware token")
    )
    mail_host = host or _host(session)
    devices.notify(session, user, devices.DEVICE_ADDED, f"{devices.DEVICE_ADDED}:{user.id}:{device.id}",
                   DeviceType.HARDWARE_TOKEN.value, mail_host, now)  # fmt: skip
    session.refresh(token)
    return token, device


def _host(session: Session) -> str:
    settings = enrollment.of(session)
    return settings.mail_host if settings is not None else "localhost"


def unassign(
    session: Session, user_id: str, *, actor: str, host: str, now: datetime | None = None
) -> HardwareToken:
    """Take the user's token back: its device is deleted (status derived again), the token is free."""
    now = now or utcnow()
    user = devices.load_user(session, user_id, lock=True)
    token = of_user(session, user.id)
    if token is None:
        raise NotFoundError(f"user {user_id!r} has no hardware token")
    linked = session.scalars(
        sa.select(Device).where(Device.user_id == user.id, Device.hardware_token_id == token.id)
    ).all()
    for device in linked:
        devices.remove(
            session, user, device, actor=actor, reason="hardware token unassigned", host=host, now=now
        )
    token.user_id = None
    audit.record(
        session,
        AuditEvent(
            actor, "hardware_token.unassigned", "hardware_token", token.id, user.id, None, token.serial
        ),
    )
    session.flush()
    return token

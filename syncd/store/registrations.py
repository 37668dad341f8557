"""TOTP registration (seed doc 001) and code checks against stored devices.

* ``generate``: a PENDING TOTP device with a fresh 160-bit seed sealed at rest, and a CHALLENGE
  registration that expires after ``enrollment.challenge_ttl``. The secret is returned to the caller
  only now (and by :func:`pending_secret` while the challenge is open), never after registration.
* ``verify``: one good code → the device ACTIVE, the registration REGISTERED, the user's status derived
  again, an "authenticator added" mail queued — all in the caller's unit of work.
* Every code check accepts a time step at most once: the step is stored by an atomic compare-and-set
  (``UPDATE devices SET last_step = :s WHERE id = :id AND (last_step IS NULL OR last_step < :s)``), so of
  many parallel submissions of one code exactly one wins (reliability.md O1).
* Wrong codes count towards the per-user factor lock (:mod:`syncd.store.factors`); a replayed good code
  is refused without counting (it is not a guess).

Functions return an :class:`Outcome` instead of raising for wrong codes, so the failure count commits
with the unit of work; the API raises after the commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import otp
from syncd.domain.lifecycle import (
    AuditEvent,
    DeviceState,
    DeviceType,
    UserState,
    delete_device,
    disable_device,
    enroll_device,
    verify_device,
)
from syncd.domain.lifecycle import (
    Outcome as LifecycleOutcome,
)
from syncd.errors import DomainError, NotFoundError
from syncd.store import audit, factors, outbox, users
from syncd.store.db import rowcount
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import Device, Registration, User, new_id, utcnow

FACTOR = "TOTP"
CHALLENGE, REGISTERED, UNREGISTERED = "CHALLENGE", "REGISTERED", "UNREGISTERED"
DEVICE_ADDED, DEVICE_REMOVED = "device_added", "device_removed"


class Outcome(enum.StrEnum):
    """Result of a code check."""

    ACCEPTED = "ACCEPTED"
    WRONG = "WRONG"
    REPLAY = "REPLAY"
    LOCKED = "LOCKED"
    EXPIRED = "EXPIRED"
    NOTHING = "NOTHING"  # no challenge / no registered device to check against


@dataclass(frozen=True, slots=True)
class Challenge:
    """A generated secret, for the one response that shows it."""

    registration_id: str
    device_id: str
    secret: bytes
    uri: str
    expires_at: datetime
    account: str


def _aad(device_id: str) -> str:
    return f"device:{device_id}"


def _state(session: Session, user: User) -> UserState:
    devices = users.device_states_of(session, user.id)
    return UserState(user.id, user.provisioned, devices)


def _apply(session: Session, user: User, outcome: LifecycleOutcome) -> None:
    user.status = outcome.state.status
    if outcome.event is not None:
        audit.record(session, outcome.event)


def _totp_devices(session: Session, user_id: str, state: DeviceState) -> list[Device]:
    query = sa.select(Device).where(
        Device.user_id == user_id, Device.type == DeviceType.TOTP, Device.state == state
    )
    return list(session.scalars(query.execution_options(populate_existing=True)))


def _open_challenge(session: Session, user_id: str, now: datetime) -> Registration | None:
    registration = session.scalar(
        sa.select(Registration)
        .where(
            Registration.user_id == user_id,
            Registration.factor_type == FACTOR,
            Registration.status == CHALLENGE,
        )
        .order_by(Registration.created_at.desc())
        .limit(1)
    )
    if registration is None or registration.expires_at is None or registration.expires_at <= now:
        return None
    return registration


def _load_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id, populate_existing=True)
    if user is None or user.deleted_at is not None:
        raise NotFoundError(f"no user {user_id!r}")
    return user


def status(session: Session, user_id: str, *, now: datetime | None = None) -> str:
    """REGISTERED (an ACTIVE TOTP device), CHALLENGE (a secret waiting for its first code), UNREGISTERED."""
    if _totp_devices(session, user_id, DeviceState.ACTIVE):
        return REGISTERED
    if _open_challenge(session, user_id, now or utcnow()) is not None:
        return CHALLENGE
    return UNREGISTERED


def generate(
    session: Session,
    user_id: str,
    settings: EnrollmentSettings,
    *,
    actor: str = "user",
    now: datetime | None = None,
) -> Challenge:
    """Start (or restart) a TOTP registration; refused by the lifecycle rules and when already registered."""
    now = now or utcnow()
    user = _load_user(session, user_id)
    if factors.is_disabled(session, user.id):
        raise DomainError("the TOTP factor is turned off for this user")
    if _totp_devices(session, user.id, DeviceState.ACTIVE):
        raise DomainError("a TOTP authenticator is already registered; delete it before registering another")
    _drop_challenges(session, user)
    device_id = new_id()
    outcome = enroll_device(_state(session, user), device_id, actor=actor)  # raises when refused
    secret = otp.new_secret()
    session.add(
        Device(
            id=device_id,
            user_id=user.id,
            type=DeviceType.TOTP,
            state=DeviceState.PENDING,
            name="Authenticator app",
            secret_enc=settings.keys.seal(secret, _aad(device_id)),
        )
    )
    registration = Registration(
        user_id=user.id,
        factor_type=FACTOR,
        status=CHALLENGE,
        device_id=device_id,
        expires_at=now + settings.challenge_ttl,
        created_at=now,
    )
    session.add(registration)
    session.flush()
    _apply(session, user, outcome)
    audit.record(session, _event(actor, "registration.challenge", user.id, None, CHALLENGE))
    account = user.email or user.username
    uri = otp.otpauth_uri(secret, account, settings.totp)
    return Challenge(registration.id, device_id, secret, uri, registration.expires_at or now, account)


def pending_secret(
    session: Session, user_id: str, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Challenge | None:
    """The open challenge's secret (to show the QR code again in the same session), else None."""
    now = now or utcnow()
    registration = _open_challenge(session, user_id, now)
    if registration is None or registration.device_id is None:
        return None
    device = session.get(Device, registration.device_id)
    user = session.get(User, user_id)
    if device is None or device.secret_enc is None or device.state is not DeviceState.PENDING or user is None:
        return None
    secret = settings.keys.unseal(device.secret_enc, _aad(device.id))
    account = user.email or user.username
    uri = otp.otpauth_uri(secret, account, settings.totp)
    return Challenge(registration.id, device.id, secret, uri, registration.expires_at or now, account)


def _drop_challenges(session: Session, user: User) -> None:
    """Forget earlier, unfinished challenges and their PENDING devices."""
    old = session.scalars(
        sa.select(Registration).where(
            Registration.user_id == user.id,
            Registration.factor_type == FACTOR,
            Registration.status == CHALLENGE,
        )
    ).all()
    for registration in old:
        device = session.get(Device, registration.device_id) if registration.device_id else None
        session.delete(registration)
        if device is not None and device.state is DeviceState.PENDING:
            _apply(
                session,
                user,
                delete_device(
                    _state(session, user), device.id, actor="system", reason="enrollment restarted"
                ),
            )
            session.delete(device)
    session.flush()


def _check(
    session: Session,
    device: Device,
    code: str,
    settings: EnrollmentSettings,
    *,
    from_state: DeviceState,
    to_state: DeviceState,
    now: datetime,
) -> Outcome:
    """Match ``code`` against ``device`` and accept its step by compare-and-set."""
    if factors.is_locked(session, device.user_id):
        return Outcome.LOCKED
    assert device.secret_enc is not None
    secret = settings.keys.unseal(device.secret_enc, _aad(device.id))
    match = otp.match_step(secret, code, now.timestamp(), settings.totp, last_step=device.last_step)
    if match.check is otp.Check.WRONG:
        locked = factors.record_failure(session, device.user_id, max_failures=settings.max_failures, now=now)
        return Outcome.LOCKED if locked else Outcome.WRONG
    if match.check is otp.Check.REPLAY:
        return Outcome.REPLAY
    won = session.execute(
        sa.update(Device)
        .where(
            Device.id == device.id,
            Device.state == from_state,
            sa.or_(Device.last_step.is_(None), Device.last_step < match.step),
        )
        .values(last_step=match.step, state=to_state, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    if not rowcount(won):
        return Outcome.REPLAY  # another submission of this code (or a later one) got there first
    factors.record_success(session, device.user_id, now=now)
    session.refresh(device)
    return Outcome.ACCEPTED


def verify(
    session: Session, user_id: str, code: str, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Outcome:
    """Confirm the open challenge with one code: on success the device is ACTIVE, the status derived again."""
    now = now or utcnow()
    user = _load_user(session, user_id)
    registration = _open_challenge(session, user.id, now)
    if registration is None:
        return Outcome.EXPIRED if _any_challenge(session, user.id) else Outcome.NOTHING
    device = session.get(Device, registration.device_id) if registration.device_id else None
    if device is None:
        return Outcome.NOTHING
    state = _state(session, user)
    if state.devices.get(device.id) is not DeviceState.PENDING:
        return Outcome.REPLAY  # a parallel submission verified it a moment ago
    lifecycle = verify_device(state, device.id, actor="user")  # raises when a lifecycle rule refuses
    result = _check(
        session, device, code, settings, from_state=DeviceState.PENDING, to_state=DeviceState.ACTIVE, now=now
    )
    if result is not Outcome.ACCEPTED:
        return result
    _apply(session, user, lifecycle)
    registration.status, registration.expires_at = REGISTERED, None
    audit.record(session, _event("user", "registration.registered", user.id, CHALLENGE, REGISTERED))
    _notify(session, user, DEVICE_ADDED, device.id, settings, now)
    return Outcome.ACCEPTED


def check_code(
    session: Session, user_id: str, code: str, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Outcome:
    """Check a code against the user's ACTIVE TOTP device (confirmation, and later authentication)."""
    now = now or utcnow()
    devices = _totp_devices(session, user_id, DeviceState.ACTIVE)
    if not devices:
        return Outcome.NOTHING
    return _check(
        session,
        devices[0],
        code,
        settings,
        from_state=DeviceState.ACTIVE,
        to_state=DeviceState.ACTIVE,
        now=now,
    )


def unregister_self(
    session: Session, user_id: str, code: str, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Outcome:
    """The user removes their TOTP registration, confirming with a current code.

    The device is disabled, not deleted (seed doc 000: users who unenrolled are DEVICES_DISABLED until an
    admin deletes or re-enables the device).
    """
    now = now or utcnow()
    user = _load_user(session, user_id)
    result = check_code(session, user.id, code, settings, now=now)
    if result is not Outcome.ACCEPTED:
        return result
    for device in _totp_devices(session, user.id, DeviceState.ACTIVE):
        _apply(
            session,
            user,
            disable_device(_state(session, user), device.id, actor="user", reason="unregistered by the user"),
        )
        device.state = DeviceState.DISABLED
        session.flush()
        _notify(session, user, DEVICE_REMOVED, device.id, settings, now)
    _close_registrations(session, user.id)
    audit.record(session, _event("user", "registration.deleted", user.id, REGISTERED, UNREGISTERED))
    return Outcome.ACCEPTED


def admin_delete(
    session: Session, user_id: str, settings: EnrollmentSettings, *, actor: str, now: datetime | None = None
) -> int:
    """An admin deletes the user's TOTP registration and devices; returns how many devices went."""
    user = _load_user(session, user_id)
    devices = list(
        session.scalars(sa.select(Device).where(Device.user_id == user.id, Device.type == DeviceType.TOTP))
    )
    for device in devices:
        _apply(
            session,
            user,
            delete_device(
                _state(session, user), device.id, actor=actor, reason="TOTP registration deleted by an admin"
            ),
        )
        was_proven = device.state is not DeviceState.PENDING
        session.delete(device)
        session.flush()
        if was_proven:
            _notify(session, user, DEVICE_REMOVED, device.id, settings, now or utcnow())
    _close_registrations(session, user.id)
    audit.record(session, _event(actor, "registration.deleted", user.id, None, UNREGISTERED))
    return len(devices)


def _close_registrations(session: Session, user_id: str) -> None:
    session.execute(
        sa.delete(Registration).where(Registration.user_id == user_id, Registration.factor_type == FACTOR)
    )


def _any_challenge(session: Session, user_id: str) -> bool:
    query = sa.select(Registration.id).where(
        Registration.user_id == user_id, Registration.status == CHALLENGE
    )
    return session.scalar(query.limit(1)) is not None


def _notify(
    session: Session, user: User, purpose: str, device_id: str, settings: EnrollmentSettings, now: datetime
) -> None:
    """Tell the user out of band that an authenticator was added or removed (O11)."""
    if user.email:
        outbox.enqueue(
            session,
            user_id=user.id,
            purpose=purpose,
            dedup_key=f"{purpose}:{user.id}:{device_id}",
            to_address=user.email,
            host=settings.mail_host,
            context={"device_type": "TOTP", "at": now.isoformat(timespec="seconds")},
            now=now,
        )


def _event(actor: str, action: str, user_id: str, old: str | None, new: str | None) -> AuditEvent:
    return AuditEvent(actor, action, "user", user_id, old, new, "TOTP registration")

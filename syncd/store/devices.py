"""A user's devices as the admin API changes them: list, get, enable, disable, delete.

Every change goes through :mod:`syncd.domain.lifecycle` on a :class:`UserState` built from the user's
stored devices, so the rules (PENDING devices can't be disabled, …) and the derived status live there;
this module stores the outcome (``users.status``), writes the status audit event it returns plus one
``device.*`` audit row, and queues the "authenticator removed" mail like the enrollment code does
(:mod:`syncd.store.registrations`). The user row is locked (``FOR UPDATE`` on PostgreSQL; SQLite write units
of work are serialised anyway) so two changes of one user's devices can't both derive from a stale state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import (
    AuditEvent,
    DeviceState,
    DeviceType,
    Outcome,
    UserState,
    delete_device,
    disable_device,
    enable_device,
)
from syncd.errors import NotFoundError
from syncd.store import audit, outbox, users
from syncd.store.tables import Device, HardwareToken, Registration, User, utcnow

DEVICE_ADDED, DEVICE_REMOVED = "device_added", "device_removed"


def load_user(session: Session, user_id: str, *, lock: bool = False) -> User:
    """A live user by id (locked for the unit of work when ``lock``), or NotFoundError."""
    user = session.get(User, user_id, populate_existing=True, with_for_update=lock or None)
    if user is None or user.deleted_at is not None:
        raise NotFoundError(f"no user {user_id!r}")
    return user


def state_of(session: Session, user: User) -> UserState:
    return UserState(user.id, user.provisioned, users.device_states_of(session, user.id))


def apply(session: Session, user: User, outcome: Outcome) -> None:
    """Store the derived status and audit the status change, if any."""
    user.status = outcome.state.status
    if outcome.event is not None:
        audit.record(session, outcome.event)


def notify(
    session: Session, user: User, purpose: str, dedup_key: str, device_type: str, host: str, now: datetime
) -> None:
    """Tell the user out of band that an authenticator was added or removed (no secret in the mail)."""
    if user.email:
        outbox.enqueue(
            session,
            user_id=user.id,
            purpose=purpose,
            dedup_key=dedup_key,
            to_address=user.email,
            host=host,
            context={"device_type": device_type, "at": now.isoformat(timespec="seconds")},
            now=now,
        )


def device_event(
    actor: str, action: str, device: Device, old: str | None, new: str | None, reason: str
) -> AuditEvent:
    return AuditEvent(actor, action, "device", device.id, old, new, reason)


def listing(session: Session, user_id: str) -> Sequence[Device]:
    """The user's devices, oldest first."""
    load_user(session, user_id)
    query = sa.select(Device).where(Device.user_id == user_id).order_by(Device.created_at, Device.id)
    return session.scalars(query).all()


def get(session: Session, user_id: str, device_id: str) -> Device:
    load_user(session, user_id)
    device = session.get(Device, device_id, populate_existing=True)
    if device is None or device.user_id != user_id:
        raise NotFoundError(f"user {user_id!r} has no device {device_id!r}")
    return device


def serials(session: Session, token_ids: Sequence[str]) -> dict[str, str]:
    """Hardware token serials by token id (for device listings)."""
    if not token_ids:
        return {}
    query = sa.select(HardwareToken.id, HardwareToken.serial).where(HardwareToken.id.in_(list(token_ids)))
    return {token_id: serial for token_id, serial in session.execute(query)}


def disable(
    session: Session, user_id: str, device_id: str, *, actor: str, host: str, now: datetime | None = None
) -> Device:
    """ACTIVE → DISABLED (DomainError from the lifecycle for PENDING or already DISABLED devices)."""
    now = now or utcnow()
    user = load_user(session, user_id, lock=True)
    device = get(session, user_id, device_id)
    outcome = disable_device(state_of(session, user), device.id, actor=actor, reason="disabled by an admin")
    old = device.state
    device.state = DeviceState.DISABLED
    apply(session, user, outcome)
    audit.record(session, device_event(actor, "device.disabled", device, old.value, "DISABLED", "admin"))
    stamp = int(now.timestamp() * 1000)
    notify(
        session,
        user,
        DEVICE_REMOVED,
        f"{DEVICE_REMOVED}:{user.id}:{device.id}:{stamp}",
        device.type,
        host,
        now,
    )
    session.flush()
    return device


def enable(session: Session, user_id: str, device_id: str, *, actor: str) -> Device:
    """DISABLED → ACTIVE (DomainError unless the device is DISABLED)."""
    user = load_user(session, user_id, lock=True)
    device = get(session, user_id, device_id)
    outcome = enable_device(state_of(session, user), device.id, actor=actor, reason="enabled by an admin")
    device.state = DeviceState.ACTIVE
    apply(session, user, outcome)
    audit.record(session, device_event(actor, "device.enabled", device, "DISABLED", "ACTIVE", "admin"))
    session.flush()
    return device


def delete(
    session: Session, user_id: str, device_id: str, *, actor: str, host: str, now: datetime | None = None
) -> None:
    """Delete a device of any state; a hardware token's device frees the token for another user."""
    now = now or utcnow()
    user = load_user(session, user_id, lock=True)
    device = get(session, user_id, device_id)
    remove(session, user, device, actor=actor, reason="deleted by an admin", host=host, now=now)


def remove(
    session: Session, user: User, device: Device, *, actor: str, reason: str, host: str, now: datetime
) -> None:
    """Delete ``device`` of ``user`` through the lifecycle (shared with hardware-token unassignment)."""
    outcome = delete_device(state_of(session, user), device.id, actor=actor, reason=reason)
    was_proven = device.state is not DeviceState.PENDING
    if device.type is DeviceType.HARDWARE_TOKEN and device.hardware_token_id is not None:
        session.execute(
            sa.update(HardwareToken)
            .where(HardwareToken.id == device.hardware_token_id, HardwareToken.user_id == user.id)
            .values(user_id=None)
            .execution_options(synchronize_session=False)
        )
    session.execute(sa.delete(Registration).where(Registration.device_id == device.id))
    audit.record(session, device_event(actor, "device.deleted", device, device.state.value, None, reason))
    device_type = device.type.value
    session.delete(device)
    session.flush()
    apply(session, user, outcome)
    if was_proven:
        notify(
            session, user, DEVICE_REMOVED, f"{DEVICE_REMOVED}:{user.id}:{device.id}", device_type, host, now
        )

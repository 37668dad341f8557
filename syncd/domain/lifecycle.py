"""User lifecycle: statuses, device states, and the rules between them (DESIGN.md "Domain").

Status is derived, never set by hand: :func:`derive_status` is the only function that decides it. The
event functions (:func:`enroll_device`, :func:`verify_device`, …) are pure: they take a :class:`UserState`
and return the new state plus the :class:`AuditEvent` describing the status change (or none), or raise
:class:`~syncd.errors.DomainError` when a rule refuses the operation. Storage code applies the same
functions to rows, so the rules live in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from syncd.errors import DomainError


class UserStatus(enum.StrEnum):
    """The four statuses of DESIGN.md; the string values are what the API and the database show."""

    UNENROLLED = "UNENROLLED"
    ACTIVE = "ACTIVE"
    DEVICES_DISABLED = "DEVICES_DISABLED"
    PROVISIONING_DISABLED = "PROVISIONING_DISABLED"


class DeviceType(enum.StrEnum):
    """Authenticator kinds. syncd verifies TOTP and HARDWARE_TOKEN itself; the others are records."""

    PUSH = "PUSH"
    PHONE_ONLY = "PHONE_ONLY"
    SECURITY_KEY = "SECURITY_KEY"
    TOTP = "TOTP"
    HARDWARE_TOKEN = "HARDWARE_TOKEN"  # noqa: S105 - a device type, not a secret


class DeviceState(enum.StrEnum):
    """PENDING: enrollment started, possession not proven yet; ACTIVE; DISABLED (by admin or user)."""

    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    DISABLED = "DISABLED"


SELF_VERIFIED_TYPES = frozenset({DeviceType.TOTP, DeviceType.HARDWARE_TOKEN})


def derive_status(*, provisioned: bool, devices: Iterable[DeviceState]) -> UserStatus:
    """Return the status DESIGN.md prescribes.

    ``provisioned`` is False when the source says disabled, the user left scope, was deleted in the
    source, or a SCIM client set ``active=false``. PENDING devices do not count as devices: a user who
    started enrolling but never proved possession is still UNENROLLED (docs/adr/0003-lifecycle-rules.md).
    """
    if not provisioned:
        return UserStatus.PROVISIONING_DISABLED
    states = [state for state in devices if state is not DeviceState.PENDING]
    if not states:
        return UserStatus.UNENROLLED
    if DeviceState.ACTIVE in states:
        return UserStatus.ACTIVE
    return UserStatus.DEVICES_DISABLED


def can_enroll(status: UserStatus) -> bool:
    """Only UNENROLLED and ACTIVE users may start a new enrollment."""
    return status in (UserStatus.UNENROLLED, UserStatus.ACTIVE)


def can_authenticate(status: UserStatus) -> bool:
    """A user authenticates (any factor, bypass codes included) only while ACTIVE.

    PROVISIONING_DISABLED users can't authenticate by any means; UNENROLLED and DEVICES_DISABLED users
    have no usable authenticator (bypass-code handling for those is decided by policy, later).
    """
    return status is UserStatus.ACTIVE


def can_use_bypass_code(status: UserStatus) -> bool:
    """Bypass codes are for users who lost their device, never for PROVISIONING_DISABLED users."""
    return status is not UserStatus.PROVISIONING_DISABLED


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit row: who did what to whom, old → new, and why.

    ``actor`` is ``ldap:NAME``, ``file:NAME``, ``scim:CLIENT``, ``admin:KEY``, ``user`` or ``system``.
    """

    actor: str
    action: str
    target_type: str
    target_id: str
    old: str | None = None
    new: str | None = None
    reason: str = ""
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class UserState:
    """What the lifecycle rules need to know about one user."""

    user_id: str
    provisioned: bool = True
    devices: Mapping[str, DeviceState] = field(default_factory=dict)

    @property
    def status(self) -> UserStatus:
        return derive_status(provisioned=self.provisioned, devices=self.devices.values())


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one lifecycle event: the new state and the status change it caused, if any."""

    state: UserState
    event: AuditEvent | None


def _outcome(before: UserState, after: UserState, *, actor: str, reason: str, run_id: str | None) -> Outcome:
    old, new = before.status, after.status
    if old is new:
        return Outcome(after, None)
    event = AuditEvent(
        actor=actor,
        action="user.status_changed",
        target_type="user",
        target_id=before.user_id,
        old=old.value,
        new=new.value,
        reason=reason,
        run_id=run_id,
    )
    return Outcome(after, event)


def set_provisioned(
    state: UserState, provisioned: bool, *, actor: str, reason: str, run_id: str | None = None
) -> Outcome:
    """A source enabled or disabled the user. Devices and secrets are kept either way."""
    return _outcome(state, replace(state, provisioned=provisioned), actor=actor, reason=reason, run_id=run_id)


def enroll_device(
    state: UserState, device_id: str, *, actor: str, reason: str = "enrollment started"
) -> Outcome:
    """Start enrolling a new device (state PENDING). Refused unless the user may enroll."""
    status = state.status
    if not can_enroll(status):
        raise DomainError(f"user {state.user_id} is {status.value} and can't enroll a new device")
    if device_id in state.devices:
        raise DomainError(f"device {device_id} already exists")
    devices = {**state.devices, device_id: DeviceState.PENDING}
    return _outcome(state, replace(state, devices=devices), actor=actor, reason=reason, run_id=None)


def verify_device(
    state: UserState, device_id: str, *, actor: str, reason: str = "possession proven"
) -> Outcome:
    """Possession proven: a PENDING device becomes ACTIVE."""
    current = _device(state, device_id)
    if current is not DeviceState.PENDING:
        raise DomainError(f"device {device_id} is {current.value}, not PENDING")
    status = state.status
    if not can_enroll(status):
        raise DomainError(f"user {state.user_id} is {status.value} and can't finish enrolling a device")
    return _set_device(state, device_id, DeviceState.ACTIVE, actor=actor, reason=reason)


def disable_device(
    state: UserState, device_id: str, *, actor: str, reason: str = "device disabled"
) -> Outcome:
    """Disable an ACTIVE device (admin, or the user unenrolling it).

    A PENDING device can't be disabled, only deleted: an abandoned enrollment must not turn an UNENROLLED
    user into DEVICES_DISABLED, and every DISABLED device was once proven (so enabling it is safe).
    """
    current = _device(state, device_id)
    if current is DeviceState.DISABLED:
        raise DomainError(f"device {device_id} is already DISABLED")
    if current is DeviceState.PENDING:
        raise DomainError(
            f"device {device_id} is PENDING (never verified): delete it instead of disabling it"
        )
    return _set_device(state, device_id, DeviceState.DISABLED, actor=actor, reason=reason)


def enable_device(state: UserState, device_id: str, *, actor: str, reason: str = "device enabled") -> Outcome:
    """Re-enable a DISABLED device (admin only)."""
    current = _device(state, device_id)
    if current is not DeviceState.DISABLED:
        raise DomainError(f"device {device_id} is {current.value}, not DISABLED")
    return _set_device(state, device_id, DeviceState.ACTIVE, actor=actor, reason=reason)


def delete_device(state: UserState, device_id: str, *, actor: str, reason: str = "device deleted") -> Outcome:
    """Delete a device of any state."""
    _device(state, device_id)
    devices = {key: value for key, value in state.devices.items() if key != device_id}
    return _outcome(state, replace(state, devices=devices), actor=actor, reason=reason, run_id=None)


def _device(state: UserState, device_id: str) -> DeviceState:
    try:
        return state.devices[device_id]
    except KeyError:
        raise DomainError(f"user {state.user_id} has no device {device_id}") from None


def _set_device(state: UserState, device_id: str, new: DeviceState, *, actor: str, reason: str) -> Outcome:
    devices = {**state.devices, device_id: new}
    return _outcome(state, replace(state, devices=devices), actor=actor, reason=reason, run_id=None)

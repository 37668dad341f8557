"""A user's registration state for one factor, as the admin API shows and filters it.

One state per (user, factor), decided by precedence so that filters partition the users:

* ``DISABLED`` — an admin disabled the factor for the user, or every device of that type is DISABLED;
* ``LOCKED`` — too many wrong codes (cleared by an admin unlock);
* ``ACTIVE`` — at least one ACTIVE device of that type (for bypass codes: a live code);
* ``PENDING`` — only a device whose possession is not proven yet;
* ``NOT_SETUP`` — nothing.

The store turns the same precedence into SQL (``syncd.store.user_admin.factor_state_clause``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from syncd.domain.lifecycle import DeviceState


class FactorType(enum.StrEnum):
    TOTP = "TOTP"
    HARDWARE_TOKEN = "HARDWARE_TOKEN"  # noqa: S105 - a factor name, not a secret
    BYPASS_CODE = "BYPASS_CODE"


class FactorState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PENDING = "PENDING"
    DISABLED = "DISABLED"
    LOCKED = "LOCKED"
    NOT_SETUP = "NOT_SETUP"


def factor_state(*, enabled: bool, locked: bool, devices: Iterable[DeviceState]) -> FactorState:
    """The state of one factor of one user (``enabled``/``locked`` from the per-user factor row, which
    counts as enabled and unlocked when it does not exist)."""
    states = set(devices)
    if not enabled:
        return FactorState.DISABLED
    if locked:
        return FactorState.LOCKED
    if DeviceState.ACTIVE in states:
        return FactorState.ACTIVE
    if DeviceState.PENDING in states:
        return FactorState.PENDING
    if DeviceState.DISABLED in states:
        return FactorState.DISABLED
    return FactorState.NOT_SETUP

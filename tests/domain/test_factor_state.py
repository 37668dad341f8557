"""The per-user factor state precedence (domain/factor_state.py): one state for every combination."""

from __future__ import annotations

import itertools

from syncd.domain.factor_state import FactorState, factor_state
from syncd.domain.lifecycle import DeviceState

A, P, D = DeviceState.ACTIVE, DeviceState.PENDING, DeviceState.DISABLED


def test_precedence() -> None:
    assert factor_state(enabled=False, locked=True, devices=[A]) is FactorState.DISABLED
    assert factor_state(enabled=True, locked=True, devices=[A]) is FactorState.LOCKED
    assert factor_state(enabled=True, locked=False, devices=[D, P, A]) is FactorState.ACTIVE
    assert factor_state(enabled=True, locked=False, devices=[D, P]) is FactorState.PENDING
    assert factor_state(enabled=True, locked=False, devices=[D, D]) is FactorState.DISABLED
    assert factor_state(enabled=True, locked=False, devices=[]) is FactorState.NOT_SETUP


def test_the_state_depends_only_on_which_device_states_occur() -> None:
    for enabled, locked, n in itertools.product((True, False), (True, False), range(4)):
        for devices in itertools.permutations((A, P, D, A)[:n] if n else ()):
            state = factor_state(enabled=enabled, locked=locked, devices=devices)
            assert state is factor_state(enabled=enabled, locked=locked, devices=sorted(set(devices)))
            assert (state is FactorState.NOT_SETUP) == (enabled and not locked and not devices)

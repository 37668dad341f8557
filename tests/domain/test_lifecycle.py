"""Unit tests of the lifecycle rules (DESIGN.md "Domain"): derive_status, the event functions, the gates.

The oracles here are written from the DESIGN.md table, not from the code: a user the source disabled is
PROVISIONING_DISABLED; otherwise no (non-PENDING) device → UNENROLLED, any ACTIVE device → ACTIVE, devices
but none ACTIVE → DEVICES_DISABLED. PENDING devices don't count as devices (documented decision).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import pytest

from syncd.domain.lifecycle import (
    AuditEvent,
    DeviceState,
    Outcome,
    UserState,
    UserStatus,
    can_authenticate,
    can_enroll,
    can_use_bypass_code,
    delete_device,
    derive_status,
    disable_device,
    enable_device,
    enroll_device,
    set_provisioned,
    verify_device,
)
from syncd.errors import DomainError

P, A, D = DeviceState.PENDING, DeviceState.ACTIVE, DeviceState.DISABLED
UNENROLLED = UserStatus.UNENROLLED
ACTIVE = UserStatus.ACTIVE
DEVICES_DISABLED = UserStatus.DEVICES_DISABLED
PROVISIONING_DISABLED = UserStatus.PROVISIONING_DISABLED

ADMIN = "admin:key-1"
SOURCE = "ldap:corp-ad"


def oracle(provisioned: bool, devices: list[DeviceState]) -> UserStatus:
    """The DESIGN.md table, row by row."""
    if not provisioned:  # source says disabled / out of scope / SCIM active=false
        return PROVISIONING_DISABLED
    active = sum(1 for d in devices if d == "ACTIVE")
    disabled = sum(1 for d in devices if d == "DISABLED")
    if active == 0 and disabled == 0:  # no devices (PENDING ones don't count)
        return UNENROLLED
    if active >= 1:  # at least one ACTIVE device
        return ACTIVE
    return DEVICES_DISABLED  # devices exist, none ACTIVE


# Every ordered sequence of up to 3 device states (so every multiset, in every order).
SEQUENCES = [seq for n in range(4) for seq in itertools.product(list(DeviceState), repeat=n)]
# Every multiset of up to 3 device states (for the heavier per-state tables below).
MULTISETS = [seq for n in range(4) for seq in itertools.combinations_with_replacement(list(DeviceState), n)]


def _ids(seq: tuple[DeviceState, ...]) -> str:
    return "-".join(s.value[0] for s in seq) or "none"


def _state(provisioned: bool, seq: tuple[DeviceState, ...], user_id: str = "u1") -> UserState:
    return UserState(user_id, provisioned, {f"d{i}": s for i, s in enumerate(seq)})


# ---- derive_status --------------------------------------------------------------------------------
def test_every_combination_is_covered() -> None:
    assert len(SEQUENCES) == 1 + 3 + 9 + 27
    assert len(MULTISETS) == 1 + 3 + 6 + 10


@pytest.mark.parametrize("provisioned", [True, False], ids=["provisioned", "deprovisioned"])
@pytest.mark.parametrize("seq", SEQUENCES, ids=_ids)
def test_derive_status_matches_design_table(provisioned: bool, seq: tuple[DeviceState, ...]) -> None:
    expected = oracle(provisioned, list(seq))
    assert derive_status(provisioned=provisioned, devices=list(seq)) is expected
    # any iterable, including a one-shot generator, gives the same answer
    assert derive_status(provisioned=provisioned, devices=(s for s in seq)) is expected
    assert _state(provisioned, seq).status is expected


@pytest.mark.parametrize(
    ("provisioned", "devices", "expected"),
    [
        (True, [], UNENROLLED),
        (True, [P], UNENROLLED),
        (True, [P, P, P], UNENROLLED),
        (True, [A], ACTIVE),
        (True, [D, D, A], ACTIVE),
        (True, [P, A], ACTIVE),
        (True, [D], DEVICES_DISABLED),
        (True, [D, P], DEVICES_DISABLED),
        (False, [], PROVISIONING_DISABLED),
        (False, [A, A], PROVISIONING_DISABLED),
        (False, [D], PROVISIONING_DISABLED),
    ],
)
def test_derive_status_named_cases(
    provisioned: bool, devices: list[DeviceState], expected: UserStatus
) -> None:
    assert derive_status(provisioned=provisioned, devices=devices) is expected


def test_status_values_are_the_api_strings() -> None:
    assert {s.value for s in UserStatus} == {
        "UNENROLLED",
        "ACTIVE",
        "DEVICES_DISABLED",
        "PROVISIONING_DISABLED",
    }


# ---- gates ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "enroll", "authenticate", "bypass"),
    [
        (UNENROLLED, True, False, True),
        (ACTIVE, True, True, True),
        (DEVICES_DISABLED, False, False, True),
        (PROVISIONING_DISABLED, False, False, False),
    ],
)
def test_gates(status: UserStatus, enroll: bool, authenticate: bool, bypass: bool) -> None:
    assert can_enroll(status) is enroll
    assert can_authenticate(status) is authenticate
    assert can_use_bypass_code(status) is bypass


def test_provisioning_disabled_can_not_authenticate_by_any_means() -> None:
    state = _state(False, (A, A))
    assert not can_authenticate(state.status)
    assert not can_use_bypass_code(state.status)


# ---- event functions: named refusals ------------------------------------------------------------------
def _refused(fn: Callable[[], Outcome], state: UserState, match: str) -> None:
    before = copy.deepcopy(dict(state.devices))
    with pytest.raises(DomainError, match=match):
        fn()
    assert dict(state.devices) == before


def test_devices_disabled_user_can_not_enroll() -> None:
    state = _state(True, (D,))
    assert state.status is DEVICES_DISABLED
    _refused(lambda: enroll_device(state, "new", actor="user"), state, "DEVICES_DISABLED")


def test_provisioning_disabled_user_can_not_enroll() -> None:
    state = _state(False, ())
    _refused(lambda: enroll_device(state, "new", actor="user"), state, "PROVISIONING_DISABLED")


def test_provisioning_disabled_user_can_not_verify() -> None:
    state = _state(False, (P,))
    _refused(lambda: verify_device(state, "d0", actor="user"), state, "PROVISIONING_DISABLED")


def test_devices_disabled_user_can_not_finish_an_enrollment_either() -> None:
    """DESIGN.md: a DEVICES_DISABLED user can't enroll until an admin deletes or re-enables a device.

    A PENDING device started while the user was ACTIVE (before an admin disabled the active one) must not
    be a back door: verifying it would take the user out of DEVICES_DISABLED without an admin.
    """
    state = _state(True, (D, P))
    assert state.status is DEVICES_DISABLED
    _refused(lambda: verify_device(state, "d1", actor="user"), state, "DEVICES_DISABLED")


def test_enroll_existing_device_id_is_refused() -> None:
    state = _state(True, (A,))
    _refused(lambda: enroll_device(state, "d0", actor="user"), state, "already exists")


@pytest.mark.parametrize("current", [A, D])
def test_verify_non_pending_device_is_refused(current: DeviceState) -> None:
    state = _state(True, (current,))
    _refused(lambda: verify_device(state, "d0", actor="user"), state, "not PENDING")


def test_disabling_a_disabled_device_is_refused() -> None:
    state = _state(True, (D, A))
    _refused(lambda: disable_device(state, "d0", actor=ADMIN), state, "already DISABLED")


@pytest.mark.parametrize("current", [A, P])
def test_enabling_a_device_that_is_not_disabled_is_refused(current: DeviceState) -> None:
    state = _state(True, (current,))
    _refused(lambda: enable_device(state, "d0", actor=ADMIN), state, "not DISABLED")


@pytest.mark.parametrize(
    "op",
    [
        lambda s: verify_device(s, "nope", actor="user"),
        lambda s: disable_device(s, "nope", actor=ADMIN),
        lambda s: enable_device(s, "nope", actor=ADMIN),
        lambda s: delete_device(s, "nope", actor=ADMIN),
    ],
    ids=["verify", "disable", "enable", "delete"],
)
@pytest.mark.parametrize("provisioned", [True, False])
def test_unknown_device_ids_are_refused(op: Callable[[UserState], Outcome], provisioned: bool) -> None:
    state = _state(provisioned, (A, D, P))
    _refused(lambda: op(state), state, "no device nope")


# ---- event functions: named transitions ------------------------------------------------------------
def test_enrolling_adds_a_pending_device_without_a_status_change() -> None:
    state = _state(True, ())
    out = enroll_device(state, "t1", actor="user")
    assert out.state.devices == {"t1": P}
    assert out.state.status is UNENROLLED
    assert out.event is None
    assert state.devices == {}  # the input is not mutated


def test_verify_moves_unenrolled_to_active_with_an_event() -> None:
    state = enroll_device(_state(True, ()), "t1", actor="user").state
    out = verify_device(state, "t1", actor="user", reason="TOTP code verified")
    assert out.state.devices == {"t1": A}
    assert out.event == AuditEvent(
        actor="user",
        action="user.status_changed",
        target_type="user",
        target_id="u1",
        old="UNENROLLED",
        new="ACTIVE",
        reason="TOTP code verified",
        run_id=None,
    )


def test_admin_disabling_the_last_active_device() -> None:
    out = disable_device(_state(True, (A, D)), "d0", actor=ADMIN, reason="lost phone")
    assert out.state.status is DEVICES_DISABLED
    assert out.event is not None
    assert (out.event.actor, out.event.old, out.event.new, out.event.reason) == (
        ADMIN,
        "ACTIVE",
        "DEVICES_DISABLED",
        "lost phone",
    )


def test_disabling_one_of_two_active_devices_changes_nothing_visible() -> None:
    out = disable_device(_state(True, (A, A)), "d0", actor=ADMIN)
    assert out.state.devices == {"d0": D, "d1": A}
    assert out.event is None


def test_devices_disabled_back_to_active_by_admin_enable() -> None:
    out = enable_device(_state(True, (D, D)), "d1", actor=ADMIN)
    assert out.state.devices == {"d0": D, "d1": A}
    assert out.event is not None
    assert (out.event.old, out.event.new) == ("DEVICES_DISABLED", "ACTIVE")


def test_devices_disabled_back_to_unenrolled_by_deleting_the_disabled_devices() -> None:
    state = _state(True, (D, D))
    first = delete_device(state, "d0", actor=ADMIN)
    assert first.event is None
    second = delete_device(first.state, "d1", actor=ADMIN, reason="cleanup")
    assert second.state.devices == {}
    assert second.event is not None
    assert (second.event.old, second.event.new, second.event.reason) == (
        "DEVICES_DISABLED",
        "UNENROLLED",
        "cleanup",
    )
    # then the user may enroll again
    assert enroll_device(second.state, "t2", actor="user").state.devices == {"t2": P}


def test_source_disable_and_reenable_keeps_devices_and_restores_status() -> None:
    for seq in MULTISETS:
        state = _state(True, seq)
        before = state.status
        off = set_provisioned(state, False, actor=SOURCE, reason="disabled in source", run_id="r1")
        assert off.state.devices == state.devices
        assert off.state.status is PROVISIONING_DISABLED
        on = set_provisioned(off.state, True, actor=SOURCE, reason="enabled in source", run_id="r2")
        assert on.state.devices == state.devices
        assert on.state.status is before


def test_set_provisioned_event_carries_run_id_actor_and_reason() -> None:
    out = set_provisioned(_state(True, (A,)), False, actor=SOURCE, reason="left scope", run_id="run-42")
    assert out.event == AuditEvent(
        actor=SOURCE,
        action="user.status_changed",
        target_type="user",
        target_id="u1",
        old="ACTIVE",
        new="PROVISIONING_DISABLED",
        reason="left scope",
        run_id="run-42",
    )


@pytest.mark.parametrize("provisioned", [True, False])
def test_set_provisioned_to_the_same_value_makes_no_event(provisioned: bool) -> None:
    state = _state(provisioned, (A,))
    out = set_provisioned(state, provisioned, actor=SOURCE, reason="unchanged", run_id="r")
    assert out.event is None
    assert out.state == state


# ---- exhaustive transition table ----------------------------------------------------------------
def _refusal(state: UserState, op: str, device_id: str) -> str | None:
    """Why DESIGN.md (and the brief) refuse ``op`` on ``device_id``; None when it is allowed."""
    status = oracle(state.provisioned, list(state.devices.values()))
    current = state.devices.get(device_id)
    if op == "enroll":
        if status in (DEVICES_DISABLED, PROVISIONING_DISABLED):
            return "status"
        return "exists" if current is not None else None
    if current is None:
        return "unknown"
    if op == "verify":
        if current is not P:
            return "not pending"
        # completing an enrollment is enrolling: same gate as enroll
        return "status" if status in (DEVICES_DISABLED, PROVISIONING_DISABLED) else None
    if op == "disable":
        if current is P:
            return "pending: delete, don't disable"
        return "already disabled" if current is D else None
    if op == "enable":
        return "not disabled" if current is not D else None
    assert op == "delete"
    return None


def _expected_devices(state: UserState, op: str, device_id: str) -> dict[str, DeviceState]:
    devices = dict(state.devices)
    if op == "enroll":
        devices[device_id] = P
    elif op == "verify" or op == "enable":
        devices[device_id] = A
    elif op == "disable":
        devices[device_id] = D
    else:
        del devices[device_id]
    return devices


OPS: dict[str, Callable[..., Outcome]] = {
    "enroll": enroll_device,
    "verify": verify_device,
    "disable": disable_device,
    "enable": enable_device,
    "delete": delete_device,
}


@pytest.mark.parametrize("provisioned", [True, False], ids=["provisioned", "deprovisioned"])
@pytest.mark.parametrize("seq", MULTISETS, ids=_ids)
def test_every_device_event_on_every_state(provisioned: bool, seq: tuple[DeviceState, ...]) -> None:
    state = _state(provisioned, seq, user_id="user-7")
    frozen = copy.deepcopy(dict(state.devices))
    old = oracle(provisioned, list(seq))
    for (name, fn), device_id in itertools.product(OPS.items(), [*state.devices, "ghost"]):
        why = _refusal(state, name, device_id)
        where = f"{name}({device_id}) on {_ids(seq)} provisioned={provisioned}"
        if why is not None:
            try:
                fn(state, device_id, actor=ADMIN, reason="why not")
            except DomainError:
                pass
            else:
                pytest.fail(f"{where}: should be refused ({why}) but was allowed")
            assert dict(state.devices) == frozen, where
            continue
        out = fn(state, device_id, actor=ADMIN, reason="why not")
        expected = _expected_devices(state, name, device_id)
        assert dict(out.state.devices) == expected, where
        assert out.state.provisioned is provisioned, where
        assert out.state.user_id == "user-7", where
        new = oracle(provisioned, list(expected.values()))
        assert out.state.status is new, where
        if new is old:
            assert out.event is None, where
        else:
            assert out.event == AuditEvent(
                ADMIN, "user.status_changed", "user", "user-7", old.value, new.value, "why not", None
            ), where
        assert dict(state.devices) == frozen, where  # the input state is never mutated


@pytest.mark.parametrize("seq", MULTISETS, ids=_ids)
@pytest.mark.parametrize(("before", "after"), [(True, False), (False, True), (True, True), (False, False)])
def test_every_source_event_on_every_state(seq: tuple[DeviceState, ...], before: bool, after: bool) -> None:
    state = _state(before, seq)
    out = set_provisioned(state, after, actor=SOURCE, reason="sync", run_id="run-1")
    assert out.state.devices == state.devices
    assert out.state.provisioned is after
    old, new = oracle(before, list(seq)), oracle(after, list(seq))
    if old is new:
        assert out.event is None
    else:
        assert out.event == AuditEvent(
            SOURCE, "user.status_changed", "user", "u1", old.value, new.value, "sync", "run-1"
        )

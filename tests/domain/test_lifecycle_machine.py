"""A Hypothesis state machine over random lifecycle histories (DESIGN.md "Domain").

The machine drives one user through source enable/disable and device enroll/verify/disable/enable/delete
events, keeps a model of its own (a provisioned flag and a dict of device states), and after every step
checks the status against the DESIGN.md table, the audit event against the before/after statuses, and the
refusal rules against the model.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, precondition, rule

from syncd.domain.lifecycle import (
    DeviceState,
    Outcome,
    UserState,
    UserStatus,
    delete_device,
    disable_device,
    enable_device,
    enroll_device,
    set_provisioned,
    verify_device,
)
from syncd.errors import DomainError

P, A, D = DeviceState.PENDING, DeviceState.ACTIVE, DeviceState.DISABLED
SOURCE, ADMIN, USER = "scim:okta", "admin:key-1", "user"

# The only ways out of DEVICES_DISABLED: an admin enabling or deleting devices, or the source disabling.
LEAVES_DEVICES_DISABLED = {"enable", "delete", "source"}


def oracle(provisioned: bool, devices: dict[str, DeviceState]) -> UserStatus:
    """DESIGN.md's table (PENDING devices don't count as devices)."""
    if not provisioned:
        return UserStatus.PROVISIONING_DISABLED
    counted = [state for state in devices.values() if state is not P]
    if not counted:
        return UserStatus.UNENROLLED
    if A in counted:
        return UserStatus.ACTIVE
    return UserStatus.DEVICES_DISABLED


class Lifecycle(RuleBasedStateMachine):
    devices = Bundle("devices")

    def __init__(self) -> None:
        super().__init__()
        self.state = UserState("u1")
        self.provisioned = True
        self.model: dict[str, DeviceState] = {}
        self.counter = 0
        self.run = 0
        self.events = 0
        # status and devices when the source last disabled the user (None while provisioned)
        self.parked: tuple[UserStatus, dict[str, DeviceState]] | None = None

    @property
    def status(self) -> UserStatus:
        return oracle(self.provisioned, self.model)

    # ---- the one place that applies an event and checks what it did --------------------------------
    def _apply(
        self,
        kind: str,
        call: Callable[[UserState], Outcome],
        refused: bool,
        after: dict[str, DeviceState],
        provisioned: bool,
        *,
        actor: str,
        reason: str,
        run_id: str | None = None,
    ) -> bool:
        before_state, before_status = self.state, self.status
        before_devices = dict(self.model)
        try:
            outcome = call(before_state)
        except DomainError:
            assert refused, f"{kind} was refused but the rules allow it (status {before_status})"
            assert self.state is before_state
            assert dict(before_state.devices) == before_devices, "a refused event changed the state"
            assert before_state.provisioned is self.provisioned
            return False
        assert not refused, f"{kind} was allowed but the rules refuse it (status {before_status})"
        assert dict(before_state.devices) == before_devices, "the input state was mutated"
        self.state, self.model, self.provisioned = outcome.state, after, provisioned
        new_status = self.status
        assert self.state.status is new_status
        if new_status is before_status:
            assert outcome.event is None, f"{kind}: an audit event without a status change"
        else:
            event = outcome.event
            assert event is not None, f"{kind}: {before_status} -> {new_status} without an audit event"
            assert (event.old, event.new) == (before_status.value, new_status.value)
            assert (event.actor, event.reason, event.run_id) == (actor, reason, run_id)
            assert (event.action, event.target_type, event.target_id) == ("user.status_changed", "user", "u1")
            self.events += 1
            if before_status is UserStatus.DEVICES_DISABLED:
                assert kind in LEAVES_DEVICES_DISABLED, f"{kind} took the user out of DEVICES_DISABLED"
        return True

    # ---- source events ------------------------------------------------------------------------------
    @rule(provisioned=st.booleans())
    def source(self, provisioned: bool) -> None:
        self.run += 1
        run_id = f"run-{self.run}"
        was_provisioned, before_status, before_devices = self.provisioned, self.status, dict(self.model)
        reason = "enabled in source" if provisioned else "disabled in source"
        self._apply(
            "source",
            lambda s: set_provisioned(s, provisioned, actor=SOURCE, reason=reason, run_id=run_id),
            refused=False,
            after=dict(self.model),
            provisioned=provisioned,
            actor=SOURCE,
            reason=reason,
            run_id=run_id,
        )
        assert self.model == before_devices, "a source event touched the devices"
        if was_provisioned and not provisioned:
            self.parked = (before_status, before_devices)
        elif not was_provisioned and provisioned:
            assert self.parked is not None
            parked_status, parked_devices = self.parked
            if parked_devices == self.model:
                assert self.status is parked_status, "re-enabling did not restore the previous status"
            self.parked = None

    # ---- device events --------------------------------------------------------------------------------
    @rule(target=devices)
    def enroll(self) -> object:
        self.counter += 1
        device_id = f"dev-{self.counter}"
        refused = self.status not in (UserStatus.UNENROLLED, UserStatus.ACTIVE)
        ok = self._apply(
            "enroll",
            lambda s: enroll_device(s, device_id, actor=USER, reason="enrollment started"),
            refused,
            {**self.model, device_id: P},
            self.provisioned,
            actor=USER,
            reason="enrollment started",
        )
        return device_id if ok else multiple()

    @rule(device_id=devices)
    def enroll_again(self, device_id: str) -> None:
        refused = device_id in self.model or self.status not in (UserStatus.UNENROLLED, UserStatus.ACTIVE)
        self._apply(
            "enroll",
            lambda s: enroll_device(s, device_id, actor=USER, reason="re-enroll"),
            refused,
            {**self.model, device_id: P},
            self.provisioned,
            actor=USER,
            reason="re-enroll",
        )

    @rule(device_id=devices | st.just("ghost"))
    def verify(self, device_id: str) -> None:
        refused = self.model.get(device_id) is not P or self.status in (
            UserStatus.DEVICES_DISABLED,
            UserStatus.PROVISIONING_DISABLED,
        )
        self._apply(
            "verify",
            lambda s: verify_device(s, device_id, actor=USER, reason="code verified"),
            refused,
            {**self.model, device_id: A},
            self.provisioned,
            actor=USER,
            reason="code verified",
        )

    @rule(device_id=devices | st.just("ghost"), actor=st.sampled_from([ADMIN, USER]))
    def disable(self, device_id: str, actor: str) -> None:
        refused = self.model.get(device_id) is not A  # PENDING devices are deleted, never disabled
        self._apply(
            "disable",
            lambda s: disable_device(s, device_id, actor=actor, reason="disabled"),
            refused,
            {**self.model, device_id: D},
            self.provisioned,
            actor=actor,
            reason="disabled",
        )

    @rule(device_id=devices | st.just("ghost"))
    def enable(self, device_id: str) -> None:
        refused = self.model.get(device_id) is not D
        self._apply(
            "enable",
            lambda s: enable_device(s, device_id, actor=ADMIN, reason="re-enabled by admin"),
            refused,
            {**self.model, device_id: A},
            self.provisioned,
            actor=ADMIN,
            reason="re-enabled by admin",
        )

    @rule(device_id=devices | st.just("ghost"))
    def delete(self, device_id: str) -> None:
        refused = device_id not in self.model
        self._apply(
            "delete",
            lambda s: delete_device(s, device_id, actor=ADMIN, reason="deleted by admin"),
            refused,
            {k: v for k, v in self.model.items() if k != device_id},
            self.provisioned,
            actor=ADMIN,
            reason="deleted by admin",
        )

    @precondition(lambda self: self.status is UserStatus.DEVICES_DISABLED)
    @rule()
    def devices_disabled_user_can_not_enroll(self) -> None:
        self._apply(
            "enroll",
            lambda s: enroll_device(s, "fresh", actor=USER),
            True,
            self.model,
            self.provisioned,
            actor=USER,
            reason="",
        )

    # ---- after every step -----------------------------------------------------------------------------
    @invariant()
    def matches_the_model(self) -> None:
        assert dict(self.state.devices) == self.model
        assert self.state.provisioned is self.provisioned
        assert self.state.status is oracle(self.provisioned, self.model)
        assert self.state.user_id == "u1"


Lifecycle.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestLifecycle = Lifecycle.TestCase

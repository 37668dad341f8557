"""Devices over HTTP (seed 000 "Disable a device", "Enable a device"): status recomputed through the
lifecycle rules on each change, refusals as 409 with the rule's message, audit rows and removal mail."""

from __future__ import annotations

import sqlalchemy as sa
from harness.admin import Admin
from harness.enrollment import add_user

from syncd.domain.lifecycle import DeviceState
from syncd.store.tables import AuditRecord, Device, OutboxMessage, User


def device_ids(admin: Admin, user_id: str) -> list[str]:
    with admin.db.read() as session:
        query = sa.select(Device.id).where(Device.user_id == user_id).order_by(Device.created_at, Device.id)
        return list(session.scalars(query))


def status_of(admin: Admin, user_id: str) -> str:
    with admin.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.status.value


def test_disable_last_active_device_then_enable_walks_the_statuses(admin: Admin) -> None:
    user_id = add_user(admin.db, "dora", devices=(DeviceState.ACTIVE, DeviceState.ACTIVE))
    first, second = device_ids(admin, user_id)
    with admin.client("manage") as client:
        listed = client.get(f"/api/v1/users/{user_id}/devices")
        assert listed.status_code == 200, listed.text
        assert sorted(d["deviceId"] for d in listed.json()["items"]) == sorted([first, second])
        assert {d["state"] for d in listed.json()["items"]} == {"ACTIVE"}

        one = client.post(f"/api/v1/users/{user_id}/devices/{first}/disable")
        assert one.status_code == 200, one.text
        assert one.json()["device"]["state"] == "DISABLED" and one.json()["userStatus"] == "ACTIVE"

        two = client.post(f"/api/v1/users/{user_id}/devices/{second}/disable")
        assert two.json()["userStatus"] == "DEVICES_DISABLED"
        assert status_of(admin, user_id) == "DEVICES_DISABLED"

        again = client.post(f"/api/v1/users/{user_id}/devices/{second}/disable")
        assert again.status_code == 409
        assert again.json()["error"] == {"code": "refused", "message": f"device {second} is already DISABLED"}

        back = client.post(f"/api/v1/users/{user_id}/devices/{first}/enable")
        assert back.status_code == 200 and back.json()["userStatus"] == "ACTIVE"
        assert client.get(f"/api/v1/users/{user_id}/devices/{first}").json()["state"] == "ACTIVE"

        not_disabled = client.post(f"/api/v1/users/{user_id}/devices/{first}/enable")
        assert not_disabled.status_code == 409
        assert not_disabled.json()["error"]["message"] == f"device {first} is ACTIVE, not DISABLED"

        deleted = client.delete(f"/api/v1/users/{user_id}/devices/{first}")
        assert deleted.status_code == 200 and deleted.json()["userStatus"] == "DEVICES_DISABLED"
        last = client.delete(f"/api/v1/users/{user_id}/devices/{second}")
        assert last.json()["userStatus"] == "UNENROLLED"
        assert client.get(f"/api/v1/users/{user_id}/devices").json()["items"] == []
    assert status_of(admin, user_id) == "UNENROLLED"

    with admin.db.read() as session:
        rows = session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id)).all()
        changes = [
            (r.old, r.new) for r in rows if r.action == "user.status_changed" and r.target_id == user_id
        ]
        assert changes == [
            ("ACTIVE", "DEVICES_DISABLED"),
            ("DEVICES_DISABLED", "ACTIVE"),
            ("ACTIVE", "DEVICES_DISABLED"),
            ("DEVICES_DISABLED", "UNENROLLED"),
        ]
        device_actions = [(r.action, r.target_id, r.actor) for r in rows if r.target_type == "device"]
        assert ("device.disabled", first, "admin:test-manage") in device_actions
        assert ("device.enabled", first, "admin:test-manage") in device_actions
        assert ("device.deleted", second, "admin:test-manage") in device_actions
        mails = session.scalars(sa.select(OutboxMessage).where(OutboxMessage.user_id == user_id)).all()
        assert sorted(m.purpose for m in mails) == ["device_removed"] * 4  # two disables, two deletes
        assert all(m.to_address == "dora@example.com" for m in mails)


def test_delete_keeps_devices_disabled_and_provisioning_disabled_stays(admin: Admin) -> None:
    user_id = add_user(admin.db, "ed", devices=(DeviceState.ACTIVE, DeviceState.DISABLED))
    active, disabled = device_ids(admin, user_id)
    with admin.client("manage") as client:
        response = client.delete(f"/api/v1/users/{user_id}/devices/{active}")
        assert response.json()["userStatus"] == "DEVICES_DISABLED"
        assert (
            client.post(f"/api/v1/users/{user_id}/devices/{disabled}/enable").json()["userStatus"] == "ACTIVE"
        )
    user_id = add_user(admin.db, "pat", provisioned=False, devices=(DeviceState.ACTIVE,))
    with admin.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.status = "PROVISIONING_DISABLED"  # type: ignore[assignment]
    (device,) = device_ids(admin, user_id)
    with admin.client("manage") as client:
        response = client.post(f"/api/v1/users/{user_id}/devices/{device}/disable")
        assert response.status_code == 200 and response.json()["userStatus"] == "PROVISIONING_DISABLED"


def test_pending_devices_cannot_be_disabled_only_deleted(admin: Admin) -> None:
    user_id = add_user(admin.db, "pia", devices=(DeviceState.PENDING,))
    with admin.db.write() as session:  # add_user guesses a status; a PENDING-only user is UNENROLLED
        user = session.get(User, user_id)
        assert user is not None
        user.status = "UNENROLLED"  # type: ignore[assignment]
    (pending,) = device_ids(admin, user_id)
    with admin.client("manage") as client:
        refused = client.post(f"/api/v1/users/{user_id}/devices/{pending}/disable")
        assert refused.status_code == 409
        assert refused.json()["error"]["message"] == (
            f"device {pending} is PENDING (never verified): delete it instead of disabling it"
        )
        assert client.post(f"/api/v1/users/{user_id}/devices/{pending}/enable").status_code == 409
        deleted = client.delete(f"/api/v1/users/{user_id}/devices/{pending}")
        assert deleted.status_code == 200 and deleted.json()["userStatus"] == "UNENROLLED"
    with admin.db.read() as session:  # an unproven device going away mails nobody
        assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0


def test_not_found_and_scopes(admin: Admin) -> None:
    alice = add_user(admin.db, "alice", devices=(DeviceState.ACTIVE,))
    bob = add_user(admin.db, "bob", devices=(DeviceState.ACTIVE,))
    (alices,) = device_ids(admin, alice)
    with admin.client("manage") as client:
        assert client.get("/api/v1/users/nobody/devices").status_code == 404
        other = client.get(f"/api/v1/users/{bob}/devices/{alices}")
        assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
        assert client.post(f"/api/v1/users/{bob}/devices/{alices}/disable").status_code == 404
        assert client.delete(f"/api/v1/users/{bob}/devices/{'x' * 65}").status_code in (400, 422)
    with admin.client("read") as client:
        assert client.get(f"/api/v1/users/{alice}/devices/{alices}").status_code == 200
        forbidden = client.post(f"/api/v1/users/{alice}/devices/{alices}/disable")
        assert forbidden.status_code == 403
        assert client.delete(f"/api/v1/users/{alice}/devices/{alices}").status_code == 403
    with admin.client("") as client:
        assert client.get(f"/api/v1/users/{alice}/devices").status_code == 401
    assert status_of(admin, alice) == "ACTIVE"

"""Seed 001 admin registration routes: GET (read scope) shows REGISTERED / CHALLENGE / UNREGISTERED for
TOTP, DELETE (manage scope) removes the registration and the devices, the status is derived again and
audited; other factors and unknown users are 404."""

from __future__ import annotations

import sqlalchemy as sa
from harness.admin import Admin

from syncd.domain.lifecycle import DeviceState, DeviceType, derive_status
from syncd.store import audit, registrations, users
from syncd.store.tables import Device, OutboxMessage, User

BASE = "/api/mfa/admin/registrations"


def test_admin_reads_and_deletes_a_totp_registration(admin: Admin) -> None:
    db, settings = admin.db, admin.served.settings
    with db.write() as session:
        user_id = users.create(
            session,
            {"username": "uma", "email": "uma@example.com"},
            provisioned=True,
            managed_by=None,
            actor="t",
            reason="t",
        ).id
    with admin.client("read") as client:
        assert client.get(f"{BASE}/TOTP/users/{user_id}").json() == {
            "status": "UNREGISTERED",
            "factor": "TOTP",
        }
        with db.write() as session:
            registrations.generate(session, user_id, settings)
        assert client.get(f"{BASE}/TOTP/users/{user_id}").json() == {"status": "CHALLENGE", "factor": "TOTP"}
        with db.write() as session:
            device = session.scalar(sa.select(Device).where(Device.user_id == user_id))
            assert device is not None and device.type is DeviceType.TOTP
            device.state = DeviceState.ACTIVE
            user = session.get(User, user_id)
            assert user is not None
            user.status = derive_status(provisioned=True, devices=[DeviceState.ACTIVE])
        assert client.get(f"{BASE}/TOTP/users/{user_id}").json() == {"status": "REGISTERED", "factor": "TOTP"}
        assert client.get(f"{BASE}/SMS/users/{user_id}").status_code == 404
        assert client.get(f"{BASE}/TOTP/users/nope").status_code == 404
        assert client.delete(f"{BASE}/TOTP/users/{user_id}").status_code == 403
    with admin.client("verify") as client:
        assert client.get(f"{BASE}/TOTP/users/{user_id}").status_code == 403
    with admin.client("manage") as client:
        assert client.delete(f"{BASE}/SMS/users/{user_id}").status_code == 404
        assert client.delete(f"{BASE}/TOTP/users/nope").status_code == 404
        deleted = client.delete(f"{BASE}/TOTP/users/{user_id}")
        assert deleted.status_code == 204 and deleted.content == b""
        assert client.get(f"{BASE}/TOTP/users/{user_id}").json() == {
            "status": "UNREGISTERED",
            "factor": "TOTP",
        }
        assert client.get(f"/api/v1/users/{user_id}").json()["status"] == "UNENROLLED"
        assert client.delete(f"{BASE}/TOTP/users/{user_id}").status_code == 204  # nothing left: still fine
    with db.read() as session:
        events = [(r.action, r.old, r.new, r.actor) for r in audit.for_target(session, "user", user_id)]
        mails = session.scalars(
            sa.select(OutboxMessage.purpose).where(OutboxMessage.user_id == user_id)
        ).all()
    assert ("user.status_changed", "ACTIVE", "UNENROLLED", "admin:test-manage") in events
    assert ("registration.deleted", None, "UNREGISTERED", "admin:test-manage") in events
    assert list(mails) == ["device_removed"]

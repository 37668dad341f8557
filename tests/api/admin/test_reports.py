"""GET /api/v1/reports/… over real HTTP on SQLite and PostgreSQL: users by factor criteria (paged), a
user's enrollment (never a link token), counts by status, sync run history."""

from __future__ import annotations

from datetime import timedelta

from harness.admin import Admin
from harness.enrollment import add_user, invite

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import runs
from syncd.store.tables import BypassCode, Device, User, UserFactor, utcnow


def _device(admin: Admin, user_id: str, kind: DeviceType, state: DeviceState) -> None:
    with admin.db.write() as session:
        session.add(Device(user_id=user_id, type=kind, state=state))
        user = session.get(User, user_id)
        assert user is not None
        if state is DeviceState.ACTIVE:
            user.status = UserStatus.ACTIVE
        elif state is DeviceState.DISABLED:
            user.status = UserStatus.DEVICES_DISABLED


def _names(page: dict[str, object]) -> list[str]:
    items = page["items"]
    assert isinstance(items, list)
    return [item["username"] for item in items]


def test_users_by_factor_status_and_last_authentication(admin: Admin) -> None:
    ids = {name: add_user(admin.db, name) for name in ("ann", "ben", "cat", "dan", "eve")}
    _device(admin, ids["ann"], DeviceType.TOTP, DeviceState.ACTIVE)
    _device(admin, ids["ben"], DeviceType.TOTP, DeviceState.DISABLED)
    _device(admin, ids["cat"], DeviceType.TOTP, DeviceState.PENDING)
    _device(admin, ids["dan"], DeviceType.HARDWARE_TOKEN, DeviceState.ACTIVE)
    now = utcnow()
    with admin.db.write() as session:
        session.add(
            UserFactor(user_id=ids["ann"], factor_type="TOTP", last_auth_status="SUCCESS", last_auth_at=now)
        )
        session.add(
            UserFactor(
                user_id=ids["ben"], factor_type="TOTP", last_auth_status="LOCKED", locked_at=now, failures=10
            )
        )
        session.add(BypassCode(user_id=ids["eve"], code_hash="x", expires_at=now + timedelta(days=1)))
        session.add(BypassCode(user_id=ids["dan"], code_hash="x", expires_at=now - timedelta(days=1)))
    with admin.client("read") as client:
        get = lambda **params: client.get("/api/v1/reports/users", params=params)  # noqa: E731
        everyone = get(factor="TOTP").json()
        assert _names(everyone) == ["ann", "ben", "cat", "dan", "eve"]
        by_name = {i["username"]: i for i in everyone["items"]}
        assert [by_name[n]["factorStatus"] for n in ("ann", "ben", "cat", "dan")] == [
            "REGISTERED",
            "DISABLED",
            "PENDING",
            "UNREGISTERED",
        ]
        assert by_name["ann"]["lastAuthnStatus"] == "SUCCESS" and by_name["ann"]["lastAuthnAt"]
        assert by_name["ben"]["locked"] is True and by_name["ann"]["locked"] is False
        assert by_name["ann"]["status"] == "ACTIVE" and by_name["ann"]["userId"] == ids["ann"]
        assert _names(get(factor="TOTP", status="REGISTERED").json()) == ["ann"]
        assert _names(get(factor="TOTP", status="DISABLED").json()) == ["ben"]
        assert _names(get(factor="TOTP", status="PENDING").json()) == ["cat"]
        assert _names(get(factor="TOTP", status="UNREGISTERED").json()) == ["dan", "eve"]
        assert _names(get(factor="TOTP", lastAuthnStatus="LOCKED").json()) == ["ben"]
        assert _names(get(factor="TOTP", status="REGISTERED", lastAuthnStatus="LOCKED").json()) == []
        assert _names(get(factor="HARDWARE_TOKEN", status="REGISTERED").json()) == ["dan"]
        assert _names(get(factor="BYPASS_CODE", status="REGISTERED").json()) == ["eve"]
        assert _names(get(factor="TOTP", userStatus="UNENROLLED").json()) == ["cat", "eve"]
        for bad in ({}, {"factor": "SMS"}, {"factor": "TOTP", "status": "X"}, {"factor": "TOTP", "limit": 0}):
            response = get(**bad)
            assert response.status_code == 422, bad
        assert get(factor="TOTP", cursor="!!").status_code == 400
    # paging with a cursor; deleted users are left out
    paged = [add_user(admin.db, f"user{i:02d}") for i in range(7)]
    with admin.db.write() as session:
        gone = session.get(User, paged[3])
        assert gone is not None
        gone.deleted_at = utcnow()
    seen: list[str] = []
    cursor = None
    with admin.client("read") as client:
        for _ in range(10):
            params = {"factor": "TOTP", "limit": 2, **({"cursor": cursor} if cursor else {})}
            page = client.get("/api/v1/reports/users", params=params).json()
            seen += _names(page)
            cursor = page["nextCursor"]
            if cursor is None:
                break
    assert seen == ["ann", "ben", "cat", "dan", "eve", *(f"user{i:02d}" for i in range(7) if i != 3)]


def test_enrollment_report_status_counts_and_sync_runs(admin: Admin) -> None:
    user_id = add_user(admin.db, "ivy")
    token = invite(admin.db, user_id, admin.served.settings)
    _device(admin, user_id, DeviceType.TOTP, DeviceState.ACTIVE)
    with admin.db.write() as session:
        session.add(UserFactor(user_id=user_id, factor_type="TOTP", failures=2, last_auth_status="FAILURE"))
    with admin.client("read") as client:
        response = client.get(f"/api/v1/reports/users/{user_id}/enrollment")
        assert response.status_code == 200, response.text
        assert token not in response.text
        report = response.json()
        assert report["userId"] == user_id and report["username"] == "ivy" and report["status"] == "ACTIVE"
        [sent] = report["invites"]
        assert sent["generation"] == 1 and sent["state"] == "LIVE" and sent["usedAt"] is None
        assert sent["expiresAt"] > sent["createdAt"]
        assert set(sent) == {
            "inviteId",
            "generation",
            "state",
            "createdAt",
            "expiresAt",
            "usedAt",
            "revokedAt",
            "remindersSent",
        }
        assert report["registrations"] == {
            "TOTP": "REGISTERED",
            "HARDWARE_TOKEN": "UNREGISTERED",
            "BYPASS_CODE": "UNREGISTERED",
        }
        assert [(d["type"], d["state"]) for d in report["devices"]] == [("TOTP", "ACTIVE")]
        assert report["factors"] == [
            {
                "factorType": "TOTP",
                "enabled": True,
                "locked": False,
                "failures": 2,
                "lastAuthnStatus": "FAILURE",
                "lastAuthnAt": None,
            }
        ]
        by_name = client.get("/api/v1/reports/users/IVY/enrollment")
        assert by_name.status_code == 200 and by_name.json()["userId"] == user_id
        missing = client.get("/api/v1/reports/users/nobody/enrollment")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get(f"/api/v1/reports/users/{'x' * 65}/enrollment").status_code == 422
        assert client.get("/api/v1/reports/users/a%00b/enrollment").status_code == 422
    for name in ("a1", "a2", "a3"):
        add_user(admin.db, name)
    add_user(admin.db, "p1", provisioned=False)
    add_user(admin.db, "d1", devices=(DeviceState.ACTIVE,))
    with admin.client("read") as client:
        body = client.get("/api/v1/reports/status-counts").json()
    assert body == {
        "counts": {"UNENROLLED": 3, "ACTIVE": 2, "DEVICES_DISABLED": 0, "PROVISIONING_DISABLED": 1},
        "total": 6,
    }
    with admin.db.write() as session:
        first = runs.start(session, "hr", "full", dry_run=False)
        runs.finish(session, first, "ok", created=5, updated=1, unchanged=3)
    with admin.db.write() as session:
        second = runs.start(session, "ldap", "incremental", dry_run=False)
        runs.finish(session, second, "held", reason="guard", disabled=7)
    with admin.client("read") as client:
        everything = client.get("/api/v1/reports/sync-runs").json()["items"]
        assert [r["runId"] for r in everything] == [second.id, first.id]
        hr = client.get("/api/v1/reports/sync-runs", params={"source": "hr"}).json()["items"]
        assert [r["source"] for r in hr] == ["hr"]
        assert hr[0]["counts"] == {
            "created": 5,
            "updated": 1,
            "disabled": 0,
            "reenabled": 0,
            "unchanged": 3,
            "errors": 0,
        }
        assert hr[0]["status"] == "ok" and hr[0]["mode"] == "full" and hr[0]["finishedAt"]
        assert len(client.get("/api/v1/reports/sync-runs", params={"limit": 1}).json()["items"]) == 1
        assert client.get("/api/v1/reports/sync-runs", params={"limit": 201}).status_code == 422
    with admin.client("verify") as client:
        assert client.get("/api/v1/reports/sync-runs").status_code == 403

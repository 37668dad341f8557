"""Org factors, per-user factors and bulk enroll over real HTTP on SQLite and PostgreSQL: configure
(409 with the existing id), TOTP settings validation, update, activate/deactivate/DELETE with the
"required by a policy" refusal, is_active defaults, the per-user summary, enable/disable, unlock clearing
only that factor, and bulk enroll by invite and from the hardware-token pool (per-user results)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from harness.admin import Admin

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import audit, factors, org_factors
from syncd.store.tables import (
    AuditRecord,
    BypassCode,
    Device,
    EnrollmentInvite,
    HardwareToken,
    User,
    new_id,
    utcnow,
)

ORG = "/api/v1/org/factors"
FACTORS = "/api/v1/factors"


def add_user(
    admin: Admin, username: str, *, email: bool = True, status: UserStatus = UserStatus.UNENROLLED
) -> str:
    user_id = new_id()
    with admin.db.write() as session:
        session.add(
            User(
                id=user_id,
                username=username,
                username_key=username.casefold(),
                email=f"{username}@example.com" if email else None,
                status=status,
                provisioned=status is not UserStatus.PROVISIONING_DISABLED,
            )
        )
    return user_id


def add_tokens(admin: Admin, *serials: str) -> None:
    with admin.db.write() as session:
        for serial in serials:
            token_id = new_id()
            sealed = admin.served.settings.keys.seal(b"12345678901234567890", f"hardware_token:{token_id}")
            session.add(HardwareToken(id=token_id, serial=serial, otp_type="TOTP", seed_enc=sealed))


def policy(client: Any, name: str, action: str, factor_types: list[str]) -> str:
    rule = {"applications": ["*"], "conditions": {"factorTypes": factor_types}, "action": action}
    response = client.post("/api/v1/policies", json={"name": name, "rules": [rule]})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_org_factor_lifecycle_and_the_policy_guard(admin: Admin) -> None:
    with admin.db.read() as session:
        assert all(org_factors.is_active(session, f) for f in ("TOTP", "HARDWARE_TOKEN", "BYPASS_CODE"))
        assert not org_factors.is_active(session, "SMS")
    with admin.client() as client:
        assert client.get(ORG).json() == []
        created = client.post(
            FACTORS,
            json={
                "factorType": "TOTP",
                "settings": {"issuer": "Corp", "digits": 8},
                "validateAndActivate": True,
            },
        )
        assert created.status_code == 201, created.text
        totp = created.json()
        assert totp["status"] == "ACTIVE" and totp["provider"] == "SYNCD"
        assert totp["config"] == {
            "issuer": "Corp",
            "digits": 8,
            "period": 30,
            "algorithm": "SHA1",
            "window": 1,
        }
        again = client.post(FACTORS, json={"factorType": "TOTP"})
        assert again.status_code == 409 and totp["id"] in again.json()["error"]["message"]
        hw = client.post(FACTORS, json={"factorType": "HARDWARE_TOKEN", "provider": "Yubico"}).json()
        assert hw["status"] == "INACTIVE" and hw["config"] == {}
        assert [(f["factorType"], f["status"]) for f in client.get(ORG).json()] == [
            ("HARDWARE_TOKEN", "INACTIVE"),
            ("TOTP", "ACTIVE"),
        ]
        for bad in (
            {"factorType": "SMS"},
            {"factorType": "BYPASS_CODE", "settings": {"digits": 6}},
            {"factorType": "BYPASS_CODE", "settings": {"colour": "red"}},
            {"factorType": "BYPASS_CODE", "overwrite": True},
        ):
            assert client.post(FACTORS, json=bad).status_code == 422, bad
        for settings in (
            {"digits": 7},
            {"period": 14},
            {"period": 121},
            {"algorithm": "MD5"},
            {"window": 11},
        ):
            response = client.put(f"{FACTORS}/{totp['id']}", json={"config": settings})
            assert response.status_code == 422, settings
            assert next(iter(settings)) in response.json()["error"]["message"]
        updated = client.put(
            f"{FACTORS}/{totp['id']}", json={"config": {"period": 60, "algorithm": "SHA256"}}
        )
        assert updated.status_code == 200 and updated.json()["config"]["period"] == 60
        assert client.get(f"{FACTORS}/{totp['id']}").json() == updated.json()
        assert client.put(f"{FACTORS}/{hw['id']}", json={"config": {"digits": 6}}).status_code == 400
        assert (
            client.put(f"{FACTORS}/{hw['id']}", json={"validateAndActivate": True}).json()["status"]
            == "ACTIVE"
        )

        # a policy that requires TOTP (ALLOW or REQUIRE_MFA naming it) blocks deactivate and DELETE
        needs = policy(client, "Needs TOTP", "REQUIRE_MFA", ["TOTP", "HARDWARE_TOKEN"])
        policy(client, "Denies TOTP", "DENY", ["TOTP"])  # a DENY rule does not require the factor
        for call in (
            client.post(f"{FACTORS}/{totp['id']}/deactivate"),
            client.delete(f"{FACTORS}/{totp['id']}"),
        ):
            assert call.status_code == 409, call.text
            assert call.json()["error"]["code"] == "refused"
            assert (
                "Needs TOTP" in call.json()["error"]["message"] and needs in call.json()["error"]["message"]
            )
            assert "Denies TOTP" not in call.json()["error"]["message"]
        assert client.delete(f"/api/v1/policies/{needs}").status_code == 204
        assert client.post(f"{FACTORS}/{totp['id']}/deactivate").json()["status"] == "INACTIVE"
        assert client.post(f"{FACTORS}/{totp['id']}/activate").json()["status"] == "ACTIVE"
        assert client.delete(f"{FACTORS}/{totp['id']}").status_code == 204
        assert client.get(f"{FACTORS}/{totp['id']}").json()["status"] == "INACTIVE"  # disabled, kept
        for path in (f"{FACTORS}/nope", f"{FACTORS}/nope/activate"):
            call = client.get(path) if path.endswith("nope") else client.post(path)
            assert call.status_code == 404
    with admin.client("read") as client:
        assert client.get(ORG).status_code == 200
        assert client.post(f"{FACTORS}/{hw['id']}/deactivate").status_code == 403
    with admin.db.read() as session:
        assert not org_factors.is_active(session, "TOTP")
        assert org_factors.is_active(session, "HARDWARE_TOKEN") and org_factors.is_active(
            session, "BYPASS_CODE"
        )
        actions = [r.action for r in audit.for_target(session, "org_factor", totp["id"])]
        assert actions == [
            "org_factor.created",
            "org_factor.updated",
            "org_factor.deactivated",
            "org_factor.activated",
            "org_factor.deactivated",
        ]


def test_user_factor_summary_enable_disable_and_unlock_only_that_factor(admin: Admin) -> None:
    user_id = add_user(admin, "dana", status=UserStatus.ACTIVE)
    add_tokens(admin, "HW-1")
    now = utcnow()
    with admin.db.write() as session:
        session.add(Device(user_id=user_id, type=DeviceType.TOTP, state=DeviceState.ACTIVE))
        session.execute(
            sa.update(HardwareToken).where(HardwareToken.serial == "HW-1").values(user_id=user_id)
        )
        session.add_all(
            [
                BypassCode(user_id=user_id, code_hash="x", uses_left=1, expires_at=now + timedelta(hours=1)),
                BypassCode(user_id=user_id, code_hash="x", uses_left=2),
                BypassCode(
                    user_id=user_id, code_hash="x", uses_left=1, expires_at=now - timedelta(seconds=1)
                ),
                BypassCode(user_id=user_id, code_hash="x", uses_left=0),
                BypassCode(user_id=user_id, code_hash="x", uses_left=1, revoked_at=now),
            ]
        )
        for _ in range(3):
            factors.record_failure(session, user_id, max_failures=3, factor="TOTP")
            factors.record_failure(session, user_id, max_failures=3, factor="HARDWARE_TOKEN")
        factors.record_failure(session, user_id, max_failures=3, factor="BYPASS_CODE")
    base = f"/api/v1/users/{user_id}/factors"
    with admin.client() as client:
        summary = {f["factorType"]: f for f in client.get(base).json()["factors"]}
        assert summary["TOTP"]["registration"] == "REGISTERED" and summary["TOTP"]["locked"] is True
        assert summary["TOTP"]["failures"] == 3 and summary["TOTP"]["lastAuthnStatus"] == "LOCKED"
        assert summary["HARDWARE_TOKEN"]["hardwareTokenSerial"] == "HW-1"
        assert summary["BYPASS_CODE"]["liveBypassCodes"] == 2 and summary["BYPASS_CODE"]["locked"] is False
        assert summary["BYPASS_CODE"]["lastAuthnStatus"] == "FAILURE"  # the word verification writes too

        unlocked = {f["factorType"]: f for f in client.post(f"{base}/TOTP/unlock").json()["factors"]}
        assert (unlocked["TOTP"]["locked"], unlocked["TOTP"]["failures"]) == (False, 0)
        assert (unlocked["HARDWARE_TOKEN"]["locked"], unlocked["HARDWARE_TOKEN"]["failures"]) == (True, 3)
        assert unlocked["BYPASS_CODE"]["failures"] == 1
        assert unlocked["TOTP"]["lastAuthnStatus"] == "LOCKED"  # history kept

        disabled = {f["factorType"]: f for f in client.post(f"{base}/BYPASS_CODE/disable").json()["factors"]}
        assert disabled["BYPASS_CODE"]["enabled"] is False and disabled["TOTP"]["enabled"] is True
        assert client.post(f"{base}/BYPASS_CODE/disable").status_code == 200  # idempotent, not audited again
        with admin.db.read() as session:
            assert factors.is_disabled(session, user_id, "BYPASS_CODE")
        client.post(f"{base}/BYPASS_CODE/enable")
        assert client.post(f"{base}/SMS/enable").status_code == 422
        assert client.get("/api/v1/users/nobody/factors").status_code == 404
        assert client.post("/api/v1/users/nobody/factors/TOTP/unlock").status_code == 404
    with admin.client("read") as client:
        assert client.post(f"{base}/TOTP/unlock").status_code == 403
    with admin.db.read() as session:
        assert not factors.is_disabled(session, user_id, "BYPASS_CODE")
        actions = [
            (r.action, r.old, r.actor)
            for r in audit.for_target(session, "user", user_id)
            if r.actor == "admin:test-manage"
        ]
        assert actions == [
            ("factor.unlocked", "TOTP", "admin:test-manage"),
            ("factor.disabled", "enabled", "admin:test-manage"),
            ("factor.enabled", "disabled", "admin:test-manage"),
        ]


def test_bulk_enroll_by_invite_and_from_the_token_pool(admin: Admin) -> None:
    with_mail = add_user(admin, "erin")
    no_mail = add_user(admin, "frank", email=False)
    disabled = add_user(admin, "gina", status=UserStatus.PROVISIONING_DISABLED)
    add_tokens(admin, "T-1", "T-2")
    with admin.client() as client:
        totp = client.post(FACTORS, json={"factorType": "TOTP", "validateAndActivate": True}).json()
        hw = client.post(FACTORS, json={"factorType": "HARDWARE_TOKEN"}).json()
        enroll = f"{FACTORS}/{totp['id']}/enroll"
        response = client.post(
            enroll, json={"userIds": [with_mail, no_mail, "missing", with_mail, disabled], "mode": "invite"}
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert (result["enrolled"], result["skipped"]) == (1, 3)
        by_user = {r["userId"]: r for r in result["results"]}
        assert by_user[with_mail]["result"] == "enrolled" and by_user[with_mail]["inviteId"]
        assert by_user[no_mail]["reason"] == "no email address"
        assert by_user["missing"]["reason"] == "no such user"
        assert "PROVISIONING_DISABLED" in by_user[disabled]["reason"]

        assert client.post(enroll, json={"userIds": [with_mail], "mode": "hardware_token"}).status_code == 400
        hw_enroll = f"{FACTORS}/{hw['id']}/enroll"
        inactive = client.post(hw_enroll, json={"userIds": [with_mail], "mode": "hardware_token"})
        assert inactive.status_code == 409 and "INACTIVE" in inactive.text
        client.post(f"{FACTORS}/{hw['id']}/activate")
        third = add_user(admin, "hana")
        pooled = client.post(
            hw_enroll,
            json={"userIds": [with_mail, disabled, no_mail, third, "missing"], "mode": "hardware_token"},
        ).json()
        by_user = {r["userId"]: r for r in pooled["results"]}
        assert by_user[with_mail]["result"] == "enrolled" and by_user[with_mail]["serial"] == "T-1"
        assert by_user[disabled]["result"] == "skipped"
        assert by_user[no_mail]["result"] == "enrolled" and by_user[no_mail]["serial"] == "T-2"
        assert by_user[third]["reason"] == "no unassigned hardware token is left in the inventory"
        assert (pooled["enrolled"], pooled["skipped"]) == (2, 3)
        again = client.post(hw_enroll, json={"userIds": [with_mail], "mode": "hardware_token"}).json()
        assert "already has hardware token T-1" in again["results"][0]["reason"]

        for bad in (
            {"userIds": [], "mode": "invite"},
            {"userIds": ["x"] * 1001, "mode": "invite"},
            {"userIds": ["x"], "mode": "sms"},
            {"userIds": ["x" * 65], "mode": "invite"},
        ):
            assert client.post(enroll, json=bad).status_code == 422
        assert (
            client.post(f"{FACTORS}/nope/enroll", json={"userIds": ["x"], "mode": "invite"}).status_code
            == 404
        )
    with admin.db.read() as session:
        invites = session.scalars(sa.select(EnrollmentInvite.user_id)).all()
        assert invites == [with_mail]
        owners = dict(session.execute(sa.select(HardwareToken.serial, HardwareToken.user_id)).all())
        assert owners == {"T-1": with_mail, "T-2": no_mail}
        queued = session.scalars(
            sa.select(AuditRecord.action).where(
                AuditRecord.actor == "admin:test-manage", AuditRecord.target_id == with_mail
            )
        ).all()
        assert "invite.queued" in queued

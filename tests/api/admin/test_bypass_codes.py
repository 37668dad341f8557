"""Bypass codes (seed 000 ``bypassCodeId``): plaintext once, argon2id at rest, metadata-only listings,
preserveExisting, revoke one/all, refused for PROVISIONING_DISABLED users; redeem/burn in the store."""

from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa
from harness.admin import Admin
from harness.enrollment import add_user

from syncd.domain import bypass
from syncd.domain.lifecycle import DeviceState
from syncd.store import bypass_codes
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, BypassCode, OutboxMessage, User, utcnow


def test_generate_list_preserve_and_revoke(admin: Admin) -> None:
    user_id = add_user(admin.db, "lost", devices=(DeviceState.ACTIVE,))
    url = f"/api/v1/users/{user_id}/bypass-codes"
    with admin.client("manage") as client:
        made = client.post(url, json={})
        assert made.status_code == 201, made.text
        items = made.json()["items"]
        codes = [item["code"] for item in items]
        assert len(codes) == 10 and len(set(codes)) == 10
        assert all(re.fullmatch(r"[0-9]{9}", code) for code in codes)
        assert all(item["usesLeft"] == 1 for item in items)

        listed = client.get(url)
        assert listed.status_code == 200
        assert all(code not in listed.text for code in codes)
        rows = listed.json()["items"]
        assert len(rows) == 10 and {r["status"] for r in rows} == {"ACTIVE"}
        assert set(rows[0]) == {
            "bypassCodeId",
            "status",
            "created",
            "expires",
            "usesLeft",
            "lastUsed",
            "revoked",
        }

        kept = client.post(
            url, json={"count": 2, "digits": 12, "uses": 3, "expiresInSeconds": 300, "preserveExisting": True}
        )
        assert kept.status_code == 201
        assert all(re.fullmatch(r"[0-9]{12}", i["code"]) and i["usesLeft"] == 3 for i in kept.json()["items"])
        statuses = [r["status"] for r in client.get(url).json()["items"]]
        assert statuses == ["ACTIVE"] * 12

        replaced = client.post(url, json={"count": 1})
        assert replaced.status_code == 201
        listing = client.get(url).json()["items"]
        assert sorted(r["status"] for r in listing) == ["ACTIVE"] + ["REVOKED"] * 12
        live = next(r["bypassCodeId"] for r in listing if r["status"] == "ACTIVE")

        assert client.delete(f"{url}/{live}").status_code == 204
        assert client.delete(f"{url}/{live}").status_code == 204  # idempotent
        assert client.delete(f"{url}/nope").status_code == 404
        assert client.delete(url).json() == {"revoked": 0}
        client.post(url, json={"count": 3})
        assert client.delete(url).json() == {"revoked": 3}

        bad_bodies = [
            {"count": 51},
            {"count": 0},
            {"digits": 7},
            {"digits": 13},
            {"uses": 11},
            {"expiresInSeconds": 299},
            {"expiresInSeconds": 30 * 86400 + 1},
            {"codes": 1},
        ]
        for bad in bad_bodies:
            response = client.post(url, json=bad)
            assert response.status_code in (400, 422), bad
            assert set(response.json()["error"]) == {"code", "message"}

    with admin.db.read() as session:
        stored = session.scalars(sa.select(BypassCode).where(BypassCode.user_id == user_id)).all()
        assert len(stored) == 16
        hashes = [row.code_hash for row in stored]
        assert all(h.startswith("$argon2id$v=19$m=12288,t=3,p=1$") for h in hashes)
        assert not any(code in h for h in hashes for code in codes)
        audit_text = " ".join(
            f"{r.old} {r.new} {r.reason} {r.details}" for r in session.scalars(sa.select(AuditRecord))
        )
        assert not any(code in audit_text for code in codes)
        actions = session.scalars(
            sa.select(AuditRecord.action).where(AuditRecord.actor == "admin:test-manage")
        )
        assert {"bypass_codes.generated", "bypass_code.revoked", "bypass_codes.revoked"} <= set(actions)
        mails = session.scalars(sa.select(OutboxMessage).where(OutboxMessage.purpose == "bypass_codes")).all()
        counts = [(m.context or {})["count"] for m in sorted(mails, key=lambda m: m.created_at)]
        assert counts == [10, 2, 1, 3]
        assert not any(code in str(m.context) for m in mails for code in codes)


def test_refused_for_provisioning_disabled_unknown_users_and_read_keys(admin: Admin) -> None:
    user_id = add_user(admin.db, "gone", provisioned=False)
    with admin.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None and user.status.value == "PROVISIONING_DISABLED"
    with admin.client("manage") as client:
        refused = client.post(f"/api/v1/users/{user_id}/bypass-codes", json={})
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "refused"
        assert "PROVISIONING_DISABLED" in refused.json()["error"]["message"]
        assert client.post("/api/v1/users/nobody/bypass-codes", json={}).status_code == 404
        assert client.get("/api/v1/users/nobody/bypass-codes").status_code == 404
    with admin.client("read") as client:
        assert client.post(f"/api/v1/users/{user_id}/bypass-codes", json={}).status_code == 403
        assert client.get(f"/api/v1/users/{user_id}/bypass-codes").json() == {"items": []}
    with admin.db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(BypassCode)) == 0


def _generate(db: Database, user_id: str, *, count: int = 2, uses: int = 1, seconds: int = 3600) -> list[str]:
    made = bypass.make_codes(user_id, count, 9)
    with db.write() as session:
        bypass_codes.generate(
            session, user_id, made, uses=uses, expires_in=timedelta(seconds=seconds),
            preserve_existing=True, actor="test", host="example.com",
        )  # fmt: skip
    return [code.plaintext for code in made]


def test_redeem_and_burn(db: Database) -> None:
    alice, bob = add_user(db, "alice"), add_user(db, "bob")
    first, second = _generate(db, alice)
    (twice,) = _generate(db, alice, count=1, uses=2)
    (bobs,) = _generate(db, bob, count=1)
    now = utcnow()
    with db.write() as session:
        assert bypass_codes.redeem(session, alice, first, now=now) is True
        assert bypass_codes.redeem(session, alice, first, now=now) is False  # single use
        assert (
            bypass_codes.redeem(session, alice, f"{second[:3]}-{second[3:6]} {second[6:]}", now=now) is True
        )
        assert bypass_codes.redeem(session, alice, twice, now=now) is True
        assert bypass_codes.redeem(session, alice, twice, now=now) is True
        assert bypass_codes.redeem(session, alice, twice, now=now) is False
        assert bypass_codes.redeem(session, alice, bobs, now=now) is False  # another user's code
        assert bypass_codes.redeem(session, alice, "12345", now=now) is False
        assert bypass_codes.redeem(session, alice, "abcdefghi", now=now) is False
        assert bypass_codes.redeem(session, "nobody", bobs, now=now) is False
        assert bypass_codes.redeem(session, bob, bobs, now=now + timedelta(hours=2)) is False  # expired
        bypass_codes.burn(bobs)
        bypass_codes.burn("")
    with db.read() as session:
        used = session.scalars(sa.select(BypassCode).where(BypassCode.user_id == alice)).all()
        assert sorted(c.uses_left for c in used) == [0, 0, 0] and all(c.last_used_at for c in used)
    (late,) = _generate(db, bob, count=1)
    with db.write() as session:
        bypass_codes.revoke_all(session, bob, actor="test")
        assert bypass_codes.redeem(session, bob, late, now=utcnow()) is False  # revoked

"""API keys on /api/v1: 401 without or with a bad key (WWW-Authenticate: Bearer), 403 without the scope,
manage implies read, revoked and expired keys stop working, the key itself is never stored."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from harness.admin import Admin
from harness.served import Served

from syncd.store import apikeys
from syncd.store.tables import ApiClient, utcnow

ROUTE = "/api/v1/org/factors"  # a read route every build has


def test_no_key_bad_key_and_wrong_scheme_are_401_with_the_error_shape(admin: Admin) -> None:
    with admin.client(scope="") as client:
        for headers in (
            {},
            {"authorization": "Bearer nope"},
            {"authorization": f"Basic {admin.keys['read']}"},
        ):
            response = client.get(ROUTE, headers=headers)
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "unauthenticated"
        tampered = admin.keys["read"][:-2] + ("AA" if not admin.keys["read"].endswith("AA") else "BB")
        assert client.get(ROUTE, headers={"authorization": f"Bearer {tampered}"}).status_code == 401


def test_scopes_are_checked_and_manage_implies_read(admin: Admin) -> None:
    with admin.client("verify") as client:
        response = client.get(ROUTE)
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    for scope in ("read", "manage"):
        with admin.client(scope) as client:
            assert client.get(ROUTE).status_code == 200


def test_revoked_and_expired_keys_are_refused(served: Served) -> None:
    with served.db.write() as session:
        revoked = apikeys.create(session, "gone", ["read"], actor="admin:test")
        apikeys.revoke(session, revoked.client.id, actor="admin:test")
        expired = apikeys.create(
            session, "old", ["read"], actor="admin:test", expires_at=utcnow() - timedelta(seconds=1)
        )
    with served.client() as client:
        for made in (revoked, expired):
            assert client.get(ROUTE, headers={"authorization": f"Bearer {made.key}"}).status_code == 401


def test_only_a_digest_of_the_key_is_stored_and_rotation_keeps_the_old_key_for_the_grace(
    served: Served,
) -> None:
    with served.db.write() as session:
        made = apikeys.create(session, "ci", ["read", "manage"], actor="admin:test")
        rotated = apikeys.rotate(
            session, made.client.key_prefix, actor="admin:test", grace=timedelta(hours=1)
        )
    with served.db.read() as session:
        rows = session.scalars(sa.select(ApiClient)).all()
        assert all(made.key not in (r.key_hash, r.key_prefix) for r in rows)
        assert apikeys.authenticate(session, made.key) is not None
        assert apikeys.authenticate(session, rotated.key) is not None
        assert apikeys.authenticate(session, made.key, now=utcnow() + timedelta(hours=2)) is None
        assert sorted(rotated.client.scopes) == ["manage", "read"]

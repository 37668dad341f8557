"""API qualities (docs/adr/0055): per-key rate limits with RateLimit-* headers and 429, Idempotency-Key
replays and conflicts, the error shape, and the OpenAPI document served at /api/v1/openapi.json."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from harness.admin import Admin, make_admin
from harness.enrollment import add_user
from harness.served import serve

from syncd.api import idempotency as middleware
from syncd.api import ratelimit
from syncd.config.models import RateLimit
from syncd.store import apikeys, idempotency
from syncd.store.db import Database
from syncd.store.tables import EnrollmentInvite, IdempotencyKey, utcnow

BULK = "/api/v1/users/enrollment-emails"
LIMITS = {
    "verify": {"per_second": 0.01, "burst": 2},
    "mail": {"per_second": 0.01, "burst": 3},
    "failed_auth": {"per_second": 0.01, "burst": 2},
}


@pytest.fixture
def limited(db: Database) -> Iterator[Admin]:
    """The admin API with small buckets that barely refill during a test."""
    with serve(db, api={"rate_limits": LIMITS}) as served:
        yield make_admin(served)


def made_up_key() -> str:
    return f"syncd_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def invites(db: Database, user_id: str) -> int:
    with db.read() as session:
        query = sa.select(sa.func.count()).where(EnrollmentInvite.user_id == user_id)
        return int(session.scalar(query) or 0)


# ---- rate limits ------------------------------------------------------------------------------------------
def test_mail_routes_count_per_key_and_answer_429_with_retry_after(limited: Admin) -> None:
    with limited.client("manage") as manage, limited.client("all") as other:
        seen = []
        for _ in range(3):
            response = manage.post(BULK, json={"userIds": ["nobody"]})
            assert response.status_code == 200, response.text
            seen.append(int(response.headers["ratelimit-remaining"]))
            assert response.headers["ratelimit-limit"] == "3"
            assert int(response.headers["ratelimit-reset"]) > 0
        assert seen == [2, 1, 0]
        refused = manage.post(BULK, json={"userIds": ["nobody"]})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-remaining"] == "0"
        assert refused.headers["x-content-type-options"] == "nosniff"  # inside the security headers
        assert refused.headers["cache-control"] == "no-store"
        # the single-user and factor-enroll routes share the key's mail bucket
        assert manage.post("/api/v1/users/someone/enrollment-email").status_code == 429
        assert manage.post("/api/v1/factors/f1/enroll", json={}).status_code == 429
        # another key has its own bucket; other routes are not limited
        assert other.post(BULK, json={"userIds": ["nobody"]}).status_code == 200
        listing = manage.get("/api/v1/org/factors")
        assert listing.status_code == 200 and "ratelimit-limit" not in listing.headers


def test_verify_has_its_own_bucket(limited: Admin) -> None:
    with limited.client("verify") as client:
        answers = [client.post("/api/v1/verify", json={}) for _ in range(3)]
    assert [a.status_code == 429 for a in answers] == [False, False, True]
    assert all("ratelimit-remaining" in a.headers for a in answers)
    with limited.client("manage") as manage:  # the mail bucket of another key is untouched
        assert manage.post(BULK, json={"userIds": ["nobody"]}).status_code == 200


def test_requests_without_a_key_go_to_auth_and_made_up_keys_are_bounded_per_address(limited: Admin) -> None:
    with limited.client("") as anonymous, limited.client("verify") as good:
        assert good.post("/api/v1/verify", json={}).status_code != 401  # seen to work from here
        for _ in range(5):  # no key at all: 401 from the auth dependency, never 429, no bucket
            response = anonymous.post("/api/v1/verify", json={})
            assert response.status_code == 401 and "ratelimit-limit" not in response.headers
        statuses = [
            anonymous.post("/api/v1/verify", json={}, headers={"authorization": f"Bearer {made_up_key()}"})
            for _ in range(3)
        ]
        assert [s.status_code for s in statuses] == [401, 401, 429]
        assert statuses[2].json()["error"]["code"] == "rate_limited"
        assert good.post("/api/v1/verify", json={}).status_code != 429  # a working key keeps working


def test_buckets_refill_at_the_rate_and_say_when(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    buckets, limit = ratelimit.Buckets(), RateLimit(per_second=2, burst=4)
    taken = [buckets.take("k", limit) for _ in range(5)]
    assert [t.allowed for t in taken] == [True, True, True, True, False]
    assert (taken[3].remaining, taken[3].reset) == (0, 2)  # 4 tokens at 2/s: full in 2 s
    assert taken[4].retry_after == 1 and taken[4].headers()[-1] == (b"retry-after", b"1")
    now[0] += 0.5  # one token back
    assert buckets.take("k", limit).allowed and not buckets.take("k", limit).allowed
    now[0] += 60
    assert buckets.take("k", limit).remaining == 3  # capped at the burst
    assert buckets.take("other", limit).remaining == 3  # one bucket per key


# ---- idempotency keys -------------------------------------------------------------------------------------
def test_a_retry_with_the_same_key_replays_the_first_answer_and_sends_no_second_mail(admin: Admin) -> None:
    user_id = add_user(admin.db, "ida")
    path = f"/api/v1/users/{user_id}/enrollment-email"
    with admin.client("manage") as client:
        first = client.post(path, headers={"idempotency-key": "k-1"})
        assert first.status_code == 202, first.text
        assert "idempotent-replayed" not in first.headers
        again = client.post(path, headers={"idempotency-key": "k-1"})
        assert again.status_code == 202 and again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
    assert invites(admin.db, user_id) == 1
    with admin.client("manage") as client:  # without a key: a second mail
        assert client.post(path).status_code == 202
    assert invites(admin.db, user_id) == 2


def test_a_retried_bypass_code_generation_returns_the_same_codes_once_made(admin: Admin) -> None:
    user_id = add_user(admin.db, "bea")
    path = f"/api/v1/users/{user_id}/bypass-codes"
    with admin.client("manage") as client:
        first = client.post(path, json={"count": 2}, headers={"idempotency-key": "codes-1"})
        assert first.status_code == 201, first.text
        again = client.post(path, json={"count": 2}, headers={"idempotency-key": "codes-1"})
        assert again.status_code == 201 and again.json() == first.json()
        listed = client.get(path).json()["items"]
    assert len(listed) == 2 and {c["status"] for c in listed} == {"ACTIVE"}  # no second batch
    with admin.db.read() as session:
        [row] = session.scalars(sa.select(IdempotencyKey)).all()
        assert row.response_enc is not None
        assert not [c for c in first.json()["items"] if c["code"].encode() in row.response_enc]


def test_the_kept_answer_is_sealed_and_bound_to_the_client(admin: Admin) -> None:
    user_id = add_user(admin.db, "bo")
    with admin.client("manage") as client:
        first = client.post(BULK, json={"userIds": [user_id]}, headers={"idempotency-key": "seal"})
        assert first.status_code == 200
    with admin.db.read() as session:
        [row] = session.scalars(sa.select(IdempotencyKey)).all()
        assert row.status_code == 200 and row.response_enc is not None
        assert user_id.encode() not in row.response_enc and b"invited" not in row.response_enc
    with admin.client("all") as other:  # another client's key space: runs again
        second = other.post(BULK, json={"userIds": [user_id]}, headers={"idempotency-key": "seal"})
        assert second.status_code == 200 and "idempotent-replayed" not in second.headers


def test_same_key_with_another_body_or_path_is_a_conflict(admin: Admin) -> None:
    a, b = add_user(admin.db, "ann"), add_user(admin.db, "ben")
    with admin.client("manage") as client:
        assert client.post(BULK, json={"userIds": [a]}, headers={"idempotency-key": "x"}).status_code == 200
        other_body = client.post(BULK, json={"userIds": [b]}, headers={"idempotency-key": "x"})
        assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "conflict"
        other_path = client.post(f"/api/v1/users/{a}/enrollment-email", headers={"idempotency-key": "x"})
        assert other_path.status_code == 409
    assert invites(admin.db, b) == 0


def test_a_key_still_in_flight_is_a_conflict_with_a_retry_hint(admin: Admin) -> None:
    body = b'{"userIds":["u1"]}'
    with admin.db.write() as session:
        client_id = apikeys.authenticate(session, admin.keys["manage"])
        assert client_id is not None
        assert (
            idempotency.begin(session, client_id.id, "busy", middleware.request_hash(BULK, b"", body)) is None
        )
    with admin.client("manage") as client:
        response = client.post(
            BULK, content=body, headers={"idempotency-key": "busy", "content-type": "application/json"}
        )
    assert response.status_code == 409 and "in progress" in response.json()["error"]["message"]
    assert response.headers["retry-after"] == "1"


def test_malformed_keys_are_400_and_refused_requests_are_not_kept(admin: Admin) -> None:
    with admin.client("manage") as client:
        for bad in ("x" * 129, "has space", "tab\there"):
            response = client.post(BULK, json={"userIds": ["u"]}, headers={"idempotency-key": bad})
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"
        # 422 (invalid body) is not kept: the same key with a good body runs
        assert client.post(BULK, json={"userIds": []}, headers={"idempotency-key": "v"}).status_code == 422
        assert client.post(BULK, json={"userIds": ["u"]}, headers={"idempotency-key": "v"}).status_code == 200
    with admin.client("read") as client:  # 403 is not kept either
        assert client.post(BULK, json={"userIds": ["u"]}, headers={"idempotency-key": "r"}).status_code == 403
    with admin.db.read() as session:
        assert session.scalars(sa.select(IdempotencyKey.key)).all() == ["v"]


def test_rows_older_than_a_day_are_ignored_and_purged(admin: Admin) -> None:
    user_id = add_user(admin.db, "cy")
    with admin.client("manage") as client:
        first = client.post(BULK, json={"userIds": [user_id]}, headers={"idempotency-key": "old"})
        assert first.status_code == 200
        with admin.db.write() as session:
            session.execute(sa.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=25)))
        again = client.post(BULK, json={"userIds": [user_id]}, headers={"idempotency-key": "old"})
        assert again.status_code == 200 and "idempotent-replayed" not in again.headers
        assert (
            client.post(BULK, json={"userIds": [user_id]}, headers={"idempotency-key": "new"}).status_code
            == 200
        )
    assert invites(admin.db, user_id) == 3
    with admin.db.write() as session:
        assert idempotency.purge(session, now=utcnow() + timedelta(hours=24, seconds=1)) == 2
        assert idempotency.purge(session) == 0


def test_without_enrollment_keys_nothing_is_kept(db: Database) -> None:
    with serve(db, enrollment=False) as served:
        admin = make_admin(served)
        with admin.client("manage") as client:
            response = client.post(BULK, json={"userIds": ["u"]}, headers={"idempotency-key": "k"})
            assert "idempotent-replayed" not in response.headers
    with db.read() as session:
        assert session.scalars(sa.select(IdempotencyKey.key)).all() == []


# ---- errors and the document ------------------------------------------------------------------------------
def test_errors_have_one_shape(admin: Admin) -> None:
    with admin.client("manage") as client:
        for response, status in (
            (client.get("/api/v1/no-such-thing"), 404),
            (client.get("/api/v1/audit", params={"limit": 0}), 422),
            (client.get("/api/v1/audit", params={"cursor": "zzzz"}), 400),
            (client.post(BULK, json={"userIds": ["u"], "extra": 1}), 422),
        ):
            assert response.status_code == status, response.text
            assert set(response.json()) == {"error"}
            assert set(response.json()["error"]) == {"code", "message"}


def test_the_openapi_document_is_served_and_matches_the_error_shape(admin: Admin) -> None:
    with admin.client("") as client:
        document = client.get("/api/v1/openapi.json").json()
        assert client.get("/openapi.json").json() == document
    assert document["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key from `syncd apikey create`.",
    }
    assert "HTTPValidationError" not in document["components"]["schemas"]
    assert not [p for p in document["paths"] if p.startswith("/scim")]
    operations = [
        (path, op) for path, item in document["paths"].items() for op in item.values() if isinstance(op, dict)
    ]
    for path, op in operations:
        if "422" in op["responses"]:
            schema = op["responses"]["422"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, path
        if path.startswith("/api/v1/"):
            assert {"401", "403"} <= set(op["responses"]) and op.get("security"), path
    bulk = document["paths"][BULK]["post"]
    assert "429" in bulk["responses"] and "Retry-After" in bulk["responses"]["429"]["headers"]
    assert any(p["name"] == "Idempotency-Key" for p in bulk["parameters"])
    assert "429" in document["paths"]["/api/v1/verify"]["post"]["responses"]

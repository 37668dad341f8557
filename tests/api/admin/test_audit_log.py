"""GET /api/v1/audit (filters, newest first, keyset cursor) and GET /api/v1/audit/export (JSON lines in
batches, same filters) — and no secret ever shows up in either."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from harness.admin import Admin
from harness.enrollment import add_user

from syncd.api.admin import audit_log
from syncd.domain.lifecycle import AuditEvent
from syncd.store import apikeys, audit
from syncd.store.tables import AuditRecord

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def seed(admin: Admin) -> None:
    """Seven rows an hour apart (ids in the same order): two actors, three actions, two targets."""
    events = [
        AuditEvent("admin:alice", "user.create", "user", "u1"),
        AuditEvent("admin:bob", "user.update", "user", "u1"),
        AuditEvent("admin:alice", "group.create", "group", "g1"),
        AuditEvent("admin:alice", "user.update", "user", "u2"),
        AuditEvent("admin:bob", "user.update", "user", "u1"),
        AuditEvent("admin:alice", "group.create", "group", "g2"),
        AuditEvent("admin:bob", "user.create", "user", "u3"),
    ]
    with admin.db.write() as session:
        session.execute(sa.delete(AuditRecord))  # the API keys' own creation rows
        for i, event in enumerate(events):
            audit.record(session, event, {"n": i})
        session.flush()
        for i, row in enumerate(session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id))):
            row.at = T0 + timedelta(hours=i)


def numbers(items: list[dict[str, object]]) -> list[object]:
    return [item["details"]["n"] for item in items]  # type: ignore[index]


def test_list_is_newest_first_and_filters_combine(admin: Admin) -> None:
    seed(admin)
    with admin.client("read") as client:
        everything = client.get("/api/v1/audit").json()
        assert numbers(everything["items"]) == [6, 5, 4, 3, 2, 1, 0] and everything["nextCursor"] is None
        first = everything["items"][0]
        assert first["actor"] == "admin:bob" and first["targetType"] == "user" and first["targetId"] == "u3"
        assert datetime.fromisoformat(first["at"]) == T0 + timedelta(hours=6)
        cases = {
            "actor=admin:bob": [6, 4, 1],
            "action=user.update": [4, 3, 1],
            "targetType=group": [5, 2],
            "targetType=user&targetId=u1": [4, 1, 0],
            "actor=admin:alice&action=user.update": [3],
            "since=2026-01-01T14:00:00Z": [6, 5, 4, 3, 2],
            "until=2026-01-01T14:00:00%2B00:00": [1, 0],
            "since=2026-01-01T13:00:00&until=2026-01-01T15:00:00Z": [2, 1],  # no offset: UTC
            "actor=nobody": [],
        }
        for query, expected in cases.items():
            response = client.get(f"/api/v1/audit?{query}")
            assert response.status_code == 200, response.text
            assert numbers(response.json()["items"]) == expected, query


def test_pages_follow_the_cursor_to_the_end(admin: Admin) -> None:
    seed(admin)
    seen: list[object] = []
    cursor = None
    with admin.client("read") as client:
        for _ in range(10):
            params: dict[str, str | int] = {"limit": 3, "targetType": "user"}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/audit", params=params).json()
            seen += numbers(page["items"])
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == [6, 4, 3, 1, 0]
        bad = client.get("/api/v1/audit", params={"cursor": "bm90LWEtY3Vyc29y"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "usage"
        assert client.get("/api/v1/audit", params={"limit": 201}).status_code == 422
        assert client.get("/api/v1/audit", params={"actor": "a\x00"}).status_code == 422


def test_export_streams_json_lines_in_batches_with_the_same_filters(
    admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(admin)
    monkeypatch.setattr(audit_log, "EXPORT_BATCH", 3)  # 7 rows: batches of 3, 3, 1
    with admin.client("read") as client:
        response = client.get("/api/v1/audit/export")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.text.splitlines()]
        assert numbers(lines) == [6, 5, 4, 3, 2, 1, 0]
        assert lines == client.get("/api/v1/audit").json()["items"]
        only = client.get(
            "/api/v1/audit/export", params={"actor": "admin:alice", "since": "2026-01-01T13:00Z"}
        )
        assert numbers([json.loads(line) for line in only.text.splitlines()]) == [5, 3, 2]
        none = client.get("/api/v1/audit/export", params={"actor": "nobody"})
        assert none.status_code == 200 and none.text == ""


def test_no_secret_reaches_the_audit_routes(admin: Admin) -> None:
    user_id = add_user(admin.db, "sam")
    with admin.db.write() as session:
        made = apikeys.create(session, "ci", ["read"], actor="admin:test")
    with admin.client("manage") as client:
        generated = client.post(f"/api/v1/users/{user_id}/bypass-codes", json={"count": 3})
        assert generated.status_code == 201, generated.text
        codes = [item["code"] for item in generated.json()["items"]]
        export = client.get("/api/v1/audit/export").text
        listing = client.get("/api/v1/audit", params={"limit": 200}).text
    assert user_id in export and made.client.id in export  # the events are there …
    for secret in [*codes, made.key, *admin.keys.values()]:  # … the secrets are not
        assert secret not in export and secret not in listing

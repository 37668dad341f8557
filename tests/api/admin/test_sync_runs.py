"""GET /api/v1/sync-runs/{runId} and the decision on a held run (approve / reject), like ``syncd sync
show/approve/reject``, with a CSV file source on both databases."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from harness.admin import Admin, make_admin
from harness.served import serve

from syncd.domain.lifecycle import UserStatus
from syncd.sources.readers import kind_of, reader_for
from syncd.store import audit
from syncd.store.db import Database
from syncd.store.tables import User
from syncd.sync.engine import run_sync


def write_users(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "username", "email"])
        writer.writerows([f"u{i}", f"user{i}", f"user{i}@example.com"] for i in range(count))


@pytest.fixture
def hr(db: Database, tmp_path: Path) -> Iterator[Admin]:
    """The admin API of a config with one CSV source ``hr`` (10 users, max_disable 20 %)."""
    write_users(tmp_path / "users.csv", 10)
    source = {"name": "hr", "kind": "file", "format": "csv", "users": str(tmp_path / "users.csv")}
    with serve(db, sources=[source], sync={"max_disable": {"count": 500, "percent": 20}}) as served:
        yield make_admin(served)


def sync(admin: Admin, *, dry_run: bool = False) -> tuple[str, str]:
    config = admin.served.config
    source = config.source("hr")
    result = run_sync(admin.db, source, kind_of(source), reader_for(source), config.sync, dry_run=dry_run)
    return result.run_id, result.status


def held_run(admin: Admin, tmp_path: Path, keep: int = 7) -> str:
    assert sync(admin)[1] == "ok"
    write_users(tmp_path / "users.csv", keep)  # 3 of 10 gone: over 20 %
    run_id, status = sync(admin)
    assert status == "held"
    return run_id


def disabled(db: Database) -> int:
    with db.read() as session:
        query = sa.select(sa.func.count()).where(User.status == UserStatus.PROVISIONING_DISABLED)
        return int(session.scalar(query) or 0)


def test_a_held_run_is_shown_with_its_plan_and_approved(hr: Admin, tmp_path: Path) -> None:
    run_id = held_run(hr, tmp_path)
    with hr.client("read") as reader:
        shown = reader.get(f"/api/v1/sync-runs/{run_id}").json()
    assert shown["status"] == "held" and shown["source"] == "hr" and shown["dryRun"] is False
    assert sorted(r["name"] for r in shown["plan"] if r["op"] == "disable") == ["user7", "user8", "user9"]
    assert disabled(hr.db) == 0
    with hr.client("manage") as client:
        approved = client.post(f"/api/v1/sync-runs/{run_id}/approve")
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body["status"] == "ok" and body["runId"] != run_id
        assert body["heldRun"]["status"] == "approved" and body["heldRun"]["decidedBy"] == "admin:test-manage"
        assert body["heldRun"]["plan"] is None  # kept only while held (or for dry runs)
        again = client.post(f"/api/v1/sync-runs/{run_id}/approve")
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        assert client.post(f"/api/v1/sync-runs/{run_id}/reject").status_code == 409
    assert disabled(hr.db) == 3
    with hr.db.read() as session:
        [event] = audit.for_target(session, "sync_run", run_id)
        assert (event.actor, event.action, event.new) == ("admin:test-manage", "sync_run.approve", "ok")


def test_approval_applies_nothing_when_the_directory_now_goes_further(hr: Admin, tmp_path: Path) -> None:
    run_id = held_run(hr, tmp_path)
    write_users(tmp_path / "users.csv", 5)  # now 5 would go, the held run showed 3
    with hr.client("manage") as client:
        body = client.post(f"/api/v1/sync-runs/{run_id}/approve").json()
        assert body["status"] == "held" and body["runId"] != run_id
        assert body["heldRun"]["status"] == "superseded"
        newer = client.get(f"/api/v1/sync-runs/{body['runId']}").json()
        assert newer["status"] == "held" and len([r for r in newer["plan"] if r["op"] == "disable"]) == 5
    assert disabled(hr.db) == 0


def test_a_held_run_is_rejected_with_a_note(hr: Admin, tmp_path: Path) -> None:
    run_id = held_run(hr, tmp_path)
    with hr.client("manage") as client:
        assert client.post(f"/api/v1/sync-runs/{run_id}/reject", json={"note": "x" * 1001}).status_code == 422
        assert client.post(f"/api/v1/sync-runs/{run_id}/reject", json={"nope": 1}).status_code == 422
        rejected = client.post(f"/api/v1/sync-runs/{run_id}/reject", json={"note": "HR export was cut"})
        assert rejected.status_code == 200, rejected.text
        body = rejected.json()
        assert body["status"] == "rejected" and body["decidedBy"] == "admin:test-manage"
        assert "HR export was cut" in body["reason"]
        assert client.post(f"/api/v1/sync-runs/{run_id}/approve").status_code == 409
        assert client.post(f"/api/v1/sync-runs/{run_id}/reject", json={}).status_code == 409
    assert disabled(hr.db) == 0
    with hr.db.read() as session:
        [event] = audit.for_target(session, "sync_run", run_id)
        assert (event.action, event.new, event.reason) == ("sync_run.reject", "rejected", "HR export was cut")


def test_dry_runs_show_their_plan_and_are_not_decided_unknown_runs_are_404(hr: Admin, tmp_path: Path) -> None:
    run_id, status = sync(hr, dry_run=True)
    assert status == "ok"
    ok_id, _ = sync(hr)
    with hr.client("manage") as client:
        dry = client.get(f"/api/v1/sync-runs/{run_id}").json()
        assert dry["dryRun"] is True and len(dry["plan"]) >= 10
        assert [r["op"] for r in dry["plan"]].count("create") == 10
        done = client.get(f"/api/v1/sync-runs/{ok_id}").json()
        assert done["status"] == "ok" and done["plan"] is None and done["counts"]["created"] == 10
        for path in (f"/api/v1/sync-runs/{run_id}/approve", f"/api/v1/sync-runs/{ok_id}/approve"):
            assert client.post(path).status_code == 409
        assert client.post(f"/api/v1/sync-runs/{run_id}/reject").status_code == 409
        for method, path in (("GET", ""), ("POST", "/approve"), ("POST", "/reject")):
            missing = client.request(method, f"/api/v1/sync-runs/nosuchrun{path}")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert client.get("/api/v1/sync-runs/bad%20id").status_code == 422

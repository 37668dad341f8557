"""Admin API users: CRUD of manual users, the read-only rule for source-managed users, keyset pagination
under inserts, every list filter against a known data set, groups and policies of a user, enrollment mail
(single and bulk, rows in the outbox), and sync-one-user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from harness.admin import Admin, make_admin
from harness.served import serve

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.sources.readers import kind_of, reader_for
from syncd.store import audit, user_search, users
from syncd.store.db import Database
from syncd.store.tables import (
    AuditRecord,
    BypassCode,
    Device,
    Group,
    GroupMember,
    GroupNesting,
    OutboxMessage,
    Policy,
    User,
    UserFactor,
    utcnow,
)
from syncd.sync.engine import run_sync


def make_user(db: Database, username: str, *, source: str | None = None, **fields: Any) -> str:
    with db.write() as session:
        user = users.create(
            session,
            {"username": username, "email": f"{username}@example.com", **fields},
            provisioned=True,
            managed_by=source,
            actor="test",
            reason="test",
        )
        return user.id


def make_group(db: Database, name: str, *, source: str | None = None) -> str:
    with db.write() as session:
        group = Group(name=name, name_key=name.casefold(), managed_by=source)
        session.add(group)
        session.flush()
        return group.id


def add_device(db: Database, user_id: str, kind: DeviceType, state: DeviceState) -> None:
    with db.write() as session:
        session.add(Device(user_id=user_id, type=kind, state=state))
        user = session.get(User, user_id)
        assert user is not None
        states = users.device_states(session, [user_id]).get(user_id, {})
        if state is not DeviceState.PENDING:
            user.status = UserStatus.ACTIVE if state is DeviceState.ACTIVE else user.status
        _ = states


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["username"] for item in response.json()["items"]]


def walk(client: Any, params: dict[str, Any] | None = None, limit: int = 200) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        query = {**(params or {}), "limit": limit, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/users", params=query)
        seen += names(response)
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return seen


# ---- CRUD -------------------------------------------------------------------------------------------------
def test_create_get_patch_delete_a_manual_user(admin: Admin) -> None:
    with admin.client("manage") as client:
        made = client.post(
            "/api/v1/users",
            json={"username": "Alice", "email": "alice@example.com", "givenName": "Alice", "phone": "+1 555"},
        )
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["source"] is None and body["status"] == "UNENROLLED" and body["deviceCount"] == 0
        assert {f["factorType"]: f["status"] for f in body["factors"]} == {
            "TOTP": "NOT_SETUP",
            "HARDWARE_TOKEN": "NOT_SETUP",
            "BYPASS_CODE": "NOT_SETUP",
        }
        user_id = body["id"]
        again = client.post("/api/v1/users", json={"username": "alice"})
        assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
        assert client.post("/api/v1/users", json={"username": "x", "bogus": 1}).status_code == 422
        assert client.post("/api/v1/users", json={"username": "x", "email": "nope"}).status_code == 422
        for bad in ('{"username": "a\\u0000b"}', '{"username": "ok", "displayName": "\\ud800"}'):
            sent = client.post("/api/v1/users", content=bad, headers={"content-type": "application/json"})
            assert sent.status_code == 422, bad
        assert client.get("/api/v1/users", params={"q": "a\x00"}).status_code == 422
        assert client.get("/api/v1/users", params={"cursor": "!!"}).status_code == 422

        got = client.get(f"/api/v1/users/{user_id}")
        assert got.status_code == 200 and got.json()["username"] == "Alice"
        patched = client.patch(
            f"/api/v1/users/{user_id}", json={"displayName": "Alice A.", "username": "alice2"}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["displayName"] == "Alice A." and patched.json()["username"] == "alice2"
        client.post("/api/v1/users", json={"username": "bob"})
        clash = client.patch(f"/api/v1/users/{user_id}", json={"username": "BOB"})
        assert clash.status_code == 409

        add_device(admin.db, user_id, DeviceType.TOTP, DeviceState.ACTIVE)
        assert client.delete(f"/api/v1/users/{user_id}").status_code == 204
        gone = client.get(f"/api/v1/users/{user_id}").json()
        assert gone["status"] == "PROVISIONING_DISABLED" and gone["deletedAt"] is not None
        assert "alice2" not in walk(client)
        assert client.patch(f"/api/v1/users/{user_id}", json={"phone": "1"}).status_code == 404
        assert client.delete(f"/api/v1/users/{user_id}").status_code == 404
        # the name is free again once the user is deleted
        assert client.post("/api/v1/users", json={"username": "alice2"}).status_code == 201
        for missing in ("nope", "x" * 64):
            assert client.get(f"/api/v1/users/{missing}").status_code == 404
        assert client.get(f"/api/v1/users/{'x' * 65}").status_code == 422
    with admin.db.read() as session:
        rows = audit.for_target(session, "user", user_id)
        changes = [(r.action, r.old, r.new, r.actor) for r in rows]
    assert ("user.status_changed", "ACTIVE", "PROVISIONING_DISABLED", "admin:test-manage") in changes
    assert ("user.deleted", None, None, "admin:test-manage") in changes
    assert ("user.updated", None, None, "admin:test-manage") in changes


def test_source_managed_users_are_read_only_here(admin: Admin) -> None:
    user_id = make_user(admin.db, "carol", source="corp-ldap")
    with admin.client("manage") as client:
        for body, field in (
            ({"username": "caroline"}, "username"),
            ({"email": "c@example.com"}, "email"),
            ({"displayName": "C"}, "display name"),
            ({"phone": "1"}, "phone"),
        ):
            response = client.patch(f"/api/v1/users/{user_id}", json=body)
            assert response.status_code == 409, response.text
            assert response.json()["error"]["message"] == (
                f"user carol is managed by source 'corp-ldap'; change {field} in the directory"
            )
        deleted = client.delete(f"/api/v1/users/{user_id}")
        assert deleted.status_code == 409 and "corp-ldap" in deleted.json()["error"]["message"]
        assert client.get(f"/api/v1/users/{user_id}").json()["source"] == "corp-ldap"
    with admin.client("read") as client:
        assert client.post("/api/v1/users", json={"username": "x"}).status_code == 403


# ---- pagination -------------------------------------------------------------------------------------------
def test_pagination_walks_every_user_once_while_users_are_inserted(admin: Admin) -> None:
    originals = {f"user{i:03d}" for i in range(0, 60, 2)}
    for name in sorted(originals):
        make_user(admin.db, name)
    seen: list[str] = []
    inserted = 0
    cursor = None
    with admin.client("read") as client:
        while True:
            params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            response = client.get("/api/v1/users", params=params)
            page = names(response)
            assert len(page) <= 7
            seen += page
            # insert before and after the cursor between pages
            make_user(admin.db, f"user{inserted * 2 + 1:03d}")
            make_user(admin.db, f"aaa{inserted:03d}")
            inserted += 1
            cursor = response.json()["nextCursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)), "a user was listed twice"
        assert originals <= set(seen)
        assert seen == sorted(seen)
        assert client.get("/api/v1/users", params={"cursor": "bm90LWpzb24"}).status_code == 400  # "not-json"
        assert client.get("/api/v1/users", params={"cursor": "WyJhIl0"}).status_code == 400  # ["a"]
        assert client.get("/api/v1/users", params={"limit": 0}).status_code == 422
        assert client.get("/api/v1/users", params={"limit": 201}).status_code == 422


# ---- filters ----------------------------------------------------------------------------------------------
@pytest.fixture
def dataset(admin: Admin) -> dict[str, str]:
    db = admin.db
    ids = {
        "ann": make_user(db, "ann", source="corp-ldap", display_name="Ann 100% Real"),
        "ben": make_user(db, "ben", source="corp-ldap", display_name="Ben_Smith"),
        "cat": make_user(db, "cat", email="cat@other.org"),
        "dan": make_user(db, "dan", display_name="Dan X"),
        "eve": make_user(db, "eve", source="hr"),
        "fay": make_user(db, "fay"),
    }
    add_device(db, ids["ann"], DeviceType.TOTP, DeviceState.ACTIVE)
    add_device(db, ids["ben"], DeviceType.TOTP, DeviceState.PENDING)
    add_device(db, ids["cat"], DeviceType.TOTP, DeviceState.DISABLED)
    add_device(db, ids["dan"], DeviceType.TOTP, DeviceState.ACTIVE)
    add_device(db, ids["eve"], DeviceType.HARDWARE_TOKEN, DeviceState.ACTIVE)
    with db.write() as session:
        session.get(User, ids["cat"]).status = UserStatus.DEVICES_DISABLED  # type: ignore[union-attr]
        session.get(User, ids["fay"]).provisioned = False  # type: ignore[union-attr]
        session.get(User, ids["fay"]).status = UserStatus.PROVISIONING_DISABLED  # type: ignore[union-attr]
        now = utcnow()
        session.add(UserFactor(user_id=ids["dan"], factor_type="TOTP", locked_at=now, failures=5))
        session.add(
            UserFactor(user_id=ids["ann"], factor_type="TOTP", last_auth_status="SUCCESS", last_auth_at=now)
        )
        session.add(UserFactor(user_id=ids["eve"], factor_type="HARDWARE_TOKEN", last_auth_status="FAILURE"))
        session.add(UserFactor(user_id=ids["fay"], factor_type="TOTP", enabled=False))
        session.add(BypassCode(user_id=ids["fay"], code_hash="x", uses_left=1))
        session.add(BypassCode(user_id=ids["cat"], code_hash="x", uses_left=0))
    top = make_group(db, "top")
    mid = make_group(db, "mid")
    leaf = make_group(db, "leaf")
    with db.write() as session:
        session.add_all(
            [
                GroupNesting(parent_id=top, child_id=mid),
                GroupNesting(parent_id=mid, child_id=leaf),
                GroupNesting(parent_id=leaf, child_id=top),  # a cycle: harmless
                GroupMember(group_id=top, user_id=ids["ann"]),
                GroupMember(group_id=mid, user_id=ids["ben"]),
                GroupMember(group_id=leaf, user_id=ids["cat"]),
            ]
        )
    other = make_group(db, "other")
    with db.write() as session:
        session.add(GroupMember(group_id=other, user_id=ids["fay"]))
    return {**ids, "top": top, "mid": mid, "leaf": leaf, "other": other}


def test_each_filter_against_a_known_data_set(admin: Admin, dataset: dict[str, str]) -> None:
    cases: list[tuple[dict[str, str], list[str]]] = [
        ({}, ["ann", "ben", "cat", "dan", "eve", "fay"]),
        ({"status": "ACTIVE"}, ["ann", "dan", "eve"]),
        ({"status": "UNENROLLED"}, ["ben"]),
        ({"status": "DEVICES_DISABLED"}, ["cat"]),
        ({"status": "PROVISIONING_DISABLED"}, ["fay"]),
        ({"source": "corp-ldap"}, ["ann", "ben"]),
        ({"source": "hr"}, ["eve"]),
        ({"group": dataset["mid"]}, ["ann", "ben", "cat"]),  # mid → leaf → top → mid
        ({"group": dataset["other"]}, ["fay"]),
        ({"factor": "TOTP"}, ["ann", "ben", "cat", "dan", "fay"]),
        ({"factor": "TOTP", "factorStatus": "ACTIVE"}, ["ann"]),
        ({"factor": "TOTP", "factorStatus": "PENDING"}, ["ben"]),
        ({"factor": "TOTP", "factorStatus": "DISABLED"}, ["cat", "fay"]),
        ({"factor": "TOTP", "factorStatus": "LOCKED"}, ["dan"]),
        ({"factor": "TOTP", "factorStatus": "NOT_SETUP"}, ["eve"]),
        ({"factor": "HARDWARE_TOKEN", "factorStatus": "ACTIVE"}, ["eve"]),
        ({"factor": "BYPASS_CODE", "factorStatus": "ACTIVE"}, ["fay"]),
        ({"factor": "BYPASS_CODE", "factorStatus": "NOT_SETUP"}, ["ann", "ben", "cat", "dan", "eve"]),
        ({"lastAuthnStatus": "SUCCESS"}, ["ann"]),
        ({"lastAuthnStatus": "FAILURE", "factor": "HARDWARE_TOKEN"}, ["eve"]),
        ({"lastAuthnStatus": "FAILURE", "factor": "TOTP"}, []),
        ({"q": "CAT@OTHER"}, ["cat"]),  # q: a case-insensitive prefix (more in test_q_…)
        ({"q": "dan x"}, ["dan"]),
        ({"q": "x"}, []),  # not a substring search
        ({"q": "ann 100%"}, ["ann"]),  # % and _ are plain characters
        ({"q": "%"}, []),
        ({"q": "a%"}, []),
        ({"q": "ben_s"}, ["ben"]),
        ({"q": "_"}, []),
        ({"q": "be_"}, []),
        ({"status": "ACTIVE", "source": "corp-ldap", "factor": "TOTP"}, ["ann"]),
    ]
    with admin.client("read") as client:
        for params, expected in cases:
            assert walk(client, params, limit=2) == expected, params
        assert client.get("/api/v1/users", params={"group": "nope"}).status_code == 404
        assert client.get("/api/v1/users", params={"factorStatus": "ACTIVE"}).status_code == 400
        assert client.get("/api/v1/users", params={"status": "HAPPY"}).status_code == 422
        detail = client.get(f"/api/v1/users/{dataset['dan']}").json()
        factors = {f["factorType"]: f for f in detail["factors"]}
        assert factors["TOTP"]["status"] == "LOCKED" and detail["deviceCount"] == 1
        ann = client.get(f"/api/v1/users/{dataset['ann']}").json()
        assert {f["factorType"]: f["lastAuthnStatus"] for f in ann["factors"]}["TOTP"] == "SUCCESS"
        assert [g["name"] for g in ann["groups"]] == ["top"]
        groups = client.get(f"/api/v1/users/{dataset['ann']}/groups").json()
        assert sorted((g["name"], g["direct"]) for g in groups) == [
            ("leaf", False),
            ("mid", False),
            ("top", True),
        ]


@pytest.mark.parametrize("broad", [False, True], ids=["prefix-indexes", "username-walk"])
def test_q_is_a_case_insensitive_prefix_of_each_name_column(
    admin: Admin, broad: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Username, email, given, family and display name are each searched by prefix, case ignored (ASCII
    letters always; other letters as typed, lower, upper or capitalised); no wildcards. ``broad``: SQLite
    takes every prefix for a common one and walks username order (user_search.BROAD_PREFIX)."""
    if broad:
        monkeypatch.setattr(user_search, "BROAD_PREFIX", 1)
    db = admin.db
    make_user(db, "Xavier.K")
    make_user(db, "u2", email="Prefix.Mail@Example.COM")
    make_user(db, "u3", given_name="Gwendolyn")
    make_user(db, "u4", family_name="Ölsen")
    make_user(db, "u5", display_name="Dr. Zhivago")
    make_user(db, "u6", family_name="ÖLSEN-BERG")
    make_user(db, "u7", display_name="Émile Zola")
    make_user(db, "back\\slash")
    make_user(db, "at@home")
    make_user(db, "atom")
    make_user(db, "at[x")
    cases: list[tuple[str, list[str]]] = [
        ("xavier", ["Xavier.K"]),
        ("XAVIER.k", ["Xavier.K"]),
        ("xavier.k@EXAMPLE.com", ["Xavier.K"]),  # the email
        ("prefix.mail@example.c", ["u2"]),
        ("gwen", ["u3"]),
        ("GWENDOLYN", ["u3"]),
        ("gwendolyns", []),
        ("öl", ["u4", "u6"]),
        ("Öl", ["u4", "u6"]),
        ("ÖL", ["u4", "u6"]),
        ("ölsen-b", ["u6"]),
        ("dr. z", ["u5"]),
        ("zhivago", []),  # not a prefix
        ("émile", ["u7"]),
        ("ÉMILE Z", ["u7"]),
        ("back\\", ["back\\slash"]),  # backslash: a plain character
        ("\\", []),
        ("at@", ["at@home"]),  # "@" is followed by "A" in code points: the range must not reach "a"…
        ("at[", ["at[x"]),
        ("at", ["at@home", "at[x", "atom"]),
        ("u", ["u2", "u3", "u4", "u5", "u6", "u7"]),
        ("ü", []),
    ]
    with admin.client("read") as client:
        for q, expected in cases:
            assert walk(client, {"q": q}, limit=2) == expected, q
        assert names(client.get("/api/v1/users", params={"q": "u", "status": "UNENROLLED", "limit": 3})) == [
            "u2",
            "u3",
            "u4",
        ]
        assert client.get("/api/v1/users", params={"q": ""}).status_code == 422


# ---- groups and policies of a user ------------------------------------------------------------------------
def test_group_and_policy_assignment(admin: Admin) -> None:
    user_id = make_user(admin.db, "gus")
    manual = make_group(admin.db, "staff")
    managed = make_group(admin.db, "ldap-staff", source="corp-ldap")
    with admin.db.write() as session:
        policy = Policy(name="strict", priority=5, rules=[])
        session.add(policy)
        session.flush()
        policy_id = policy.id
    with admin.client("manage") as client:
        base = f"/api/v1/users/{user_id}"
        assert client.put(f"{base}/groups/{manual}").status_code == 204
        assert client.put(f"{base}/groups/{manual}").status_code == 204  # idempotent
        assert [g["name"] for g in client.get(f"{base}/groups").json()] == ["staff"]
        refused = client.put(f"{base}/groups/{managed}")
        assert refused.status_code == 409
        assert refused.json()["error"]["message"] == (
            "group ldap-staff is managed by source 'corp-ldap'; change its members in the directory"
        )
        assert client.put(f"{base}/groups/nope").status_code == 404
        assert client.put(f"/api/v1/users/nope/groups/{manual}").status_code == 404
        assert client.delete(f"{base}/groups/{manual}").status_code == 204
        assert client.delete(f"{base}/groups/{manual}").status_code == 404
        assert client.get(f"{base}/groups").json() == []

        assert client.put(f"{base}/policies/{policy_id}").status_code == 204
        assert client.put(f"{base}/policies/{policy_id}").status_code == 204
        assert client.get(f"{base}/policies").json() == [
            {"policyId": policy_id, "name": "strict", "priority": 5}
        ]
        assert client.put(f"{base}/policies/nope").status_code == 404
        assert client.delete(f"{base}/policies/{policy_id}").status_code == 204
        assert client.delete(f"{base}/policies/{policy_id}").status_code == 404
        assert client.get(f"{base}/policies").json() == []
    with admin.db.read() as session:
        actions = [r.action for r in session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id))]
    for action in ("group.member_added", "group.member_removed", "policy.assigned", "policy.unassigned"):
        assert actions.count(action) == 1, action


# ---- enrollment mail --------------------------------------------------------------------------------------
def _outbox(db: Database) -> list[tuple[str | None, str, str]]:
    with db.read() as session:
        return [
            (r.user_id, r.purpose, r.to_address)
            for r in session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.created_at))
        ]


def test_enrollment_email_single_and_bulk_queue_outbox_rows(admin: Admin) -> None:
    hal = make_user(admin.db, "hal")
    ivy = make_user(admin.db, "ivy")
    nomail = make_user(admin.db, "nomail", email=None)
    with admin.db.write() as session:
        users.create(
            session,
            {"username": "off", "email": "off@example.com"},
            provisioned=False,
            managed_by=None,
            actor="t",
            reason="t",
        )
        off = session.scalar(sa.select(User.id).where(User.username == "off"))
    with admin.client("manage") as client:
        sent = client.post(f"/api/v1/users/{hal}/enrollment-email")
        assert sent.status_code == 202 and sent.json() == {"userId": hal, "result": "invited", "reason": None}
        assert _outbox(admin.db) == [(hal, "invite", "hal@example.com")]
        refused = client.post(f"/api/v1/users/{nomail}/enrollment-email")
        assert refused.status_code == 409 and "no email address" in refused.json()["error"]["message"]
        assert client.post("/api/v1/users/nope/enrollment-email").status_code == 404

        for _ in range(4):
            assert client.post(f"/api/v1/users/{hal}/enrollment-email").status_code == 202
        limited = client.post(f"/api/v1/users/{hal}/enrollment-email")
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"

        bulk = client.post(
            "/api/v1/users/enrollment-emails", json={"userIds": [ivy, hal, nomail, off, "ghost", ivy]}
        )
        assert bulk.status_code == 200, bulk.text
        body = bulk.json()
        assert (body["invited"], body["skipped"], body["rateLimited"]) == (1, 3, 1)
        results = {r["userId"]: (r["result"], r["reason"]) for r in body["results"]}
        assert results[ivy] == ("invited", None)
        assert results[hal][0] == "rate_limited"
        assert results[nomail] == ("skipped", "no email address")
        assert results[off] == ("skipped", "user is PROVISIONING_DISABLED")
        assert results["ghost"] == ("skipped", "no such user")
    with admin.client("all") as client:  # another key: the mail routes are rate limited per key
        assert client.post("/api/v1/users/enrollment-emails", json={"userIds": []}).status_code == 422
        too_many = {"userIds": [f"u{i}" for i in range(1001)]}
        assert client.post("/api/v1/users/enrollment-emails", json=too_many).status_code == 422
    rows = _outbox(admin.db)
    assert rows.count((ivy, "invite", "ivy@example.com")) == 1
    assert rows.count((hal, "invite", "hal@example.com")) == 5


# ---- sync one user ----------------------------------------------------------------------------------------
def test_sync_one_user_runs_its_source_and_reports_what_happened(db: Database, tmp_path: Path) -> None:
    csv = tmp_path / "users.csv"
    csv.write_text("id,username,email,display_name\n1,jay,jay@example.com,Jay\n2,kim,kim@example.com,Kim\n")
    token = tmp_path / "token"
    token.write_text("t" * 40)
    sources = [
        {"name": "hr", "kind": "file", "format": "csv", "users": str(csv)},
        {"name": "okta", "kind": "scim", "tokens": [{"file": str(token)}]},
    ]
    with db.write() as session:
        session.add(Policy(name="unused", rules=[]))
    with serve(db, sources=sources) as served, make_admin(served).client("manage") as client:
        # the first run creates jay and kim; the user is then known by its id
        manual = client.post("/api/v1/users", json={"username": "manual"}).json()["id"]
        refused = client.post(f"/api/v1/users/{manual}/sync")
        assert refused.status_code == 409 and "manual user" in refused.json()["error"]["message"]
        scim = make_user(db, "pushed", source="okta")
        refused = client.post(f"/api/v1/users/{scim}/sync")
        assert refused.status_code == 409 and "nothing to pull" in refused.json()["error"]["message"]
        gone = make_user(db, "orphan", source="retired")
        assert client.post(f"/api/v1/users/{gone}/sync").status_code == 409
        assert client.post("/api/v1/users/nope/sync").status_code == 404

        source = served.config.source("hr")
        first = run_sync(db, source, kind_of(source), reader_for(source), served.config.sync)
        assert first.status == "ok", first.reason
        with db.read() as session:
            jay = session.scalar(sa.select(User.id).where(User.username == "jay"))
        assert jay is not None
        quiet = client.post(f"/api/v1/users/{jay}/sync")
        assert quiet.status_code == 200, quiet.text
        assert quiet.json()["userAction"] == "unchanged" and quiet.json()["source"] == "hr"

        csv.write_text(
            "id,username,email,display_name\n1,jay,jay@example.com,Jay B\n2,kim,kim@example.com,Kim\n"
        )
        synced = client.post(f"/api/v1/users/{jay}/sync")
        assert synced.status_code == 200, synced.text
        body = synced.json()
        assert (body["runStatus"], body["userAction"], body["userReason"]) == (
            "ok",
            "update",
            "attributes changed: display_name",
        )
        assert body["user"]["displayName"] == "Jay B" and body["user"]["status"] == "UNENROLLED"

        # disabling half of the source trips the guard: the run is held and the user is left as it was
        csv.write_text(
            "id,username,email,display_name,disabled\n1,jay,jay@example.com,Jay B,true\n"
            "2,kim,kim@example.com,Kim,false\n"
        )
        held = client.post(f"/api/v1/users/{jay}/sync").json()
        assert held["runStatus"] == "held" and held["reason"]
        assert held["user"]["status"] == "UNENROLLED"
        with db.read() as session:
            actions = [r.action for r in audit.for_target(session, "user", jay)]
        assert actions.count("user.sync_requested") == 3

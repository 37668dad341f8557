"""Admin API groups: CRUD of manual groups, source-managed groups read-only (409 naming the source),
paging, members direct and effective through nesting (cycle-safe), member and policy assignment."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from harness.admin import Admin

from syncd.store import users
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, Group, GroupMember, GroupNesting, Policy, PolicyAssignment


def make_user(db: Database, username: str) -> str:
    with db.write() as session:
        return users.create(
            session, {"username": username}, provisioned=True, managed_by=None, actor="t", reason="t"
        ).id


def make_group(db: Database, name: str, source: str | None = None) -> str:
    with db.write() as session:
        group = Group(name=name, name_key=name.casefold(), managed_by=source)
        session.add(group)
        session.flush()
        return group.id


def walk(client: Any, path: str, params: dict[str, Any], key: str) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        out += [item[key] for item in response.json()["items"]]
        cursor = response.json()["nextCursor"]
        if cursor is None:
            return out


def test_manual_group_lifecycle_and_source_managed_groups_are_read_only(admin: Admin) -> None:
    ldap = make_group(admin.db, "ldap-admins", source="corp-ldap")
    with admin.db.write() as session:
        policy = Policy(name="p1", rules=[])
        session.add(policy)
        session.flush()
        policy_id = policy.id
    with admin.client("manage") as client:
        made = client.post("/api/v1/groups", json={"name": "Pilots", "description": "first wave"})
        assert made.status_code == 201, made.text
        group = made.json()
        assert (group["name"], group["source"], group["memberCount"]) == ("Pilots", None, 0)
        gid = group["id"]
        assert client.post("/api/v1/groups", json={"name": "pilots"}).status_code == 409
        assert client.post("/api/v1/groups", json={"name": " x"}).status_code == 422
        for i in range(5):
            assert client.post("/api/v1/groups", json={"name": f"team-{i}"}).status_code == 201
        listed = walk(client, "/api/v1/groups", {"limit": 2}, "name")
        assert listed == ["ldap-admins", "Pilots", "team-0", "team-1", "team-2", "team-3", "team-4"]
        assert walk(client, "/api/v1/groups", {"source": "corp-ldap"}, "name") == ["ldap-admins"]

        patched = client.patch(f"/api/v1/groups/{gid}", json={"name": "Pilots 2", "description": None})
        assert patched.status_code == 200 and patched.json()["description"] is None
        assert client.patch(f"/api/v1/groups/{gid}", json={"name": "TEAM-0"}).status_code == 409
        assert client.get(f"/api/v1/groups/{gid}").json()["name"] == "Pilots 2"

        refused = client.patch(f"/api/v1/groups/{ldap}", json={"description": "mine"})
        assert refused.status_code == 409
        assert refused.json()["error"]["message"] == (
            "group ldap-admins is managed by source 'corp-ldap'; change the group in the directory"
        )
        assert client.delete(f"/api/v1/groups/{ldap}").status_code == 409
        user = make_user(admin.db, "zed")
        member = client.put(f"/api/v1/groups/{ldap}/members/{user}")
        assert member.status_code == 409 and "corp-ldap" in member.json()["error"]["message"]

        # policies may be assigned to any group (not a source attribute)
        assert client.put(f"/api/v1/groups/{ldap}/policies/{policy_id}").status_code == 204
        assert client.put(f"/api/v1/groups/{gid}/policies/{policy_id}").status_code == 204
        assert [p["policyId"] for p in client.get(f"/api/v1/groups/{gid}/policies").json()] == [policy_id]
        assert client.put(f"/api/v1/groups/{gid}/policies/nope").status_code == 404
        assert client.delete(f"/api/v1/groups/{ldap}/policies/{policy_id}").status_code == 204
        assert client.get(f"/api/v1/groups/{ldap}/policies").json() == []

        assert client.put(f"/api/v1/groups/{gid}/members/{user}").status_code == 204
        assert client.get(f"/api/v1/groups/{gid}").json()["memberCount"] == 1
        assert client.delete(f"/api/v1/groups/{gid}").status_code == 204
        assert client.get(f"/api/v1/groups/{gid}").status_code == 404
        assert client.delete(f"/api/v1/groups/{gid}").status_code == 404
        assert client.get("/api/v1/groups/nope/members").status_code == 404
        assert client.get("/api/v1/groups", params={"cursor": "AAAA"}).status_code == 400
    with admin.client("read") as client:
        assert client.post("/api/v1/groups", json={"name": "nope"}).status_code == 403
    with admin.db.read() as session:
        assert (
            session.scalar(
                sa.select(sa.func.count()).select_from(GroupMember).where(GroupMember.group_id == gid)
            )
            == 0
        )
        left = (
            sa.select(sa.func.count()).select_from(PolicyAssignment).where(PolicyAssignment.group_id == gid)
        )
        assert session.scalar(left) == 0
        actions = [
            r.action for r in session.scalars(sa.select(AuditRecord).where(AuditRecord.target_id == gid))
        ]
    assert actions[:1] == ["group.created"] and "group.updated" in actions and actions[-1] == "group.deleted"


def test_members_direct_and_effective_through_nesting_with_a_cycle(admin: Admin) -> None:
    db = admin.db
    top, mid, leaf = (make_group(db, n) for n in ("top", "mid", "leaf"))
    ids = {n: make_user(db, n) for n in ("amy", "bob", "cal", "dee")}
    with db.write() as session:
        session.add_all(
            [
                GroupNesting(parent_id=top, child_id=mid),
                GroupNesting(parent_id=mid, child_id=leaf),
                GroupNesting(parent_id=leaf, child_id=top),  # a cycle
                GroupMember(group_id=mid, user_id=ids["bob"]),
                GroupMember(group_id=leaf, user_id=ids["cal"]),
            ]
        )
    with admin.client("manage") as client:
        assert client.put(f"/api/v1/groups/{top}/members/{ids['amy']}").status_code == 204
        assert client.put(f"/api/v1/groups/{top}/members/{ids['dee']}").status_code == 204
        assert client.put(f"/api/v1/groups/{top}/members/nope").status_code == 404
        members = f"/api/v1/groups/{top}/members"
        assert walk(client, members, {"limit": 1}, "username") == ["amy", "dee"]
        assert walk(client, members, {"limit": 2, "effective": "true"}, "username") == [
            "amy",
            "bob",
            "cal",
            "dee",
        ]
        assert walk(client, f"/api/v1/groups/{leaf}/members", {"effective": "true"}, "username") == [
            "amy",
            "bob",
            "cal",
            "dee",
        ]
        assert client.delete(f"{members}/{ids['dee']}").status_code == 204
        assert client.delete(f"{members}/{ids['dee']}").status_code == 404
        assert client.delete(f"{members}/{ids['bob']}").status_code == 404  # bob is in mid, not top
        assert walk(client, members, {}, "username") == ["amy"]
        groups = client.get(f"/api/v1/users/{ids['cal']}/groups").json()
        assert sorted((g["name"], g["direct"]) for g in groups) == [
            ("leaf", True),
            ("mid", False),
            ("top", False),
        ]

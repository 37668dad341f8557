"""Policies over real HTTP on SQLite and PostgreSQL: CRUD, validation (CIDR, status, action, unknown
fields), unique names, delete cascading assignments (audited), the assignments listing, the evaluate
explanation (direct and nested-group assignment, the failed condition of each rule, no match), and
store.policies.decide."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from harness.admin import Admin

from syncd.domain.lifecycle import UserStatus
from syncd.errors import ConflictError
from syncd.store import audit, policies
from syncd.store.tables import Group, GroupMember, GroupNesting, Policy, PolicyAssignment, User, new_id

BASE = "/api/v1/policies"


def add_user(admin: Admin, username: str, status: UserStatus = UserStatus.ACTIVE) -> str:
    user_id = new_id()
    with admin.db.write() as session:
        session.add(User(id=user_id, username=username, username_key=username.casefold(), status=status))
    return user_id


def add_group(admin: Admin, name: str, *, members: tuple[str, ...] = (), parent: str | None = None) -> str:
    group_id = new_id()
    with admin.db.write() as session:
        session.add(Group(id=group_id, name=name, name_key=name.casefold()))
        session.flush()
        session.add_all(GroupMember(group_id=group_id, user_id=u) for u in members)
        if parent is not None:
            session.add(GroupNesting(parent_id=parent, child_id=group_id))
    return group_id


def assign(admin: Admin, policy_id: str, *, user: str | None = None, group: str | None = None) -> None:
    with admin.db.write() as session:
        session.add(PolicyAssignment(policy_id=policy_id, user_id=user, group_id=group))


def body(name: str = "Office", **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "description": "office network",
        "priority": 10,
        "rules": [
            {"applications": ["vpn"], "conditions": {"networks": ["10.0.0.0/8"]}, "action": "ALLOW"},
            {"applications": ["*"], "action": "DENY"},
        ],
    }
    data.update(overrides)
    return data


def test_same_name_at_once_is_one_201_and_the_rest_409(admin: Admin) -> None:
    def create(_: int) -> int:
        with admin.client() as client:
            return client.post(BASE, json=body("Race")).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(create, range(8)))
    assert codes == [201] + [409] * 7
    # The name check and the insert are two statements: a name taken in between is a conflict, not a 5xx.
    with pytest.raises(ConflictError), admin.db.write() as session:
        policies.save(session, Policy(name="Race", priority=0, rules=[]))
    with admin.db.read() as session:
        assert [p.name for p in policies.listing(session)] == ["Race"]


def test_crud_listing_in_priority_order_and_validation(admin: Admin) -> None:
    with admin.client() as client:
        created = client.post(BASE, json=body())
        assert created.status_code == 201, created.text
        policy = created.json()
        assert policy["rules"][0]["conditions"]["networks"] == ["10.0.0.0/8"]
        assert policy["rules"][1]["conditions"]["users"] is None
        second = client.post(BASE, json=body("First", priority=1)).json()
        assert [p["name"] for p in client.get(BASE).json()] == ["First", "Office"]
        assert client.get(f"{BASE}/{policy['id']}").json() == policy
        replaced = client.put(
            f"{BASE}/{policy['id']}",
            json=body("Office 2", priority=0, rules=[{"applications": ["crm"], "action": "REQUIRE_MFA"}]),
        )
        assert replaced.status_code == 200, replaced.text
        assert replaced.json()["rules"] == [
            {
                "applications": ["crm"],
                "action": "REQUIRE_MFA",
                "conditions": {
                    "users": None,
                    "groups": None,
                    "userStatus": None,
                    "factorTypes": None,
                    "networks": None,
                    "notNetworks": None,
                },
            }
        ]
        assert [p["id"] for p in client.get(BASE).json()] == [policy["id"], second["id"]]
        assert client.put(f"{BASE}/{policy['id']}", json=body("First")).status_code == 409
        assert client.post(BASE, json=body("First")).json()["error"]["code"] == "conflict"
        assert client.delete(f"{BASE}/{second['id']}").status_code == 204
        for method in ("get", "delete"):
            missing = getattr(client, method)(f"{BASE}/{second['id']}")
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    with admin.client("read") as client:
        assert client.post(BASE, json=body("Nope")).status_code == 403
        assert client.get(BASE).status_code == 200
    check_validation_names_the_field(admin)


def check_validation_names_the_field(admin: Admin) -> None:
    bad_rules: list[tuple[dict[str, Any], str]] = [
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"networks": ["10.0.0.0/33"]}}, "networks"),
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"notNetworks": ["nope"]}}, "notNetworks"),
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"userStatus": ["HAPPY"]}}, "userStatus"),
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"factorTypes": ["SMS"]}}, "factorTypes"),
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"users": []}}, "users"),
        ({"applications": ["*"], "action": "ALLOW", "conditions": {"colour": ["red"]}}, "colour"),
        ({"applications": [], "action": "ALLOW"}, "applications"),
        ({"applications": ["*"], "action": "MAYBE"}, "action"),
    ]
    with admin.client() as client:
        for rule, field in bad_rules:
            response = client.post(BASE, json=body(rules=[rule]))
            assert response.status_code == 422, (rule, response.text)
            error = response.json()["error"]
            assert error["code"] == "invalid_request" and field in error["message"], (field, error)
        for extra in ({"priority": -1}, {"name": ""}, {"name": "x" * 129}, {"owner": "me"}):
            assert client.post(BASE, json=body(**extra)).status_code == 422, extra
        assert client.get(f"{BASE}/{'x' * 65}").status_code == 422
        ok = client.post(
            BASE,
            json=body(
                "Normalized",
                rules=[{"applications": ["*"], "action": "DENY", "conditions": {"networks": ["10.1.2.3/8"]}}],
            ),
        )
        assert ok.json()["rules"][0]["conditions"]["networks"] == ["10.0.0.0/8"]  # normalized


def test_delete_cascades_assignments_and_is_audited(admin: Admin) -> None:
    user_id = add_user(admin, "alice")
    group_id = add_group(admin, "staff")
    with admin.client() as client:
        policy_id = client.post(BASE, json=body()).json()["id"]
        assign(admin, policy_id, user=user_id)
        assign(admin, policy_id, group=group_id)
        listed = client.get(f"{BASE}/{policy_id}/assignments").json()
        assert {(a["userId"], a["groupId"]) for a in listed} == {(user_id, None), (None, group_id)}
        assert client.delete(f"{BASE}/{policy_id}").status_code == 204
        assert client.get(f"{BASE}/{policy_id}/assignments").status_code == 404
    with admin.db.read() as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(PolicyAssignment))
        assert count == 0
        rows = audit.for_target(session, "policy", policy_id)
        assert [r.action for r in rows] == ["policy.created", "policy.deleted"]
        assert rows[-1].details == {"assignmentsRemoved": 2} and rows[-1].actor == "admin:test-manage"
    check_decide_ignores_deleted_groups_and_survives_nesting_cycles(admin)


def test_evaluate_explains_direct_and_nested_group_assignments(admin: Admin) -> None:
    user_id = add_user(admin, "bob")
    parent = add_group(admin, "everyone")
    child = add_group(admin, "engineering", members=(user_id,), parent=parent)
    with admin.client() as client:
        office = client.post(
            BASE,
            json=body(
                "Office",
                priority=5,
                rules=[
                    {"applications": ["mail"], "action": "DENY"},
                    {
                        "applications": ["*"],
                        "conditions": {"factorTypes": ["HARDWARE_TOKEN"]},
                        "action": "DENY",
                    },
                    {"applications": ["vpn"], "conditions": {"networks": ["10.0.0.0/8"]}, "action": "ALLOW"},
                ],
            ),
        ).json()
        personal = client.post(
            BASE, json=body("Bob", priority=1, rules=[{"applications": ["crm"], "action": "DENY"}])
        ).json()
        unrelated = client.post(BASE, json=body("Other", priority=0)).json()
        assign(admin, office["id"], group=parent)
        assign(admin, personal["id"], user=user_id)
        response = client.post(
            f"{BASE}/evaluate",
            json={"user": "BOB", "application": "vpn", "factor": "TOTP", "clientIp": "10.9.9.9"},
        )
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["decision"] == {
            "action": "ALLOW",
            "policyId": office["id"],
            "ruleIndex": 2,
            "reason": "policy 'Office' rule 2: ALLOW",
        }
        assert result["user"]["id"] == user_id and set(result["user"]["groups"]) == {parent, child}
        assert [(p["policyId"], p["direct"], p["viaGroups"]) for p in result["policies"]] == [
            (personal["id"], True, []),
            (office["id"], False, [parent]),
        ]
        assert unrelated["id"] not in {p["policyId"] for p in result["policies"]}
        trace = [(r["policyId"], r["ruleIndex"], r["matched"], r["failedCondition"]) for r in result["rules"]]
        assert trace == [
            (personal["id"], 0, False, "applications"),
            (office["id"], 0, False, "applications"),
            (office["id"], 1, False, "factorTypes"),
            (office["id"], 2, True, None),
        ]
        assert result["rules"][2]["checks"][1]["detail"] == "TOTP not in [HARDWARE_TOKEN]"

        outside = client.post(f"{BASE}/evaluate", json={"user": user_id, "application": "vpn"}).json()
        assert outside["decision"]["action"] == "REQUIRE_MFA"
        assert outside["decision"]["reason"] == "no rule matched" and outside["decision"]["policyId"] is None
        assert outside["rules"][-1]["failedCondition"] == "networks"
        assert outside["rules"][-1]["checks"][-1]["detail"] == "no client IP"

        ipv6 = client.post(
            f"{BASE}/evaluate", json={"user": user_id, "application": "vpn", "clientIp": "::ffff:10.0.0.1"}
        )
        assert ipv6.json()["decision"]["action"] == "ALLOW"
        for bad in (
            {"user": user_id, "application": "vpn", "clientIp": "10.0.0.256"},
            {"user": user_id, "application": "vpn", "factor": "SMS"},
            {"user": user_id},
        ):
            assert client.post(f"{BASE}/evaluate", json=bad).status_code == 422, bad
        assert (
            client.post(f"{BASE}/evaluate", json={"user": "nobody", "application": "vpn"}).status_code == 404
        )
    with admin.client("read") as client:
        assert (
            client.post(f"{BASE}/evaluate", json={"user": user_id, "application": "vpn"}).status_code == 200
        )

    with admin.db.read() as session:
        decision = policies.decide(session, user_id, "crm", None, None)
        assert (decision.action, decision.policy_id, decision.rule_index) == ("DENY", personal["id"], 0)
        assert policies.decide(session, user_id, "vpn", "TOTP", "10.0.0.1").action == "ALLOW"
        assert policies.decide(session, user_id, "vpn", "TOTP", "2001:db8::1").action == "REQUIRE_MFA"


def check_decide_ignores_deleted_groups_and_survives_nesting_cycles(admin: Admin) -> None:
    user_id = add_user(admin, "carol")
    a = add_group(admin, "a", members=(user_id,))
    b = add_group(admin, "b", parent=a)
    with admin.db.write() as session:
        session.add(GroupNesting(parent_id=b, child_id=a))  # a cycle: a in b, b in a
    with admin.client() as client:
        deny = client.post(BASE, json=body("Deny", rules=[{"applications": ["*"], "action": "DENY"}])).json()
    assign(admin, deny["id"], group=b)
    with admin.db.read() as session:
        assert policies.decide(session, user_id, "vpn", None, None).action == "DENY"
    with admin.db.write() as session:
        group = session.get(Group, b)
        assert group is not None
        group.deleted_at = sa.func.now()
    with admin.db.read() as session:
        assert policies.decide(session, user_id, "vpn", None, None).action == "REQUIRE_MFA"

"""SCIM writes go through the lifecycle: statuses, soft deletion, audit, isolation, take-over, invites."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from harness.enrollment import make_settings
from harness.scim import ScimServer

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import enrollment, links, users
from syncd.store.tables import AuditRecord, Device, EnrollmentInvite, OutboxMessage, User

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def new_user(username: str = "bjensen@example.com", **extra: Any) -> dict[str, Any]:
    return {
        "schemas": [USER],
        "userName": username,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": username, "type": "work", "primary": True}],
        "active": True,
        **extra,
    }


def active(value: Any) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": value}]}


def stored(scim: ScimServer, user_id: str) -> User:
    with scim.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user


def test_create_fills_the_mfa_columns_links_and_audits(scim: ScimServer) -> None:
    created = scim.client().post("/Users", json=new_user(externalId="00u1"))
    assert created.status_code == 201
    body = created.json()
    assert created.headers["location"] == body["meta"]["location"] == f"{scim.url}/Users/{body['id']}"
    user = stored(scim, body["id"])
    assert (user.username, user.email, user.given_name, user.family_name) == (
        "bjensen@example.com",
        "bjensen@example.com",
        "Barbara",
        "Jensen",
    )
    assert (user.managed_by, user.status, user.attributes["externalId"]) == (
        "okta",
        UserStatus.UNENROLLED,
        "00u1",
    )
    with scim.db.read() as session:
        assert links.get(session, "okta", "user", user.id) is not None
        actions = session.execute(
            sa.select(AuditRecord.actor, AuditRecord.action).where(AuditRecord.target_id == user.id)
        )
        assert ("scim:okta", "user.created") in set(actions)


def test_deactivate_and_reactivate_restore_the_status_without_reenrollment(scim: ScimServer) -> None:
    client = scim.client()
    user_id = client.post("/Users", json=new_user()).json()["id"]
    with scim.db.write() as session:  # the user enrolled a device meanwhile
        session.add(Device(user_id=user_id, type=DeviceType.TOTP, state=DeviceState.ACTIVE))
        session.get(User, user_id).status = UserStatus.ACTIVE  # type: ignore[union-attr]
    off = client.patch(f"/Users/{user_id}", json=active("False"))  # Entra's string form
    assert (off.status_code, off.json()["active"]) == (200, False)
    assert stored(scim, user_id).status is UserStatus.PROVISIONING_DISABLED
    on = client.patch(f"/Users/{user_id}", json=active(True))
    assert on.json()["active"] is True
    assert stored(scim, user_id).status is UserStatus.ACTIVE  # the device is still there
    with scim.db.read() as session:
        rows = session.execute(
            sa.select(AuditRecord.actor, AuditRecord.old, AuditRecord.new)
            .where(AuditRecord.target_id == user_id, AuditRecord.action == "user.status_changed")
            .order_by(AuditRecord.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("scim:okta", "ACTIVE", "PROVISIONING_DISABLED"),
        ("scim:okta", "PROVISIONING_DISABLED", "ACTIVE"),
    ]


def test_delete_is_soft_and_frees_the_username(scim: ScimServer) -> None:
    client = scim.client()
    first = client.post("/Users", json=new_user()).json()["id"]
    assert client.delete(f"/Users/{first}").status_code == 204
    assert client.get(f"/Users/{first}").status_code == 404
    assert client.delete(f"/Users/{first}").status_code == 404
    user = stored(scim, first)
    assert user.deleted_at is not None and user.status is UserStatus.PROVISIONING_DISABLED
    again = client.post("/Users", json=new_user())
    assert again.status_code == 201 and again.json()["id"] != first
    found = client.get("/Users", params={"filter": 'userName eq "bjensen@example.com"'}).json()
    assert [r["id"] for r in found["Resources"]] == [again.json()["id"]]


def test_inactive_users_stay_visible(scim: ScimServer) -> None:
    client = scim.client()
    user_id = client.post("/Users", json=new_user(active=False)).json()["id"]
    assert stored(scim, user_id).status is UserStatus.PROVISIONING_DISABLED
    listed = client.get("/Users", params={"filter": "active eq false"}).json()
    assert [r["id"] for r in listed["Resources"]] == [user_id]


def test_clients_cannot_see_or_change_each_others_objects(scim: ScimServer) -> None:
    okta, entra = scim.client("okta"), scim.client("entra")
    user_id = okta.post("/Users", json=new_user()).json()["id"]
    group_id = okta.post("/Groups", json={"displayName": "Staff", "members": [{"value": user_id}]}).json()[
        "id"
    ]
    assert entra.get(f"/Users/{user_id}").status_code == 404
    assert entra.put(f"/Users/{user_id}", json=new_user()).status_code == 404
    assert entra.patch(f"/Users/{user_id}", json=active(False)).status_code == 404
    assert entra.delete(f"/Users/{user_id}").status_code == 404
    assert entra.get(f"/Groups/{group_id}").status_code == 404
    assert entra.get("/Users").json()["totalResults"] == 0
    entra_group = entra.post("/Groups", json={"displayName": "Other"}).json()["id"]
    refused = entra.patch(
        f"/Groups/{entra_group}",
        json={
            "schemas": [PATCH],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        },
    )
    assert (refused.status_code, refused.json()["scimType"]) == (400, "invalidValue")
    clash = entra.post("/Users", json=new_user())  # the username is taken (by okta): 409, nothing revealed
    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness" and "okta" not in clash.text
    assert stored(scim, user_id).provisioned


def test_take_over_only_from_configured_sources(scim: ScimServer) -> None:
    with scim.db.write() as session:
        hr_user = users.create(
            session, {"username": "carol"}, provisioned=True, managed_by="hr", actor="test", reason="test"
        )
        admin_user = users.create(
            session, {"username": "dave"}, provisioned=True, managed_by=None, actor="test", reason="test"
        )
        ids = hr_user.id, admin_user.id
    taken = scim.client("okta").post("/Users", json=new_user("Carol", externalId="x1"))
    assert taken.status_code == 201 and taken.json()["id"] == ids[0]
    assert stored(scim, ids[0]).managed_by == "okta"
    assert scim.client("okta").post("/Users", json=new_user("dave")).status_code == 409
    assert scim.client("entra").post("/Users", json=new_user("carol2")).status_code == 201


def test_new_users_get_the_invite_in_the_same_unit_of_work(scim: ScimServer) -> None:
    enrollment.attach(scim.db, make_settings(invite_sources=frozenset({"okta"})))
    client = scim.client()
    invited = client.post("/Users", json=new_user("erin@example.com")).json()["id"]
    not_invited = scim.client("entra").post("/Users", json=new_user("fred@example.com")).json()["id"]
    inactive = client.post("/Users", json=new_user("gina@example.com", active=False)).json()["id"]
    with scim.db.read() as session:
        invited_users = set(session.scalars(sa.select(EnrollmentInvite.user_id)))
        mailed = set(session.scalars(sa.select(OutboxMessage.user_id)))
    assert invited_users == mailed == {invited}
    assert not_invited not in invited_users and inactive not in invited_users


def test_put_without_active_does_not_deactivate(scim: ScimServer) -> None:
    client = scim.client()
    user_id = client.post("/Users", json=new_user()).json()["id"]
    replaced = client.put(f"/Users/{user_id}", json={"schemas": [USER], "userName": "bjensen@example.com"})
    assert replaced.status_code == 200 and replaced.json()["active"] is True
    assert stored(scim, user_id).provisioned
    assert "emails" not in replaced.json()  # PUT replaces the rest
    removed = client.patch(
        f"/Users/{user_id}", json={"schemas": [PATCH], "Operations": [{"op": "remove", "path": "active"}]}
    )
    assert "active" not in removed.json() and stored(scim, user_id).provisioned  # unassigned, state kept

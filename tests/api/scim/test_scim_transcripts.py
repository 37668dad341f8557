"""Request transcripts rebuilt from the identity providers' published SCIM documentation, replayed in order.

* Okta: "SCIM 2.0 protocol reference" / "Build a SCIM provisioning integration" (user lookup by userName,
  create with password and empty groups, full PUT, PATCH deactivate/reactivate with pathless values, group
  push: create, lookup by displayName, rename with a pathless value carrying the id, member add with
  display, member remove through a value filter, delete).
* Microsoft Entra ID: "Tutorial: Develop and plan provisioning for a SCIM endpoint" request/response
  examples (user create with meta and roles, lookup with zero and one result, PATCH of a value-filtered
  email and a family name, userName change, disable, legacy string booleans and pathless dotted keys,
  manager as a bare string, group create with the ADSCIM schema URN, lookups with excludedAttributes,
  member add/remove with ``$ref: null`` values, group and user delete).

``{name}`` placeholders are filled from earlier responses; each step checks the status and a few fields.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness.scim import ScimServer

from syncd.domain.lifecycle import UserStatus
from syncd.store.tables import User

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


@dataclass
class Step:
    method: str
    path: str
    status: int
    body: Any = None
    params: dict[str, str] = field(default_factory=dict)
    expect: dict[str, Any] = field(default_factory=dict)  # dotted path in the response -> value
    save: dict[str, str] = field(default_factory=dict)  # placeholder -> dotted path in the response


def fill(value: Any, saved: dict[str, str]) -> Any:
    text = json.dumps(value)
    for key, replacement in saved.items():
        text = text.replace("{" + key + "}", replacement)
    return json.loads(text)


def dig(document: Any, dotted: str) -> Any:
    if dotted.startswith(ENT + "."):  # the extension's URN has dots of its own
        document, dotted = document[ENT], dotted[len(ENT) + 1 :]
    for part in dotted.split("."):
        document = document[int(part)] if isinstance(document, list) else document[part]
    return document


def replay(client: httpx.Client, steps: list[Step]) -> dict[str, str]:
    saved: dict[str, str] = {}
    for number, step in enumerate(steps, 1):
        path, params, body = fill(step.path, saved), fill(step.params, saved), fill(step.body, saved)
        response = client.request(step.method, path, params=params, json=body)
        where = f"step {number}: {step.method} {path}"
        assert response.status_code == step.status, f"{where}: {response.status_code} {response.text}"
        document = response.json() if response.content else None
        for dotted, wanted in fill(step.expect, saved).items():
            assert dig(document, dotted) == wanted, f"{where}: {dotted}"
        for key, dotted in step.save.items():
            saved[key] = dig(document, dotted)
    return saved


OKTA_USER = {
    "schemas": [CORE],
    "userName": "test.user@okta.local",
    "name": {"givenName": "Test", "familyName": "User"},
    "emails": [{"primary": True, "value": "test.user@okta.local", "type": "work"}],
    "displayName": "Test User",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}

OKTA = [
    Step(
        "GET",
        "/Users",
        200,
        params={"filter": 'userName eq "test.user@okta.local"', "startIndex": "1", "count": "100"},
        expect={"totalResults": 0, "schemas": [LIST]},
    ),
    Step(
        "POST",
        "/Users",
        201,
        OKTA_USER,
        expect={"userName": "test.user@okta.local", "active": True},
        save={"user": "id"},
    ),
    Step(
        "GET",
        "/Users",
        200,
        params={"filter": 'userName eq "test.user@okta.local"', "startIndex": "1", "count": "100"},
        expect={
            "totalResults": 1,
            "Resources.0.id": "{user}",
            "Resources.0.externalId": "00ujl29u0le5T6Aj10h7",
        },
    ),
    Step(
        "GET",
        "/Users/{user}",
        200,
        expect={"name.givenName": "Test", "emails.0.value": "test.user@okta.local"},
    ),
    Step(
        "PUT",
        "/Users/{user}",
        200,
        {**OKTA_USER, "id": "{user}", "name": {"givenName": "Another", "familyName": "User"}},
        expect={"name.givenName": "Another", "active": True},
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]},
        expect={"active": False},
    ),
    Step("GET", "/Users/{user}", 200, expect={"active": False}),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": True}}]},
        expect={"active": True},
    ),
    Step(
        "POST",
        "/Groups",
        201,
        {"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []},
        expect={"displayName": "Test SCIMv2"},
        save={"group": "id"},
    ),
    Step(
        "GET",
        "/Groups",
        200,
        params={"filter": 'displayName eq "Test SCIMv2"', "startIndex": "1", "count": "100"},
        expect={"totalResults": 1, "Resources.0.id": "{group}"},
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {
            "schemas": [PATCH],
            "Operations": [
                {"op": "replace", "value": {"id": "{group}", "displayName": "Test SCIMv2 renamed"}}
            ],
        },
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "add",
                    "path": "members",
                    "value": [{"value": "{user}", "display": "test.user@okta.local"}],
                }
            ],
        },
    ),
    Step(
        "GET",
        "/Groups/{group}",
        200,
        expect={
            "displayName": "Test SCIMv2 renamed",
            "members.0.value": "{user}",
            "members.0.display": "test.user@okta.local",
        },
    ),
    Step(
        "GET",
        "/Users/{user}",
        200,
        expect={"groups.0.value": "{group}", "groups.0.display": "Test SCIMv2 renamed"},
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {"schemas": [PATCH], "Operations": [{"op": "remove", "path": 'members[value eq "{user}"]'}]},
    ),
    Step("GET", "/Groups/{group}", 200, expect={"displayName": "Test SCIMv2 renamed"}),
    Step("DELETE", "/Groups/{group}", 204),
    Step("GET", "/Groups/{group}", 404, expect={"status": "404"}),
]

ENTRA = [
    Step(
        "GET", "/Users", 200, params={"filter": 'userName eq "non-existent user"'}, expect={"totalResults": 0}
    ),
    Step(
        "POST",
        "/Users",
        201,
        {
            "schemas": [CORE, ENT],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
            "meta": {"resourceType": "User"},
            "name": {
                "formatted": "givenName familyName",
                "familyName": "familyName",
                "givenName": "givenName",
            },
            "roles": [],
        },
        expect={"name.familyName": "familyName", "meta.resourceType": "User"},
        save={"user": "id"},
    ),
    Step(
        "GET",
        "/Users",
        200,
        params={"filter": 'userName eq "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"'},
        expect={"totalResults": 1, "Resources.0.id": "{user}"},
    ),
    Step(
        "GET",
        "/Users",
        200,
        params={"filter": 'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'},
        expect={"totalResults": 1},
    ),
    Step(
        "POST",
        "/Users",
        201,
        {"schemas": [CORE], "userName": "manager@testuser.com", "active": True},
        save={"manager": "id"},
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "Replace",
                    "path": 'emails[type eq "work"].value',
                    "value": "updatedEmail@microsoft.com",
                },
                {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
            ],
        },
        expect={"emails.0.value": "updatedEmail@microsoft.com", "name.familyName": "updatedFamilyName"},
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "Replace",
                    "path": "userName",
                    "value": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com",
                },
            ],
        },
        expect={"userName": "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"},
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "Add",
                    "value": {
                        "displayName": "Given Family",
                        "name.givenName": "Given",
                        f"{ENT}:employeeNumber": "E-42",
                        f"{ENT}:department": "Finance",
                    },
                },
                {"op": "Add", "path": f"{ENT}:manager", "value": "{manager}"},
            ],
        },
        expect={
            "name.givenName": "Given",
            f"{ENT}.employeeNumber": "E-42",
            f"{ENT}.manager.value": "{manager}",
        },
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": False}]},
        expect={"active": False},
    ),
    Step(
        "PATCH",
        "/Users/{user}",
        200,
        {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]},
        expect={"active": True},
    ),
    Step(
        "POST",
        "/Groups",
        201,
        {
            "schemas": [GROUP, "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group"],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
        expect={"externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"},
        save={"group": "id"},
    ),
    Step(
        "GET",
        "/Groups/{group}",
        200,
        params={"excludedAttributes": "members"},
        expect={"displayName": "displayName"},
    ),
    Step(
        "GET",
        "/Groups",
        200,
        params={"excludedAttributes": "members", "filter": 'displayName eq "displayName"'},
        expect={"totalResults": 1, "Resources.0.id": "{group}"},
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {
            "schemas": [PATCH],
            "Operations": [{"op": "Replace", "path": "displayName", "value": "1879db59updatedDisplayName"}],
        },
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "Add",
                    "path": "members",
                    "value": [{"$ref": None, "value": "{user}"}, {"$ref": None, "value": "{manager}"}],
                }
            ],
        },
    ),
    Step(
        "GET",
        "/Groups",
        200,
        params={"filter": 'id eq "{group}" and members[value eq "{user}"]'},
        expect={"totalResults": 1},
    ),
    Step(
        "PATCH",
        "/Groups/{group}",
        204,
        {
            "schemas": [PATCH],
            "Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": "{user}"}]}],
        },
    ),
    Step(
        "GET",
        "/Groups/{group}",
        200,
        expect={"displayName": "1879db59updatedDisplayName", "members.0.value": "{manager}"},
    ),
    Step(
        "GET",
        "/Groups",
        200,
        params={"filter": 'id eq "{group}" and members[value eq "{user}"]'},
        expect={"totalResults": 0},
    ),
    Step("DELETE", "/Groups/{group}", 204),
    Step("DELETE", "/Users/{user}", 204),
    Step("GET", "/Users/{user}", 404),
]


def test_okta_transcript(scim: ScimServer) -> None:
    saved = replay(scim.client("okta"), OKTA)
    with scim.db.read() as session:
        user = session.get(User, saved["user"])
        assert user is not None and user.status is UserStatus.UNENROLLED and user.given_name == "Another"
        assert "password" not in user.attributes


def test_entra_transcript(scim: ScimServer) -> None:
    saved = replay(scim.client("entra"), ENTRA)
    with scim.db.read() as session:
        user = session.get(User, saved["user"])
        assert (
            user is not None
            and user.status is UserStatus.PROVISIONING_DISABLED
            and user.deleted_at is not None
        )
        assert user.email == "updatedEmail@microsoft.com" and user.family_name == "updatedFamilyName"

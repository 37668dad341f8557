"""PATCH semantics and the identity providers' documented quirks (research/scim.md §4.6).

Pure tests of ``patch.apply`` + ``validation.document`` (what a PATCH stores), then group membership
PATCHes over HTTP on both databases.
"""

from __future__ import annotations

from typing import Any

import pytest
from harness.scim import ScimServer

from syncd.api.scim import patch, validation
from syncd.api.scim.catalogue import GROUPS, USERS
from syncd.api.scim.errors import InvalidPathError, InvalidValueError, MutabilityError, ScimError

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH = patch.PATCH_URN
BASE = {
    "userName": "bjensen",
    "active": True,
    "name": {"givenName": "Barbara", "familyName": "Jensen"},
    "emails": [{"value": "b@example.com", "type": "work", "primary": True}],
}


def run(*operations: dict[str, Any], doc: dict[str, Any] | None = None) -> dict[str, Any]:
    ops = patch.operations({"schemas": [PATCH], "Operations": list(operations)})
    return validation.document(USERS, patch.apply(USERS, doc or BASE, ops))


def test_capitalised_ops_and_string_booleans() -> None:
    assert run({"op": "Replace", "path": "active", "value": "False"})["active"] is False
    assert run({"op": "REPLACE", "value": {"active": "True"}})["active"] is True
    assert run({"op": "Add", "path": "title", "value": "Boss"})["title"] == "Boss"


def test_pathless_values_whose_keys_are_paths_ignore_read_only_and_unknown_schemas() -> None:
    doc = run(
        {
            "op": "replace",
            "value": {
                "id": "forged",
                "meta": {"version": "x"},
                "schemas": ["whatever"],
                "groups": [{"value": "g"}],
                "name.givenName": "Babs",
                f"{ENT}:department": "R&D",
                "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/User:thing": "x",
                "displayName": "Babs Jensen",
            },
        }
    )
    assert doc["name"] == {"givenName": "Babs", "familyName": "Jensen"}
    assert doc[ENT] == {"department": "R&D"} and doc["displayName"] == "Babs Jensen"
    assert "id" not in doc and "meta" not in doc and "groups" not in doc


def test_add_through_a_filter_that_matches_nothing_creates_the_entry() -> None:
    doc = run(
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "home@example.com"},
        {"op": "add", "path": 'addresses[type eq "work"].streetAddress', "value": "1 Main St"},
    )
    assert {"type": "home", "value": "home@example.com"} in doc["emails"]
    assert doc["addresses"] == [{"type": "work", "streetAddress": "1 Main St"}]
    updated = run({"op": "replace", "path": 'emails[type eq "work"].value', "value": "new@example.com"})
    assert updated["emails"] == [{"value": "new@example.com", "type": "work", "primary": True}]


def test_manager_as_a_bare_string_and_as_an_object() -> None:
    assert run({"op": "Add", "path": f"{ENT}:manager", "value": "mgr-1"})[ENT]["manager"] == {
        "value": "mgr-1"
    }
    doc = run({"op": "replace", "path": f"{ENT}:manager", "value": {"value": "mgr-2", "$ref": None}})
    assert doc[ENT]["manager"] == {"value": "mgr-2"}
    assert ENT not in run({"op": "remove", "path": f"{ENT}:manager"}, doc=doc)


def test_whole_extension_and_sub_attribute_paths() -> None:
    doc = run({"op": "add", "path": ENT, "value": {"employeeNumber": "7", "costCenter": "C1"}})
    assert doc[ENT] == {"employeeNumber": "7", "costCenter": "C1"}
    doc = run({"op": "remove", "path": f"{ENT}:costCenter"}, doc=doc)
    assert doc[ENT] == {"employeeNumber": "7"}
    assert "givenName" not in run({"op": "remove", "path": "name.givenName"})["name"]


def test_multi_valued_add_remove_replace_and_one_primary() -> None:
    doc = run({"op": "add", "path": "emails", "value": [{"value": "x@example.com", "primary": True}]})
    assert [e.get("primary") for e in doc["emails"]] == [False, True]
    assert "emails" not in run({"op": "remove", "path": "emails"})
    assert run({"op": "remove", "path": 'emails[type eq "work"]'}).get("emails") is None
    doc = run({"op": "replace", "path": "emails", "value": [{"value": "only@example.com"}]})
    assert doc["emails"] == [{"value": "only@example.com"}]


def test_refusals() -> None:
    with pytest.raises(InvalidPathError):
        run({"op": "replace", "path": "bogus", "value": 1})
    with pytest.raises(InvalidPathError):
        run({"op": "remove"})
    with pytest.raises(MutabilityError):
        run({"op": "replace", "path": "id", "value": "x"})
    with pytest.raises(InvalidValueError):
        run({"op": "remove", "path": "userName"})  # required
    with pytest.raises(InvalidValueError):
        run({"op": "replace", "path": "active", "value": "maybe"})
    with pytest.raises(InvalidValueError):
        run({"op": "replace", "path": "emails", "value": [{"value": 5}]})
    with pytest.raises(ScimError):
        run({"op": "move", "path": "title", "value": "x"})
    with pytest.raises(InvalidPathError):
        run({"op": "add", "path": 'emails[type eq "work"', "value": "x"})
    with pytest.raises(ScimError):
        patch.operations({"schemas": [PATCH], "Operations": []})
    with pytest.raises(ScimError):
        patch.operations({"Operations": [{"op": "add", "path": "title", "value": "x"}]})


def test_group_documents() -> None:
    ops = patch.operations(
        {"schemas": [PATCH], "Operations": [{"op": "Replace", "value": {"id": "x", "displayName": "New"}}]}
    )
    assert validation.document(GROUPS, patch.apply(GROUPS, {"displayName": "Old"}, ops)) == {
        "displayName": "New"
    }


def members_patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


def member_ids(scim: ScimServer, group_id: str) -> set[str]:
    return {m["value"] for m in scim.client().get(f"/Groups/{group_id}").json().get("members", [])}


def test_group_membership_patches(scim: ScimServer) -> None:
    client = scim.client()
    ids = [client.post("/Users", json={"userName": f"user{i}"}).json()["id"] for i in range(4)]
    group_id = client.post("/Groups", json={"displayName": "Team"}).json()["id"]
    url = f"/Groups/{group_id}"
    add = members_patch({"op": "Add", "path": "members", "value": [{"value": i} for i in ids]})
    assert client.patch(url, json=add).status_code == 204
    assert member_ids(scim, group_id) == set(ids)
    # Entra (legacy) and authentik: remove with a value list removes only those
    remove_two = members_patch(
        {"op": "Remove", "path": "members", "value": [{"value": ids[0]}, {"value": ids[1]}]}
    )
    assert client.patch(url, json=remove_two).status_code == 204
    assert member_ids(scim, group_id) == set(ids[2:])
    # Okta: remove through a value filter
    filtered = members_patch({"op": "remove", "path": f'members[value eq "{ids[2]}"]'})
    assert client.patch(url, json=filtered).status_code == 204
    assert member_ids(scim, group_id) == {ids[3]}
    # pathless replace with both a rename and members
    both = members_patch(
        {"op": "replace", "value": {"displayName": "Team 2", "members": [{"value": ids[0]}]}}
    )
    assert client.patch(url, json=both).status_code == 204
    group = client.get(url).json()
    assert group["displayName"] == "Team 2" and member_ids(scim, group_id) == {ids[0]}
    # bare remove of members removes them all
    assert client.patch(url, json=members_patch({"op": "remove", "path": "members"})).status_code == 204
    assert member_ids(scim, group_id) == set()
    unknown = client.patch(
        url, json=members_patch({"op": "add", "path": "members", "value": [{"value": "nope"}]})
    )
    assert (unknown.status_code, unknown.json()["scimType"]) == (400, "invalidValue")

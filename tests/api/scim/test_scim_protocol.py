"""Protocol details over HTTP: paging, sorting, projection, ETags, media types, sizes, auth, error bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness.scim import ScimServer

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def scim_error(response: httpx.Response, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert "Traceback" not in response.text and "SELECT" not in response.text


def users(scim: ScimServer, n: int) -> list[str]:
    client = scim.client()
    return [
        client.post("/Users", json={"userName": f"user{i:02d}", "title": f"t{i % 3}"}).json()["id"]
        for i in range(n)
    ]


def test_paging_is_stable_and_counts(scim: ScimServer) -> None:
    created = set(users(scim, 7))
    client = scim.client()
    seen: list[str] = []
    for start in (1, 4, 7):
        page = client.get("/Users", params={"startIndex": start, "count": 3}).json()
        assert page["totalResults"] == 7 and page["startIndex"] == start
        seen += [r["id"] for r in page["Resources"]]
    assert len(seen) == 7 and set(seen) == created
    none = client.get("/Users", params={"count": 0}).json()
    assert (none["totalResults"], none["itemsPerPage"], none["Resources"]) == (7, 0, [])
    clamped = client.get("/Users", params={"startIndex": -5, "count": 10**12}).json()
    assert clamped["startIndex"] == 1 and clamped["itemsPerPage"] == 7
    assert client.get("/Users", params={"count": -1}).json()["itemsPerPage"] == 0
    past = client.get("/Users", params={"startIndex": 50}).json()
    assert (past["totalResults"], past["Resources"]) == (7, [])
    scim_error(client.get("/Users", params={"count": "ten"}), 400, "invalidValue")
    scim_error(client.get("/Users", params={"startIndex": "\u00b9"}), 400, "invalidValue")  # fuzzer found
    assert client.get("/Users", params={"filter": ""}).json()["totalResults"] == 7


def test_sorting(scim: ScimServer) -> None:
    users(scim, 5)
    client = scim.client()
    down = client.get("/Users", params={"sortBy": "userName", "sortOrder": "descending"}).json()
    assert [r["userName"] for r in down["Resources"]] == [f"user{i:02d}" for i in range(4, -1, -1)]
    by_title = client.get("/Users", params={"sortBy": "title", "attributes": "title"}).json()
    assert [r["title"] for r in by_title["Resources"]] == ["t0", "t0", "t1", "t1", "t2"]
    scim_error(client.get("/Users", params={"sortBy": "emails"}), 400, "invalidValue")
    scim_error(client.get("/Users", params={"sortOrder": "sideways"}), 400, "invalidValue")


def test_attributes_and_excluded_attributes(scim: ScimServer) -> None:
    client = scim.client()
    body = {
        "userName": "proj",
        "name": {"givenName": "P", "familyName": "J"},
        "emails": [{"value": "p@example.com", "type": "work"}],
    }
    user_id = client.post("/Users", json=body, params={"attributes": "userName"}).json()["id"]
    only = client.get(f"/Users/{user_id}", params={"attributes": "name.givenName,EMAILS.value"}).json()
    assert only == {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": user_id,
        "name": {"givenName": "P"},
        "emails": [{"value": "p@example.com"}],
    }
    without = client.get(f"/Users/{user_id}", params={"excludedAttributes": "emails,meta,id"}).json()
    assert "emails" not in without and "meta" not in without and without["id"] == user_id
    search = client.post(
        "/Users/.search",
        json={"schemas": [SEARCH], "attributes": ["userName"], "filter": 'userName eq "proj"'},
    ).json()
    assert search["Resources"] == [
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "id": user_id, "userName": "proj"}
    ]
    group = client.post("/Groups", json={"displayName": "G", "members": [{"value": user_id}]}).json()
    listed = client.get("/Groups", params={"excludedAttributes": "members"}).json()["Resources"]
    assert listed[0]["id"] == group["id"] and "members" not in listed[0]
    root = client.post(
        "/.search", json={"schemas": [SEARCH], "filter": 'displayName eq "G" or userName eq "proj"'}
    )
    assert root.json()["totalResults"] == 2


def test_etags(scim: ScimServer) -> None:
    client = scim.client()
    created = client.post("/Users", json={"userName": "etag"})
    user_id, etag = created.json()["id"], created.headers["etag"]
    assert etag == created.json()["meta"]["version"] and etag.startswith('W/"')
    assert client.get(f"/Users/{user_id}", headers={"if-none-match": etag}).status_code == 304
    changed = client.patch(
        f"/Users/{user_id}",
        json={"schemas": [PATCH], "Operations": [{"op": "add", "path": "title", "value": "x"}]},
        headers={"if-match": etag},
    )
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    stale = client.put(f"/Users/{user_id}", json={"userName": "etag2"}, headers={"if-match": etag})
    scim_error(stale, 412)
    scim_error(client.delete(f"/Users/{user_id}", headers={"if-match": etag}), 412)
    assert client.get(f"/Users/{user_id}").json()["userName"] == "etag"
    assert client.delete(f"/Users/{user_id}", headers={"if-match": "*"}).status_code == 204


def test_media_types_and_sizes(scim: ScimServer) -> None:
    client = scim.client()
    ok = client.post("/Users", content=b'{"userName": "json"}', headers={"content-type": "application/json"})
    assert ok.status_code == 201 and ok.headers["content-type"] == "application/scim+json"
    charset = {"content-type": "application/scim+json; charset=utf-8"}
    assert client.post("/Users", content=b'{"userName": "cs"}', headers=charset).status_code == 201
    scim_error(client.post("/Users", content=b"userName=x", headers={"content-type": "text/plain"}), 415)
    big = {"userName": "big", "title": "x" * 70_000}  # max_body_bytes is 65536 in these tests
    scim_error(client.post("/Users", json=big), 413)
    chunked = client.post("/Users", content=iter([b'{"userName": "big", "title": "', b"y" * 70_000, b'"}']))
    scim_error(chunked, 413)
    scim_error(client.post("/Users", content=b'{"userName": '), 400, "invalidSyntax")
    scim_error(client.post("/Users", content=b'{"userName": "\xff\xfe"}'), 400, "invalidSyntax")
    scim_error(client.post("/Users", content=b"[1, 2]"), 400, "invalidSyntax")
    scim_error(client.post("/Users", json={"userName": 7}), 400, "invalidValue")
    scim_error(client.post("/Users", json={"displayName": "no username"}), 400, "invalidValue")
    scim_error(client.post("/Users", json={"schemas": "nope", "userName": "s"}), 400, "invalidSyntax")
    scim_error(client.post("/Users", json={"userName": "x" * 300}), 400, "invalidValue")
    scim_error(client.post("/Users", json={"userName": "json"}), 409, "uniqueness")
    scim_error(client.post("/Users", json={"userName": "JSON"}), 409, "uniqueness")
    assert client.get("/Users").json()["totalResults"] == 2  # nothing else was created


def test_authentication(scim_factory: Callable[..., ScimServer]) -> None:
    scim = scim_factory(enabled=False)  # okta disabled, entra enabled
    url = scim.url
    scim_error(httpx.get(f"{url}/Users"), 401)
    assert httpx.get(f"{url}/Users").headers["www-authenticate"] == 'Bearer realm="SCIM"'
    scim_error(httpx.get(f"{url}/Users", headers={"authorization": "Basic dXNlcjpwYXNz"}), 401)
    scim_error(httpx.get(f"{url}/Users", headers={"authorization": "Bearer wrong-token-0123456789"}), 401)
    scim_error(httpx.get(f"{url}/Users", headers={"authorization": "Bearer"}), 401)
    scim_error(scim.client("okta").get("/Users"), 401)  # a disabled source's token
    scim_error(httpx.get(f"{url}/nowhere"), 401)
    assert scim.client("entra").get("/Users").status_code == 200


def test_discovery_and_unsupported(scim: ScimServer) -> None:
    client = scim.client()
    spc = client.get("/ServiceProviderConfig").json()
    assert spc["bulk"]["supported"] is False and spc["patch"]["supported"] is True
    assert spc["filter"] == {"supported": True, "maxResults": 1000}
    assert spc["etag"]["supported"] is True and spc["sort"]["supported"] is True
    assert spc["authenticationSchemes"][0]["type"] == "oauthbearertoken"
    assert {r["id"] for r in client.get("/ResourceTypes").json()["Resources"]} == {"User", "Group"}
    assert client.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group").json()["name"] == "Group"
    scim_error(client.get("/Schemas/urn:nope"), 404)
    scim_error(client.put("/ServiceProviderConfig", json={}), 405)
    scim_error(client.get("/Me"), 501)
    scim_error(client.post("/Bulk", json={}), 501)
    scim_error(client.get("/Users/.search"), 405)
    scim_error(client.put("/Users", json={}), 405)


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "nope", "value": 1}]}, "invalidPath"),
        ({"schemas": [PATCH], "Operations": [{"op": "remove"}]}, "invalidPath"),
        (
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "meta.created", "value": 1}]},
            "mutability",
        ),
        ({"schemas": [PATCH], "Operations": "x"}, "invalidSyntax"),
        ({"Operations": [{"op": "add", "path": "title", "value": "x"}]}, "invalidSyntax"),
        ({"schemas": [PATCH], "Operations": [{"op": "add", "path": "title", "value": 5}]}, "invalidValue"),
    ],
)
def test_bad_patches_change_nothing(scim: ScimServer, body: dict[str, Any], scim_type: str) -> None:
    client = scim.client()
    created = client.post("/Users", json={"userName": "steady", "title": "before"})
    user_id, etag = created.json()["id"], created.headers["etag"]
    scim_error(client.patch(f"/Users/{user_id}", json=body), 400, scim_type)
    after = client.get(f"/Users/{user_id}")
    assert after.headers["etag"] == etag and after.json()["title"] == "before"


def test_username_lookup_lists_the_clients_live_groups_in_name_order(scim: ScimServer) -> None:
    """``userName eq`` with groups is one joined statement (users.BY_USERNAME_WITH_GROUPS): the user's own
    source's live groups, by name; another client's and deleted groups are not listed; no group, no key."""
    okta, entra = scim.client(), scim.client("entra")
    user_id = okta.post("/Users", json={"userName": "Joined@Example.com"}).json()["id"]
    loner = okta.post("/Users", json={"userName": "loner"}).json()["id"]
    made = {
        name: okta.post("/Groups", json={"displayName": name, "members": [{"value": user_id}]}).json()["id"]
        for name in ("Zeta", "Alpha", "Gone")
    }
    assert okta.delete(f"/Groups/{made['Gone']}").status_code == 204
    other = entra.post("/Users", json={"userName": "elsewhere"}).json()["id"]
    assert (
        entra.post("/Groups", json={"displayName": "Entra", "members": [{"value": other}]}).status_code == 201
    )
    found = okta.get("/Users", params={"filter": 'userName eq "joined@example.com"'}).json()
    assert found["totalResults"] == 1 and found["Resources"][0]["id"] == user_id
    groups = found["Resources"][0]["groups"]
    assert [(g["display"], g["value"]) for g in groups] == [("Alpha", made["Alpha"]), ("Zeta", made["Zeta"])]
    assert groups == okta.get(f"/Users/{user_id}").json()["groups"]  # the same as the two-statement read
    alone = okta.get("/Users", params={"filter": 'userName eq "loner"'}).json()["Resources"]
    assert [u["id"] for u in alone] == [loner] and "groups" not in alone[0]
    assert okta.get("/Users", params={"filter": 'userName eq "elsewhere"'}).json()["totalResults"] == 0
    paged = okta.get("/Users", params={"filter": 'userName eq "joined@example.com"', "startIndex": 2}).json()
    assert paged["totalResults"] == 1 and paged["Resources"] == []

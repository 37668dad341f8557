"""Fuzzing the endpoints with Hypothesis over real HTTP, both databases: never a 5xx, always a SCIM body.

Bodies are arbitrary JSON shaped like SCIM documents (known and unknown keys, wrong types, NUL characters,
unpaired surrogates, huge numbers); filters are token soup from the grammar's vocabulary; query parameters
are arbitrary text.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from harness.scim import ScimServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
KEYS = st.sampled_from(
    [
        "userName",
        "USERNAME",
        "active",
        "emails",
        "name",
        "displayName",
        "externalId",
        "members",
        "groups",
        "id",
        "meta",
        "schemas",
        "password",
        "phoneNumbers",
        "title",
        ENT,
        f"{ENT}:manager",
        "name.givenName",
        "x",
        "value",
        "type",
        "primary",
        "Operations",
        "op",
        "path",
        "displayName",
    ]
)
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=())
    | st.sampled_from(["\x00", "\ud800", "%", "_", '"']),
    max_size=12,
)
SCALARS = st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30) | st.floats() | TEXT
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS | TEXT, inner, max_size=5),
    max_leaves=20,
)
FILTER_TOKENS = st.sampled_from(
    [
        "userName",
        "emails",
        "emails.value",
        "name.givenName",
        "active",
        "meta.created",
        "externalId",
        "members",
        "bogus",
        f"{ENT}:manager.value",
        "eq",
        "ne",
        "co",
        "sw",
        "ew",
        "gt",
        "ge",
        "lt",
        "le",
        "pr",
        "and",
        "or",
        "not",
        "(",
        ")",
        "[",
        "]",
        "true",
        "false",
        "null",
        "42",
        "1.5",
        '"x"',
        '"a%_b"',
        '"\\u0000"',
        '"\\ud800"',
        '"2020-01-01T00:00:00Z"',
        'type eq "work"',
        '"',
    ]
)
FILTERS = st.lists(FILTER_TOKENS, min_size=1, max_size=8).map(" ".join)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def checked(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["status"] == str(response.status_code) and "detail" in body


def send(client: httpx.Client, method: str, path: str, body: Any) -> None:
    try:
        content = json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")
    except ValueError:
        return
    checked(client.request(method, path, content=content))


@FUZZ
@given(body=JSON, group=JSON)
def test_create_and_replace_bodies(scim: ScimServer, body: Any, group: Any) -> None:
    client = scim.client()
    send(client, "POST", "/Users", body)
    send(client, "POST", "/Groups", group)
    user = client.post("/Users", json={"userName": "fuzz-target"})
    target = (
        user.json()["id"] if user.status_code == 201 else client.get("/Users").json()["Resources"][0]["id"]
    )
    send(client, "PUT", f"/Users/{target}", body)


@FUZZ
@given(
    operations=st.lists(
        st.dictionaries(st.sampled_from(["op", "path", "value", "OP"]), JSON | KEYS | FILTERS, max_size=3),
        max_size=3,
    )
)
def test_patches(scim: ScimServer, operations: list[Any]) -> None:
    client = scim.client()
    user = client.post("/Users", json={"userName": "patch-target"})
    user_id = (
        user.json()["id"] if user.status_code == 201 else client.get("/Users").json()["Resources"][0]["id"]
    )
    group = client.post("/Groups", json={"displayName": "patch-group"})
    group_id = (
        group.json()["id"] if group.status_code == 201 else client.get("/Groups").json()["Resources"][0]["id"]
    )
    body = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations}
    send(client, "PATCH", f"/Users/{user_id}", body)
    send(client, "PATCH", f"/Groups/{group_id}", body)


@FUZZ
@given(
    expression=FILTERS,
    params=st.dictionaries(
        st.sampled_from(["startIndex", "count", "sortBy", "sortOrder", "attributes", "excludedAttributes"]),
        TEXT,
        max_size=3,
    ),
)
def test_filters_and_parameters(scim: ScimServer, expression: str, params: dict[str, str]) -> None:
    client = scim.client()
    clean = {k: v.encode("utf-8", "replace").decode("utf-8") for k, v in params.items()}
    checked(client.get("/Users", params={"filter": expression, **clean}))
    checked(client.get("/Groups", params={"filter": expression}))
    send(
        client,
        "POST",
        "/.search",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": expression},
    )

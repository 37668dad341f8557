"""The route walk (issue 6, API qualities): every admin operation in the served OpenAPI document answers
401 (error shape, ``WWW-Authenticate: Bearer``) without a key and 403 with a key that lacks its scope, and
every admin route declares its scope with ``require``. It walks whatever routes exist, so routes added
later are covered without changing this test."""

from __future__ import annotations

import re
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from harness.admin import Admin

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.app import create_app

PREFIXES = ("/api/v1/", "/api/mfa/admin/")
KEY_SCOPES = {"read": {Scope.READ}, "manage": {Scope.MANAGE}, "verify": {Scope.VERIFY}}
DUMMY = "dummy0000000000000000000000000000"


def scopes_of(dependant: Dependant) -> set[Scope]:
    """Scopes of every ``require`` dependency of a route, nested ones included."""
    found = {dependant.call.scope} if isinstance(dependant.call, require) else set()
    for sub in dependant.dependencies:
        found |= scopes_of(sub)
    return found


def route_scopes(admin: Admin) -> dict[tuple[str, str], set[Scope]]:
    app = create_app(admin.served.config, admin.db, admin.served.settings)
    table = {}
    # FastAPI ≥ 0.16x keeps included routers lazily: iter_route_contexts yields the effective routes (full
    # path, the router's dependencies included).
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, APIRoute) and str(route.path).startswith(PREFIXES):
            assert route.dependant is not None
            for method in route.methods or ():
                table[(method, str(route.path))] = scopes_of(route.dependant)
    return table


def operations(document: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, item in document["paths"].items()
        if path.startswith(PREFIXES)
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    ]


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", DUMMY, path)


def keys_lacking(scope: Scope) -> list[str]:
    return [name for name, scopes in KEY_SCOPES.items() if not Caller("x", "x", frozenset(scopes)).has(scope)]


def test_every_admin_route_requires_a_scope(admin: Admin) -> None:
    table = route_scopes(admin)
    assert len(table) >= 5, table  # the walk found the admin routes
    missing = sorted(f"{m} {p}" for (m, p), scopes in table.items() if len(scopes) != 1)
    assert not missing, f"routes without exactly one require(Scope) dependency: {missing}"


def test_no_admin_operation_is_reachable_without_a_key_or_with_the_wrong_scope(admin: Admin) -> None:
    table = route_scopes(admin)
    with admin.client("") as client:
        document = client.get("/api/v1/openapi.json").json()
    walked = operations(document)
    assert {(m, p) for m, p in walked} == set(table), "the document and the app's routes differ"
    problems: list[str] = []
    with admin.client("") as anonymous:
        for method, path in walked:
            response = anonymous.request(method, concrete(path))
            body = response.json() if response.headers.get("content-type") == "application/json" else {}
            if (
                response.status_code != 401
                or response.headers.get("www-authenticate") != "Bearer"
                or body.get("error", {}).get("code") != "unauthenticated"
            ):
                problems.append(f"{method} {path} without a key: {response.status_code} {response.text[:80]}")
    clients = {name: admin.client(name) for name in KEY_SCOPES}
    try:
        for method, path in walked:
            [scope] = table[(method, path)]
            assert keys_lacking(scope), scope  # else the 403 half proves nothing
            for name in keys_lacking(scope):
                response = clients[name].request(method, concrete(path))
                if response.status_code != 403 or response.json().get("error", {}).get("code") != "forbidden":
                    problems.append(f"{method} {path} with the {name} key: {response.status_code}")
    finally:
        for client in clients.values():
            client.close()
    assert not problems, "\n".join(problems)

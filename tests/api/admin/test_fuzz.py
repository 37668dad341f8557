"""Fuzz every /api/v1 operation of the served OpenAPI document with schemathesis (issue 6, API qualities):
no 5xx, every response matching the documented status codes and schemas — on SQLite and PostgreSQL.

Bounded and reproducible: ``EXAMPLES`` positive cases per operation, derandomized, no shrinking. Paths
with ids are tried with random ids and with ids of a few users and groups made beforehand. The test walks
whatever the document holds, so operations added later are fuzzed too. On failure it lists every failing
operation with the first problem found.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from harness.admin import Admin, make_admin
from harness.enrollment import add_user
from harness.served import serve
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from syncd.store.db import Database

EXAMPLES = 20
BUDGET_SECONDS = 90
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]
GENEROUS = {"per_second": 10_000, "burst": 10_000}  # limits are tested elsewhere; fuzz the routes


@pytest.fixture
def fuzzed(db: Database) -> Iterator[Admin]:
    with serve(db, api={"rate_limits": {"verify": GENEROUS, "mail": GENEROUS}}) as served:
        yield make_admin(served)


def known_ids(admin: Admin) -> dict[str, str]:
    """Ids of users and a group made beforehand, by path-parameter name."""
    users = [add_user(admin.db, name) for name in ("fuzz-ann", "fuzz-ben", "fuzz-cyd")]
    ids = {"userId": users[0], "targetUserId": users[1]}
    with admin.client("all") as client:  # through the API, so the fuzz needs no store internals
        made = client.post("/api/v1/groups", json={"name": "fuzz-group"})
        assert made.status_code == 201, made.text
        ids["groupId"] = made.json()["id"]
    return ids


def test_fuzz_every_v1_operation(fuzzed: Admin) -> None:
    ids = known_ids(fuzzed)
    schema = schemathesis.openapi.from_url(f"{fuzzed.served.url}/api/v1/openapi.json").include(
        path_regex=r"^/api/v1/"
    )
    http = requests.Session()
    http.headers["authorization"] = f"Bearer {fuzzed.keys['all']}"
    failures: dict[str, str] = {}
    # Deletions last, so the users and the group made beforehand are still there for the other routes.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda op: op.method.upper() == "DELETE"
    )
    assert len(operations) >= 5
    started = time.monotonic()
    for operation in operations:
        names = set(re.findall(r"\{(\w+)\}", operation.path))
        known = {name: value for name, value in ids.items() if name in names}
        strategy = operation.as_strategy()
        if known:
            strategy = st.one_of(strategy, operation.as_strategy(path_parameters=known))

        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzzed.served.url, session=http, timeout=20)
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - collect them all, fail once
            failures[f"{operation.method.upper()} {operation.path}"] = _first_line(error)
    elapsed = time.monotonic() - started
    assert not failures, "\n".join(f"{op}: {why}" for op, why in sorted(failures.items()))
    assert elapsed < BUDGET_SECONDS, f"the fuzz took {elapsed:.0f} s"


def _first_line(error: BaseException) -> str:
    """What failed (check names and the reproducing request), in a few lines."""
    text = str(error).strip() or type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    keep = [line for line in lines if line.startswith(("-", "Received", "curl", "[")) or "ST" in line[:6]]
    return " | ".join(keep or lines[:6])[:1200]

"""Parallel requests on both databases: membership PATCHes lose nothing, one userName wins once."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from harness.scim import ScimServer
from sqlalchemy import event as sa_event

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def op(kind: str, user_id: str) -> dict[str, object]:
    if kind == "add":
        operation = {"op": "add", "path": "members", "value": [{"value": user_id}]}
    else:
        operation = {"op": "remove", "path": f'members[value eq "{user_id}"]'}
    return {"schemas": [PATCH], "Operations": [operation]}


def test_parallel_member_patches_lose_nothing(scim: ScimServer) -> None:
    setup = scim.client()
    ids = [setup.post("/Users", json={"userName": f"member{i:02d}"}).json()["id"] for i in range(48)]
    keep, drop, add = ids[:16], ids[16:32], ids[32:]
    group_id = setup.post(
        "/Groups", json={"displayName": "Busy", "members": [{"value": i} for i in keep + drop]}
    )
    group_id = group_id.json()["id"]
    work = [("remove", i) for i in drop] + [("add", i) for i in add] + [("add", i) for i in keep]
    clients = [scim.client() for _ in range(8)]

    def send(index: int) -> int:
        kind, user_id = work[index]
        return clients[index % 8].patch(f"/Groups/{group_id}", json=op(kind, user_id)).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = Counter(pool.map(send, range(len(work))))
    assert statuses == Counter({204: len(work)})
    members = {m["value"] for m in setup.get(f"/Groups/{group_id}").json()["members"]}
    assert members == set(keep + add)


def test_parallel_creates_of_one_username(scim: ScimServer) -> None:
    clients = [scim.client() for _ in range(8)]

    def create(index: int) -> int:
        return clients[index].post("/Users", json={"userName": "Same.Name"}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = Counter(pool.map(create, range(8)))
    assert statuses == Counter({201: 1, 409: 7})
    assert clients[0].get("/Users").json()["totalResults"] == 1


def test_parallel_user_patches_keep_every_change(scim: ScimServer) -> None:
    setup = scim.client()
    user_id = setup.post("/Users", json={"userName": "many.changes"}).json()["id"]
    clients = [scim.client() for _ in range(6)]

    def add_email(index: int) -> int:
        body = {
            "schemas": [PATCH],
            "Operations": [
                {
                    "op": "add",
                    "path": "emails",
                    "value": [{"value": f"e{index}@example.com", "type": f"t{index}"}],
                }
            ],
        }
        return clients[index % 6].patch(f"/Users/{user_id}", json=body).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        assert set(pool.map(add_email, range(18))) == {200}
    emails = {e["value"] for e in setup.get(f"/Users/{user_id}").json()["emails"]}
    assert emails == {f"e{i}@example.com" for i in range(18)}


def test_parallel_requests_stay_within_the_connection_pool(scim: ScimServer) -> None:
    """24 clients at once: no database connection opened beyond the pool's size (on PostgreSQL, overflow
    connections were opened and closed per request: a backend start each time). On SQLite, writes queue
    for the one writer without failing."""
    engine = scim.db.write_engine
    body = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "x"}]}
    opened = 0

    def count(*_args: object) -> None:
        nonlocal opened
        opened += 1

    setup = scim.client()
    ids = [setup.post("/Users", json={"userName": f"pool{i:02d}"}).json()["id"] for i in range(24)]
    clients = [scim.client() for _ in range(24)]
    sa_event.listen(engine, "connect", count)
    try:

        def work(index: int) -> list[int]:
            client, user_id = clients[index], ids[index]
            return [
                client.get("/Users", params={"filter": f'userName eq "pool{index:02d}"'}).status_code,
                client.get(f"/Users/{user_id}").status_code,
                client.patch(f"/Users/{user_id}", json=body).status_code,
            ]

        with ThreadPoolExecutor(max_workers=24) as pool:
            statuses = Counter(s for batch in pool.map(work, range(24), chunksize=1) for s in batch)
    finally:
        sa_event.remove(engine, "connect", count)
    assert statuses == Counter({200: 72})
    assert opened <= scim.db.config.pool_size

"""The bare baseline of bench/scim.py: one Starlette app, sqlite3 straight from the event loop, one indexed
lookup / insert / update per request, a small SCIM-shaped JSON answer. The practical ceiling of one Python
process on this machine; it does none of syncd's work (validation, lifecycle, audit, visibility).

    python bench/scim_bare.py DB_PATH PORT TOKEN
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import sys
from datetime import UTC, datetime

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

USERNAME = re.compile(r'^userName eq "(.*)"$')


def build(path: str, token: str) -> Starlette:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    expected = f"Bearer {token}"

    def answer(body: dict[str, object], status: int = 200) -> Response:
        return Response(json.dumps(body), status_code=status, media_type="application/scim+json")

    def refused(request: Request) -> Response | None:
        if request.headers.get("authorization") != expected:
            return answer({"status": "401"}, 401)
        return None

    async def users(request: Request) -> Response:
        if (bad := refused(request)) is not None:
            return bad
        if request.method == "GET":
            match = USERNAME.match(request.query_params.get("filter", ""))
            key = match.group(1).casefold() if match else ""
            rows = db.execute(
                "SELECT id, username, provisioned FROM users WHERE username_key = ? AND deleted_at IS NULL",
                (key,),
            ).fetchall()
            found = [{"id": i, "userName": u, "active": bool(a)} for i, u, a in rows]
            return answer({"totalResults": len(found), "Resources": found})
        body = json.loads(await request.body())
        user_id, now = secrets.token_urlsafe(16), datetime.now(UTC).isoformat(" ")
        db.execute(
            "INSERT INTO users (id, username, username_key, attributes, status, provisioned, managed_by,"
            " created_at, updated_at) VALUES (?, ?, ?, '{}', 'UNENROLLED', 1, 'bench', ?, ?)",
            (user_id, body["userName"], body["userName"].casefold(), now, now),
        )
        return answer({"id": user_id, "userName": body["userName"], "active": True}, 201)

    async def user(request: Request) -> Response:
        if (bad := refused(request)) is not None:
            return bad
        await request.body()
        user_id = request.path_params["id"]
        now = datetime.now(UTC).isoformat(" ")
        db.execute("UPDATE users SET provisioned = 0, updated_at = ? WHERE id = ?", (now, user_id))
        return answer({"id": user_id, "active": False})

    async def group(request: Request) -> Response:
        if (bad := refused(request)) is not None:
            return bad
        body = json.loads(await request.body())
        member = body["Operations"][0]["value"][0]["value"]
        db.execute(
            "INSERT OR IGNORE INTO group_members (group_id, user_id, managed_by) VALUES (?, ?, 'bench')",
            (request.path_params["id"], member),
        )
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/scim/v2/Users", users, methods=["GET", "POST"]),
            Route("/scim/v2/Users/{id}", user, methods=["PATCH"]),
            Route("/scim/v2/Groups/{id}", group, methods=["PATCH"]),
        ]
    )


if __name__ == "__main__":
    db_path, port, token = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(build(db_path, token), host="127.0.0.1", port=port, log_config=None, access_log=False)

"""``Idempotency-Key`` on the admin POSTs that create secrets or send mail (docs/adr/0055-api-qualities.md).

A pure-ASGI middleware. The first request with a key claims (client, key, request hash) with no status,
runs, and its status and body are kept for a day, sealed with the enrollment keys (the body may hold
bypass codes; the associated data binds it to the client and key). A retry with the same key and the same
request gets the kept answer again with ``Idempotent-Replayed: true``; the same key with another request
is 409 ``conflict``, and so is a retry while the first is still running. Answers that say the request did
not run (401, 403, 422, 429, 5xx) are not kept: a retry runs again.

Without enrollment keys (no ``secrets.seed_key``) nothing is kept and requests pass through. Requests
whose key does not authenticate pass through to the auth dependency. The claim and the answer are written
in two short units of work; the request runs between them, outside any transaction of ours.
"""

from __future__ import annotations

import hashlib
import json
import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.api.admin.auth import Caller, authenticate
from syncd.errors import SyncdError
from syncd.store import idempotency
from syncd.store.db import Database
from syncd.store.keys import Keys

HEADER = b"idempotency-key"
KEY_SHAPE = re.compile(r"^[!-~]{1,128}$")
"""1 to 128 visible ASCII characters (a UUID is typical)."""
PATHS = re.compile(
    r"^/api/v1/(users/[^/]+/bypass-codes|users/[^/]+/enrollment-email|users/enrollment-emails"
    r"|factors/[^/]+/enroll)/?$"
)
NOT_KEPT = frozenset({401, 403, 422, 429})


def applies(method: str, path: str) -> bool:
    """Whether ``Idempotency-Key`` is honoured on this request."""
    return method == "POST" and PATHS.match(path) is not None


def request_hash(path: str, query: bytes, body: bytes) -> str:
    """What makes two requests with one key "the same request": path, query string and body bytes."""
    return hashlib.sha256(b"\n".join([b"POST", path.encode(), query, body])).hexdigest()


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int = 1_048_576) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not applies(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        raw = [v for k, v in scope.get("headers", ()) if k == HEADER]
        if not raw:
            await self.app(scope, receive, send)
            return
        key = raw[0].decode("latin-1")
        if len(raw) > 1 or not KEY_SHAPE.match(key):
            await _error(send, 400, "invalid_request", "Idempotency-Key must be 1 to 128 visible characters")
            return
        app_state = scope["app"].state
        keys: Keys | None = getattr(getattr(app_state, "enrollment", None), "keys", None)
        if keys is None:
            await self.app(scope, receive, send)
            return
        try:
            caller: Caller = await run_in_threadpool(authenticate, Request(scope))
        except SyncdError:
            await self.app(scope, receive, send)  # the auth dependency answers 401
            return

        body = await _read_body(receive, self.max_body_bytes)
        if body is None:
            await _error(send, 413, "too_large", "the request body is too large")
            return
        await self._once(scope, receive, send, caller, key, keys, body)

    async def _once(
        self, scope: Scope, receive: Receive, send: Send, caller: Caller, key: str, keys: Keys, body: bytes
    ) -> None:
        digest = request_hash(scope["path"], scope.get("query_string", b""), body)
        db: Database = scope["app"].state.db
        client, aad = caller.client_id, f"{caller.client_id}:{key}"

        def claim() -> idempotency.Previous | None:
            with db.write() as session:
                return idempotency.begin(session, client, key, digest)

        previous = await run_in_threadpool(claim)
        if previous is not None:
            await self._answer_previous(send, previous, digest, keys, aad)
            return

        status = 500
        chunks: list[bytes] = []

        replayed = False

        async def replay_body() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        kept = False

        def keep() -> None:
            with db.write() as session:
                if status >= 500 or status in NOT_KEPT:
                    idempotency.release(session, client, key)
                else:
                    idempotency.finish(session, client, key, status, keys.seal(b"".join(chunks), aad))

        async def capture(message: Message) -> None:
            nonlocal status, kept
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False) and not kept:
                    kept = True  # kept before the client sees the end of the answer: a retry finds it
                    await run_in_threadpool(keep)
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        finally:
            if not kept:  # no complete answer (an exception, a disconnect): forget the claim
                status = 500
                await run_in_threadpool(keep)

    async def _answer_previous(
        self, send: Send, previous: idempotency.Previous, digest: str, keys: Keys, aad: str
    ) -> None:
        if previous.request_hash != digest:
            await _error(send, 409, "conflict", "this Idempotency-Key was used with another request")
            return
        if previous.status_code is None or previous.response_enc is None:
            message = "a request with this Idempotency-Key is still in progress; retry in a moment"
            await _error(send, 409, "conflict", message, [(b"retry-after", b"1")])
            return
        stored = await run_in_threadpool(keys.unseal, previous.response_enc, aad)
        headers = [(b"content-length", str(len(stored)).encode()), (b"idempotent-replayed", b"true")]
        if stored:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": previous.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": stored})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(parts)


async def _error(
    send: Send, status: int, code: str, message: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, *(extra or [])]})
    await send({"type": "http.response.body", "body": body})

"""API-key authentication and scopes for ``/api/v1``.

Every admin route takes its caller from ``Depends(require(Scope.X))``: a missing, malformed, unknown,
revoked or expired key is 401 (with ``WWW-Authenticate: Bearer``); a valid key without the scope is 403.
``manage`` implies ``read``; ``verify`` is on its own (an application that checks codes reads nothing).

Validated keys are cached in this process for ``CACHE_SECONDS`` (the verification hot path does not read
the key table on every request, and a cache hit is answered on the event loop without a thread-pool hop);
a revocation reaches other replicas within that time.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from syncd.errors import ForbiddenError, UnauthenticatedError
from syncd.store import apikeys
from syncd.store.db import Database
from syncd.store.tables import utcnow

CACHE_SECONDS = 10.0
TOUCH_EVERY = timedelta(minutes=1)

bearer = HTTPBearer(auto_error=False, description="An API key from `syncd apikey create`.")
"""Declares the scheme in the OpenAPI document; :class:`require` does the checking."""


class Scope(enum.StrEnum):
    READ = "read"
    MANAGE = "manage"
    VERIFY = "verify"


IMPLIED = {Scope.MANAGE: {Scope.READ}}
_SCOPE_NAMES = frozenset(s.value for s in Scope)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the API client and its scopes. ``actor`` is what audit rows record."""

    client_id: str
    name: str
    scopes: frozenset[Scope]

    @property
    def actor(self) -> str:
        return f"admin:{self.name}"

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or any(scope in IMPLIED.get(s, ()) for s in self.scopes)


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._touched: dict[str, float] = {}

    def get(self, digest: str) -> Caller | None:
        with self._lock:
            hit = self._entries.get(digest)
            if hit is None or hit[0] < time.monotonic():
                self._entries.pop(digest, None)
                return None
            return hit[1]

    def put(self, digest: str, caller: Caller) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (time.monotonic() + CACHE_SECONDS, caller)

    def due_touch(self, client_id: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._touched.get(client_id, -1e9) < TOUCH_EVERY.total_seconds():
                return False
            self._touched[client_id] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _cache(request: Request) -> _Cache:
    state = request.app.state
    cache = getattr(state, "apikey_cache", None)
    if cache is None:
        cache = state.apikey_cache = _Cache()
    return cache


def _key_and_digest(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise UnauthenticatedError("send an API key as 'Authorization: Bearer <key>'")
    return key, hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


def cached_caller(request: Request) -> Caller | None:
    """The caller when its key was validated in this process less than ``CACHE_SECONDS`` ago (no I/O, so
    it runs on the event loop); None when the key must be looked up. 401 for a malformed header."""
    _, digest = _key_and_digest(request)
    return _cache(request).get(digest)


def authenticate(request: Request) -> Caller:
    """The caller of this request, or 401 (reads the database on a cache miss: run it in a thread)."""
    key, digest = _key_and_digest(request)
    cache = _cache(request)
    caller = cache.get(digest)
    if caller is None:
        db: Database = request.app.state.db
        with db.read() as session:
            client = apikeys.authenticate(session, key)
            if client is None:
                raise UnauthenticatedError("the API key is unknown, revoked or expired")
            caller = Caller(
                client.id, client.name, frozenset(Scope(s) for s in client.scopes if s in _SCOPE_NAMES)
            )
        cache.put(digest, caller)
        if cache.due_touch(caller.client_id):
            with db.write() as session:
                apikeys.touch(session, caller.client_id, utcnow())
    return caller


class require:
    """A dependency that authenticates the request and checks one scope. ``scope`` is kept as an attribute
    so tests (and the OpenAPI walk) can tell which scope each route needs.

    A key validated recently is taken from the cache on the event loop (no thread-pool hop on the hot
    path); only a miss runs :func:`authenticate` (a database read) in the thread pool."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope

    async def __call__(self, request: Request) -> Caller:
        caller = cached_caller(request)
        if caller is None:
            caller = await run_in_threadpool(authenticate, request)
        if not caller.has(self.scope):
            raise ForbiddenError(f"this API key lacks the '{self.scope}' scope")
        request.state.caller = caller
        return caller

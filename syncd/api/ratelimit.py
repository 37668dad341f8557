"""Per-key rate limits on the verification and mail-sending admin routes (docs/adr/0055-api-qualities.md).

A pure-ASGI middleware with token buckets held in this process, keyed by the SHA-256 of the bearer token
and the route class (``verify``, ``mail``): each replica limits on its own. Every response on a limited
route carries ``RateLimit-Limit``, ``RateLimit-Remaining`` and ``RateLimit-Reset``
(draft-ietf-httpapi-ratelimit-headers); over the limit the answer is 429 with ``Retry-After`` and the error
body ``{"error": {"code": "rate_limited", …}}``.

Requests without a well-formed key go on to the auth dependency (401) untouched: no key, no bucket. So
that a flood of made-up keys cannot make every request a key lookup, each 401 on a limited route takes a
token from the client address's ``failed_auth`` bucket; while it is empty, keys not yet seen to work from
this process are refused with 429 before the app runs. Keys that worked keep their own buckets, so a
shared address (NAT, proxy) never throttles a good key because of someone else's bad ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd.config.models import RateLimit, RateLimits

MAX_BUCKETS = 100_000
KEY_SHAPE = re.compile(r"^syncd_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$")
ROUTE_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("verify", re.compile(r"^/api/v1/verify/?$")),
    (
        "mail",
        re.compile(
            r"^/api/v1/(users/[^/]+/enrollment-email|users/enrollment-emails|factors/[^/]+/enroll)/?$"
        ),
    ),
)


def route_class(method: str, path: str) -> str | None:
    """``verify``, ``mail`` or None (not limited)."""
    if method != "POST":
        return None
    for name, pattern in ROUTE_CLASSES:
        if pattern.match(path):
            return name
    return None


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one token is back (0 when allowed)

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.retry_after).encode()))
        return out


class Buckets:
    """Token buckets by key, thread-safe, bounded in number (full buckets are dropped first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, Bucket] = {}

    def _refilled(self, key: str, limit: RateLimit, now: float) -> Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = Bucket(float(limit.burst), now)
        else:
            bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.at) * limit.per_second)
            bucket.at = now
        return bucket

    def _prune(self, now: float) -> None:
        # Buckets idle long enough to be full again hold no information; if that frees nothing, start over.
        idle = [k for k, b in self._buckets.items() if now - b.at > 60]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()

    def take(self, key: str, limit: RateLimit, *, peek: bool = False) -> Decision:
        """Take one token (or only look, with ``peek``)."""
        now = time.monotonic()
        with self._lock:
            bucket = self._refilled(key, limit, now)
            allowed = bucket.tokens >= 1
            if allowed and not peek:
                bucket.tokens -= 1
            tokens = bucket.tokens
        rate = limit.per_second
        return Decision(
            allowed=allowed,
            limit=limit.burst,
            remaining=max(0, math.floor(tokens)),
            reset=math.ceil((limit.burst - tokens) / rate) if rate else 0,
            retry_after=0 if allowed else max(1, math.ceil((1 - tokens) / rate)),
        )


class RateLimitMiddleware:
    """Rate-limit ``POST /api/v1/verify`` and the mail-sending routes per API key."""

    def __init__(self, app: ASGIApp, limits: RateLimits) -> None:
        self.app = app
        self.limits = limits
        self.buckets = Buckets()
        self._good_keys: dict[str, None] = {}  # digests of keys that got past auth here (bounded, FIFO)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = route_class(scope["method"], scope["path"])
        limit: RateLimit | None = getattr(self.limits, kind) if kind else None
        if kind is None or limit is None or limit.per_second == 0:
            await self.app(scope, receive, send)
            return
        key = _bearer(scope)
        if key is None or not KEY_SHAPE.match(key):
            await self.app(scope, receive, send)  # the auth dependency answers 401
            return
        digest = hashlib.sha256(key.encode()).hexdigest()
        address = f"failed_auth:{scope['client'][0] if scope.get('client') else '-'}"
        failures = self.limits.failed_auth
        if digest not in self._good_keys and failures.per_second > 0:
            gate = self.buckets.take(address, failures, peek=True)
            if not gate.allowed:
                await _refuse(send, gate, "too many requests with unknown API keys from this address")
                return
        decision = self.buckets.take(f"{kind}:{digest}", limit)
        if not decision.allowed:
            await _refuse(send, decision, f"this API key sends too many {kind} requests; retry later")
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    if failures.per_second > 0:
                        self.buckets.take(address, failures)
                else:
                    self._remember(digest)
                message = {**message, "headers": [*message.get("headers", []), *decision.headers()]}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _remember(self, digest: str) -> None:
        if digest in self._good_keys:
            return
        if len(self._good_keys) >= 10_000:
            self._good_keys.pop(next(iter(self._good_keys)))
        self._good_keys[digest] = None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            return key.strip() if scheme.lower() == "bearer" else None
    return None


async def _refuse(send: Send, decision: Decision, message: str) -> None:
    body = json.dumps({"error": {"code": "rate_limited", "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *decision.headers(),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})

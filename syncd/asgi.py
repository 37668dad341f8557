"""The ASGI stack the daemon serves: request ids, metrics, and an app that a reload can swap.

uvicorn keeps the app object it was given; :class:`Swappable` forwards each request to the current
FastAPI app, so a SIGHUP reload builds a new app from the new config and swaps it in between requests
(in-flight requests finish on the old one).
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd import logs

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class Swappable:
    """Forwards to ``self.app``; assign a new app to swap it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def routes(self) -> Any:
        return self.app.routes


class RequestIds:
    """Binds a request id to every log event of the request and returns it as ``X-Request-ID``.

    A well-formed ``X-Request-ID`` from the client (a proxy) is kept, anything else replaced.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.match(given) else secrets.token_hex(8)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        with logs.bound(request_id=request_id):
            await self.app(scope, receive, send_with_id)

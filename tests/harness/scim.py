"""SCIM test helpers: the real app served by uvicorn in a thread on loopback, configs with SCIM clients."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from syncd.config.models import Config
from syncd.store.db import Database

CT = "application/scim+json"


@dataclass
class ScimServer:
    url: str  # .../scim/v2
    tokens: dict[str, str]
    db: Database
    config: Config
    clients: list[httpx.Client] = field(default_factory=list)

    def client(self, source: str = "okta", **headers: str) -> httpx.Client:
        token = self.tokens[source]
        client = httpx.Client(
            base_url=self.url,
            headers={"authorization": f"Bearer {token}", "content-type": CT, **headers},
            timeout=30,
        )
        self.clients.append(client)
        return client


class ServerThread:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any, port: int) -> None:
        self.port = port
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_config=None, access_log=False, lifespan="off"
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def make_config(tmp_path: Path, db: Database, sources: list[dict[str, Any]], port: int = 8080) -> Config:
    data = {
        "org": {"name": "Test Corp", "base_url": f"http://127.0.0.1:{port}"},
        "database": db.config.model_dump(exclude_none=True),
        "sources": sources,
        "api": {"listen": f"127.0.0.1:{port}", "max_body_bytes": 65536},
    }
    return Config.model_validate(data)


def token_source(tmp_path: Path, name: str, **extra: Any) -> tuple[dict[str, Any], str]:
    token = secrets.token_urlsafe(24)
    path = tmp_path / f"{name}.token"
    path.write_text(token + "\n", encoding="utf-8")
    return {"name": name, "kind": "scim", "tokens": [{"file": str(path)}], **extra}, token

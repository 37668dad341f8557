"""The real app (FastAPI with SCIM mounted) served by uvicorn on loopback, both databases.

``scim`` is a running server with two SCIM clients, ``okta`` and ``entra`` (tokens in files), and a file
source ``hr`` that ``okta`` may take users over from. ``scim.client("okta")`` is an httpx client with that
client's bearer token and ``Content-Type: application/scim+json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.net import free_port
from harness.scim import ScimServer, ServerThread, make_config, token_source

from syncd.api.app import create_app
from syncd.config.models import Database as DatabaseConfig
from syncd.store import schema
from syncd.store.db import Database


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    """A migrated database (both kinds)."""
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def scim_factory(db: Database, tmp_path: Path) -> Iterator[Callable[..., ScimServer]]:
    stack: list[tuple[ServerThread, ScimServer]] = []

    def factory(extra_sources: list[dict[str, Any]] | None = None, **okta: Any) -> ScimServer:
        okta_source, okta_token = token_source(tmp_path, "okta", take_over_from=["hr"], **okta)
        entra_source, entra_token = token_source(tmp_path, "entra")
        hr = {"name": "hr", "kind": "file", "format": "csv", "users": str(tmp_path / "users.csv")}
        port = free_port()
        config = make_config(tmp_path, db, [okta_source, entra_source, hr, *(extra_sources or [])], port)
        server = ServerThread(create_app(config, db), port)
        server.__enter__()
        scim = ScimServer(
            f"http://127.0.0.1:{server.port}/scim/v2", {"okta": okta_token, "entra": entra_token}, db, config
        )
        stack.append((server, scim))
        return scim

    yield factory
    for server, scim in stack:
        for client in scim.clients:
            client.close()
        server.__exit__()


@pytest.fixture
def scim(scim_factory: Callable[..., ScimServer]) -> ScimServer:
    return scim_factory()

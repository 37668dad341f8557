"""The admin API served for real with one API key per scope: ``admin.client("manage")`` is an httpx client
that sends that key (``admin.client("")`` sends none)."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from harness.served import Served
from syncd.store import apikeys
from syncd.store.db import Database


@dataclass
class Admin:
    served: Served
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.served.db

    def client(self, scope: str = "manage", **kwargs: object) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        return self.served.client(headers=headers, **kwargs)


def make_admin(served: Served) -> Admin:
    """Keys named test-read, test-manage, test-verify (one scope each) and test-all (every scope)."""
    keys = {}
    with served.db.write() as session:
        for scope in ("read", "manage", "verify"):
            keys[scope] = apikeys.create(session, f"test-{scope}", [scope], actor="admin:test").key
        keys["all"] = apikeys.create(
            session, "test-all", ["read", "manage", "verify"], actor="admin:test"
        ).key
    return Admin(served, keys)

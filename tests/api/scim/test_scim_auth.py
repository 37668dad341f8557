"""Token configuration of SCIM clients: refused at start when unsafe (no HTTP needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.api.scim.auth import Clients
from syncd.api.scim.errors import UnauthorizedError
from syncd.config.models import Config
from syncd.errors import ConfigError


def config(tmp_path: Path, tokens: dict[str, list[str]], disabled: frozenset[str] = frozenset()) -> Config:
    sources = []
    for name, values in tokens.items():
        refs = []
        for index, value in enumerate(values):
            path = tmp_path / f"{name}-{index}.token"
            path.write_text(value + "\n", encoding="utf-8")
            refs.append({"file": str(path)})
        sources.append({"name": name, "kind": "scim", "tokens": refs, "enabled": name not in disabled})
    return Config.model_validate(
        {"org": {"name": "T", "base_url": "http://127.0.0.1:8080"}, "sources": sources}
    )


def test_two_tokens_during_a_rotation_and_disabled_sources(tmp_path: Path) -> None:
    old, new, other = "old-token-0123456789abcdef", "new-token-0123456789abcdef", "other-token-0123456789abc"
    clients = Clients(config(tmp_path, {"okta": [old, new], "entra": [other]}, disabled=frozenset({"entra"})))
    assert clients.authenticate(f"Bearer {old}").source == "okta"
    assert clients.authenticate(f"bearer  {new} ").source == "okta"
    assert clients.authenticate(f"Bearer {old}").actor == "scim:okta"
    for header in (None, "", "Bearer", f"Basic {old}", f"Bearer {old}x", f"Bearer {other}"):
        with pytest.raises(UnauthorizedError):
            clients.authenticate(header)


def test_short_and_shared_tokens_stop_the_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shorter than 16"):
        Clients(config(tmp_path, {"okta": ["short"]}))
    shared = "shared-token-0123456789abcdef"
    with pytest.raises(ConfigError, match="same SCIM token"):
        Clients(config(tmp_path, {"okta": [shared], "entra": [shared]}))

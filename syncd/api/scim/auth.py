"""Bearer-token authentication of SCIM clients.

Each SCIM client is a configured source (``kind: scim``) with one or more tokens (two during a rotation),
read from files, environment variables or systemd credentials by the config loader. Only their SHA-256
digests are kept here; a presented token is hashed and compared with every digest using
``hmac.compare_digest`` (no early exit), so neither its content nor its length shows in the timing. A
token of a disabled source, an unknown token or a missing/malformed header is 401.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from syncd.api.scim.errors import UnauthorizedError
from syncd.config.models import Config
from syncd.config.sources import ScimSource
from syncd.errors import ConfigError

MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class Client:
    """The authenticated SCIM client: its source and what it may do."""

    source: str
    take_over_from: frozenset[str]
    enabled: bool = True

    @property
    def actor(self) -> str:
        """The audit actor of its writes."""
        return f"scim:{self.source}"


class Clients:
    """The SCIM sources of a config, by token digest."""

    def __init__(self, config: Config) -> None:
        self._entries: list[tuple[bytes, Client]] = []
        seen: dict[bytes, str] = {}
        for source in config.sources:
            if not isinstance(source, ScimSource):
                continue
            client = Client(source.name, frozenset(source.take_over_from), source.enabled)
            for ref in source.tokens:
                token = ref.get()
                if len(token) < MIN_TOKEN_LENGTH:
                    raise ConfigError(
                        f"source {source.name}: the SCIM token in {ref.describe()} is shorter than "
                        f"{MIN_TOKEN_LENGTH} characters (make one with `openssl rand -base64 32`)"
                    )
                digest = _digest(token)
                if digest in seen and seen[digest] != source.name:
                    raise ConfigError(f"sources {seen[digest]} and {source.name} use the same SCIM token")
                seen[digest] = source.name
                self._entries.append((digest, client))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def authenticate(self, authorization: str | None) -> Client:
        """The client whose token the ``Authorization`` header carries; else :class:`UnauthorizedError`."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise UnauthorizedError("a bearer token is required")
        digest = _digest(token.strip())
        found: Client | None = None
        for candidate, client in self._entries:
            if hmac.compare_digest(digest, candidate) and found is None:
                found = client
        if found is None or not found.enabled:
            raise UnauthorizedError("the bearer token is not valid")
        return found


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

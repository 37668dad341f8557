"""Admin API keys: created once in plaintext, stored as a SHA-256 digest, found by a public prefix.

A key is ``syncd_<prefix>_<secret>``: ``prefix`` (12 hex characters) is shown in listings and finds the row;
``secret`` carries 256 bits from ``secrets``. With that much entropy a fast digest is as safe as a slow hash
and keeps authentication off the hot path's budget (docs/adr/0050-admin-api.md). Digests are compared in
constant time. Rotation makes a new key with the same name and scopes and lets the old one work for a grace
period; revocation is immediate (in this process; other replicas within their cache TTL).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent
from syncd.errors import NotFoundError, UsageError
from syncd.store import audit
from syncd.store.tables import ApiClient, utcnow

SCOPES = ("read", "manage", "verify")
"""``read``: GET everything; ``manage``: change things (implies read); ``verify``: ``POST /api/v1/verify``."""
_KEY = re.compile(r"^syncd_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` is the only time the plaintext exists."""

    client: ApiClient
    key: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def normalise_scopes(scopes: Iterable[str]) -> list[str]:
    wanted = sorted({s.strip().lower() for s in scopes if s.strip()})
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown or not wanted:
        raise UsageError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(unknown) or 'none'}")
    return wanted


def create(
    session: Session,
    name: str,
    scopes: Iterable[str],
    *,
    actor: str,
    expires_at: datetime | None = None,
) -> NewKey:
    """Make a key; the caller shows ``NewKey.key`` once and never again."""
    if not name.strip() or len(name) > 128:
        raise UsageError("an API key needs a name of 1 to 128 characters")
    prefix = secrets.token_hex(6)
    key = f"syncd_{prefix}_{secrets.token_urlsafe(32)}"
    client = ApiClient(
        name=name.strip(),
        key_prefix=prefix,
        key_hash=digest(key),
        scopes=normalise_scopes(scopes),
        expires_at=expires_at,
    )
    session.add(client)
    session.flush()
    audit.record(
        session,
        AuditEvent(actor, "apikey.created", "api_client", client.id, None, ",".join(client.scopes)),
        {"name": client.name, "prefix": prefix},
    )
    return NewKey(client, key)


def authenticate(session: Session, key: str, *, now: datetime | None = None) -> ApiClient | None:
    """The live client whose key this is, else ``None`` (unknown, malformed, revoked or expired)."""
    match = _KEY.match(key)
    if not match:
        return None
    client = session.scalar(sa.select(ApiClient).where(ApiClient.key_prefix == match.group(1)))
    if client is None or not hmac.compare_digest(client.key_hash, digest(key)):
        return None
    now = now or utcnow()
    if client.revoked_at is not None or (client.expires_at is not None and client.expires_at <= now):
        return None
    return client


def touch(session: Session, client_id: str, now: datetime | None = None) -> None:
    """Record use (callers do it at most once a minute per key, not on every request)."""
    session.execute(
        sa.update(ApiClient).where(ApiClient.id == client_id).values(last_used_at=now or utcnow())
    )


def get(session: Session, ref: str) -> ApiClient:
    """By id or prefix."""
    client = session.scalar(
        sa.select(ApiClient).where(sa.or_(ApiClient.id == ref, ApiClient.key_prefix == ref))
    )
    if client is None:
        raise NotFoundError(f"no API key {ref!r}")
    return client


def listing(session: Session) -> Sequence[ApiClient]:
    return session.scalars(sa.select(ApiClient).order_by(ApiClient.created_at, ApiClient.id)).all()


def revoke(session: Session, ref: str, *, actor: str) -> ApiClient:
    client = get(session, ref)
    if client.revoked_at is None:
        client.revoked_at = utcnow()
        audit.record(session, AuditEvent(actor, "apikey.revoked", "api_client", client.id, "live", "revoked"))
    return client


def rotate(session: Session, ref: str, *, actor: str, grace: timedelta) -> NewKey:
    """A new key with the same name and scopes; the old one stops working after ``grace``."""
    old = get(session, ref)
    if old.revoked_at is not None:
        raise UsageError(f"API key {old.key_prefix} is revoked; create a new one instead")
    ends = utcnow() + grace
    if old.expires_at is None or old.expires_at > ends:
        old.expires_at = ends
    new = create(session, old.name, old.scopes, actor=actor)
    audit.record(
        session,
        AuditEvent(actor, "apikey.rotated", "api_client", old.id, old.key_prefix, new.client.key_prefix),
        {"old_key_ends": ends.isoformat()},
    )
    return new

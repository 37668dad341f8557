"""Idempotency keys of the admin API: a POST remembered by (client, key) for ``TTL``.

:func:`begin` claims a key for a request (or returns the row a previous request left); :func:`finish`
stores the response (sealed by the caller), :func:`release` forgets a request that did not run to an
answer worth replaying; :func:`purge` deletes rows older than ``TTL``. Rows older than ``TTL`` are
ignored (and replaced) even before they are purged. Functions take a Session and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import Session

from syncd.store.tables import IdempotencyKey, utcnow

TTL = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Previous:
    """What an earlier request with the same (client, key) left: ``status_code`` None while in flight."""

    request_hash: str
    status_code: int | None
    response_enc: bytes | None


def begin(
    session: Session, client_id: str, key: str, request_hash: str, *, now: datetime | None = None
) -> Previous | None:
    """Claim ``key`` for this request (None: go ahead), or the live row of an earlier request."""
    now = now or utcnow()
    where = (IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
    row = session.scalar(sa.select(IdempotencyKey).where(*where, IdempotencyKey.created_at > now - TTL))
    if row is not None:
        return Previous(row.request_hash, row.status_code, row.response_enc)
    session.execute(sa.delete(IdempotencyKey).where(*where))  # an expired row, if any
    try:
        with session.begin_nested():
            session.add(
                IdempotencyKey(client_id=client_id, key=key, request_hash=request_hash, created_at=now)
            )
    except exc.IntegrityError:
        # Another request claimed it between our read and insert: it is in flight.
        return Previous(request_hash, None, None)
    return None


def finish(session: Session, client_id: str, key: str, status_code: int, response_enc: bytes) -> None:
    """Keep the answer of the request that claimed ``key``."""
    session.execute(
        sa.update(IdempotencyKey)
        .where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
        .values(status_code=status_code, response_enc=response_enc)
    )


def release(session: Session, client_id: str, key: str) -> None:
    """Forget a claim (the request failed before an answer worth replaying): a retry runs again."""
    session.execute(
        sa.delete(IdempotencyKey).where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
    )


def purge(session: Session, *, now: datetime | None = None) -> int:
    """Delete rows older than ``TTL``; how many."""
    cutoff = (now or utcnow()) - TTL
    result = session.execute(sa.delete(IdempotencyKey).where(IdempotencyKey.created_at <= cutoff))
    return int(getattr(result, "rowcount", 0) or 0)

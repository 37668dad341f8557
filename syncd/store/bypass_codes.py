"""Bypass codes (seed 000 ``bypassCodeId``): generate, list metadata, revoke, redeem (docs/adr/0052).

Codes are hashed with argon2id by :mod:`syncd.domain.bypass` *before* the unit of work opens (hashing ten
codes takes a fifth of a second; the SQLite write lock should not wait for it) and stored with a 4-bit
lookup tag. :func:`redeem` verifies only the live codes whose tag matches (about one) and spends the
same time on a dummy hash when none does; a use is taken by compare-and-set
(``UPDATE … SET uses_left = uses_left - 1 WHERE uses_left > 0``), so parallel submissions of a single-use
code succeed once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import bypass
from syncd.domain.lifecycle import AuditEvent, can_use_bypass_code
from syncd.errors import DomainError, NotFoundError
from syncd.store import audit, outbox
from syncd.store.db import rowcount
from syncd.store.devices import load_user
from syncd.store.tables import BypassCode, utcnow

PURPOSE = "bypass_codes"


def _live(user_id: str, now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        BypassCode.user_id == user_id,
        BypassCode.revoked_at.is_(None),
        BypassCode.uses_left > 0,
        sa.or_(BypassCode.expires_at.is_(None), BypassCode.expires_at > now),
    )


def _revoke_live(session: Session, user_id: str, now: datetime) -> int:
    result = session.execute(
        sa.update(BypassCode)
        .where(_live(user_id, now))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def generate(
    session: Session,
    user_id: str,
    codes: Sequence[bypass.NewCode],
    *,
    uses: int,
    expires_in: timedelta,
    preserve_existing: bool,
    actor: str,
    host: str,
    now: datetime | None = None,
) -> list[BypassCode]:
    """Store ``codes`` (made by :func:`syncd.domain.bypass.make_codes` for this user) and queue the
    "bypass codes generated" mail (the count only; the codes are never mailed).

    Refused (DomainError) for PROVISIONING_DISABLED users and beyond :data:`bypass.MAX_LIVE` live codes.
    Unless ``preserve_existing``, the user's live codes are revoked first.
    """
    now = now or utcnow()
    user = load_user(session, user_id, lock=True)
    if not can_use_bypass_code(user.status):
        raise DomainError(f"user {user_id} is {user.status.value}: bypass codes can't be generated")
    revoked = 0 if preserve_existing else _revoke_live(session, user.id, now)
    live = int(session.scalar(sa.select(sa.func.count()).where(_live(user.id, now))) or 0)
    if live + len(codes) > bypass.MAX_LIVE:
        raise DomainError(
            f"user {user_id} would have {live + len(codes)} live bypass codes; at most {bypass.MAX_LIVE} "
            "are allowed (revoke some, or generate without preserveExisting)"
        )
    rows = [
        BypassCode(
            user_id=user.id,
            code_hash=code.code_hash,
            lookup_tag=code.tag,
            expires_at=now + expires_in,
            uses_left=uses,
            created_at=now,
        )
        for code in codes
    ]
    session.add_all(rows)
    session.flush()
    audit.record(
        session,
        AuditEvent(actor, "bypass_codes.generated", "user", user.id, None, str(len(rows)), "admin"),
        {"count": len(rows), "uses": uses, "expiresAt": (now + expires_in).isoformat(), "revoked": revoked},
    )
    if user.email and rows:
        outbox.enqueue(
            session,
            user_id=user.id,
            purpose=PURPOSE,
            dedup_key=f"{PURPOSE}:{user.id}:{rows[0].id}",
            to_address=user.email,
            host=host,
            context={"count": len(rows), "at": now.isoformat(timespec="seconds")},
            now=now,
        )
    return rows


def listing(session: Session, user_id: str) -> Sequence[BypassCode]:
    """Every code of the user (metadata only is ever shown), newest first."""
    load_user(session, user_id)
    query = (
        sa.select(BypassCode)
        .where(BypassCode.user_id == user_id)
        .order_by(BypassCode.created_at.desc(), BypassCode.id)
    )
    return session.scalars(query).all()


def revoke(session: Session, user_id: str, code_id: str, *, actor: str, now: datetime | None = None) -> None:
    """Revoke one code (revoking a revoked code again changes nothing)."""
    now = now or utcnow()
    load_user(session, user_id)
    code = session.get(BypassCode, code_id)
    if code is None or code.user_id != user_id:
        raise NotFoundError(f"user {user_id!r} has no bypass code {code_id!r}")
    if code.revoked_at is None:
        code.revoked_at = now
        audit.record(
            session,
            AuditEvent(actor, "bypass_code.revoked", "bypass_code", code.id, None, "REVOKED", "admin"),
        )


def revoke_all(session: Session, user_id: str, *, actor: str, now: datetime | None = None) -> int:
    """Revoke every live code of the user; how many were revoked."""
    now = now or utcnow()
    user = load_user(session, user_id)
    count = _revoke_live(session, user.id, now)
    audit.record(
        session, AuditEvent(actor, "bypass_codes.revoked", "user", user.id, None, str(count), "admin")
    )
    return count


def redeem(session: Session, user_id: str, code: str, *, now: datetime) -> bool:
    """Use one of the user's live codes: True (one use taken, last use recorded) or False.

    Costs about one argon2id verification whatever happens (see the module docstring).
    """
    submitted = bypass.normalise(code)
    if not (submitted.isascii() and submitted.isdigit()) or not (
        bypass.MIN_DIGITS <= len(submitted) <= bypass.MAX_DIGITS
    ):
        bypass.burn(submitted[: bypass.MAX_DIGITS])
        return False
    tag = bypass.lookup_tag(user_id, submitted)
    candidates = session.execute(
        sa.select(BypassCode.id, BypassCode.code_hash).where(
            _live(user_id, now), BypassCode.lookup_tag == tag
        )
    ).all()
    if not candidates:
        bypass.burn(submitted)
        return False
    matched = [code_id for code_id, code_hash in candidates if bypass.matches(code_hash, submitted)]
    if not matched:
        return False
    taken = session.execute(
        sa.update(BypassCode)
        .where(BypassCode.id == matched[0], _live(user_id, now))
        .values(uses_left=BypassCode.uses_left - 1, last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(taken) == 1


def burn(code: str) -> None:
    """One argon2id verification against a fixed dummy hash: the time of a check for an unknown user."""
    bypass.burn(bypass.normalise(code)[: bypass.MAX_DIGITS])

"""Housekeeping the scheduler runs daily: purge users past retention, drop expired links and codes.

A user deleted in its source (or by SCIM) stays PROVISIONING_DISABLED, devices and secrets kept, for
``sync.retention_days``; after that it is purged: the user row and, by foreign-key cascade, its devices,
memberships, factor state, registrations, invites and bypass codes; its source links; one audit row each.
Links and codes are refused by their own checks the moment they expire; this only removes their rows once
they have been dead for the retention period (so a late click still gets "expired", not "unknown").
Store functions: they take a Session and never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.lifecycle import AuditEvent, DeviceState
from syncd.store import audit
from syncd.store.db import rowcount
from syncd.store.tables import BypassCode, Device, EnrollmentInvite, Registration, SourceLink, User

CHUNK = 500


def purge_deleted_users(session: Session, *, before: datetime, limit: int = CHUNK) -> list[str]:
    """Purge up to ``limit`` users soft-deleted before ``before`` and still not provisioned; their ids."""
    rows = session.execute(
        sa.select(User.id, User.username)
        .where(User.deleted_at.is_not(None), User.deleted_at < before, User.provisioned.is_(False))
        .order_by(User.deleted_at)
        .limit(limit)
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    session.execute(
        sa.delete(SourceLink).where(SourceLink.object_type == "user", SourceLink.object_id.in_(ids))
    )
    session.execute(sa.delete(User).where(User.id.in_(ids)))
    for row in rows:
        audit.record(
            session,
            AuditEvent(
                "system:retention",
                "user.purged",
                "user",
                row.id,
                row.username[:64],
                None,
                f"deleted in its source before {before:%Y-%m-%d %H:%M} UTC; retention period over",
                None,
            ),
        )
    return ids


def purge_dead_links_and_codes(session: Session, *, before: datetime) -> dict[str, int]:
    """Delete enrollment invites, bypass codes and unfinished registrations dead since before ``before``."""
    invites = rowcount(
        session.execute(sa.delete(EnrollmentInvite).where(EnrollmentInvite.expires_at < before))
    )
    codes = rowcount(
        session.execute(
            sa.delete(BypassCode).where(
                sa.or_(
                    BypassCode.expires_at < before,
                    BypassCode.revoked_at < before,
                    sa.and_(BypassCode.uses_left <= 0, BypassCode.last_used_at < before),
                )
            )
        )
    )
    return {"invites": invites, "bypass_codes": codes, "registrations": _expired_challenges(session, before)}


def _expired_challenges(session: Session, before: datetime) -> int:
    """Registrations still in CHALLENGE whose secret expired before ``before``, with their PENDING devices.

    PENDING devices don't count toward a user's status, so removing them changes no status.
    """
    stale: Sequence[Registration] = session.scalars(
        sa.select(Registration).where(Registration.status == "CHALLENGE", Registration.expires_at < before)
    ).all()
    for registration in stale:
        device = session.get(Device, registration.device_id) if registration.device_id else None
        session.delete(registration)
        if device is not None and device.state is DeviceState.PENDING:
            audit.record(
                session,
                AuditEvent(
                    "system:retention",
                    "device.expired",
                    "device",
                    device.id,
                    DeviceState.PENDING.value,
                    None,
                    "enrollment challenge expired unanswered",
                    None,
                ),
            )
            session.delete(device)
    return len(stale)

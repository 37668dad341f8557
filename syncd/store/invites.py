"""Enrollment invites: issue (revoking the previous link), look up by token, consume once, remind.

An invite row holds the SHA-256 of its link token, never the token (see :mod:`syncd.domain.tokens`). Each
issue for a user is a new *generation*; the outbox row of generation *g* has the dedup key
``invite:USER:g``, so no generation is ever mailed twice. Reminders re-use the current link (the relay
derives it again) with keys ``reminder:USER:g:n``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import tokens
from syncd.domain.lifecycle import AuditEvent, UserStatus, can_enroll
from syncd.errors import RateLimitedError
from syncd.store import audit, enrollment, outbox
from syncd.store.db import rowcount
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import EnrollmentInvite, User, new_id, utcnow

log = logging.getLogger("syncd.invites")

INVITE, REMINDER = "invite", "reminder"
RATE_LIMITED_PURPOSES = (INVITE, REMINDER)


@dataclass(frozen=True, slots=True)
class Issued:
    """An invite was queued."""

    user_id: str
    invite_id: str
    generation: int


@dataclass(frozen=True, slots=True)
class Skipped:
    """No invite for this user, and why (reported to the admin, never an error for the others)."""

    user_id: str
    username: str
    reason: str


def issue(
    session: Session,
    user: User,
    settings: EnrollmentSettings,
    *,
    actor: str,
    reason: str,
    run_id: str | None = None,
    now: datetime | None = None,
) -> Issued | Skipped:
    """Invite ``user``: revoke any live link, create the next generation, queue its mail.

    Raises :class:`RateLimitedError` when the user already got ``max_invites_per_day`` mails in 24 hours.
    """
    now = now or utcnow()
    if not user.email:
        return _skip(session, user, "no email address", actor, run_id)
    if user.deleted_at is not None or not can_enroll(user.status):
        return _skip(session, user, f"user is {user.status.value}", actor, run_id)
    sent = outbox.queued_for_user(session, user.id, RATE_LIMITED_PURPOSES, now - timedelta(days=1))
    if sent >= settings.max_invites_per_day:
        raise RateLimitedError(
            f"user {user.username} already got {sent} enrollment mail(s) in the last 24 hours "
            f"(enrollment.max_invites_per_day is {settings.max_invites_per_day})"
        )
    revoke(session, user.id, now=now)
    last = session.scalar(
        sa.select(sa.func.max(EnrollmentInvite.generation)).where(EnrollmentInvite.user_id == user.id)
    )
    generation = int(last or 0) + 1
    invite_id = new_id()
    token = tokens.link_token(settings.keys.link, invite_id)
    session.add(
        EnrollmentInvite(
            id=invite_id,
            user_id=user.id,
            token_hash=tokens.hash_token(token),
            generation=generation,
            expires_at=now + settings.link_ttl,
            created_at=now,
        )
    )
    session.flush()
    outbox.enqueue(
        session,
        user_id=user.id,
        purpose=INVITE,
        dedup_key=f"{INVITE}:{user.id}:{generation}",
        to_address=user.email,
        host=settings.mail_host,
        context={"invite_id": invite_id},
        now=now,
    )
    audit.record(
        session,
        AuditEvent(actor, "invite.queued", "user", user.id, None, str(generation), reason, run_id),
    )
    return Issued(user.id, invite_id, generation)


def _skip(session: Session, user: User, why: str, actor: str, run_id: str | None) -> Skipped:
    log.warning("user not invited", extra={"user": user.id, "username": user.username, "reason": why})
    audit.record(session, AuditEvent(actor, "invite.skipped", "user", user.id, None, None, why, run_id))
    return Skipped(user.id, user.username, why)


def revoke(session: Session, user_id: str, *, now: datetime | None = None) -> int:
    """Void every live link of the user (a resend, an enrolled user, an admin)."""
    result = session.execute(
        sa.update(EnrollmentInvite)
        .where(
            EnrollmentInvite.user_id == user_id,
            EnrollmentInvite.revoked_at.is_(None),
            EnrollmentInvite.used_at.is_(None),
        )
        .values(revoked_at=now or utcnow())
    )
    return rowcount(result)


def live_by_token(session: Session, token: str, *, now: datetime | None = None) -> EnrollmentInvite | None:
    """The unused, unrevoked, unexpired invite of a link token whose user may enroll; else None.

    Unknown, used, revoked and expired tokens all give None, so the caller shows one page for all.
    """
    if not tokens.looks_like_token(token):
        return None
    invite = session.scalar(
        sa.select(EnrollmentInvite).where(EnrollmentInvite.token_hash == tokens.hash_token(token))
    )
    if invite is None or not is_live(invite, now or utcnow()):
        return None
    user = session.get(User, invite.user_id)
    if user is None or user.deleted_at is not None or not can_enroll(user.status):
        return None
    return invite


def is_live(invite: EnrollmentInvite, now: datetime) -> bool:
    """Unused, unrevoked and unexpired at ``now``."""
    return invite.used_at is None and invite.revoked_at is None and invite.expires_at > now


def consume(session: Session, invite_id: str, *, now: datetime | None = None) -> bool:
    """Mark the invite used, atomically: True for exactly one caller, however many race."""
    now = now or utcnow()
    result = session.execute(
        sa.update(EnrollmentInvite)
        .where(
            EnrollmentInvite.id == invite_id,
            EnrollmentInvite.used_at.is_(None),
            EnrollmentInvite.revoked_at.is_(None),
            EnrollmentInvite.expires_at > now,
        )
        .values(used_at=now)
    )
    return bool(rowcount(result))


def session_valid(session: Session, invite_id: str, user_id: str) -> bool:
    """An enrollment session stays valid while its invite is the consumed, unrevoked one of that user."""
    invite = session.get(EnrollmentInvite, invite_id)
    return (
        invite is not None
        and invite.user_id == user_id
        and invite.used_at is not None
        and invite.revoked_at is None
    )


def queue_reminders(
    session: Session, settings: EnrollmentSettings, *, now: datetime | None = None, limit: int = 500
) -> int:
    """Queue the reminders now due for live invites of users still UNENROLLED; returns how many."""
    now = now or utcnow()
    queued = 0
    for index, delay in enumerate(settings.reminders):
        due = session.execute(
            sa.select(EnrollmentInvite, User)
            .join(User, User.id == EnrollmentInvite.user_id)
            .where(
                EnrollmentInvite.reminders_sent == index,
                EnrollmentInvite.created_at <= now - delay,
                EnrollmentInvite.used_at.is_(None),
                EnrollmentInvite.revoked_at.is_(None),
                EnrollmentInvite.expires_at > now,
                User.status == UserStatus.UNENROLLED,
                User.deleted_at.is_(None),
                User.email.is_not(None),
            )
            .order_by(EnrollmentInvite.created_at)
            .limit(limit)
        ).all()
        for invite, user in due:
            sent = outbox.queued_for_user(session, user.id, RATE_LIMITED_PURPOSES, now - timedelta(days=1))
            if sent >= settings.max_invites_per_day:
                continue  # over the limit today; due again on a later pass
            invite.reminders_sent = index + 1
            queued += outbox.enqueue(
                session,
                user_id=user.id,
                purpose=REMINDER,
                dedup_key=f"{REMINDER}:{user.id}:{invite.generation}:{index + 1}",
                to_address=str(user.email),
                host=settings.mail_host,
                context={"invite_id": invite.id, "reminder": index + 1},
                now=now,
            )
    return queued


def wanted(session: Session, source: str) -> bool:
    """Whether new users of ``source`` are invited (:func:`after_user_created` has work to do)."""
    settings = enrollment.of(session)
    return settings is not None and source in settings.invite_sources


def after_user_created(
    session: Session, user: User, *, source: str, actor: str, run_id: str | None
) -> Issued | Skipped | None:
    """The sync's hook: invite a new user of a source with ``invite_new_users`` (same unit of work)."""
    settings = enrollment.of(session)
    if settings is None or source not in settings.invite_sources or not user.provisioned:
        return None
    try:
        return issue(session, user, settings, actor=actor, reason="new user", run_id=run_id)
    except RateLimitedError:
        return Skipped(user.id, user.username, "rate limited")


def link_for(settings: EnrollmentSettings, invite_id: str) -> str:
    """The URL mailed for an invite (derived again from the link key; never stored)."""
    return settings.link(tokens.link_token(settings.keys.link, invite_id))


def live_invite_of(
    session: Session, invite_id: str, *, now: datetime | None = None
) -> EnrollmentInvite | None:
    """The invite if its link still works (the relay skips mail for dead links)."""
    invite = session.get(EnrollmentInvite, invite_id)
    return invite if invite is not None and is_live(invite, now or utcnow()) else None

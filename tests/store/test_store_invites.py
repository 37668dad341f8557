"""Invites (syncd.store.invites) on both databases: hashed tokens, generations, resend, single use, expiry,
users skipped, the per-user rate limit, reminders (reliability.md O8, E2, E6, E8)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from harness.enrollment import add_user, days, invite, make_settings

from syncd.config.models import Database as DatabaseConfig
from syncd.domain import tokens
from syncd.domain.lifecycle import DeviceState
from syncd.errors import RateLimitedError
from syncd.store import invites, outbox, schema
from syncd.store.db import Database
from syncd.store.tables import EnrollmentInvite, OutboxMessage, User, utcnow


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    """A migrated database of either kind (this module's own, so it needs no other conftest)."""
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


def outbox_rows(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.created_at)))


def test_invite_stores_only_the_hash_and_queues_one_mail(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "alice")
    token = invite(db, user_id, settings)
    assert len(token) == 43 and tokens.looks_like_token(token)  # 256 bits, URL-safe
    with db.read() as session:
        row = session.scalar(sa.select(EnrollmentInvite))
        assert row is not None and row.token_hash == tokens.hash_token(token) and row.generation == 1
        assert token not in repr(session.execute(sa.select(EnrollmentInvite.__table__)).all())
        assert invites.live_by_token(session, token) is not None
    [mail] = outbox_rows(db)
    assert (mail.purpose, mail.dedup_key, mail.status) == ("invite", f"invite:{user_id}:1", "PENDING")
    assert mail.message_id == f"<invite.{user_id}.1@127.0.0.1>"
    assert mail.context == {"invite_id": row.id} and mail.body_text is None  # nothing that holds the link


def test_resend_voids_the_previous_link(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "bob")
    first = invite(db, user_id, settings)
    second = invite(db, user_id, settings)
    assert first != second
    with db.read() as session:
        assert invites.live_by_token(session, first) is None
        live = invites.live_by_token(session, second)
        assert live is not None and live.generation == 2
    assert [m.dedup_key for m in outbox_rows(db)] == [f"invite:{user_id}:1", f"invite:{user_id}:2"]


def test_token_is_single_use_and_expires(db: Database) -> None:
    settings = make_settings(link_ttl=timedelta(days=7))
    user_id = add_user(db, "carol")
    token = invite(db, user_id, settings)
    with db.read() as session:
        live = invites.live_by_token(session, token)
        assert live is not None
        assert invites.live_by_token(session, token, now=live.expires_at + timedelta(seconds=1)) is None
        invite_id = live.id
    with db.write() as session:
        assert invites.consume(session, invite_id) is True
    with db.write() as session:
        assert invites.consume(session, invite_id) is False
        assert invites.live_by_token(session, token) is None
        assert invites.session_valid(session, invite_id, user_id)
        assert not invites.session_valid(session, invite_id, "someone-else")


@pytest.mark.parametrize("bad", ["", "x" * 43, "a" * 42, "../../etc/passwd", "%00" * 15])
def test_unknown_and_malformed_tokens_find_nothing(db: Database, bad: str) -> None:
    with db.read() as session:
        assert invites.live_by_token(session, bad) is None


def test_users_without_email_or_who_cant_enroll_are_skipped_and_audited(db: Database) -> None:
    settings = make_settings()
    no_mail = add_user(db, "nomail", email=None)
    disabled = add_user(db, "gone", provisioned=False)
    devices_off = add_user(db, "off", devices=(DeviceState.DISABLED,))
    results = {}
    for user_id in (no_mail, disabled, devices_off):
        with db.write() as session:
            user = session.get(User, user_id)
            assert user is not None
            results[user.username] = invites.issue(session, user, settings, actor="test", reason="test")
    assert {name: getattr(r, "reason", None) for name, r in results.items()} == {
        "nomail": "no email address",
        "gone": "user is PROVISIONING_DISABLED",
        "off": "user is DEVICES_DISABLED",
    }
    assert outbox_rows(db) == []


def test_per_user_rate_limit(db: Database) -> None:
    settings = make_settings(max_invites_per_day=5)
    user_id = add_user(db, "dave")
    for _ in range(5):
        invite(db, user_id, settings)
    with pytest.raises(RateLimitedError, match="already got 5 enrollment mail"):
        invite(db, user_id, settings)
    assert len(outbox_rows(db)) == 5
    later = utcnow() + days(1) + timedelta(seconds=1)
    invite(db, user_id, settings, now=later)  # a day later it works again
    assert len(outbox_rows(db)) == 6


def test_reminders_at_their_delays_once_each_for_unenrolled_users_only(db: Database) -> None:
    settings = make_settings(reminders=(days(2), days(5)), link_ttl=days(7))
    start = utcnow()
    waiting = add_user(db, "erin")
    enrolled = add_user(db, "frank")
    invite(db, waiting, settings, now=start)
    invite(db, enrolled, settings, now=start)
    with db.write() as session:
        user = session.get(User, enrolled)
        assert user is not None
        user.status = user.status.ACTIVE  # enrolled meanwhile
    queued = {}
    for day in (0, 1, 2, 2, 3, 5, 5, 6, 8):
        with db.write() as session:
            queued[day] = queued.get(day, 0) + invites.queue_reminders(
                session, settings, now=start + days(day) + timedelta(minutes=1)
            )
    assert queued == {0: 0, 1: 0, 2: 1, 3: 0, 5: 1, 6: 0, 8: 0}  # day 8: the link expired on day 7
    reminders = [m for m in outbox_rows(db) if m.purpose == "reminder"]
    assert [m.dedup_key for m in reminders] == [f"reminder:{waiting}:1:1", f"reminder:{waiting}:1:2"]
    assert all(m.context is not None and "invite_id" in m.context for m in reminders)


def test_outbox_dedup_key_is_never_queued_twice(db: Database) -> None:
    user_id = add_user(db, "gina")
    with db.write() as session:
        first = outbox.enqueue(
            session,
            user_id=user_id,
            purpose="invite",
            dedup_key="invite:x:1",
            to_address="g@example.com",
            host="h",
        )
        again = outbox.enqueue(
            session,
            user_id=user_id,
            purpose="invite",
            dedup_key="invite:x:1",
            to_address="g@example.com",
            host="h",
        )
    assert (first, again) == (True, False)
    assert len(outbox_rows(db)) == 1

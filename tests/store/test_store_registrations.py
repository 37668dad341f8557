"""TOTP registration and code checks (syncd.store.registrations) on both databases: lifecycle refusals,
seeds sealed at rest, one success out of 50 parallel submissions, replay, the failure lock
(reliability.md O1, O4–O6, O10)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from harness.enrollment import add_user, make_settings

from syncd.config.models import Database as DatabaseConfig
from syncd.domain import otp
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.errors import DomainError
from syncd.store import factors, registrations, schema
from syncd.store.db import Database
from syncd.store.registrations import Outcome
from syncd.store.tables import Device, OutboxMessage, Registration, User, utcnow


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    """A migrated database of either kind (this module's own, so it needs no other conftest)."""
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


def code_for(secret: bytes, offset_steps: int = 0) -> str:
    return pyotp.TOTP(otp.b32encode(secret)).at(int(time.time()) + 30 * offset_steps)


def user_status(db: Database, user_id: str) -> UserStatus:
    with db.read() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.status


def totp_devices(db: Database, user_id: str) -> list[Device]:
    with db.read() as session:
        return list(
            session.scalars(
                sa.select(Device).where(Device.user_id == user_id, Device.type == DeviceType.TOTP)
            )
        )


def start(db: Database, user_id: str, settings: object) -> registrations.Challenge:
    with db.write() as session:
        return registrations.generate(session, user_id, settings)  # type: ignore[arg-type]


def test_generate_then_verify_makes_the_device_and_user_active(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "alice")
    challenge = start(db, user_id, settings)
    assert len(challenge.secret) == 20
    assert challenge.uri.startswith("otpauth://totp/Test%20Corp:alice@example.com?secret=")
    with db.read() as session:
        assert registrations.status(session, user_id) == "CHALLENGE"
    assert user_status(db, user_id) is UserStatus.UNENROLLED  # PENDING devices don't count (O10)
    [pending] = totp_devices(db, user_id)
    assert pending.state is DeviceState.PENDING and pending.secret_enc is not None
    assert (
        challenge.secret not in pending.secret_enc
        and otp.b32encode(challenge.secret).encode() not in pending.secret_enc
    )

    with db.write() as session:
        assert (
            registrations.verify(
                session, user_id, "000000" if code_for(challenge.secret) != "000000" else "111111", settings
            )
            is Outcome.WRONG
        )
    with db.write() as session:
        assert (
            registrations.verify(session, user_id, code_for(challenge.secret), settings) is Outcome.ACCEPTED
        )
    [device] = totp_devices(db, user_id)
    assert device.state is DeviceState.ACTIVE and device.last_step is not None
    assert user_status(db, user_id) is UserStatus.ACTIVE
    with db.read() as session:
        assert registrations.status(session, user_id) == "REGISTERED"
        assert registrations.pending_secret(session, user_id, settings) is None  # never shown again
        assert factors.failures(session, user_id) == 0  # reset by the success
        mails = session.scalars(
            sa.select(OutboxMessage.purpose).where(OutboxMessage.user_id == user_id)
        ).all()
    assert mails == ["device_added"]


def test_a_code_is_accepted_once_and_older_steps_are_refused(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "bob")
    challenge = start(db, user_id, settings)
    with db.write() as session:
        assert (
            registrations.verify(session, user_id, code_for(challenge.secret), settings) is Outcome.ACCEPTED
        )
    with db.write() as session:
        assert (
            registrations.check_code(session, user_id, code_for(challenge.secret), settings) is Outcome.REPLAY
        )
        assert (
            registrations.check_code(session, user_id, code_for(challenge.secret, -1), settings)
            is Outcome.REPLAY
        )
    with db.read() as session:
        assert factors.failures(session, user_id) == 0  # a replayed good code is not a guess


def test_fifty_parallel_submissions_of_one_code_give_exactly_one_success(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "carol")
    challenge = start(db, user_id, settings)
    code = code_for(challenge.secret)
    barrier = threading.Barrier(50)

    def submit(_: int) -> Outcome:
        barrier.wait()
        with db.write() as session:
            return registrations.verify(session, user_id, code, settings)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(submit, range(50)))
    assert outcomes.count(Outcome.ACCEPTED) == 1, outcomes
    assert set(outcomes) <= {Outcome.ACCEPTED, Outcome.REPLAY, Outcome.NOTHING}
    [device] = totp_devices(db, user_id)
    assert device.state is DeviceState.ACTIVE

    def again(_: int) -> Outcome:
        barrier.wait()
        with db.write() as session:
            return registrations.check_code(session, user_id, code_for(challenge.secret, 1), settings)

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(again, range(50)))
    assert outcomes.count(Outcome.ACCEPTED) == 1, outcomes
    with db.read() as session:
        audit = session.execute(
            sa.text("SELECT count(*) FROM outbox WHERE user_id = :u"), {"u": user_id}
        ).scalar()
    assert audit == 1  # one "authenticator added" mail


def test_lock_after_max_failures_refuses_even_the_right_code(db: Database) -> None:
    settings = make_settings(max_failures=10)
    user_id = add_user(db, "dave")
    challenge = start(db, user_id, settings)
    right = code_for(challenge.secret)
    wrong = "123456" if right != "123456" else "654321"
    results = []
    for _ in range(10):
        with db.write() as session:
            results.append(registrations.verify(session, user_id, wrong, settings))
    assert results == [Outcome.WRONG] * 9 + [Outcome.LOCKED]
    with db.write() as session:
        assert registrations.verify(session, user_id, right, settings) is Outcome.LOCKED
    with db.write() as session:
        assert factors.unlock(session, user_id, actor="admin:test")
    with db.write() as session:
        assert registrations.verify(session, user_id, right, settings) is Outcome.ACCEPTED


def test_parallel_wrong_codes_are_all_counted(db: Database) -> None:
    settings = make_settings(max_failures=1000)
    user_id = add_user(db, "erin")
    challenge = start(db, user_id, settings)
    wrong = "123456" if code_for(challenge.secret) != "123456" else "654321"

    def submit(_: int) -> Outcome:
        with db.write() as session:
            return registrations.verify(session, user_id, wrong, settings)

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(submit, range(100)))
    with db.read() as session:
        assert factors.failures(session, user_id) == 100


def test_lifecycle_refusals(db: Database) -> None:
    settings = make_settings()
    off = add_user(db, "off", devices=(DeviceState.DISABLED,))
    gone = add_user(db, "gone", provisioned=False)
    with pytest.raises(DomainError, match="DEVICES_DISABLED"):
        start(db, off, settings)
    with pytest.raises(DomainError, match="PROVISIONING_DISABLED"):
        start(db, gone, settings)
    registered = add_user(db, "reg")
    challenge = start(db, registered, settings)
    with db.write() as session:
        assert (
            registrations.verify(session, registered, code_for(challenge.secret), settings)
            is Outcome.ACCEPTED
        )
    with pytest.raises(DomainError, match="already registered"):
        start(db, registered, settings)


def test_challenge_expires_and_restart_replaces_the_pending_device(db: Database) -> None:
    settings = make_settings(challenge_ttl=timedelta(minutes=10))
    user_id = add_user(db, "frank")
    first = start(db, user_id, settings)
    later = utcnow() + timedelta(minutes=11)
    with db.write() as session:
        assert (
            registrations.verify(session, user_id, code_for(first.secret), settings, now=later)
            is Outcome.EXPIRED
        )
    second = start(db, user_id, settings)
    assert second.secret != first.secret
    [device] = totp_devices(db, user_id)
    assert device.id == second.device_id
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Registration)) == 1


def test_self_unregister_disables_and_admin_delete_removes(db: Database) -> None:
    settings = make_settings()
    user_id = add_user(db, "gina")
    challenge = start(db, user_id, settings)
    with db.write() as session:
        assert (
            registrations.verify(session, user_id, code_for(challenge.secret), settings) is Outcome.ACCEPTED
        )
    with db.write() as session:
        assert registrations.unregister_self(session, user_id, "000000", settings) in (
            Outcome.WRONG,
            Outcome.REPLAY,
        )
    with db.write() as session:
        assert (
            registrations.unregister_self(session, user_id, code_for(challenge.secret, 1), settings)
            is Outcome.ACCEPTED
        )
    assert user_status(db, user_id) is UserStatus.DEVICES_DISABLED
    with db.read() as session:
        assert registrations.status(session, user_id) == "UNREGISTERED"
    with db.write() as session:
        assert registrations.admin_delete(session, user_id, settings, actor="admin:test") == 1
    assert user_status(db, user_id) is UserStatus.UNENROLLED and totp_devices(db, user_id) == []
    with db.read() as session:
        purposes = session.scalars(
            sa.select(OutboxMessage.purpose).where(OutboxMessage.user_id == user_id)
        ).all()
    assert sorted(purposes) == ["device_added", "device_removed"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # PostgreSQL: secret_enc, above
def test_seeds_are_not_in_the_sqlite_file(db: Database) -> None:
    assert db.is_sqlite
    settings = make_settings()
    secrets = []
    for name in ("s1", "s2", "s3"):
        user_id = add_user(db, name)
        challenge = start(db, user_id, settings)
        secrets.append(challenge.secret)
        with db.write() as session:
            registrations.verify(session, user_id, code_for(challenge.secret), settings)
    path = db.url.database
    assert path is not None
    files = [Path(path), Path(path + "-wal")]
    blob = b"".join(f.read_bytes() for f in files if f.exists())
    assert blob
    for secret in secrets:
        assert secret not in blob
        assert otp.b32encode(secret).encode() not in blob

"""The verification unit of work (syncd.store.verification) on both databases: its statement budget, one
success out of parallel submissions of one code, failure counting and the lock (audited once) in one
upsert each, and policies assigned through nested groups (docs/adr/0054, "Speed")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from harness.enrollment import add_user, make_settings
from sqlalchemy import event

from syncd.config.models import Database as DatabaseConfig
from syncd.domain import otp
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store import factors, schema, verification
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import (
    AuditRecord,
    Device,
    Group,
    GroupMember,
    GroupNesting,
    Policy,
    PolicyAssignment,
    User,
    UserFactor,
    new_id,
    utcnow,
)
from syncd.store.verification import Attempt, Detail, Factor, Result


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


def totp_user(db: Database, settings: EnrollmentSettings, name: str) -> tuple[str, bytes]:
    user_id = add_user(db, name)
    secret, device_id = otp.new_secret(), new_id()
    with db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        user.status = UserStatus.ACTIVE
        sealed = settings.keys.seal(secret, f"device:{device_id}")
        session.add(
            Device(
                id=device_id,
                user_id=user_id,
                type=DeviceType.TOTP,
                state=DeviceState.ACTIVE,
                secret_enc=sealed,
            )
        )
    return user_id, secret


def attempt(user: str, code: str, application: str = "vpn") -> Attempt:
    return Attempt(user=user, application=application, factor=Factor.TOTP, code=code)


def check(db: Database, settings: EnrollmentSettings, at: Attempt) -> verification.Verdict:
    with db.write() as session:
        return verification.verify(session, at, settings)


def row(db: Database, user_id: str) -> UserFactor | None:
    with db.read() as session:
        return session.get(UserFactor, (user_id, "TOTP"))


def test_a_good_code_costs_three_statements_and_a_bad_one_two(db: Database) -> None:
    settings = make_settings()
    user_id, secret = totp_user(db, settings, "alice")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE")):
            statements.append(statement.split(maxsplit=1)[0])

    event.listen(db.write_engine, "before_cursor_execute", count)
    try:
        code = otp.totp(secret, utcnow().timestamp(), settings.totp)
        assert check(db, settings, attempt("ALICE", code)).result is Result.ALLOW
        assert statements == ["SELECT", "UPDATE", "INSERT"]  # read, replay guard, last authentication
        statements.clear()
        assert check(db, settings, attempt(user_id, code)).detail is Detail.REPLAY
        assert statements == ["SELECT", "INSERT"]
        statements.clear()
        assert check(db, settings, attempt("nobody", code)).detail is Detail.UNKNOWN_USER
        assert statements == ["SELECT"]
    finally:
        event.remove(db.write_engine, "before_cursor_execute", count)
    stored = row(db, user_id)
    assert stored is not None and stored.last_auth_status == "FAILURE" and stored.failures == 0


def test_parallel_submissions_of_one_code_give_exactly_one_allow(db: Database) -> None:
    settings = make_settings()
    user_id, secret = totp_user(db, settings, "bob")
    code = otp.totp(secret, utcnow().timestamp(), settings.totp)
    barrier = threading.Barrier(20)

    def submit(_: int) -> Detail:
        barrier.wait()
        return check(db, settings, attempt(user_id, code)).detail

    with ThreadPoolExecutor(20) as pool:
        details = list(pool.map(submit, range(20)))
    assert details.count(Detail.OK) == 1, details
    assert set(details) == {Detail.OK, Detail.REPLAY}
    stored = row(db, user_id)
    assert stored is not None and stored.failures == 0


def test_wrong_codes_count_lock_once_audited_and_a_good_code_resets(db: Database) -> None:
    settings = make_settings(max_failures=3)
    user_id, secret = totp_user(db, settings, "carol")
    now = utcnow().timestamp()
    near = {otp.totp(secret, now + d * settings.totp.period, settings.totp) for d in range(-2, 3)}
    wrong = next(c for c in (f"{n:06d}" for n in range(100)) if c not in near)
    assert check(db, settings, attempt(user_id, wrong)).detail is Detail.WRONG_CODE
    first = row(db, user_id)
    assert first is not None and (first.failures, first.last_auth_status) == (1, "FAILURE")
    with db.write() as session:  # a good code resets the counter; a refusal keeps it
        factors.record_last(session, user_id, "TOTP", "DENIED", utcnow())
    kept = row(db, user_id)
    assert kept is not None and (kept.failures, kept.last_auth_status) == (1, "DENIED")
    details = [check(db, settings, attempt(user_id, wrong)).detail for _ in range(3)]
    assert details == [Detail.WRONG_CODE, Detail.LOCKED_NOW, Detail.FACTOR_LOCKED]
    locked = row(db, user_id)
    assert locked is not None and locked.locked_at is not None and locked.last_auth_status == "LOCKED"
    assert locked.failures == 3  # a locked factor does not count further
    with db.read() as session:
        audits = session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "factor.locked", AuditRecord.target_id == user_id)
        )
    assert audits == 1
    code = otp.totp(secret, utcnow().timestamp(), settings.totp)
    assert check(db, settings, attempt(user_id, code)).detail is Detail.FACTOR_LOCKED  # even a good code
    with db.write() as session:
        assert factors.unlock(session, user_id, actor="admin:test")
    assert check(db, settings, attempt(user_id, code)).result is Result.ALLOW
    reset = row(db, user_id)
    assert reset is not None and (reset.failures, reset.last_auth_status) == (0, "SUCCESS")


def test_a_policy_assigned_to_an_enclosing_group_applies_after_a_good_code(db: Database) -> None:
    settings = make_settings()
    user_id, secret = totp_user(db, settings, "dave")
    with db.write() as session:
        inner, outer = Group(name="inner", name_key="inner"), Group(name="outer", name_key="outer")
        session.add_all([inner, outer])
        session.flush()
        session.add_all(
            [
                GroupMember(group_id=inner.id, user_id=user_id),
                GroupNesting(parent_id=outer.id, child_id=inner.id),
                GroupNesting(parent_id=inner.id, child_id=outer.id),  # a cycle ends too
            ]
        )
        policy = Policy(name="no crm", priority=1, rules=[{"applications": ["crm"], "action": "DENY"}])
        session.add(policy)
        session.flush()
        session.add(PolicyAssignment(policy_id=policy.id, group_id=outer.id))
        policy_id = policy.id
    now = utcnow().timestamp()
    period = settings.totp.period
    verdict = check(db, settings, attempt("dave", otp.totp(secret, now, settings.totp), "crm"))
    assert (verdict.detail, verdict.policy_id) == (Detail.POLICY_DENIED, policy_id)
    later = otp.totp(secret, now + period, settings.totp)
    assert check(db, settings, attempt("dave", later)).result is Result.ALLOW

"""Code verification for applications (``POST /api/v1/verify``): the unit of work that decides.

:func:`verify` runs in the caller's write unit of work and applies, in order: the user (id or username,
case-insensitive; deleted users are unknown), the user's status (:func:`lifecycle.can_authenticate`;
bypass codes: :func:`lifecycle.can_use_bypass_code`, never PROVISIONING_DISABLED), the org factor
(:func:`org_factors.is_active`), the per-user factor (enabled, not locked), the policy
(:func:`policies.decide`), then the code itself (TOTP: :func:`registrations.check_code`, with its replay
guard and failure counting; hardware tokens: :func:`hardware_tokens.check`; bypass codes:
:func:`bypass_codes.redeem`).

What the caller learns is deliberately coarse (docs/adr/0054-verification.md): ``ok``,
``invalid_credentials`` for every refusal that is about the user or the code (unknown user, wrong or
replayed code, disabled user, factor off or locked, no authenticator), and ``policy_denied`` only when the
code was right — a caller without a good code can't learn whether a policy would have let it in. The finer
:attr:`Verdict.detail` is for metrics and logs only. Every refusal burns the CPU a real check burns (a
TOTP computation; an argon2 verification for bypass codes), so the time taken does not tell the cases
apart either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from syncd.domain import otp
from syncd.domain.lifecycle import UserStatus, can_authenticate, can_use_bypass_code
from syncd.store import bypass_codes, factors, hardware_tokens, org_factors, policies, registrations, users
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import User, UserFactor, utcnow


class Factor(enum.StrEnum):
    TOTP = "TOTP"
    HARDWARE_TOKEN = "HARDWARE_TOKEN"  # noqa: S105 - a factor type, not a secret
    BYPASS_CODE = "BYPASS_CODE"


class Result(enum.StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class Reason(enum.StrEnum):
    """What the response says (the whole public vocabulary)."""

    OK = "ok"
    INVALID_CREDENTIALS = "invalid_credentials"
    POLICY_DENIED = "policy_denied"


class Detail(enum.StrEnum):
    """Why, for metrics and logs only (never in a response)."""

    OK = "ok"
    UNKNOWN_USER = "unknown_user"
    USER_STATUS = "user_status"
    FACTOR_INACTIVE = "factor_inactive"  # turned off org-wide
    FACTOR_DISABLED = "factor_disabled"  # turned off for this user
    FACTOR_LOCKED = "factor_locked"
    NO_AUTHENTICATOR = "no_authenticator"
    WRONG_CODE = "wrong_code"
    LOCKED_NOW = "locked_now"  # this wrong code reached the limit
    REPLAY = "replay"
    POLICY_DENIED = "policy_denied"


class LastAuth(enum.StrEnum):
    """``user_factors.last_auth_status``."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    LOCKED = "LOCKED"
    DENIED = "DENIED"


@dataclass(frozen=True, slots=True)
class Attempt:
    user: str  # id or username
    application: str
    factor: Factor
    code: str
    client_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    result: Result
    reason: Reason
    detail: Detail
    user_id: str | None = None
    policy_id: str | None = None


_DUMMY_SECRET = bytes(otp.SECRET_BYTES)
_DUMMY_AAD = "device:verification-dummy"


def find_user(session: Session, ref: str) -> User | None:
    """A live user by id, or by username (case-insensitive). Deleted users are unknown.

    One statement: an id match wins over a username match (an id never changes hands)."""
    return session.scalar(
        sa.select(User)
        .where(
            sa.or_(User.id == ref, User.username_key == users.username_key(ref)),
            User.deleted_at.is_(None),
        )
        .order_by(sa.case((User.id == ref, 0), else_=1))
        .limit(1)
    )


def burn(factor: Factor, code: str, settings: EnrollmentSettings, now: datetime) -> None:
    """The CPU a real check of ``factor`` costs, spent on nothing (refusals take as long as checks)."""
    if factor is Factor.BYPASS_CODE:
        bypass_codes.burn(code)
        return
    sealed = settings.keys.seal(_DUMMY_SECRET, _DUMMY_AAD)
    secret = settings.keys.unseal(sealed, _DUMMY_AAD)
    otp.match_step(secret, code, now.timestamp(), settings.totp, last_step=None)


def record_last(session: Session, user_id: str, factor: Factor, status: LastAuth, now: datetime) -> None:
    """Write ``last_auth_status`` / ``last_auth_at`` of the user's factor (the row is made if missing)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    session.execute(
        insert(UserFactor)
        .values(
            user_id=user_id,
            factor_type=factor.value,
            enabled=True,
            failures=0,
            last_auth_status=status.value,
            last_auth_at=now,
        )
        .on_conflict_do_update(
            index_elements=["user_id", "factor_type"],
            set_={"last_auth_status": status.value, "last_auth_at": now},
        )
    )


def _deny(detail: Detail, user_id: str | None = None, policy_id: str | None = None) -> Verdict:
    reason = Reason.POLICY_DENIED if detail is Detail.POLICY_DENIED else Reason.INVALID_CREDENTIALS
    return Verdict(Result.DENY, reason, detail, user_id, policy_id)


def _allowed(user: User, factor: Factor) -> bool:
    status = UserStatus(user.status)
    return can_use_bypass_code(status) if factor is Factor.BYPASS_CODE else can_authenticate(status)


def _precheck(session: Session, user: User, attempt: Attempt) -> Detail | None:
    """Why this user may not use this factor at all (before any code is looked at), or None."""
    if not _allowed(user, attempt.factor):
        return Detail.USER_STATUS
    if not org_factors.is_active(session, attempt.factor.value):
        return Detail.FACTOR_INACTIVE
    state = session.execute(
        sa.select(UserFactor.enabled, UserFactor.locked_at).where(
            UserFactor.user_id == user.id, UserFactor.factor_type == attempt.factor.value
        )
    ).first()  # factors.is_disabled and factors.is_locked in one read
    if state is not None and not state.enabled:
        return Detail.FACTOR_DISABLED
    if state is not None and state.locked_at is not None:
        return Detail.FACTOR_LOCKED
    return None


def _check_code(
    session: Session, user_id: str, attempt: Attempt, settings: EnrollmentSettings, now: datetime
) -> Detail:
    """Check the code with the factor's own store function; OK, or why not."""
    factor = attempt.factor
    if factor is Factor.TOTP:
        outcome = registrations.check_code(session, user_id, attempt.code, settings, now=now)
        return {
            registrations.Outcome.ACCEPTED: Detail.OK,
            registrations.Outcome.WRONG: Detail.WRONG_CODE,
            registrations.Outcome.REPLAY: Detail.REPLAY,
            registrations.Outcome.LOCKED: Detail.LOCKED_NOW,
        }.get(outcome, Detail.NO_AUTHENTICATOR)
    if factor is Factor.HARDWARE_TOKEN:
        matched = hardware_tokens.check(session, user_id, attempt.code, keys=settings.keys, now=now)
    else:
        matched = bypass_codes.redeem(session, user_id, attempt.code, now=now)
    if matched is None:
        return Detail.NO_AUTHENTICATOR
    if matched:
        factors.record_success(session, user_id, factor=factor.value, now=now)
        return Detail.OK
    locked = factors.record_failure(
        session, user_id, max_failures=settings.max_failures, factor=factor.value, now=now
    )
    return Detail.LOCKED_NOW if locked else Detail.WRONG_CODE


def verify(
    session: Session, attempt: Attempt, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Verdict:
    """Decide one verification attempt in the caller's write unit of work (see the module docstring)."""
    now = now or utcnow()
    user = find_user(session, attempt.user)
    if user is None:
        burn(attempt.factor, attempt.code, settings, now)
        return _deny(Detail.UNKNOWN_USER)
    refused = _precheck(session, user, attempt)
    if refused is not None:
        burn(attempt.factor, attempt.code, settings, now)
        last = LastAuth.LOCKED if refused is Detail.FACTOR_LOCKED else LastAuth.DENIED
        record_last(session, user.id, attempt.factor, last, now)
        return _deny(refused, user.id)
    decision = policies.decide(session, user.id, attempt.application, attempt.factor.value, attempt.client_ip)
    checked = _check_code(session, user.id, attempt, settings, now)
    if checked is Detail.NO_AUTHENTICATOR:
        burn(attempt.factor, attempt.code, settings, now)
    if checked is not Detail.OK:
        last = LastAuth.LOCKED if checked is Detail.LOCKED_NOW else LastAuth.FAILURE
        record_last(session, user.id, attempt.factor, last, now)
        return _deny(checked, user.id)
    if decision.action == "DENY":
        # Only now, with a good code, may the caller learn that a policy refused (no oracle without one).
        record_last(session, user.id, attempt.factor, LastAuth.DENIED, now)
        return _deny(Detail.POLICY_DENIED, user.id, decision.policy_id)
    # factors.record_success already wrote SUCCESS and the time with the counter reset
    return Verdict(Result.ALLOW, Reason.OK, Detail.OK, user.id, decision.policy_id)

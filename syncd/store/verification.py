"""Code verification for applications (``POST /api/v1/verify``): the unit of work that decides.

:func:`verify` runs in the caller's write unit of work and applies, in order: the user (id or username,
case-insensitive; deleted users are unknown), the user's status (:func:`lifecycle.can_authenticate`;
bypass codes: :func:`lifecycle.can_use_bypass_code`, never PROVISIONING_DISABLED), the org factor
(:func:`org_factors.status_is_active`), the per-user factor (enabled, not locked), the policy
(:func:`policies.decide_for`), then the code itself (TOTP: the seed unsealed and the window matched here,
the step accepted by the replay guard's compare-and-set; hardware tokens: :func:`token_codes.check`;
bypass codes: :func:`bypass_codes.redeem`). Wrong codes count with :func:`factors.count_failure`.

It is the hot path of the API, so it is written for speed without giving anything up (docs/adr/0054,
"Speed"): everything read before the code is one statement (:func:`read_facts`: user, user factor, org
factor status, device, "could any policy apply"), statements are Core and built once, and every write is
one statement (the compare-and-set; one upsert of the last authentication, which also resets the counter;
one upsert that counts a failure, locks and records it). Nothing is cached across requests: a policy, an
org factor switched off or a lock take effect on the next request, on every replica.

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
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain import otp
from syncd.domain import policy as rules
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus, can_authenticate, can_use_bypass_code
from syncd.store import bypass_codes, factors, org_factors, policies, token_codes, users
from syncd.store.db import rowcount
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import Device, OrgFactor, PolicyAssignment, User, UserFactor, utcnow


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

# ---- the statements (Core, built once; docs/adr/0054 "Speed") -------------------------------------------
_USERS = cast("sa.Table", User.__table__)
_USER_FACTORS = cast("sa.Table", UserFactor.__table__)
_DEVICES = cast("sa.Table", Device.__table__)
_ORG_FACTORS = cast("sa.Table", OrgFactor.__table__)
_ASSIGNMENTS = cast("sa.Table", PolicyAssignment.__table__)


def _facts_statement(*, totp: bool) -> sa.Select[Any]:
    """Everything the decision reads before the code, in one statement: the live user by id or username
    (an id match wins: an id never changes hands), the user's row for the factor (enabled, locked), the
    org factor's status, whether any policy could apply (an assignment to this user, or any assignment
    to a group) and, for TOTP, the ACTIVE device (its sealed seed and last accepted step)."""
    u, uf, d, of, pa = _USERS, _USER_FACTORS, _DEVICES, _ORG_FACTORS, _ASSIGNMENTS
    ref, key, factor = (sa.bindparam(n, type_=sa.String) for n in ("ref", "key", "factor"))
    org_status = sa.select(of.c.status).where(of.c.factor_type == factor).scalar_subquery()
    maybe_policy = sa.exists().where(sa.or_(pa.c.user_id == u.c.id, pa.c.group_id.is_not(None)))
    joined = u.outerjoin(uf, sa.and_(uf.c.user_id == u.c.id, uf.c.factor_type == factor))
    columns: list[Any] = [
        u.c.id,
        u.c.status,
        org_status.label("org_status"),
        uf.c.enabled,
        uf.c.locked_at,
        maybe_policy.label("maybe_policy"),
    ]
    order: list[Any] = [sa.case((u.c.id == ref, 0), else_=1)]
    if totp:
        joined = joined.outerjoin(
            d,
            sa.and_(d.c.user_id == u.c.id, d.c.type == DeviceType.TOTP, d.c.state == DeviceState.ACTIVE),
        )
        columns += [d.c.id.label("device_id"), d.c.secret_enc, d.c.last_step]
        order.append(d.c.id)
    return (
        sa.select(*columns)
        .select_from(joined)
        .where(sa.or_(u.c.id == ref, u.c.username_key == key), u.c.deleted_at.is_(None))
        .order_by(*order)
        .limit(1)
    )


_FACTS_TOTP = _facts_statement(totp=True)
_FACTS_OTHER = _facts_statement(totp=False)

_ACCEPT_STEP = (
    sa.update(_DEVICES)
    .where(
        _DEVICES.c.id == sa.bindparam("p_device"),
        _DEVICES.c.state == DeviceState.ACTIVE,
        sa.or_(_DEVICES.c.last_step.is_(None), _DEVICES.c.last_step < sa.bindparam("p_step")),
        # a lock (or an admin turning the factor off) that committed since the first read still wins
        ~sa.exists().where(
            _USER_FACTORS.c.user_id == _DEVICES.c.user_id,
            _USER_FACTORS.c.factor_type == Factor.TOTP.value,
            sa.or_(_USER_FACTORS.c.locked_at.is_not(None), sa.not_(_USER_FACTORS.c.enabled)),
        ),
    )
    .values(
        last_step=sa.bindparam("p_step"),
        last_used_at=sa.bindparam("p_now", type_=_DEVICES.c.last_used_at.type),
        updated_at=sa.bindparam("p_now", type_=_DEVICES.c.updated_at.type),
    )
)
"""The replay guard: the step is accepted by compare-and-set, so of parallel submissions one wins."""


@dataclass(frozen=True, slots=True)
class Facts:
    """What :data:`_FACTS_TOTP` / :data:`_FACTS_OTHER` read (the device fields only for TOTP)."""

    user_id: str
    status: UserStatus
    org_active: bool
    enabled: bool
    locked: bool
    maybe_policy: bool
    device_id: str | None = None
    secret_enc: bytes | None = None
    last_step: int | None = None


def read_facts(session: Session, ref: str, factor: Factor) -> Facts | None:
    """The user ``ref`` (id or username, case-insensitive; deleted users are unknown) and its state for
    ``factor``, in one statement; None for an unknown user."""
    totp = factor is Factor.TOTP
    row = (
        session.connection()
        .execute(
            _FACTS_TOTP if totp else _FACTS_OTHER,
            {"ref": ref, "key": users.username_key(ref), "factor": factor.value},
        )
        .first()
    )
    if row is None:
        return None
    return Facts(
        user_id=row.id,
        status=UserStatus(row.status),
        org_active=org_factors.status_is_active(row.org_status, factor.value),
        enabled=row.enabled is None or bool(row.enabled),
        locked=row.locked_at is not None,
        maybe_policy=bool(row.maybe_policy),
        device_id=row.device_id if totp else None,
        secret_enc=row.secret_enc if totp else None,
        last_step=row.last_step if totp else None,
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
    factors.record_last(session, user_id, factor.value, status.value, now)


def _deny(detail: Detail, user_id: str | None = None, policy_id: str | None = None) -> Verdict:
    reason = Reason.POLICY_DENIED if detail is Detail.POLICY_DENIED else Reason.INVALID_CREDENTIALS
    return Verdict(Result.DENY, reason, detail, user_id, policy_id)


def _precheck(facts: Facts, factor: Factor) -> Detail | None:
    """Why this user may not use this factor at all (before any code is looked at), or None."""
    allowed = can_use_bypass_code if factor is Factor.BYPASS_CODE else can_authenticate
    if not allowed(facts.status):
        return Detail.USER_STATUS
    if not facts.org_active:
        return Detail.FACTOR_INACTIVE
    if not facts.enabled:
        return Detail.FACTOR_DISABLED
    if facts.locked:
        return Detail.FACTOR_LOCKED
    return None


def _policy(session: Session, facts: Facts, attempt: Attempt) -> rules.Decision:
    """The policy decision; no statement at all when no policy can apply (nothing assigned to the user
    and nothing assigned to any group)."""
    if facts.maybe_policy:
        return policies.decide_for(
            session,
            facts.user_id,
            facts.status.value,
            attempt.application,
            attempt.factor.value,
            attempt.client_ip,
        )
    request = rules.AccessRequest(
        user_id=facts.user_id,
        user_status=facts.status.value,
        group_ids=frozenset(),
        application=attempt.application,
        factor=attempt.factor.value,
        client_ip=attempt.client_ip,
    )
    return rules.evaluate([], request)


def _check_totp(
    session: Session, facts: Facts, attempt: Attempt, settings: EnrollmentSettings, now: datetime
) -> Detail:
    """The code against the ACTIVE TOTP device read with the user; the step accepted by compare-and-set."""
    if facts.device_id is None or facts.secret_enc is None:
        return Detail.NO_AUTHENTICATOR
    secret = settings.keys.unseal(facts.secret_enc, f"device:{facts.device_id}")
    match = otp.match_step(secret, attempt.code, now.timestamp(), settings.totp, last_step=facts.last_step)
    if match.check is otp.Check.WRONG:
        return _failed(session, facts.user_id, attempt.factor, settings, now)
    if match.check is otp.Check.REPLAY:
        return Detail.REPLAY  # not a guess: not counted
    won = session.connection().execute(
        _ACCEPT_STEP, {"p_device": facts.device_id, "p_step": match.step, "p_now": now}
    )
    # lost: another submission of this code (or a later one) got there first, or the factor was just
    # locked or turned off
    return Detail.OK if rowcount(won) else Detail.REPLAY


def _failed(
    session: Session, user_id: str, factor: Factor, settings: EnrollmentSettings, now: datetime
) -> Detail:
    locked = factors.count_failure(
        session, user_id, factor.value, max_failures=settings.max_failures, now=now
    )
    return Detail.LOCKED_NOW if locked else Detail.WRONG_CODE


def _check_code(
    session: Session, facts: Facts, attempt: Attempt, settings: EnrollmentSettings, now: datetime
) -> Detail:
    """Check the code with the factor's own store function; OK, or why not. Wrong codes are counted (and
    their last authentication written) here."""
    factor = attempt.factor
    if factor is Factor.TOTP:
        return _check_totp(session, facts, attempt, settings, now)
    if factor is Factor.HARDWARE_TOKEN:
        matched = token_codes.check(session, facts.user_id, attempt.code, keys=settings.keys, now=now)
    else:
        matched = bypass_codes.redeem(session, facts.user_id, attempt.code, now=now)
    if matched is None:
        return Detail.NO_AUTHENTICATOR
    if matched:
        return Detail.OK
    return _failed(session, facts.user_id, factor, settings, now)


def verify(
    session: Session, attempt: Attempt, settings: EnrollmentSettings, *, now: datetime | None = None
) -> Verdict:
    """Decide one verification attempt in the caller's write unit of work (see the module docstring).

    A good TOTP code costs three statements: the read (:func:`read_facts`), the replay guard's
    compare-and-set and one upsert of the last authentication (which also resets the failure counter)."""
    now = now or utcnow()
    facts = read_facts(session, attempt.user, attempt.factor)
    if facts is None:
        burn(attempt.factor, attempt.code, settings, now)
        return _deny(Detail.UNKNOWN_USER)
    user_id = facts.user_id
    refused = _precheck(facts, attempt.factor)
    if refused is not None:
        burn(attempt.factor, attempt.code, settings, now)
        last = LastAuth.LOCKED if refused is Detail.FACTOR_LOCKED else LastAuth.DENIED
        record_last(session, user_id, attempt.factor, last, now)
        return _deny(refused, user_id)
    decision = _policy(session, facts, attempt)
    checked = _check_code(session, facts, attempt, settings, now)
    if checked is Detail.NO_AUTHENTICATOR:
        burn(attempt.factor, attempt.code, settings, now)
    if checked in (Detail.WRONG_CODE, Detail.LOCKED_NOW):
        return _deny(checked, user_id)  # counted, and FAILURE / LOCKED written, by the same statement
    if checked is not Detail.OK:
        record_last(session, user_id, attempt.factor, LastAuth.FAILURE, now)
        return _deny(checked, user_id)
    if decision.action == "DENY":
        # Only now, with a good code, may the caller learn that a policy refused (no oracle without one).
        factors.record_last(session, user_id, attempt.factor.value, LastAuth.DENIED.value, now, reset=True)
        return _deny(Detail.POLICY_DENIED, user_id, decision.policy_id)
    factors.record_last(session, user_id, attempt.factor.value, LastAuth.SUCCESS.value, now, reset=True)
    return Verdict(Result.ALLOW, Reason.OK, Detail.OK, user_id, decision.policy_id)

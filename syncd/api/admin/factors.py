"""Admin API: org factors, per-user factors and bulk enrollment (seed 002, the Okta MFA admin API draft;
paths and field names as there; docs/adr/0053-policies-and-factors.md).

Org level: list, configure (``POST /factors``; 409 with the existing id when the factor is configured),
read, update (``PUT``, field ``config`` as in the seed), disable (``DELETE`` keeps the row INACTIVE: a
factor without a row counts as ACTIVE), activate/deactivate (refused while a policy requires the factor),
bulk enroll. User level: factor summary, enable/disable one factor, unlock one factor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.policies import Id
from syncd.api.admin.schemas import ERRORS, ID_PATTERN, storable
from syncd.domain.policy import FactorType
from syncd.errors import ConflictError, DomainError, NotFoundError, RateLimitedError, UsageError
from syncd.store import factors as user_factors
from syncd.store import hardware_tokens, invites, org_factors
from syncd.store.tables import OrgFactor, User

RESPONSES: dict[int | str, dict[str, Any]] = {k: v for k, v in ERRORS.items()}
"""ERRORS, typed as FastAPI wants it."""

router = APIRouter(tags=["factors"])

FactorId = Annotated[str, Path(pattern=ID_PATTERN)]
UserId = Annotated[str, Path(pattern=ID_PATTERN)]
Provider = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(storable)]
MAX_ENROLL = 1000


class FactorSettings(BaseModel):
    """TOTP settings, checked like ``factors.totp`` in the config. HARDWARE_TOKEN and BYPASS_CODE take
    no settings yet (send ``{}`` or leave it out)."""

    model_config = ConfigDict(extra="forbid")

    issuer: (
        Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(storable)] | None
    ) = None
    digits: Literal[6, 8] = 6
    period: int = Field(default=30, ge=15, le=120)
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = "SHA1"
    window: int = Field(default=1, ge=0, le=10)


def _settings_for(factor_type: FactorType, settings: FactorSettings | None) -> dict[str, Any]:
    if factor_type is FactorType.TOTP:
        return (settings or FactorSettings()).model_dump(mode="json")
    if settings is not None and settings.model_fields_set:
        raise ValueError(f"settings: {factor_type.value} takes no settings")
    return {}


class CreateFactor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    factorType: FactorType
    provider: Provider = "SYNCD"
    settings: FactorSettings | None = None
    validateAndActivate: bool = False
    """True: validate the settings and make the factor ACTIVE; false: store it INACTIVE."""

    @model_validator(mode="after")
    def _fits(self) -> CreateFactor:
        _settings_for(self.factorType, self.settings)
        return self


class UpdateFactor(BaseModel):
    model_config = ConfigDict(extra="forbid")

    config: FactorSettings | None = None
    """New settings (seed 002 calls them ``config`` here); left out: unchanged."""
    validateAndActivate: bool = False
    """True: validate and make the factor ACTIVE; false: the status is unchanged."""


class OrgFactorOut(BaseModel):
    id: str
    factorType: str
    provider: str
    status: Literal["ACTIVE", "INACTIVE"]


class OrgFactorDetail(OrgFactorOut):
    config: dict[str, Any]


class UserFactorOut(BaseModel):
    factorType: str
    enabled: bool
    """False when an admin disabled this factor for the user."""
    registration: Literal["REGISTERED", "PENDING", "NOT_REGISTERED"]
    failures: int
    locked: bool
    lockedAt: datetime | None
    lastAuthnStatus: str | None
    lastAuthnAt: datetime | None
    liveBypassCodes: int | None = None
    hardwareTokenSerial: str | None = None


class UserFactorsOut(BaseModel):
    userId: str
    factors: list[UserFactorOut]


class EnrollBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    userIds: list[Id] = Field(min_length=1, max_length=MAX_ENROLL)
    mode: Literal["invite", "hardware_token"]
    """``invite``: an enrollment email (TOTP); ``hardware_token``: a token from the pool."""


class EnrollResult(BaseModel):
    userId: str
    result: Literal["enrolled", "skipped"]
    reason: str | None = None
    inviteId: str | None = None
    tokenId: str | None = None
    serial: str | None = None


class EnrollOut(BaseModel):
    factorId: str
    mode: str
    enrolled: int
    skipped: int
    results: list[EnrollResult]


def _out(row: OrgFactor) -> OrgFactorOut:
    return OrgFactorOut(id=row.id, factorType=row.factor_type, provider=row.provider, status=row.status)


def _detail(row: OrgFactor) -> OrgFactorDetail:
    return OrgFactorDetail(
        id=row.id,
        factorType=row.factor_type,
        provider=row.provider,
        status=row.status,
        config=dict(row.settings or {}),
    )


# ---- org factors ------------------------------------------------------------------------------------
@router.get("/org/factors", responses=RESPONSES)
def list_org_factors(
    request: Request, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> list[OrgFactorOut]:
    """The org's configured factors (a built-in factor without a row is ACTIVE and not listed)."""
    with request.app.state.db.read() as session:
        return [_out(r) for r in org_factors.listing(session)]


@router.post("/factors", status_code=201, responses=RESPONSES)
def create_factor(
    request: Request, body: CreateFactor, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> OrgFactorDetail:
    """Configure a factor for the org. When it is already configured: 409, and the message names the
    existing id (change it with ``PUT /factors/{id}``; there is no overwrite flag)."""
    settings = _settings_for(body.factorType, body.settings)
    with request.app.state.db.write() as session:
        row = org_factors.create(
            session,
            body.factorType.value,
            body.provider,
            settings,
            active=body.validateAndActivate,
            actor=caller.actor,
        )
        return _detail(row)


@router.get("/factors/{factorId}", responses=RESPONSES)
def get_factor(
    request: Request, factorId: FactorId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> OrgFactorDetail:
    with request.app.state.db.read() as session:
        return _detail(org_factors.get(session, factorId))


@router.put("/factors/{factorId}", responses=RESPONSES)
def update_factor(
    request: Request,
    factorId: FactorId,
    body: UpdateFactor,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> OrgFactorDetail:
    """Change the settings and/or activate (``validateAndActivate``)."""
    with request.app.state.db.write() as session:
        row = org_factors.get(session, factorId)
        settings = None
        if body.config is not None:
            try:
                settings = _settings_for(FactorType(row.factor_type), body.config)
            except ValueError as exc:
                raise UsageError(str(exc)) from exc
        org_factors.update(session, row, settings, activate=body.validateAndActivate, actor=caller.actor)
        session.flush()
        return _detail(row)


@router.delete("/factors/{factorId}", status_code=204, responses=RESPONSES)
def disable_factor(
    request: Request, factorId: FactorId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> Response:
    """Disable the org factor (seed 002 "Disable Org Factor"): status INACTIVE, configuration kept.
    409 naming the policies when a policy requires it."""
    with request.app.state.db.write() as session:
        row = org_factors.get(session, factorId)
        org_factors.set_status(
            session, row, org_factors.INACTIVE, actor=caller.actor, reason="disabled (DELETE)"
        )
    return Response(status_code=204)


@router.post("/factors/{factorId}/activate", responses=RESPONSES)
def activate_factor(
    request: Request, factorId: FactorId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> OrgFactorOut:
    with request.app.state.db.write() as session:
        row = org_factors.get(session, factorId)
        org_factors.set_status(session, row, org_factors.ACTIVE, actor=caller.actor, reason="activated")
        return _out(row)


@router.post("/factors/{factorId}/deactivate", responses=RESPONSES)
def deactivate_factor(
    request: Request, factorId: FactorId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> OrgFactorOut:
    """Turn the factor off org-wide; 409 naming the policies that require it."""
    with request.app.state.db.write() as session:
        row = org_factors.get(session, factorId)
        org_factors.set_status(session, row, org_factors.INACTIVE, actor=caller.actor, reason="deactivated")
        return _out(row)


# ---- bulk enroll ------------------------------------------------------------------------------------
MODE_FOR = {FactorType.TOTP.value: "invite", FactorType.HARDWARE_TOKEN.value: "hardware_token"}


def _enroll_one(session: Session, user_id: str, mode: str, settings: Any, actor: str) -> EnrollResult:
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        return EnrollResult(userId=user_id, result="skipped", reason="no such user")
    try:
        with session.begin_nested():
            if mode == "invite":
                issued = invites.issue(session, user, settings, actor=actor, reason="bulk enroll (admin API)")
                if isinstance(issued, invites.Skipped):
                    return EnrollResult(userId=user_id, result="skipped", reason=issued.reason)
                return EnrollResult(userId=user_id, result="enrolled", inviteId=issued.invite_id)
            token = hardware_tokens.assign_from_pool(session, user_id, actor=actor)
            return EnrollResult(userId=user_id, result="enrolled", tokenId=token.id, serial=token.serial)
    except (DomainError, ConflictError, RateLimitedError, NotFoundError) as exc:
        return EnrollResult(userId=user_id, result="skipped", reason=str(exc))


@router.post("/factors/{factorId}/enroll", responses=RESPONSES)
def enroll(
    request: Request,
    factorId: FactorId,
    body: EnrollBody,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> EnrollOut:
    """Enroll up to 1000 users for a factor: ``invite`` (TOTP) queues an enrollment email per user;
    ``hardware_token`` (HARDWARE_TOKEN) assigns a token from the unassigned pool. One result per user
    (enrolled, or skipped and why); a user's failure never spoils the others."""
    settings = request.app.state.enrollment
    ids = list(dict.fromkeys(body.userIds))
    with request.app.state.db.write() as session:
        row = org_factors.get(session, factorId)
        if MODE_FOR.get(row.factor_type) != body.mode:
            raise UsageError(f"mode {body.mode!r} does not enroll factor {row.factor_type}")
        if row.status != org_factors.ACTIVE:
            raise DomainError(f"factor {row.factor_type} is {row.status}; activate it first")
        if body.mode == "invite" and settings is None:
            raise NotFoundError("enrollment is not configured")
        results = [_enroll_one(session, uid, body.mode, settings, caller.actor) for uid in ids]
    enrolled = sum(1 for r in results if r.result == "enrolled")
    return EnrollOut(
        factorId=factorId, mode=body.mode, enrolled=enrolled, skipped=len(results) - enrolled, results=results
    )


# ---- per-user factors -------------------------------------------------------------------------------
def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise NotFoundError(f"no user {user_id!r}")
    return user


def _user_factors(session: Session, user_id: str) -> UserFactorsOut:
    return UserFactorsOut(
        userId=user_id,
        factors=[
            UserFactorOut(
                factorType=s.factor_type,
                enabled=s.enabled,
                registration=s.registration,
                failures=s.failures,
                locked=s.locked,
                lockedAt=s.locked_at,
                lastAuthnStatus=s.last_auth_status,
                lastAuthnAt=s.last_auth_at,
                liveBypassCodes=s.live_bypass_codes,
                hardwareTokenSerial=s.hardware_token_serial,
            )
            for s in user_factors.states(session, user_id)
        ],
    )


@router.get("/users/{userId}/factors", responses=RESPONSES)
def get_user_factors(
    request: Request, userId: UserId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> UserFactorsOut:
    """Each factor for the user: enabled, registration status, failures, lock, last authentication."""
    with request.app.state.db.read() as session:
        _user(session, userId)
        return _user_factors(session, userId)


def _factor_action(
    request: Request, user_id: str, factor: FactorType, action: str, actor: str
) -> UserFactorsOut:
    with request.app.state.db.write() as session:
        _user(session, user_id)
        if action == "unlock":
            user_factors.unlock(session, user_id, actor=actor, factor=factor.value)
        else:
            user_factors.set_enabled(
                session, user_id, enabled=action == "enable", actor=actor, factor=factor.value
            )
        return _user_factors(session, user_id)


@router.post("/users/{userId}/factors/{factorType}/enable", responses=RESPONSES)
def enable_user_factor(
    request: Request,
    userId: UserId,
    factorType: FactorType,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> UserFactorsOut:
    """Allow the user to use this factor again."""
    return _factor_action(request, userId, factorType, "enable", caller.actor)


@router.post("/users/{userId}/factors/{factorType}/disable", responses=RESPONSES)
def disable_user_factor(
    request: Request,
    userId: UserId,
    factorType: FactorType,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> UserFactorsOut:
    """Refuse this factor for the user (verification fails for it) until enabled again."""
    return _factor_action(request, userId, factorType, "disable", caller.actor)


@router.post("/users/{userId}/factors/{factorType}/unlock", responses=RESPONSES)
def unlock_user_factor(
    request: Request,
    userId: UserId,
    factorType: FactorType,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> UserFactorsOut:
    """Clear this factor's failure counter and lock (other factors are untouched)."""
    return _factor_action(request, userId, factorType, "unlock", caller.actor)

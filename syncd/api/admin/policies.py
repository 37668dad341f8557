"""Admin API: access policies (seed 000 "Policy"; docs/adr/0053-policies-and-factors.md).

CRUD on policies made of ordered rules, the assignments of one policy (assigning is done by the user and
group routes), and ``POST /policies/evaluate``: the decision for a user and application with the trace of
how it was reached. Evaluation is :mod:`syncd.domain.policy`; queries are :mod:`syncd.store.policies`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, ID_PATTERN, storable
from syncd.domain import policy as rules
from syncd.domain.lifecycle import AuditEvent, UserStatus
from syncd.domain.policy import FactorType
from syncd.errors import ConflictError
from syncd.store import audit, users
from syncd.store import policies as store
from syncd.store.tables import Policy

RESPONSES: dict[int | str, dict[str, Any]] = {k: v for k, v in ERRORS.items()}
"""ERRORS, typed as FastAPI wants it."""

router = APIRouter(tags=["policies"])

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
PolicyId = Annotated[str, Path(pattern=ID_PATTERN)]


Name = Annotated[
    str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True), AfterValidator(storable)
]
"""A name (policy, application): stripped, 1..128 characters."""
Description = Annotated[str, StringConstraints(max_length=2000), AfterValidator(storable)]
UserRef = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(storable)]
Application = Name


def _cidr(value: str) -> str:
    try:
        return rules.normalize_cidr(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 network (CIDR)") from exc


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from exc


Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_cidr)]
IpAddress = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_ip)]


class Conditions(BaseModel):
    """Every given condition must hold for the rule to match; leave one out to not test it."""

    model_config = ConfigDict(extra="forbid")

    users: list[Id] | None = Field(default=None, min_length=1, max_length=1000)
    """User ids: the user is one of them."""
    groups: list[Id] | None = Field(default=None, min_length=1, max_length=1000)
    """Group ids: the user is in one of them (directly or through nested groups)."""
    userStatus: list[UserStatus] | None = Field(default=None, min_length=1, max_length=4)
    factorTypes: list[FactorType] | None = Field(default=None, min_length=1, max_length=3)
    """The factor being used is one of these."""
    networks: list[Cidr] | None = Field(default=None, min_length=1, max_length=200)
    """The client IP is in one of these CIDRs (IPv4 or IPv6)."""
    notNetworks: list[Cidr] | None = Field(default=None, min_length=1, max_length=200)
    """The client IP is known and in none of these CIDRs."""


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    applications: list[Application] = Field(min_length=1, max_length=200)
    """Application names, or ``["*"]`` for every application."""
    conditions: Conditions = Field(default_factory=Conditions)
    action: Literal["ALLOW", "DENY", "REQUIRE_MFA"]


class PolicyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None
    priority: int = Field(default=100, ge=0, le=1_000_000)
    """Lower numbers are evaluated first."""
    rules: list[RuleBody] = Field(default_factory=list, max_length=100)
    """Ordered: the first rule that matches decides."""


class PolicyOut(BaseModel):
    id: str
    name: str
    description: str | None
    priority: int
    rules: list[RuleBody]


class AssignmentOut(BaseModel):
    id: str
    policyId: str
    userId: str | None
    groupId: str | None


class EvaluateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: UserRef
    """A user id or username."""
    application: Application
    factor: FactorType | None = None
    clientIp: IpAddress | None = None


class DecisionOut(BaseModel):
    action: Literal["ALLOW", "DENY", "REQUIRE_MFA"]
    policyId: str | None
    ruleIndex: int | None
    """0-based index of the deciding rule in its policy."""
    reason: str


class AppliedPolicy(BaseModel):
    policyId: str
    name: str
    priority: int
    direct: bool
    """Assigned to the user."""
    viaGroups: list[str]
    """Assigned to these groups, which the user is in (directly or through nesting)."""


class CheckOut(BaseModel):
    condition: str
    held: bool
    detail: str


class RuleTraceOut(BaseModel):
    policyId: str
    ruleIndex: int
    action: Literal["ALLOW", "DENY", "REQUIRE_MFA"]
    matched: bool
    failedCondition: str | None
    checks: list[CheckOut]


class EvaluatedUser(BaseModel):
    id: str
    username: str
    status: str
    groups: list[str]
    """Effective group ids."""


class EvaluateOut(BaseModel):
    decision: DecisionOut
    user: EvaluatedUser
    policies: list[AppliedPolicy]
    """The policies that apply, in evaluation order (priority, then name)."""
    rules: list[RuleTraceOut]
    """Every rule checked, in order, up to the one that decided."""


def _out(row: Policy) -> PolicyOut:
    return PolicyOut(
        id=row.id,
        name=row.name,
        description=row.description,
        priority=row.priority,
        rules=[RuleBody.model_validate(r) for r in row.rules or []],
    )


def _stored_rules(body: PolicyBody) -> list[dict[str, Any]]:
    return [r.model_dump(mode="json", exclude_none=True) for r in body.rules]


@router.get("/policies", responses=RESPONSES)
def list_policies(
    request: Request, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> list[PolicyOut]:
    """Every policy, in evaluation order (priority, then name)."""
    with request.app.state.db.read() as session:
        return [_out(r) for r in store.listing(session)]


@router.post("/policies", status_code=201, responses=RESPONSES)
def create_policy(
    request: Request, body: PolicyBody, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> PolicyOut:
    """Create a policy; 409 when the name is taken."""
    with request.app.state.db.write() as session:
        if store.by_name(session, body.name) is not None:
            raise ConflictError(f"a policy named {body.name!r} exists")
        row = Policy(
            name=body.name, description=body.description, priority=body.priority, rules=_stored_rules(body)
        )
        store.save(session, row)
        audit.record(
            session,
            AuditEvent(caller.actor, "policy.created", "policy", row.id, None, row.name, "created"),
            {"rules": len(body.rules), "priority": body.priority},
        )
        return _out(row)


@router.get("/policies/{policyId}", responses=RESPONSES)
def get_policy(
    request: Request, policyId: PolicyId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> PolicyOut:
    with request.app.state.db.read() as session:
        return _out(store.get(session, policyId))


@router.put("/policies/{policyId}", responses=RESPONSES)
def replace_policy(
    request: Request,
    policyId: PolicyId,
    body: PolicyBody,
    caller: Annotated[Caller, Depends(require(Scope.MANAGE))],
) -> PolicyOut:
    """Replace a policy's name, description, priority and rules (assignments are kept)."""
    with request.app.state.db.write() as session:
        row = store.get(session, policyId)
        other = store.by_name(session, body.name)
        if other is not None and other.id != row.id:
            raise ConflictError(f"a policy named {body.name!r} exists")
        old_name = row.name
        row.name, row.description, row.priority = body.name, body.description, body.priority
        row.rules = _stored_rules(body)
        store.save(session, row)
        audit.record(
            session,
            AuditEvent(caller.actor, "policy.updated", "policy", row.id, old_name, row.name, "replaced"),
            {"rules": len(body.rules), "priority": body.priority},
        )
        return _out(row)


@router.delete("/policies/{policyId}", status_code=204, responses=RESPONSES)
def delete_policy(
    request: Request, policyId: PolicyId, caller: Annotated[Caller, Depends(require(Scope.MANAGE))]
) -> Response:
    """Delete a policy; its assignments to users and groups go with it (the audit row counts them)."""
    with request.app.state.db.write() as session:
        store.delete(session, store.get(session, policyId), actor=caller.actor)
    return Response(status_code=204)


@router.get("/policies/{policyId}/assignments", responses=RESPONSES)
def list_assignments(
    request: Request, policyId: PolicyId, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> list[AssignmentOut]:
    """The users and groups this policy is assigned to."""
    with request.app.state.db.read() as session:
        store.get(session, policyId)
        return [
            AssignmentOut(id=a.id, policyId=a.policy_id, userId=a.user_id, groupId=a.group_id)
            for a in store.assignments(session, policyId)
        ]


@router.post("/policies/evaluate", responses=RESPONSES)
def evaluate(
    request: Request, body: EvaluateBody, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> EvaluateOut:
    """Dry run: what the policies decide for this user, application, factor and client IP, and why.
    Changes nothing (so the ``read`` scope is enough)."""
    with request.app.state.db.read() as session:
        user = users.find(session, body.user)
        factor = body.factor.value if body.factor is not None else None
        access, applied = store.request_for(session, user, body.application, factor, body.clientIp)
        by_id = {a.policy.id: a for a in applied}
        result = rules.explain([store.to_domain(a.policy) for a in applied], access)
        decision = result.decision
        return EvaluateOut(
            decision=DecisionOut(
                action=decision.action,
                policyId=decision.policy_id,
                ruleIndex=decision.rule_index,
                reason=decision.reason,
            ),
            user=EvaluatedUser(
                id=user.id, username=user.username, status=access.user_status, groups=sorted(access.group_ids)
            ),
            policies=[
                AppliedPolicy(
                    policyId=pid,
                    name=by_id[pid].policy.name,
                    priority=by_id[pid].policy.priority,
                    direct=by_id[pid].direct,
                    viaGroups=list(by_id[pid].via_groups),
                )
                for pid in result.order
            ],
            rules=[
                RuleTraceOut(
                    policyId=t.policy_id,
                    ruleIndex=t.rule_index,
                    action=t.action,
                    matched=t.matched,
                    failedCondition=t.failed.condition if t.failed is not None else None,
                    checks=[CheckOut(condition=c.condition, held=c.held, detail=c.detail) for c in t.checks],
                )
                for t in result.trace
            ],
        )

"""Admin API: users (seed 000 "User", "Enrollment"; docs/adr/0051-admin-users-and-groups.md).

List with filters and keyset cursors, get, create/update/delete manual users, group and policy assignment,
and "sync this user now" (:mod:`syncd.api.admin.user_sync`); enrollment mail is in
:mod:`syncd.api.admin.enrollment_mail`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, ID_PATTERN, storable
from syncd.api.admin.user_sync import SyncOutcome, sync_user
from syncd.domain.factor_state import FactorState, FactorType
from syncd.domain.lifecycle import UserStatus
from syncd.errors import UsageError
from syncd.sources.file import is_email
from syncd.store import cursors_page, group_admin, policy_assignments, user_admin
from syncd.store.tables import Group, Policy, User

router = APIRouter(tags=["users"])

Id = Annotated[str, Path(pattern=ID_PATTERN)]
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,1024}$"


Text = Annotated[str | None, AfterValidator(storable)]
READ = Annotated[Caller, Depends(require(Scope.READ))]
MANAGE = Annotated[Caller, Depends(require(Scope.MANAGE))]
RESPONSES: dict[int | str, dict[str, Any]] = {code: dict(doc) for code, doc in ERRORS.items()}


class UserOut(BaseModel):
    id: str
    username: str
    email: str | None
    givenName: str | None
    familyName: str | None
    displayName: str | None
    phone: str | None
    status: UserStatus
    source: str | None = Field(description="The source that manages the user; null for a manual user.")
    createdAt: datetime
    updatedAt: datetime
    deletedAt: datetime | None = None


class GroupRef(BaseModel):
    id: str
    name: str
    source: str | None
    direct: bool = True


class FactorOut(BaseModel):
    factorType: FactorType
    status: FactorState
    lastAuthnStatus: str | None
    lastAuthnAt: datetime | None


class UserDetail(UserOut):
    groups: list[GroupRef]
    deviceCount: int
    factors: list[FactorOut]


class UserPage(BaseModel):
    items: list[UserOut]
    nextCursor: str | None


class _Profile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Text = Field(default=None, max_length=320)
    givenName: Text = Field(default=None, max_length=256)
    familyName: Text = Field(default=None, max_length=256)
    displayName: Text = Field(default=None, max_length=512)
    phone: Text = Field(default=None, max_length=64)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not is_email(value):
            raise ValueError("not an email address")
        return value


class UserCreate(_Profile):
    username: Annotated[str, AfterValidator(storable)] = Field(
        min_length=1, max_length=256, pattern=r"^\S(.*\S)?$"
    )


class UserPatch(_Profile):
    username: Text = Field(default=None, min_length=1, max_length=256, pattern=r"^\S(.*\S)?$")


_FIELDS = {
    "username": "username",
    "email": "email",
    "givenName": "given_name",
    "familyName": "family_name",
    "displayName": "display_name",
    "phone": "phone",
}


class PolicyRef(BaseModel):
    policyId: str
    name: str
    priority: int


class SyncUserResult(BaseModel):
    runId: str
    source: str
    mode: str
    runStatus: str
    reason: str | None
    userAction: str = Field(
        description="What the run did to this user: create, update, disable, …, unchanged."
    )
    userReason: str | None
    user: UserOut | None


def user_out(user: User) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        email=user.email,
        givenName=user.given_name,
        familyName=user.family_name,
        displayName=user.display_name,
        phone=user.phone,
        status=user.status,
        source=user.managed_by,
        createdAt=user.created_at,
        updatedAt=user.updated_at,
        deletedAt=user.deleted_at,
    )


def group_ref(group: Group, direct: bool = True) -> GroupRef:
    return GroupRef(id=group.id, name=group.name, source=group.managed_by, direct=direct)


def policy_ref(policy: Policy) -> PolicyRef:
    return PolicyRef(policyId=policy.id, name=policy.name, priority=policy.priority)


def _detail(session: Any, user: User) -> UserDetail:
    return UserDetail(
        **user_out(user).model_dump(),
        groups=[group_ref(g) for g in user_admin.direct_groups(session, user.id)],
        deviceCount=user_admin.device_count(session, user.id),
        factors=[
            FactorOut(
                factorType=f.factor_type,
                status=f.state,
                lastAuthnStatus=f.last_authn_status,
                lastAuthnAt=f.last_authn_at,
            )
            for f in user_admin.factor_summaries(session, user.id)
        ],
    )


@router.get("/users", responses=RESPONSES)
def list_users(
    request: Request,
    caller: READ,
    status: UserStatus | None = None,
    group: Annotated[str | None, Query(pattern=ID_PATTERN, description="Effective membership.")] = None,
    source: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    factor: FactorType | None = None,
    factorStatus: FactorState | None = None,
    lastAuthnStatus: Annotated[str | None, Query(pattern=r"^[A-Za-z_]{1,32}$")] = None,
    q: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=256,
            description=(
                "Users whose username, email, given name, family name or display name starts with this "
                "text, case ignored (ASCII letters always; other letters when typed in the same case, in "
                "lower or upper case, or capitalised). A prefix, not a substring; `%`, `_` and `\\` are "
                "plain characters."
            ),
        ),
        AfterValidator(storable),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN)] = None,
) -> UserPage:
    """Live users ordered by username, filtered; ``nextCursor`` continues the walk (stable under inserts)."""
    if factorStatus is not None and factor is None:
        raise UsageError("factorStatus needs factor")
    after = cursors_page.decode(cursor) if cursor is not None else None
    with request.app.state.db.read() as session:
        group_ids = None
        if group is not None:
            group_ids = group_admin.descendants(session, group_admin.get(session, group).id)
        filters = user_admin.UserFilter(
            status=status,
            group_ids=group_ids,
            source=source,
            factor=factor,
            factor_state=factorStatus,
            last_authn_status=lastAuthnStatus,
            q=q,
        )
        rows, last = user_admin.page(session, filters, limit=limit, after=after)
        return UserPage(
            items=[user_out(u) for u in rows],
            nextCursor=cursors_page.encode(*last) if last is not None else None,
        )


@router.post("/users", status_code=201, responses=RESPONSES)
def create_user(request: Request, caller: MANAGE, body: UserCreate) -> UserDetail:
    """Create a manual user (no source manages it); 409 when the username is taken."""
    fields = {_FIELDS[k]: v for k, v in body.model_dump().items()}
    with request.app.state.db.write() as session:
        user = user_admin.create_manual(session, fields, actor=caller.actor)
        return _detail(session, user)


@router.get("/users/{userId}", responses=RESPONSES)
def get_user(request: Request, caller: READ, userId: Id) -> UserDetail:
    """One user with groups, device count and factor states (a deleted user shows ``deletedAt``)."""
    with request.app.state.db.read() as session:
        return _detail(session, user_admin.get(session, userId, deleted_ok=True))


@router.patch("/users/{userId}", responses=RESPONSES)
def update_user(request: Request, caller: MANAGE, userId: Id, body: UserPatch) -> UserDetail:
    """Change a manual user; a source-managed user's attributes are read-only (409 naming the source)."""
    given = body.model_dump(exclude_unset=True)
    if given.get("username", "") is None:
        raise UsageError("username can't be null")
    changes = {_FIELDS[k]: v for k, v in given.items()}
    with request.app.state.db.write() as session:
        user = user_admin.update(session, user_admin.get(session, userId), changes, actor=caller.actor)
        return _detail(session, user)


@router.delete("/users/{userId}", status_code=204, response_class=Response, responses=RESPONSES)
def delete_user(request: Request, caller: MANAGE, userId: Id) -> Response:
    """Soft-delete a manual user (PROVISIONING_DISABLED, audited); source-managed users: 409."""
    with request.app.state.db.write() as session:
        user_admin.delete(session, user_admin.get(session, userId), actor=caller.actor)
    return Response(status_code=204)


# ---- groups of a user -------------------------------------------------------------------------------------
@router.get("/users/{userId}/groups", responses=RESPONSES)
def user_groups(request: Request, caller: READ, userId: Id) -> list[GroupRef]:
    """Groups the user is in: directly, and through nesting (``direct: false``)."""
    with request.app.state.db.read() as session:
        user = user_admin.get(session, userId)
        direct, effective = group_admin.ancestors_of_user(session, user.id)
        return [group_ref(g, g.id in direct) for g in group_admin.by_ids(session, effective)]


@router.put("/users/{userId}/groups/{groupId}", status_code=204, response_class=Response, responses=RESPONSES)
def add_user_to_group(request: Request, caller: MANAGE, userId: Id, groupId: Id) -> Response:
    """Make the user a direct member of a manual group (409 for a source-managed group)."""
    with request.app.state.db.write() as session:
        user = user_admin.get(session, userId)
        group_admin.add_member(session, group_admin.get(session, groupId), user, actor=caller.actor)
    return Response(status_code=204)


@router.delete(
    "/users/{userId}/groups/{groupId}", status_code=204, response_class=Response, responses=RESPONSES
)
def remove_user_from_group(request: Request, caller: MANAGE, userId: Id, groupId: Id) -> Response:
    """End a direct membership of a manual group."""
    with request.app.state.db.write() as session:
        user = user_admin.get(session, userId)
        group_admin.remove_member(session, group_admin.get(session, groupId), user, actor=caller.actor)
    return Response(status_code=204)


# ---- policies of a user -----------------------------------------------------------------------------------
@router.get("/users/{userId}/policies", responses=RESPONSES)
def user_policies(request: Request, caller: READ, userId: Id) -> list[PolicyRef]:
    """Policies assigned to the user directly."""
    with request.app.state.db.read() as session:
        user = user_admin.get(session, userId)
        return [policy_ref(p) for p in policy_assignments.of(session, "user", user.id)]


@router.put(
    "/users/{userId}/policies/{policyId}", status_code=204, response_class=Response, responses=RESPONSES
)
def assign_user_policy(request: Request, caller: MANAGE, userId: Id, policyId: Id) -> Response:
    with request.app.state.db.write() as session:
        user = user_admin.get(session, userId)
        policy_assignments.assign(session, policyId, "user", user.id, actor=caller.actor)
    return Response(status_code=204)


@router.delete(
    "/users/{userId}/policies/{policyId}", status_code=204, response_class=Response, responses=RESPONSES
)
def unassign_user_policy(request: Request, caller: MANAGE, userId: Id, policyId: Id) -> Response:
    with request.app.state.db.write() as session:
        user = user_admin.get(session, userId)
        policy_assignments.unassign(session, policyId, "user", user.id, actor=caller.actor)
    return Response(status_code=204)


# ---- sync one user ----------------------------------------------------------------------------------------
@router.post("/users/{userId}/sync", responses=RESPONSES)
def sync_one_user(request: Request, caller: MANAGE, userId: Id) -> SyncUserResult:
    """Run the user's source sync now (incremental where the source has a change feed) and say what it did
    to this user. Manual and SCIM users: 409 (nothing to pull)."""
    outcome: SyncOutcome = sync_user(
        request.app.state.config, request.app.state.db, userId, actor=caller.actor
    )
    with request.app.state.db.read() as session:
        user = session.get(User, userId)
        shown = user_out(user) if user is not None else None
    return SyncUserResult(
        runId=outcome.run_id,
        source=outcome.source,
        mode=outcome.mode,
        runStatus=outcome.status,
        reason=outcome.reason,
        userAction=outcome.user_action,
        userReason=outcome.user_reason,
        user=shown,
    )

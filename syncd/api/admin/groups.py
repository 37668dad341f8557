"""Admin API: groups — manual groups are created, changed and given members here; source-managed groups
are read-only (409 naming the source). Members direct or effective (through nesting, cycle-safe)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, ID_PATTERN, storable
from syncd.api.admin.users import (
    CURSOR_PATTERN,
    PolicyRef,
    UserPage,
    policy_ref,
    user_out,
)
from syncd.store import cursors_page, group_admin, policy_assignments, user_admin
from syncd.store.tables import Group

router = APIRouter(tags=["groups"])

Id = Annotated[str, Path(pattern=ID_PATTERN)]
READ = Annotated[Caller, Depends(require(Scope.READ))]
MANAGE = Annotated[Caller, Depends(require(Scope.MANAGE))]
RESPONSES: dict[int | str, dict[str, Any]] = {code: dict(doc) for code, doc in ERRORS.items()}
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(pattern=CURSOR_PATTERN)]
Name = Annotated[str, AfterValidator(storable)]
Description = Annotated[str | None, AfterValidator(storable)]


class GroupOut(BaseModel):
    id: str
    name: str
    description: str | None
    source: str | None = Field(description="The source that manages the group; null for a manual group.")
    createdAt: datetime
    updatedAt: datetime


class GroupDetail(GroupOut):
    memberCount: int


class GroupPage(BaseModel):
    items: list[GroupOut]
    nextCursor: str | None


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(min_length=1, max_length=256, pattern=r"^\S(.*\S)?$")
    description: Description = Field(default=None, max_length=4096)


class GroupPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, min_length=1, max_length=256, pattern=r"^\S(.*\S)?$")
    description: Description = Field(default=None, max_length=4096)


def group_out(group: Group) -> GroupOut:
    return GroupOut(
        id=group.id,
        name=group.name,
        description=group.description,
        source=group.managed_by,
        createdAt=group.created_at,
        updatedAt=group.updated_at,
    )


@router.get("/groups", responses=RESPONSES)
def list_groups(
    request: Request,
    caller: READ,
    source: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> GroupPage:
    """Live groups ordered by name; ``nextCursor`` continues the walk."""
    after = cursors_page.decode(cursor) if cursor is not None else None
    with request.app.state.db.read() as session:
        rows, last = group_admin.page(session, limit=limit, after=after, source=source)
        return GroupPage(
            items=[group_out(g) for g in rows],
            nextCursor=cursors_page.encode(*last) if last is not None else None,
        )


@router.post("/groups", status_code=201, responses=RESPONSES)
def create_group(request: Request, caller: MANAGE, body: GroupCreate) -> GroupDetail:
    """Create a manual group; 409 when a live group has the name (case-insensitively)."""
    with request.app.state.db.write() as session:
        group = group_admin.create(session, body.name, body.description, actor=caller.actor)
        return GroupDetail(**group_out(group).model_dump(), memberCount=0)


@router.get("/groups/{groupId}", responses=RESPONSES)
def get_group(request: Request, caller: READ, groupId: Id) -> GroupDetail:
    with request.app.state.db.read() as session:
        group = group_admin.get(session, groupId)
        return GroupDetail(
            **group_out(group).model_dump(), memberCount=group_admin.member_count(session, group.id)
        )


@router.patch("/groups/{groupId}", responses=RESPONSES)
def update_group(request: Request, caller: MANAGE, groupId: Id, body: GroupPatch) -> GroupDetail:
    """Rename or describe a manual group (source-managed: 409)."""
    changes = body.model_dump(exclude_unset=True)
    if "name" in changes and changes["name"] is None:
        changes.pop("name")
    with request.app.state.db.write() as session:
        group = group_admin.update(session, group_admin.get(session, groupId), changes, actor=caller.actor)
        return GroupDetail(
            **group_out(group).model_dump(), memberCount=group_admin.member_count(session, group.id)
        )


@router.delete("/groups/{groupId}", status_code=204, response_class=Response, responses=RESPONSES)
def delete_group(request: Request, caller: MANAGE, groupId: Id) -> Response:
    """Delete a manual group with its memberships and policy assignments (source-managed: 409)."""
    with request.app.state.db.write() as session:
        group_admin.delete(session, group_admin.get(session, groupId), actor=caller.actor)
    return Response(status_code=204)


@router.get("/groups/{groupId}/members", responses=RESPONSES)
def group_members(
    request: Request,
    caller: READ,
    groupId: Id,
    effective: bool = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> UserPage:
    """Live members ordered by username: direct, or with ``effective=true`` also the members of nested
    groups at any depth (cycles in the nesting are harmless)."""
    after = cursors_page.decode(cursor) if cursor is not None else None
    with request.app.state.db.read() as session:
        group = group_admin.get(session, groupId)
        ids = group_admin.descendants(session, group.id) if effective else frozenset({group.id})
        rows, last = user_admin.page(session, user_admin.UserFilter(group_ids=ids), limit=limit, after=after)
        return UserPage(
            items=[user_out(u) for u in rows],
            nextCursor=cursors_page.encode(*last) if last is not None else None,
        )


@router.put(
    "/groups/{groupId}/members/{userId}", status_code=204, response_class=Response, responses=RESPONSES
)
def add_group_member(request: Request, caller: MANAGE, groupId: Id, userId: Id) -> Response:
    with request.app.state.db.write() as session:
        group = group_admin.get(session, groupId)
        group_admin.add_member(session, group, user_admin.get(session, userId), actor=caller.actor)
    return Response(status_code=204)


@router.delete(
    "/groups/{groupId}/members/{userId}", status_code=204, response_class=Response, responses=RESPONSES
)
def remove_group_member(request: Request, caller: MANAGE, groupId: Id, userId: Id) -> Response:
    with request.app.state.db.write() as session:
        group = group_admin.get(session, groupId)
        group_admin.remove_member(session, group, user_admin.get(session, userId), actor=caller.actor)
    return Response(status_code=204)


@router.get("/groups/{groupId}/policies", responses=RESPONSES)
def group_policies(request: Request, caller: READ, groupId: Id) -> list[PolicyRef]:
    with request.app.state.db.read() as session:
        group = group_admin.get(session, groupId)
        return [policy_ref(p) for p in policy_assignments.of(session, "group", group.id)]


@router.put(
    "/groups/{groupId}/policies/{policyId}", status_code=204, response_class=Response, responses=RESPONSES
)
def assign_group_policy(request: Request, caller: MANAGE, groupId: Id, policyId: Id) -> Response:
    """Assign a policy to the group (source-managed groups too: assignment is not a source attribute)."""
    with request.app.state.db.write() as session:
        group = group_admin.get(session, groupId)
        policy_assignments.assign(session, policyId, "group", group.id, actor=caller.actor)
    return Response(status_code=204)


@router.delete(
    "/groups/{groupId}/policies/{policyId}", status_code=204, response_class=Response, responses=RESPONSES
)
def unassign_group_policy(request: Request, caller: MANAGE, groupId: Id, policyId: Id) -> Response:
    with request.app.state.db.write() as session:
        group = group_admin.get(session, groupId)
        policy_assignments.unassign(session, policyId, "group", group.id, actor=caller.actor)
    return Response(status_code=204)

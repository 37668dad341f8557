"""Admin API: org factors (seed 002, the Okta MFA admin API draft; paths as there)."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request

from syncd.api.admin.auth import Caller, Scope, require
from syncd.store.tables import OrgFactor

router = APIRouter(tags=["factors"])


@router.get("/org/factors")
def list_org_factors(
    request: Request, caller: Annotated[Caller, Depends(require(Scope.READ))]
) -> list[dict[str, Any]]:
    """The org's factors."""
    with request.app.state.db.read() as session:
        rows = session.scalars(sa.select(OrgFactor).order_by(OrgFactor.factor_type)).all()
        return [
            {"id": r.id, "factorType": r.factor_type, "provider": r.provider, "status": r.status}
            for r in rows
        ]

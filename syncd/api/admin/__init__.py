"""The admin API under ``/api/v1`` (docs/adr/0050-admin-api.md): one router per resource, each route
guarded by ``Depends(require(Scope.X))`` from :mod:`syncd.api.admin.auth`."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from syncd.api.admin import (
    audit_log,
    bypass_codes,
    devices,
    enrollment_mail,
    factors,
    groups,
    hardware_tokens,
    policies,
    registrations,
    reports,
    sync_runs,
    users,
    verify,
)
from syncd.api.admin.auth import bearer

MODULES = (
    users,
    enrollment_mail,
    groups,
    devices,
    bypass_codes,
    hardware_tokens,
    policies,
    factors,
    verify,
    reports,
    audit_log,
    sync_runs,
)


def admin_router() -> APIRouter:
    """``/api/v1`` with every resource router, plus the seed-001 admin registration routes
    (``/api/mfa/admin/registrations``)."""
    router = APIRouter(dependencies=[Depends(bearer)])
    v1 = APIRouter(prefix="/api/v1")
    for module in MODULES:
        v1.include_router(module.router)
    router.include_router(v1)
    router.include_router(registrations.router)
    return router

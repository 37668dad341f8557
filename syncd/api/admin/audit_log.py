"""Admin API: audit_log (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["audit_log"])

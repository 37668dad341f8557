"""Admin API: bypass_codes (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["bypass_codes"])

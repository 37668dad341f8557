"""Admin API: hardware_tokens (being built)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["hardware_tokens"])

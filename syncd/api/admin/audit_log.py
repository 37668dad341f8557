"""Admin API: the audit log (read only). ``GET /audit`` pages newest first with an opaque keyset cursor;
``GET /audit/export`` streams every matching row as JSON lines, one read unit of work per batch.
Audit rows hold no secrets (ids, statuses and reasons only), so neither route can leak one."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS
from syncd.errors import UsageError
from syncd.store import audit_search
from syncd.store.db import Database
from syncd.store.tables import AuditRecord

router = APIRouter(tags=["audit"])

TEXT = r"^[^\x00-\x1f\x7f]+$"
"""Filter values: no control characters (a NUL byte can't even be sent to PostgreSQL)."""
EXPORT_BATCH = 1000
NDJSON = "application/x-ndjson"


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    targetType: str
    targetId: str
    old: str | None
    new: str | None
    reason: str | None
    runId: str | None
    details: dict[str, Any] | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _filters(
    actor: Annotated[str | None, Query(max_length=128, pattern=TEXT)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=TEXT)] = None,
    targetType: Annotated[str | None, Query(max_length=32, pattern=TEXT)] = None,
    targetId: Annotated[str | None, Query(max_length=64, pattern=TEXT)] = None,
    since: Annotated[
        datetime | None, Query(description="Rows at or after this time (UTC if no offset).")
    ] = None,
    until: Annotated[datetime | None, Query(description="Rows before this time (UTC if no offset).")] = None,
) -> audit_search.Filters:
    return audit_search.Filters(actor, action, targetType, targetId, _utc(since), _utc(until))


Filters = Annotated[audit_search.Filters, Depends(_filters)]


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise UsageError("since/until is out of range") from None


def _entry(row: AuditRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actor": row.actor,
        "action": row.action,
        "targetType": row.target_type,
        "targetId": row.target_id,
        "old": row.old,
        "new": row.new,
        "reason": row.reason,
        "runId": row.run_id,
        "details": row.details,
    }


def _encode(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"a{row_id}".encode()).decode().rstrip("=")


def _decode(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("a") or not text[1:].isdigit():
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise UsageError("the cursor is not one this API gave out") from None


@router.get("/audit", responses=ERRORS)
def list_audit(
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.READ))],
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> AuditPage:
    """Audit rows matching every given filter, newest first."""
    before = _decode(cursor) if cursor else None
    with request.app.state.db.read() as session:
        rows = audit_search.page(session, filters, before_id=before, limit=limit + 1)
        items = [AuditEntry.model_validate(_entry(r)) for r in rows[:limit]]
    more = len(rows) > limit
    return AuditPage(items=items, nextCursor=_encode(items[-1].id) if more and items else None)


@router.get(
    "/audit/export",
    response_class=StreamingResponse,
    responses={
        **ERRORS,
        200: {
            "description": "One JSON object per line (the fields of an audit list item), newest first.",
            "content": {NDJSON: {"schema": {"type": "string"}}},
        },
    },
)
def export_audit(
    request: Request, caller: Annotated[Caller, Depends(require(Scope.READ))], filters: Filters
) -> StreamingResponse:
    """Every audit row matching the filters as JSON lines, streamed in batches."""
    db: Database = request.app.state.db

    def lines() -> Iterator[bytes]:
        before: int | None = None
        while True:
            with db.read() as session:
                rows = audit_search.page(session, filters, before_id=before, limit=EXPORT_BATCH)
                batch = [AuditEntry.model_validate(_entry(r)) for r in rows]
            if not batch:
                return
            yield "".join(e.model_dump_json() + "\n" for e in batch).encode()  # the list's item shape
            if len(batch) < EXPORT_BATCH:
                return
            before = batch[-1].id

    return StreamingResponse(lines(), media_type=NDJSON)

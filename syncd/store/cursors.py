"""Change-feed cursors: where the last applied incremental (or full) read of a source ended.

A cursor is stored in the same unit of work as the last batch its run applied, so a crash can never
leave a cursor ahead of the data (reliability.md L8). ``kind`` names the scope the cursor belongs to;
a reader with another kind ignores it and runs a full sync.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from syncd.store.tables import SyncCursor, utcnow


def get(session: Session, source: str) -> SyncCursor | None:
    return session.get(SyncCursor, source)


def put(session: Session, source: str, kind: str, value: str) -> None:
    """Store (or replace) the cursor of ``source``; unchanged cursors are not rewritten."""
    cursor = session.get(SyncCursor, source)
    if cursor is None:
        session.add(SyncCursor(source=source, kind=kind, value=value, updated_at=utcnow()))
    elif cursor.kind != kind or cursor.value != value:
        cursor.kind, cursor.value = kind, value


def forget(session: Session, source: str) -> None:
    """Drop the cursor: the next run of the source is full."""
    cursor = session.get(SyncCursor, source)
    if cursor is not None:
        session.delete(cursor)

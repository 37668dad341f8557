"""Source links: (source, object type, anchor) → user or group id."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.store.tables import SourceLink, utcnow


def add(
    session: Session,
    source: str,
    object_type: str,
    anchor: str,
    object_id: str,
    *,
    dn: str | None = None,
    fingerprint: str | None = None,
) -> SourceLink:
    link = SourceLink(
        source=source,
        object_type=object_type,
        anchor=anchor,
        object_id=object_id,
        dn=dn,
        fingerprint=fingerprint,
        in_scope=True,
        last_seen_at=utcnow(),
    )
    session.add(link)
    return link


def get(session: Session, source: str, object_type: str, anchor: str) -> SourceLink | None:
    return session.get(SourceLink, (source, object_type, anchor))


def ids_by_anchor(session: Session, source: str, object_type: str, anchors: Iterable[str]) -> dict[str, str]:
    """anchor → object id for the given anchors of one source."""
    out: dict[str, str] = {}
    anchors = list(anchors)
    for i in range(0, len(anchors), 500):
        query = sa.select(SourceLink.anchor, SourceLink.object_id).where(
            SourceLink.source == source,
            SourceLink.object_type == object_type,
            SourceLink.anchor.in_(anchors[i : i + 500]),
        )
        out.update({anchor: object_id for anchor, object_id in session.execute(query)})
    return out


def sources_of(session: Session, object_type: str, object_id: str) -> list[SourceLink]:
    query = sa.select(SourceLink).where(
        SourceLink.object_type == object_type, SourceLink.object_id == object_id
    )
    return list(session.scalars(query))

"""Source links: (source, object type, anchor) → user or group id."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from syncd.domain.records import Known
from syncd.store.bulk import insert_rows
from syncd.store.tables import Group, SourceLink, User, utcnow


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


@dataclass(frozen=True, slots=True)
class LinkStateRow:
    """A linked user's state without its fields: enough to tell an unchanged user by fingerprint."""

    anchor: str
    user_id: str
    provisioned: bool
    in_scope: bool
    fingerprint: str | None


def user_states(session: Session, source: str) -> list[LinkStateRow]:
    """Every user linked to ``source``: anchor, id, provisioned, in scope, fingerprint (one query)."""
    query = (
        sa.select(SourceLink.anchor, User.id, User.provisioned, SourceLink.in_scope, SourceLink.fingerprint)
        .join(User, User.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "user")
    )
    return [LinkStateRow(*row) for row in session.execute(query)]


def count_live(session: Session, source: str, object_type: str) -> int:
    """Links of ``source`` still in scope."""
    query = sa.select(sa.func.count()).where(
        SourceLink.source == source, SourceLink.object_type == object_type, SourceLink.in_scope.is_(True)
    )
    return int(session.scalar(query) or 0)


def known(session: Session, source: str) -> list[Known]:
    """Every object linked to ``source`` with its DN and name (an incremental read resolves members)."""
    users_query = (
        sa.select(SourceLink.anchor, SourceLink.dn, User.username)
        .join(User, User.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "user")
    )
    groups_query = (
        sa.select(SourceLink.anchor, SourceLink.dn, Group.name)
        .join(Group, Group.id == SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == "group")
    )
    out = [Known("user", anchor, dn, name) for anchor, dn, name in session.execute(users_query)]
    out += [Known("group", anchor, dn, name) for anchor, dn, name in session.execute(groups_query)]
    return out


def all_ids(session: Session, source: str, object_type: str) -> dict[str, str]:
    """anchor → object id for every link of one source and type (one query)."""
    query = (
        sa.select(SourceLink.anchor, SourceLink.object_id)
        .where(SourceLink.source == source, SourceLink.object_type == object_type)
        .execution_options(yield_per=5000)  # streamed: 100,000 rows are not buffered twice
    )
    return {anchor: object_id for anchor, object_id in session.execute(query)}


def insert_many(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert links in one executemany (rows: source, object_type, anchor, object_id, dn, fingerprint)."""
    if rows:
        now = utcnow()
        insert_rows(
            session,
            SourceLink.__table__,  # type: ignore[arg-type]
            [{"in_scope": True, "last_seen_at": now, **row} for row in rows],
        )


def preload(session: Session, source: str, object_type: str, anchors: Iterable[str]) -> dict[str, SourceLink]:
    """The links of these anchors as ORM objects (one query per 500), keyed by anchor."""
    out: dict[str, SourceLink] = {}
    anchors = list(anchors)
    for i in range(0, len(anchors), 500):
        query = sa.select(SourceLink).where(
            SourceLink.source == source,
            SourceLink.object_type == object_type,
            SourceLink.anchor.in_(anchors[i : i + 500]),
        )
        out.update({link.anchor: link for link in session.scalars(query)})
    return out

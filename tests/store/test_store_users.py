"""Users (syncd.store.users): creation with its audit row, case-insensitive username uniqueness among
live users, and the filtered, paginated listing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import exc

from syncd.domain.lifecycle import UserStatus
from syncd.store import audit, users
from syncd.store.db import Database
from syncd.store.tables import User


def create(db: Database, username: str, *, provisioned: bool = True, source: str | None = "ldap") -> User:
    with db.write() as session:
        return users.create(
            session,
            {"username": username, "email": f"{username.lower()}@example.com"},
            provisioned=provisioned,
            managed_by=source,
            actor=f"ldap:{source}" if source else "admin:test",
            reason="new in source",
        )


def names(rows: Any) -> list[str]:
    return [row.username for row in rows]


def test_create_stores_the_derived_status_and_audits_it(db: Database) -> None:
    for username, provisioned, status in [
        ("Alice", True, UserStatus.UNENROLLED),
        ("Bob", False, UserStatus.PROVISIONING_DISABLED),
    ]:
        with db.write() as session:
            user = users.create(
                session,
                {"username": username, "email": "x@example.com", "attributes": {"title": "CTO"}},
                provisioned=provisioned,
                managed_by="corp",
                actor="ldap:corp",
                reason="new in source",
                run_id="run-1",
            )
        with db.read() as session:
            stored = session.get(User, user.id)
            assert stored is not None
            assert (stored.username, stored.username_key, stored.status) == (
                username,
                username.lower(),
                status,
            )
            assert (stored.provisioned, stored.managed_by, stored.attributes) == (
                provisioned,
                "corp",
                {"title": "CTO"},
            )
            rows = audit.for_target(session, "user", user.id)
            assert [(r.actor, r.action, r.old, r.new, r.reason, r.run_id) for r in rows] == [
                ("ldap:corp", "user.created", None, status.value, "new in source", "run-1")
            ]


def test_usernames_are_unique_case_insensitively_among_live_users(db: Database) -> None:
    pairs = [("Alice", "alice"), ("bob", "BOB"), ("Straße", "STRASSE")]
    for first, second in pairs:
        create(db, first)
        with pytest.raises(exc.IntegrityError):
            create(db, second, source="csv")
        with db.read() as session:
            assert users.find(session, second).username == first
    with db.read() as session:
        assert sorted(names(users.listing(session))) == sorted(first for first, _ in pairs)


def test_a_soft_deleted_users_name_can_be_taken_but_not_revived_while_taken(db: Database) -> None:
    old = create(db, "Alice")
    with db.write() as session:
        users.soft_delete(session.get_one(User, old.id))
    new = create(db, "alice", source="csv")
    with db.read() as session:
        assert users.find(session, "ALICE").id == new.id  # a username finds the live user only
        assert users.find(session, old.id).deleted_at is not None
    with pytest.raises(exc.IntegrityError), db.write() as session:
        users.undelete(session.get_one(User, old.id))
    # and a second deleted "alice" next to the first is fine
    with db.write() as session:
        users.soft_delete(session.get_one(User, new.id))
    create(db, "ALICE")


# ---- listing ---------------------------------------------------------------------------------------


@pytest.fixture
def people(db: Database) -> dict[str, str]:
    """username → id: amy, Bob (disabled), carol (csv), dave (manual), erin."""
    made = [
        create(db, "erin"),
        create(db, "carol", source="csv"),
        create(db, "Bob", provisioned=False),
        create(db, "dave", source=None),
        create(db, "amy"),
    ]
    return {user.username: user.id for user in made}


def test_listing_orders_by_username_case_insensitively(db: Database, people: dict[str, str]) -> None:
    with db.read() as session:
        assert names(users.listing(session)) == ["amy", "Bob", "carol", "dave", "erin"]


def test_listing_filters_by_status_and_source(db: Database, people: dict[str, str]) -> None:
    with db.read() as session:
        assert names(users.listing(session, status=UserStatus.UNENROLLED)) == ["amy", "carol", "dave", "erin"]
        assert names(users.listing(session, status=UserStatus.PROVISIONING_DISABLED)) == ["Bob"]
        assert names(users.listing(session, status=UserStatus.ACTIVE)) == []
        assert names(users.listing(session, source="ldap")) == ["amy", "Bob", "erin"]
        assert names(users.listing(session, source="csv")) == ["carol"]
        assert names(users.listing(session, source="ldap", status=UserStatus.UNENROLLED)) == ["amy", "erin"]


def page_after(row: User) -> dict[str, Any]:
    """The keyword arguments asking ``users.listing`` for the page after ``row`` (the one place to change
    if the cursor gains an id tie-breaker)."""
    return {"after": row.username_key, "after_id": row.id}


def all_pages(db: Database, limit: int, **filters: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: dict[str, Any] = {}
    with db.read() as session:
        while True:
            page = users.listing(session, limit=limit, **filters, **cursor)
            if not page:
                return pages
            pages.append(names(page))
            assert len(pages) < 50, "pagination does not end"
            cursor = page_after(page[-1])


def test_listing_paginates_with_after(db: Database, people: dict[str, str]) -> None:
    assert all_pages(db, 2) == [["amy", "Bob"], ["carol", "dave"], ["erin"]]
    assert all_pages(db, 1, source="ldap") == [["amy"], ["Bob"], ["erin"]]
    with db.read() as session:
        assert names(users.listing(session, after="carol")) == ["dave", "erin"]
        assert names(users.listing(session, after="zzz")) == []


def test_listing_pages_visit_every_user_once_when_a_username_was_reused(db: Database) -> None:
    """Listing includes soft-deleted users, and a deleted user's username may be taken again, so several
    listed users can share a username key: paging must still return each of them exactly once."""
    old = create(db, "alice")
    with db.write() as session:
        users.soft_delete(session.get_one(User, old.id))
    create(db, "Alice")
    create(db, "bob")
    with db.read() as session:
        everyone = {u.id: u.username + (" (deleted)" if u.deleted_at else "") for u in users.listing(session)}
    assert sorted(everyone.values()) == ["Alice", "alice (deleted)", "bob"]
    seen: list[str] = []
    cursor: dict[str, Any] = {}
    with db.read() as session:
        while page := users.listing(session, limit=1, **cursor):
            seen += [everyone[user.id] for user in page]
            assert len(seen) <= 3, f"pagination repeats users: {seen}"
            cursor = page_after(page[-1])
    assert sorted(seen) == sorted(everyone.values())

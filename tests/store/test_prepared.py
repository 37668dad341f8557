"""DriverWork (syncd.store.prepared) on SQLite and PostgreSQL: the SCIM app's hot statements, run on the
driver's connection inside a unit of work, read what the engine reads and write what the ORM reads back
(UTC timestamps, JSON, enums, booleans); pending ORM changes go first; a duplicate key is SQLAlchemy's
IntegrityError; and the statements commit or roll back with their unit of work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from syncd.api.scim.groups import LIVE_USER
from syncd.api.scim.users import BY_ID_WITH_GROUPS, GROUPS_OF_ONE, INSERT, LOCKED_ROW, _update
from syncd.domain.lifecycle import UserStatus
from syncd.store.bulk import insert_rows
from syncd.store.db import Database
from syncd.store.prepared import DriverWork
from syncd.store.tables import Group, GroupMember, User

T0 = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
ATTRIBUTES = {
    "externalId": "e1",
    "name": {"givenName": "Ä"},
    "emails": [{"value": "a@x.com"}],
    "active": True,
}


def user_row(user_id: str, name: str) -> dict[str, object]:
    return {
        "id": user_id, "username": name, "username_key": name.casefold(), "email": None, "given_name": "Ä",
        "family_name": None, "display_name": None, "phone": None, "attributes": ATTRIBUTES,
        "status": UserStatus.UNENROLLED, "provisioned": True, "managed_by": "okta", "created_at": T0,
    }  # fmt: skip


def test_rows_written_and_read_equal_the_engines(db: Database) -> None:
    with db.write() as session:
        work = DriverWork(session)
        assert work.run(INSERT, user_row("u1", "Ann@X.com")) == 1
    with db.read() as session:
        user = session.get(User, "u1")
        assert user is not None
        assert (user.username_key, user.attributes, user.status, user.provisioned) == (
            "ann@x.com", ATTRIBUTES, UserStatus.UNENROLLED, True
        )  # fmt: skip
        assert user.created_at == T0 and user.updated_at == T0  # UTC-aware, microseconds kept
        by_engine = session.execute(LOCKED_ROW, {"id": "u1", "source": "okta"}).all()
    with db.write() as session:
        by_driver = DriverWork(session).all(LOCKED_ROW, {"id": "u1", "source": "okta"})
        assert [tuple(r) for r in by_driver] == [tuple(r) for r in by_engine]
        assert by_driver[0].updated_at.tzinfo is not None
        later = T0 + timedelta(seconds=5)
        changed = {"provisioned": False, "status": UserStatus.PROVISIONING_DISABLED, "attributes": {"a": [1]}}
        count = DriverWork(session).run(
            _update(frozenset(changed)), {**changed, "updated_at": later, "row_id": "u1"}
        )
        assert count == 1
        assert (
            DriverWork(session).run(
                _update(frozenset(changed)), {**changed, "updated_at": later, "row_id": "x"}
            )
            == 0
        )
    with db.read() as session:
        user = session.get(User, "u1")
        assert user is not None
        assert (user.provisioned, user.status, user.attributes, user.updated_at) == (
            False, UserStatus.PROVISIONING_DISABLED, {"a": [1]}, later
        )  # fmt: skip


def test_pending_orm_changes_are_flushed_before_the_statements(db: Database) -> None:
    with db.write() as session:
        session.add(User(id="u1", username="a", username_key="a", status="UNENROLLED", managed_by="okta"))
        session.add(Group(id="g1", name="G", name_key="g", managed_by="okta"))
        session.flush()
        session.add(GroupMember(group_id="g1", user_id="u1", managed_by="okta"))
        found = DriverWork(session).all(GROUPS_OF_ONE, {"id": "u1", "source": "okta"})
        assert [tuple(r) for r in found] == [("u1", "g1", "G")]


def test_a_duplicate_key_is_an_integrity_error_and_the_unit_of_work_rolls_back(db: Database) -> None:
    with db.write() as session:
        DriverWork(session).run(INSERT, user_row("u1", "a"))
    with pytest.raises(sa.exc.IntegrityError), db.write() as session:
        work = DriverWork(session)
        work.run(INSERT, user_row("u2", "b"))
        work.run(INSERT, user_row("u3", "A"))  # the same live username key as u1
    with db.read() as session:
        assert set(session.scalars(sa.select(User.id))) == {"u1"}  # u2 went with its unit of work


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_rows_found_by_id_go_through_the_primary_key_without_statistics(db: Database) -> None:
    """No ANALYZE has run: PostgreSQL must still not answer ``id = … AND managed_by = …`` by scanning the
    source's users in ``ix_users_managed_by_live`` (6 ms at 100,000 users; owned_by_source)."""
    with db.write() as session:  # enough users that reading the whole index is dear; no ANALYZE after
        rows = [{**user_row(f"u{i}", f"user{i}"), "updated_at": T0} for i in range(20_000)]
        insert_rows(session, User.__table__, rows)  # type: ignore[arg-type]
    with db.write() as session:
        for statement, params in [
            (LOCKED_ROW, {"id": "u7", "source": "okta"}),
            (BY_ID_WITH_GROUPS, {"id": "u7", "source": "okta"}),
            (LIVE_USER, {"id": "u7", "source": "okta"}),
        ]:
            work = DriverWork(session)
            prepared = work.statements.get(statement)
            rows = work.driver.execute(f"EXPLAIN {prepared.sql}", prepared.values(params)).fetchall()
            plan = "\n".join(row[0] for row in rows)
            assert "Index Scan using pk_users on users" in plan, plan

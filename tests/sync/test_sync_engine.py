"""The sync engine end to end with the file source, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from syncd.config.models import Database as DatabaseConfig
from syncd.config.models import Limit, Sync
from syncd.config.sources import FileSource
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.errors import AlreadyRunningError
from syncd.sources.readers import reader_for
from syncd.store import groups, runs, schema
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, Device, Group, SyncRun, User
from syncd.sync.engine import RunResult, run_sync

HEADER = ["id", "username", "email", "given_name", "family_name", "disabled", "title"]


def people(n: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"u{i}",
            "username": f"user{i}",
            "email": f"user{i}@example.com",
            "given_name": f"Given{i}",
            "family_name": "Ødegaard" if i == 1 else f"Family{i}",
            "disabled": "false",
            "title": "Engineer",
        }
        for i in range(n)
    ]


class Directory:
    """A CSV 'directory' the tests edit between runs."""

    def __init__(self, root: Path, name: str = "hr") -> None:
        self.users_path = root / f"{name}-users.csv"
        self.groups_path = root / f"{name}-groups.csv"
        self.users = people(10)
        self.groups = [
            {"id": "g1", "name": "staff", "members": "u0;u1;u2", "member_groups": "g2"},
            {"id": "g2", "name": "engineering", "members": "u3;u4", "member_groups": ""},
        ]
        self.source = FileSource(
            kind="file", name=name, format="csv", users=self.users_path, groups=self.groups_path
        )

    def write(self) -> None:
        with self.users_path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, HEADER)
            writer.writeheader()
            writer.writerows(self.users)
        with self.groups_path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, ["id", "name", "members", "member_groups"])
            writer.writeheader()
            writer.writerows(self.groups)

    def user(self, anchor: str) -> dict[str, str]:
        return next(u for u in self.users if u["id"] == anchor)


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def hr(tmp_path: Path) -> Directory:
    directory = Directory(tmp_path)
    directory.write()
    return directory


def sync(db: Database, directory: Directory, limits: Sync | None = None, **kwargs: object) -> RunResult:
    directory.write()
    return run_sync(db, directory.source, "file", reader_for(directory.source), limits or Sync(), **kwargs)  # type: ignore[arg-type]


def user_by_name(db: Database, username: str) -> User:
    with db.read() as session:
        user = session.scalar(sa.select(User).where(User.username == username))
        assert user is not None
        return user


def statuses(db: Database) -> dict[str, UserStatus]:
    with db.read() as session:
        return {u.username: u.status for u in session.scalars(sa.select(User))}


def audit_rows(db: Database) -> list[AuditRecord]:
    with db.read() as session:
        return list(session.scalars(sa.select(AuditRecord).order_by(AuditRecord.id)))


def test_initial_sync_creates_users_groups_and_audit(db: Database, hr: Directory) -> None:
    hr.user("u9")["disabled"] = "true"
    result = sync(db, hr)
    assert (result.status, result.counts.created, result.counts.errors) == ("ok", 10, 0)
    found = statuses(db)
    assert len(found) == 10
    assert found["user9"] is UserStatus.PROVISIONING_DISABLED
    assert {s for name, s in found.items() if name != "user9"} == {UserStatus.UNENROLLED}
    assert user_by_name(db, "user1").family_name == "Ødegaard"
    assert user_by_name(db, "user0").attributes == {"title": "Engineer"}
    created = [r for r in audit_rows(db) if r.action == "user.created"]
    assert len(created) == 10
    assert {r.actor for r in created} == {"file:hr"} and {r.run_id for r in created} == {result.run_id}
    with db.read() as session:
        staff = session.scalar(sa.select(Group).where(Group.name == "staff"))
        assert staff is not None
        members = groups.effective_member_ids(session, staff.id)
        names = set(session.scalars(sa.select(User.username).where(User.id.in_(members))))
        assert names == {"user0", "user1", "user2", "user3", "user4"}  # engineering is nested in staff
        run = session.get(SyncRun, result.run_id)
        assert run is not None and (run.status, run.created, run.source_users) == ("ok", 10, 10)


def test_resync_without_changes_writes_nothing(db: Database, hr: Directory) -> None:
    sync(db, hr)
    before = {u: user_by_name(db, u).updated_at for u in ("user0", "user5")}
    audit_before = len(audit_rows(db))
    result = sync(db, hr)
    assert (result.status, result.counts.created, result.counts.updated) == ("ok", 0, 0)
    assert result.plan is not None and result.plan.unchanged == 10 and result.plan.is_empty
    assert {u: user_by_name(db, u).updated_at for u in before} == before
    assert len(audit_rows(db)) == audit_before


def test_changes_disable_left_scope_and_rename(db: Database, hr: Directory) -> None:
    first = sync(db, hr)
    renamed_id = user_by_name(db, "user2").id
    hr.user("u0")["email"] = "new0@example.com"
    hr.user("u1")["disabled"] = "yes"
    hr.user("u2")["username"] = "user2-renamed"
    hr.users = [u for u in hr.users if u["id"] != "u3"]
    hr.groups[1]["members"] = "u4"
    result = sync(db, hr)
    assert result.status == "ok", result.reason
    assert (result.counts.created, result.counts.updated, result.counts.disabled) == (0, 2, 2)
    assert user_by_name(db, "user0").email == "new0@example.com"
    assert user_by_name(db, "user1").status is UserStatus.PROVISIONING_DISABLED
    assert user_by_name(db, "user2-renamed").id == renamed_id  # anchor, not username: no second user
    gone = user_by_name(db, "user3")
    assert gone.status is UserStatus.PROVISIONING_DISABLED and gone.deleted_at is not None
    changes = [
        (r.target_id, r.old, r.new, r.reason) for r in audit_rows(db) if r.action == "user.status_changed"
    ]
    assert (gone.id, "UNENROLLED", "PROVISIONING_DISABLED", "left scope") in changes
    assert {r.run_id for r in audit_rows(db) if r.action == "user.status_changed"} == {result.run_id}
    assert first.run_id != result.run_id


def test_reenable_restores_previous_status_with_devices_kept(db: Database, hr: Directory) -> None:
    sync(db, hr)
    user = user_by_name(db, "user5")
    with db.write() as session:
        session.add(Device(user_id=user.id, type=DeviceType.TOTP, state=DeviceState.ACTIVE))
        session.get(User, user.id).status = UserStatus.ACTIVE  # as the device service will do
    saved = hr.users
    hr.users = [u for u in saved if u["id"] != "u5"]
    sync(db, hr)
    assert user_by_name(db, "user5").status is UserStatus.PROVISIONING_DISABLED
    hr.users = saved
    result = sync(db, hr)
    assert result.counts.reenabled == 1
    back = user_by_name(db, "user5")
    assert back.status is UserStatus.ACTIVE and back.deleted_at is None  # no re-enrollment needed
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Device)) == 1


def test_guard_holds_mass_disable_and_changes_nothing(db: Database, hr: Directory) -> None:
    sync(db, hr)
    hr.users = hr.users[:6]  # 4 of 10 gone: over 20 %
    before = statuses(db)
    result = sync(db, hr, Sync(max_disable=Limit(count=500, percent=20)))
    assert result.status == "held"
    assert result.reason is not None and "would disable 4 of 10 users; the limit is 2" in result.reason
    assert statuses(db) == before
    with db.read() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None and run.status == "held" and run.plan is not None
        assert sorted(row["name"] for row in run.plan if row["op"] == "disable") == [
            "user6",
            "user7",
            "user8",
            "user9",
        ]


def test_bad_row_fails_the_run_and_changes_nothing(db: Database, hr: Directory) -> None:
    sync(db, hr)
    before = statuses(db)
    hr.user("u4")["email"] = "not-an-address"
    hr.users.append(
        {
            "id": "u99",
            "username": "",
            "email": "",
            "given_name": "",
            "family_name": "",
            "disabled": "",
            "title": "",
        }
    )
    result = sync(db, hr)
    assert result.status == "failed"
    assert result.reason is not None and "hr-users.csv:6: email" in result.reason
    assert "hr-users.csv:12: username" in result.reason
    assert statuses(db) == before
    with db.read() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None and run.status == "failed" and run.finished_at is not None


def test_empty_read_disables_no_one(db: Database, hr: Directory) -> None:
    sync(db, hr)
    hr.users, hr.groups = [], []
    result = sync(db, hr)
    assert result.status == "incomplete"
    assert result.reason is not None and "no user was disabled" in result.reason
    assert set(statuses(db).values()) == {UserStatus.UNENROLLED}


def test_dry_run_changes_nothing_and_keeps_the_plan(db: Database, hr: Directory) -> None:
    result = sync(db, hr, dry_run=True)
    assert result.status == "ok" and statuses(db) == {}
    with db.read() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None and run.dry_run and run.created == 10 and run.plan is not None
        assert len([row for row in run.plan if row["object"] == "user"]) == 10


def test_username_owned_by_another_source_is_not_taken_over(
    db: Database, hr: Directory, tmp_path: Path
) -> None:
    sync(db, hr)
    other = Directory(tmp_path, "other")
    other.users = [{**people(1)[0], "id": "x0", "email": "x@example.com"}]
    other.groups = []
    result = sync(db, other)
    assert result.counts.errors == 1 and result.counts.created == 0
    assert result.reason is not None and "already belongs to user" in result.reason
    assert user_by_name(db, "user0").managed_by == "hr"

    other.source = other.source.model_copy(update={"take_over_from": ["hr"]})
    result = sync(db, other)
    assert (result.counts.errors, result.counts.updated) == (0, 1)
    taken = user_by_name(db, "user0")
    assert (taken.managed_by, taken.email) == ("other", "x@example.com")


def test_second_concurrent_run_is_refused(db: Database, hr: Directory) -> None:
    with db.write() as session:
        runs.start(session, "hr", "full", dry_run=False)
    with pytest.raises(AlreadyRunningError):
        sync(db, hr)

"""LDAP sync end to end: a real slapd (the realistic tree) into SQLite and PostgreSQL.

Each test gets its own slapd and a fresh database, runs the engine as the daemon would, changes the
directory with ldapmodify, runs again, and checks the database after each scenario.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from harness import ldap_tree
from harness.slapd import Slapd

from syncd.config.models import Database as DatabaseConfig
from syncd.config.models import Limit, Sync
from syncd.config.sources import LdapSource
from syncd.domain.lifecycle import UserStatus
from syncd.sources.ldap import LdapReader
from syncd.store import cursors, groups, schema
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, Group, SourceLink, SyncRun, User
from syncd.sync.engine import RunResult, run_sync

USERS = len(ldap_tree.PEOPLE) + ldap_tree.BULK


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def tree(slapd_factory: Callable[..., Slapd]) -> Slapd:
    return slapd_factory(ldif=ldap_tree.tree_ldif())


def sync(db: Database, source: LdapSource, *, limits: Sync | None = None, **kwargs: Any) -> RunResult:
    return run_sync(db, source, "ldap", LdapReader(source), limits or Sync(), **kwargs)


def people(db: Database) -> dict[str, User]:
    with db.read() as session:
        return {u.username: u for u in session.scalars(sa.select(User))}


def statuses(db: Database) -> dict[str, UserStatus]:
    return {name: user.status for name, user in people(db).items()}


def run_row(db: Database, run_id: str) -> SyncRun:
    with db.read() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run


def members(db: Database, group: str) -> set[str]:
    with db.read() as session:
        group_id = session.scalar(sa.select(Group.id).where(Group.name == group, Group.deleted_at.is_(None)))
        assert group_id is not None, group
        ids = groups.effective_member_ids(session, group_id)
        return set(session.scalars(sa.select(User.username).where(User.id.in_(ids))))


def test_first_full_sync_of_the_realistic_tree(db: Database, tree: Slapd) -> None:
    result = sync(db, ldap_tree.source(tree))
    assert (result.status, result.counts.created, result.counts.errors) == ("ok", USERS, 0), result.reason
    found = people(db)
    assert len(found) == USERS
    assert found["carol"].status is UserStatus.PROVISIONING_DISABLED
    assert found["alice"].status is UserStatus.UNENROLLED and found["alice"].family_name == "Ødegaard"
    assert found["olga"].attributes == {"mobile": "+47 400 00 000", "title": "Engineer"}
    # nested groups, with the engineering ↔ platform cycle: effective membership still ends
    assert members(db, "all-staff") == {"alice", "bob", "carol", "dave", "erin"}
    assert members(db, "platform") == {"erin", "carol", "dave"}
    assert len(members(db, "big")) == ldap_tree.BULK
    assert members(db, "Ünicode-Gruppe") == {"jürgen", "olga"}
    assert members(db, "posix-admins") == {"alice", "frank"}
    run = run_row(db, result.run_id)
    assert (run.status, run.mode, run.created, run.source_users) == ("ok", "full", USERS, USERS)
    assert run.reason is not None and "cycle" in run.reason  # warnings are on the run record
    with db.read() as session:
        cursor = cursors.get(session, "corp")
        assert cursor is not None and '"feed": "syncrepl"' in (cursor.value or "")
        created = session.scalar(
            sa.select(sa.func.count()).where(
                AuditRecord.action == "user.created", AuditRecord.run_id == run.id
            )
        )
        assert created == USERS


def test_nothing_changed_writes_nothing(db: Database, tree: Slapd) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    before = people(db)
    with db.read() as session:
        audit_before = session.scalar(sa.select(sa.func.count()).select_from(AuditRecord))
    for mode in ("full", "incremental"):
        result = sync(db, source, mode=mode)
        assert result.status == "ok" and result.mode == mode
        assert result.plan is not None and result.plan.is_empty, result.plan
    after = people(db)
    assert {k: v.updated_at for k, v in after.items()} == {k: v.updated_at for k, v in before.items()}
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(AuditRecord)) == audit_before


CHANGES = f"""\
dn: {ldap_tree.dn("bob")}
changetype: modrdn
newrdn: uid=robert
deleteoldrdn: 1

dn: {ldap_tree.dn("dave")}
changetype: modrdn
newrdn: uid=dave
deleteoldrdn: 0
newsuperior: {ldap_tree.CONTRACTORS}

dn: {ldap_tree.dn("erin")}
changetype: modify
add: employeeType
employeeType: disabled

dn: {ldap_tree.dn("carol")}
changetype: modify
delete: employeeType

dn: {ldap_tree.dn("frank")}
changetype: delete

dn: {ldap_tree.dn("alice")}
changetype: modify
replace: mail
mail: alice.odegaard@example.org

dn: {ldap_tree.group_dn("Ünicode-Gruppe")}
changetype: modify
add: member
member: {ldap_tree.dn("mallory")}
-
delete: member
member: {ldap_tree.dn("olga")}

dn: uid=zoë,{ldap_tree.STAFF}
changetype: add
objectClass: inetOrgPerson
uid: zoë
cn: Zoë Zimmer
sn: Zimmer
givenName: Zoë
mail: zoe@example.org
"""


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_changes_rename_move_disable_delete_and_members(db: Database, tree: Slapd, mode: str) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    before = people(db)
    tree.add_ldif(CHANGES)
    result = sync(db, source, mode=mode)
    assert result.status == "ok" and result.mode == mode, result.reason
    after = people(db)
    # rename and move: the same users (anchor, not DN), updated
    assert after["robert"].id == before["bob"].id and "bob" not in after
    assert after["dave"].id == before["dave"].id
    with db.read() as session:
        link = session.get(
            SourceLink,
            (
                "corp",
                "user",
                session.scalar(sa.select(SourceLink.anchor).where(SourceLink.object_id == before["dave"].id)),
            ),
        )
        assert link is not None and link.dn == f"uid=dave,{ldap_tree.CONTRACTORS}"
    assert after["erin"].status is UserStatus.PROVISIONING_DISABLED
    assert after["carol"].status is UserStatus.UNENROLLED  # enabled again in the source
    assert after["frank"].status is UserStatus.PROVISIONING_DISABLED and after["frank"].deleted_at is not None
    assert after["alice"].email == "alice.odegaard@example.org"
    assert after["zoë"].given_name == "Zoë"
    assert len(after) == USERS + 1
    assert members(db, "Ünicode-Gruppe") == {"jürgen", "mallory"}
    assert "frank" not in members(db, "posix-admins")  # a deleted user keeps no memberships
    counts = result.counts
    assert (counts.created, counts.disabled, counts.reenabled) == (1, 2, 1), result.plan
    # a full run afterwards agrees with what the incremental run did
    again = sync(db, source, mode="full")
    assert again.plan is not None and again.plan.is_empty, [
        (g.name, g.reason, g.add_users, g.remove_users, g.add_groups, g.remove_groups)
        for g in again.plan.groups
    ]


def test_incremental_without_a_cursor_runs_full(db: Database, tree: Slapd) -> None:
    result = sync(db, ldap_tree.source(tree), mode="incremental")
    assert (result.status, result.mode, result.counts.created) == ("ok", "full", USERS)
    assert "no change-feed position stored yet" in (run_row(db, result.run_id).reason or "")


@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        '{"v": 1, "feed": "syncrepl", "users": "Z2FyYmFnZQ==", "groups": "Z2FyYmFnZQ=="}',
        '{"v": 1, "feed": "carrier-pigeon"}',
    ],
)
def test_unusable_cursor_falls_back_to_a_full_run(db: Database, tree: Slapd, stored: str) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    tree.add_ldif(f"dn: {ldap_tree.dn('frank')}\nchangetype: delete\n")
    with db.write() as session:
        cursor = cursors.get(session, "corp")
        assert cursor is not None
        cursor.value = stored
    result = sync(db, source, mode="incremental")
    assert (result.status, result.mode, result.counts.disabled) == ("ok", "full", 1), result.reason
    assert "full run instead" in (run_row(db, result.run_id).reason or "")
    with db.read() as session:
        cursor = cursors.get(session, "corp")
        assert cursor is not None and cursor.value != stored  # a fresh position from the full run


def test_config_change_makes_the_next_run_full(db: Database, tree: Slapd) -> None:
    sync(db, ldap_tree.source(tree))
    wider = ldap_tree.source(tree, attributes={"extra": ["title", "mobile", "departmentNumber"]})
    result = sync(db, wider, mode="incremental")
    assert result.mode == "full" and result.status == "ok"


def test_held_run_disables_no_one_and_keeps_its_plan(db: Database, tree: Slapd) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    deletes = "\n".join(f"dn: {ldap_tree.dn(f'bulk{i:04d}')}\nchangetype: delete\n" for i in range(600))
    tree.add_ldif(deletes)
    before = statuses(db)
    result = sync(db, source, mode="incremental", limits=Sync(max_disable=Limit(count=500, percent=20)))
    assert result.status == "held"
    assert (
        result.reason is not None
        and "would disable 600 of" in result.reason
        and "limit is 402" in result.reason
    )
    assert statuses(db) == before
    run = run_row(db, result.run_id)
    assert run.status == "held" and run.plan is not None
    assert sum(1 for row in run.plan if row["op"] == "disable") == 600
    with db.read() as session:  # the cursor did not move: the next run sees the same changes
        cursor = cursors.get(session, "corp")
        assert cursor is not None
    again = sync(db, source, mode="incremental", limits=Sync(max_disable=Limit(count=500, percent=20)))
    assert again.status == "held"
    assert run_row(db, result.run_id).status == "superseded"  # one held run awaits a decision

"""Bad input and faults during an LDAP sync (issue 3): in each, no user changes status and the run record
says why. Real slapd, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from harness import ldap_tree
from harness.slapd import Slapd

from syncd.config.models import Database as DatabaseConfig
from syncd.config.models import Sync
from syncd.config.sources import LdapSource
from syncd.domain.lifecycle import UserStatus
from syncd.sources.ldap import LdapReader
from syncd.store import schema
from syncd.store.db import Database
from syncd.store.tables import SyncRun, User
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


def sync(db: Database, source: LdapSource, reader: LdapReader | None = None, **kwargs: object) -> RunResult:
    return run_sync(db, source, "ldap", reader or LdapReader(source), Sync(), **kwargs)  # type: ignore[arg-type]


def statuses(db: Database) -> dict[str, UserStatus]:
    with db.read() as session:
        return {u.username: u.status for u in session.scalars(sa.select(User))}


def record(db: Database, result: RunResult) -> SyncRun:
    with db.read() as session:
        run = session.get(SyncRun, result.run_id)
        assert run is not None and run.finished_at is not None
        return run


@pytest.fixture
def synced(db: Database, tree: Slapd) -> dict[str, UserStatus]:
    """The tree synced once; then 50 users deleted in the directory (a complete read would disable them)."""
    first = sync(db, ldap_tree.source(tree))
    assert first.status == "ok", first.reason
    tree.add_ldif("\n".join(f"dn: {ldap_tree.dn(f'bulk{i:04d}')}\nchangetype: delete\n" for i in range(50)))
    return statuses(db)


def test_slapd_stopped_mid_run(db: Database, tree: Slapd, synced: dict[str, UserStatus]) -> None:
    pages: list[int] = []

    def stop_after_first_page(read: int) -> None:
        pages.append(read)
        if len(pages) == 1:
            tree.stop()

    source = ldap_tree.source(tree)
    result = sync(db, source, LdapReader(source, on_page=stop_after_first_page), mode="full")
    assert result.status == "incomplete"
    assert statuses(db) == synced
    reason = record(db, result).reason or ""
    assert "page 2" in reason and "no user was disabled" in reason


def test_size_limit_below_the_directory_size(
    db: Database, tree: Slapd, synced: dict[str, UserStatus]
) -> None:
    source = ldap_tree.source(tree, bind_dn=tree.limited_dn, password=tree.limited_password)
    result = sync(db, source, mode="full")
    assert result.status == "incomplete" and statuses(db) == synced
    assert "sizeLimitExceeded (4)" in (record(db, result).reason or "")


def test_bind_password_that_stopped_working(db: Database, tree: Slapd, synced: dict[str, UserStatus]) -> None:
    result = sync(db, ldap_tree.source(tree, password="changed-by-someone"), mode="incremental")
    assert result.status == "failed" and statuses(db) == synced
    assert "invalidCredentials" in (record(db, result).reason or "")


def test_filter_typo(db: Database, tree: Slapd, synced: dict[str, UserStatus]) -> None:
    source = ldap_tree.source(
        tree, users={"base": "ou=people,dc=example,dc=org", "filter": "(objectClass=inetOrgPerson"}
    )
    result = sync(db, source, mode="full")
    assert result.status == "failed" and statuses(db) == synced
    assert "users.filter" in (record(db, result).reason or "") and "not a valid LDAP filter" in (
        record(db, result).reason or ""
    )


def test_attribute_missing_on_some_entries(db: Database, tree: Slapd) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    before = statuses(db)
    tree.add_ldif(f"dn: {ldap_tree.dn('alice')}\nchangetype: modify\ndelete: mail\n-\ndelete: title\n")
    result = sync(db, source, mode="incremental")
    assert result.status == "ok" and statuses(db) == before
    assert result.counts.updated == 1 and result.plan is not None
    assert result.plan.users[0].reason == "attributes changed: email, attributes"


def test_duplicate_usernames(db: Database, tree: Slapd) -> None:
    source = ldap_tree.source(tree)
    sync(db, source)
    before = statuses(db)
    tree.add_ldif(ldap_tree.person("alice", "Another", "Alice", ldap_tree.CONTRACTORS))
    expected = {
        # a delta holds only the newcomer: applying it finds the name taken
        "incremental": "user alice: username already belongs to user",
        # a full read holds both: neither is used
        "full": "username 'alice' is used by 2 entries",
    }
    for mode, why in expected.items():
        result = sync(db, source, mode=mode)
        assert result.status == "ok" and statuses(db) == before, mode
        assert why in (record(db, result).reason or ""), mode
    # the existing alice was neither updated nor disabled, and the newcomer was not created
    assert sorted(n for n in statuses(db) if n == "alice") == ["alice"]


def test_entry_whose_anchor_is_missing(db: Database, slapd_factory: Callable[..., Slapd]) -> None:
    ldif = "\n".join(
        ldap_tree.person(uid, uid.title(), "Example", ldap_tree.STAFF, {"employeeNumber": str(n)})
        for n, uid in enumerate(["ann", "ben", "cat", "dan"])
    )
    tree = slapd_factory(ldif=f"dn: {ldap_tree.STAFF}\nobjectClass: organizationalUnit\nou: staff\n\n{ldif}")
    source = ldap_tree.source(tree, anchor_attribute="employeeNumber", groups=None)
    assert sync(db, source).counts.created == 4
    before = statuses(db)
    tree.add_ldif(
        f"dn: uid=ann,{ldap_tree.STAFF}\nchangetype: modify\ndelete: employeeNumber\n\n"
        f"dn: uid=ben,{ldap_tree.STAFF}\nchangetype: delete\n"
    )
    result = sync(db, source, mode="incremental")  # timestamp feed: employeeNumber is not entryUUID
    assert result.status == "incomplete" and statuses(db) == before  # ben is not disabled either
    assert "uid=ann" in (record(db, result).reason or "") and "has no employeeNumber" in (
        record(db, result).reason or ""
    )


def test_referral_in_scope(db: Database, tree: Slapd, synced: dict[str, UserStatus]) -> None:
    tree.add_ldif(
        "dn: ou=remote,ou=people,dc=example,dc=org\nobjectClass: referral\nobjectClass: extensibleObject\n"
        "ou: remote\nref: ldap://127.0.0.1:9/ou=remote,dc=example,dc=org\n"
    )
    result = sync(db, ldap_tree.source(tree), mode="full")
    assert result.status == "incomplete" and statuses(db) == synced
    assert "referrals are not followed" in (record(db, result).reason or "")

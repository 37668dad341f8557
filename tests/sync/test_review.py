"""Held runs: approve (read again, apply within the held plan) and reject, against a real slapd, on SQLite
and PostgreSQL (docs/adr/0011-held-runs.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from harness import ldap_tree
from harness.slapd import Slapd

from syncd.config.models import Database as DatabaseConfig
from syncd.config.models import Limit, Sync
from syncd.domain.lifecycle import UserStatus
from syncd.errors import NotFoundError, UsageError
from syncd.sources.ldap import LdapReader
from syncd.store import schema
from syncd.store.db import Database
from syncd.store.tables import SyncRun, User
from syncd.sync import review
from syncd.sync.engine import RunResult, run_sync

LIMITS = Sync(max_disable=Limit(count=100, percent=20))


@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def tree(slapd_factory: Callable[..., Slapd]) -> Slapd:
    return slapd_factory(ldif=ldap_tree.tree_ldif(bulk=400))


def delete_bulk(tree: Slapd, numbers: range) -> None:
    tree.add_ldif("\n".join(f"dn: {ldap_tree.dn(f'bulk{i:04d}')}\nchangetype: delete\n" for i in numbers))


def disabled(db: Database) -> set[str]:
    with db.read() as session:
        query = sa.select(User.username).where(User.status == UserStatus.PROVISIONING_DISABLED)
        return set(session.scalars(query)) - {"carol"}


def run_status(db: Database, run_id: str) -> tuple[str, str | None]:
    with db.read() as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run.status, run.decided_by


@pytest.fixture
def held(db: Database, tree: Slapd) -> str:
    """A run held because 150 of 410 users were deleted (limit: 82)."""
    source = ldap_tree.source(tree)
    assert run_sync(db, source, "ldap", LdapReader(source), LIMITS).status == "ok"
    delete_bulk(tree, range(150))
    result = run_sync(db, source, "ldap", LdapReader(source), LIMITS, mode="incremental")
    assert result.status == "held" and disabled(db) == set()
    return result.run_id


def approve(db: Database, tree: Slapd, run_id: str) -> RunResult:
    source = ldap_tree.source(tree)
    return review.approve(db, source, "ldap", LdapReader(source), LIMITS, run_id, actor="admin:test")


def test_approve_applies_the_held_changes(db: Database, tree: Slapd, held: str) -> None:
    result = approve(db, tree, held)
    assert result.status == "ok" and result.counts.disabled == 150
    assert disabled(db) == {f"bulk{i:04d}" for i in range(150)}
    assert run_status(db, held) == ("approved", "admin:test")
    with pytest.raises(UsageError, match="is approved, not held"):
        approve(db, tree, held)


def test_approve_with_fewer_changes_now_applies_those(db: Database, tree: Slapd, held: str) -> None:
    tree.add_ldif(ldap_tree.person("bulk0000", "Bulk", "Back", ldap_tree.BULK_OU))  # a new entry, new anchor
    result = approve(db, tree, held)
    assert result.status == "ok"
    assert len(disabled(db)) == 150  # the old bulk0000 stays gone: the new one is another user


def test_approve_refuses_a_plan_that_grew(db: Database, tree: Slapd, held: str) -> None:
    delete_bulk(tree, range(150, 160))
    result = approve(db, tree, held)
    assert result.status == "held"
    assert "does not cover it: 10 user(s) would now be disabled" in (result.reason or "")
    assert disabled(db) == set()
    assert run_status(db, held)[0] == "superseded"
    with pytest.raises(UsageError, match="superseded"):
        approve(db, tree, held)
    final = approve(db, tree, result.run_id)
    assert final.status == "ok" and len(disabled(db)) == 160


def test_reject_applies_nothing_and_the_next_run_is_held_again(db: Database, tree: Slapd, held: str) -> None:
    rejected = review.reject(db, held, actor="admin:test", note="wrong OU")
    assert (rejected.status, rejected.decided_by) == ("rejected", "admin:test")
    assert "wrong OU" in (rejected.reason or "") and disabled(db) == set()
    source = ldap_tree.source(tree)
    again = run_sync(db, source, "ldap", LdapReader(source), LIMITS, mode="incremental")
    assert again.status == "held" and disabled(db) == set()
    with pytest.raises(UsageError, match="rejected"):
        review.reject(db, held, actor="admin:test")


def test_unknown_and_dry_runs_are_refused(db: Database, tree: Slapd) -> None:
    with pytest.raises(NotFoundError):
        review.reject(db, "nope", actor="admin:test")
    source = ldap_tree.source(tree)
    dry = run_sync(db, source, "ldap", LdapReader(source), LIMITS, dry_run=True)
    with pytest.raises(UsageError, match="dry run"):
        review.reject(db, dry.run_id, actor="admin:test")

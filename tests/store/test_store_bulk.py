"""Bulk loads (syncd.store.bulk): foreign keys checked once at the end, the lean SQLite page cache."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
import sqlalchemy as sa
from harness.rows import make_groups, make_users

from syncd.errors import StoreError
from syncd.store import bulk, groups
from syncd.store.db import Database
from syncd.store.tables import GroupMember, User


def _foreign_keys(db: Database) -> int:
    with db.read() as session:
        if db.is_sqlite:
            query = "SELECT count(*) FROM pragma_foreign_key_list('group_members')"
            return int(session.execute(sa.text(query)).scalar_one())
        query = (
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'group_members'::regclass AND contype = 'f'"
        )
        return int(session.execute(sa.text(query)).scalar_one())


def test_large_membership_load_keeps_its_foreign_keys(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "BULK_KEYS", 2)
    g = make_groups(db, "eng")
    u = make_users(db, "ann", "ben")
    with db.write() as session:
        groups.insert_members(session, [(g["eng"], u["ann"]), (g["eng"], u["ben"])], "ldap", expected=2)
    assert _foreign_keys(db) == 2
    with db.write() as session:
        session.execute(sa.delete(User).where(User.id == u["ann"]))  # ON DELETE CASCADE still there
    with db.read() as session:
        assert session.scalars(sa.select(GroupMember.user_id)).all() == [u["ben"]]


def test_large_membership_load_still_refuses_an_unknown_user(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "BULK_KEYS", 2)
    g = make_groups(db, "eng")
    u = make_users(db, "ann")
    refused = (sa.exc.IntegrityError, StoreError, psycopg.IntegrityError, sqlite3.IntegrityError)
    with pytest.raises(refused), db.write() as session:
        groups.insert_members(session, [(g["eng"], u["ann"]), (g["eng"], "no-such-user")], "ldap", expected=2)
    assert _foreign_keys(db) == 2
    with db.read() as session:
        assert session.scalars(sa.select(GroupMember.user_id)).all() == []


def test_lean_cache_gives_the_connection_its_cache_back(db: Database) -> None:
    with db.write() as session:
        before = session.execute(sa.text("PRAGMA cache_size")).scalar_one() if db.is_sqlite else None
        with bulk.lean_cache(session):
            if db.is_sqlite:
                assert session.execute(sa.text("PRAGMA cache_size")).scalar_one() == -bulk.LEAN_CACHE_KIB
        if db.is_sqlite:
            assert session.execute(sa.text("PRAGMA cache_size")).scalar_one() == before


def test_large_membership_load_falls_back_when_the_table_is_busy(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another session reading group_members (PostgreSQL): the keys can't be dropped, rows load as usual."""
    monkeypatch.setattr(bulk, "BULK_KEYS", 2)
    g = make_groups(db, "eng")
    u = make_users(db, "ann", "ben")
    with db.read_engine.connect() as other, other.begin():
        if not db.is_sqlite:
            other.execute(sa.text("LOCK TABLE group_members IN ACCESS SHARE MODE"))
        with db.write() as session:
            groups.insert_members(session, [(g["eng"], u["ann"]), (g["eng"], u["ben"])], "ldap", expected=2)
    assert _foreign_keys(db) == 2
    with db.read() as session:
        assert sorted(session.scalars(sa.select(GroupMember.user_id))) == sorted(u.values())

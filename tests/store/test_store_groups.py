"""Groups (syncd.store.groups): membership writes and effective membership through nesting and cycles."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from harness.rows import make_groups, make_users

from syncd.store import groups
from syncd.store.db import Database
from syncd.store.tables import GroupMember


def test_effective_members_follow_nesting_and_survive_cycles(db: Database) -> None:
    g = make_groups(db, "all", "eng", "backend", "loop", "empty", "outer")
    u = make_users(db, "ann", "ben", "cat", "dan")
    with db.write() as session:
        groups.add_members(session, g["all"], [u["ann"]], "ldap")
        groups.add_members(session, g["eng"], [u["ben"]], "ldap")
        groups.add_members(session, g["backend"], [u["cat"], u["ben"]], "ldap")
        groups.add_members(session, g["loop"], [u["dan"]], None)
        groups.add_children(session, g["all"], [g["eng"]], "ldap")  # all ⊃ eng ⊃ backend ⊃ all: a cycle
        groups.add_children(session, g["eng"], [g["backend"]], "ldap")
        groups.add_children(session, g["backend"], [g["all"]], "ldap")
        groups.add_children(session, g["loop"], [g["loop"]], None)  # nested in itself
        groups.add_children(session, g["outer"], [g["backend"], g["empty"]], None)
    everyone = {u["ann"], u["ben"], u["cat"]}
    with db.read() as session:
        assert groups.effective_member_ids(session, g["all"]) == everyone
        assert groups.effective_member_ids(session, g["eng"]) == everyone
        assert groups.effective_member_ids(session, g["backend"]) == everyone
        assert groups.effective_member_ids(session, g["outer"]) == everyone
        assert groups.effective_member_ids(session, g["loop"]) == {u["dan"]}
        assert groups.effective_member_ids(session, g["empty"]) == set()
        assert groups.effective_member_ids(session, "no-such-group") == set()


def test_effective_members_of_a_deep_chain(db: Database) -> None:
    chain = [f"level{i:02d}" for i in range(30)]
    g = make_groups(db, *chain)
    u = make_users(db, "deep")
    with db.write() as session:
        for parent, child in itertools.pairwise(chain):
            groups.add_children(session, g[parent], [g[child]], None)
        groups.add_members(session, g[chain[-1]], [u["deep"]], None)
    with db.read() as session:
        assert groups.effective_member_ids(session, g[chain[0]]) == {u["deep"]}


def test_adding_existing_members_leaves_them_as_they_are(db: Database) -> None:
    g = make_groups(db, "staff")
    u = make_users(db, "ann", "ben")
    with db.write() as session:
        groups.add_members(session, g["staff"], [u["ann"]], None)  # added by an admin
    with db.write() as session:
        groups.add_members(session, g["staff"], [u["ann"], u["ben"]], "ldap")
        groups.add_members(session, g["staff"], [], "ldap")
    with db.read() as session:
        rows = session.execute(
            sa.select(GroupMember.user_id, GroupMember.managed_by).where(GroupMember.group_id == g["staff"])
        ).all()
        assert {tuple(row) for row in rows} == {(u["ann"], None), (u["ben"], "ldap")}
        assert groups.names_of_user(session, u["ann"]) == ["staff"]

"""Minimal user and group rows for store tests: ``make_users(db, "ann", "ben")`` → name → id."""

from __future__ import annotations

from syncd.store.db import Database
from syncd.store.tables import Group, User


def make_groups(db: Database, *names: str) -> dict[str, str]:
    with db.write() as session:
        made = {name: Group(name=name, name_key=name.casefold()) for name in names}
        session.add_all(made.values())
        session.flush()
        return {name: group.id for name, group in made.items()}


def make_users(db: Database, *names: str) -> dict[str, str]:
    with db.write() as session:
        made = {name: User(username=name, username_key=name.casefold()) for name in names}
        session.add_all(made.values())
        session.flush()
        return {name: user.id for name, user in made.items()}

"""The demo directory in config/demo parses, and its CSV and LDIF forms say the same thing."""

from __future__ import annotations

from pathlib import Path

from syncd.domain.records import Snapshot
from syncd.sources import read_csv, read_ldif

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


def csv_demo() -> Snapshot:
    return read_csv(DEMO / "users.csv", DEMO / "groups.csv")


def ldif_demo() -> Snapshot:
    return read_ldif(DEMO / "directory.ldif")


def memberships(snapshot: Snapshot) -> dict[str, tuple[set[str], set[str]]]:
    """Group name → (member usernames, member group names): anchors differ between the two forms."""
    usernames = {user.anchor: user.username for user in snapshot.users}
    names = {group.anchor: group.name for group in snapshot.groups}
    return {
        group.name: ({usernames[a] for a in group.member_users}, {names[a] for a in group.member_groups})
        for group in snapshot.groups
    }


def test_the_csv_demo_parses() -> None:
    snapshot = csv_demo()
    assert len(snapshot.users) == 12
    assert len(snapshot.groups) == 4
    assert snapshot.warnings == ()
    assert [u.username for u in snapshot.users if u.disabled] == ["dvolkov"]
    assert [u.username for u in snapshot.users if u.email is None] == ["kmensah"]
    assert {"José Núñez", "Zoë Ødegaard", "李雷"} <= {u.display_name for u in snapshot.users}
    assert all(u.email.endswith("@example.com") for u in snapshot.users if u.email)


def test_the_ldif_demo_parses() -> None:
    snapshot = ldif_demo()
    assert len(snapshot.users) == 12
    assert len(snapshot.groups) == 4
    assert snapshot.warnings == ()
    assert [u.username for u in snapshot.users if u.disabled] == ["dvolkov"]
    assert [u.username for u in snapshot.users if u.email is None] == ["kmensah"]
    assert all(u.dn and u.dn.endswith(",ou=People,dc=example,dc=com") for u in snapshot.users)


def test_both_forms_hold_the_same_people() -> None:
    csv_users = {u.username: u for u in csv_demo().users}
    ldif_users = {u.username: u for u in ldif_demo().users}
    assert sorted(csv_users) == sorted(ldif_users)
    for username, user in csv_users.items():
        other = ldif_users[username]
        assert (
            user.email,
            user.given_name,
            user.family_name,
            user.display_name,
            user.phone,
            user.disabled,
        ) == (
            other.email,
            other.given_name,
            other.family_name,
            other.display_name,
            other.phone,
            other.disabled,
        )


def test_both_forms_hold_the_same_groups_with_one_nested() -> None:
    groups = memberships(csv_demo())
    assert groups == memberships(ldif_demo())
    assert sorted(groups) == ["engineering", "mfa-pilot", "operations", "staff"]
    assert groups["mfa-pilot"][1] == {"engineering"}
    assert len(groups["staff"][0]) == 12

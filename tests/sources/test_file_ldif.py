"""The LDIF file source: RFC 2849 parsing and mapping rules, on real files (bad input: *_errors.py)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from syncd.domain.records import SourceGroup, SourceUser
from syncd.sources import read_ldif
from syncd.sources.ldif_file import normalize_dn

PEOPLE = "ou=People,dc=example,dc=com"
GROUPS = "ou=Groups,dc=example,dc=com"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def person(uid: str, anchor: str, *extra: str) -> list[str]:
    return [
        f"dn: uid={uid},{PEOPLE}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"entryUUID: {anchor}",
        *extra,
        "",
    ]


def write(tmp_path: Path, *lines: str, name: str = "directory.ldif") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- users ---------------------------------------------------------------------------------------------


def test_maps_every_person_attribute(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"dn: uid=alice,{PEOPLE}",
        "objectClass: top",
        "objectClass: person",
        "objectClass: organizationalPerson",
        "objectClass: inetOrgPerson",
        "uid: alice",
        "cn: Alice Martin",
        "givenName: Alice",
        "sn: Martin",
        "displayName: Alice M.",
        "mail: alice@example.com",
        "telephoneNumber: +1 555 0101",
        "title: Manager",
        "departmentNumber: 42",
        "departmentNumber: 7",
        "employeeNumber: E1001",
        "jpegPhoto:: /9j/4AAQ",
        "userPassword: {SSHA}xyz",
        "entryUUID: 0a1b",
    )
    assert read_ldif(path).users == (
        SourceUser(
            anchor="0a1b",
            username="alice",
            email="alice@example.com",
            given_name="Alice",
            family_name="Martin",
            display_name="Alice M.",
            phone="+1 555 0101",
            disabled=False,
            dn=f"uid=alice,{PEOPLE}",
            attributes=(
                ("departmentNumber", "42"),
                ("departmentNumber", "7"),
                ("employeeNumber", "E1001"),
                ("title", "Manager"),
            ),
        ),
    )


def test_display_name_falls_back_to_cn_and_attribute_names_ignore_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"dn: uid=bob,{PEOPLE}",
        "objectclass: PERSON",
        "UID: bob",
        "CN: Bob Okafor",
        "entryuuid: b1",
    )
    (user,) = read_ldif(path).users
    assert (user.anchor, user.username, user.display_name) == ("b1", "bob", "Bob Okafor")


def test_organizational_person_is_a_user_and_other_entries_are_passed_over(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dn: dc=example,dc=com",
        "objectClass: domain",
        "dc: example",
        "",
        f"dn: {PEOPLE}",
        "objectClass: organizationalUnit",
        "ou: People",
        "",
        f"dn: uid=carol,{PEOPLE}",
        "objectClass: organizationalPerson",
        "uid: carol",
        "entryUUID: c1",
    )
    snapshot = read_ldif(path)
    assert [u.username for u in snapshot.users] == ["carol"]
    assert snapshot.groups == ()
    assert snapshot.warnings == ()


def test_an_entry_without_object_class_is_skipped_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, f"dn: uid=dave,{PEOPLE}", "uid: dave", "entryUUID: d1")
    snapshot = read_ldif(path)
    assert snapshot.users == ()
    assert snapshot.warnings == ("directory.ldif:1: entry has no objectClass; skipped",)


def test_disabled_follows_the_disabled_attribute(tmp_path: Path) -> None:
    lines = [
        *person("alice", "a1", "pwdAccountLockedTime: 000001010000Z"),
        *person("bob", "b1", "nsAccountLock: true"),
    ]
    path = write(tmp_path, *lines)
    assert [u.disabled for u in read_ldif(path).users] == [True, False]
    assert [u.disabled for u in read_ldif(path, disabled_attribute="NSACCOUNTLOCK").users] == [False, True]
    assert [u.disabled for u in read_ldif(path, disabled_attribute=None).users] == [False, False]


def test_another_anchor_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, *person("alice", "ignored", "ipaUniqueID: 5e1f"))
    assert read_ldif(path, anchor_attribute="ipaUniqueID").users[0].anchor == "5e1f"


def test_several_uids_prefer_the_rdn_else_the_first_with_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        *person("alice", "a1", "uid: alice.old"),
        f"dn: cn=Bob,{PEOPLE}",
        "objectClass: person",
        "uid: bob",
        "uid: bobby",
        "entryUUID: b1",
    )
    snapshot = read_ldif(path)
    assert [u.username for u in snapshot.users] == ["alice", "bob"]
    assert snapshot.warnings == ("directory.ldif:7: uid: 2 values; using 'bob'",)


# --- RFC 2849 ------------------------------------------------------------------------------------------


def test_comments_folding_base64_version_and_crlf(tmp_path: Path) -> None:
    text = "\r\n".join(
        [
            "# an export",
            "#  folded comment line",
            " that goes on: ignored",
            "version: 1",
            "",
            "",
            f"dn:: {b64(f'uid=josé,{PEOPLE}')}",
            "objectClass: inetOrgPerson",
            "# a comment inside the entry",
            "uid:: " + b64("josé"),
            f"displayName:: {b64('José Núñez')[:10]}",
            f" {b64('José Núñez')[10:]}",
            "mail: jose.nunez@exam",
            " ple.com",
            "description:: " + b64(" leading space kept "),
            "entryUUID: 11",
            " 22",
            "",
        ]
    )
    path = tmp_path / "directory.ldif"
    path.write_bytes(("\ufeff" + text).encode())
    (user,) = read_ldif(path).users
    assert user == SourceUser(
        anchor="1122",
        username="josé",
        email="jose.nunez@example.com",
        display_name="José Núñez",
        dn=f"uid=josé,{PEOPLE}",
    )


def test_version_may_share_the_first_record_and_raw_utf8_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1", *person("lilei", "l1", "cn: 李雷"))
    assert read_ldif(path).users[0].display_name == "李雷"


# --- groups --------------------------------------------------------------------------------------------


def test_groups_of_every_kind_resolve_members_to_anchors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        *person("alice", "a1"),
        *person("bob", "b1"),
        f"dn: cn=eng,{GROUPS}",
        "objectClass: groupOfNames",
        "cn: eng",
        "description: Engineers",
        "member: UID=Alice , OU=people,  DC=Example,dc=COM",
        "member: ",
        "entryUUID: g-eng",
        "",
        f"dn: cn=ops,{GROUPS}",
        "objectClass: groupOfUniqueNames",
        "cn: ops",
        f"uniqueMember: uid=bob,{PEOPLE}#'0101'B",
        f"uniqueMember: cn=eng,{GROUPS}",
        "entryUUID: g-ops",
        "",
        f"dn: cn=staff,{GROUPS}",
        "objectClass: posixGroup",
        "cn: staff",
        "gidNumber: 100",
        "memberUid: alice",
        "memberUid: BOB",
        "entryUUID: g-staff",
    )
    snapshot = read_ldif(path)
    assert snapshot.groups == (
        SourceGroup(
            anchor="g-eng",
            name="eng",
            description="Engineers",
            dn=f"cn=eng,{GROUPS}",
            member_users=frozenset({"a1"}),
        ),
        SourceGroup(
            anchor="g-ops",
            name="ops",
            dn=f"cn=ops,{GROUPS}",
            member_users=frozenset({"b1"}),
            member_groups=frozenset({"g-eng"}),
        ),
        SourceGroup(
            anchor="g-staff", name="staff", dn=f"cn=staff,{GROUPS}", member_users=frozenset({"a1", "b1"})
        ),
    )
    assert snapshot.warnings == ()


def test_nested_groups_may_form_cycles(tmp_path: Path) -> None:
    def group(name: str, *members: str) -> list[str]:
        lines = [f"dn: cn={name},{GROUPS}", "objectClass: groupOfNames", f"cn: {name}"]
        return [*lines, *(f"member: cn={m},{GROUPS}" for m in members), f"entryUUID: {name}", ""]

    snapshot = read_ldif(write(tmp_path, *group("a", "b"), *group("b", "a", "b")))
    assert [(g.anchor, g.member_groups) for g in snapshot.groups] == [
        ("a", frozenset({"b"})),
        ("b", frozenset({"a", "b"})),
    ]


def test_members_not_in_the_file_are_skipped_with_a_warning(tmp_path: Path) -> None:
    snapshot = read_ldif(
        write(
            tmp_path,
            f"dn: {PEOPLE}",
            "objectClass: organizationalUnit",
            "",
            *person("alice", "a1"),
            f"dn: cn=eng,{GROUPS}",
            "objectClass: groupOfNames",
            "objectClass: posixGroup",
            "cn: eng",
            f"member: uid=ghost,{PEOPLE}",
            f"member: {PEOPLE}",
            f"member: uid=alice,{PEOPLE}",
            "memberUid: nobody",
            "entryUUID: g1",
        )
    )
    assert snapshot.groups[0].member_users == frozenset({"a1"})
    assert snapshot.warnings == (
        f"directory.ldif:13: member: 'uid=ghost,{PEOPLE}' is not in this file; skipped",
        f"directory.ldif:14: member: '{PEOPLE}' is not a user or group; skipped",
        "directory.ldif:16: memberUid: no user with uid 'nobody' in this file; skipped",
    )


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("uid=alice,ou=People,dc=example,dc=com", "UID = Alice , OU=people,DC=EXAMPLE,  dc=com"),
        ("cn=Smith\\, John,dc=x", 'cn="Smith, John",dc=x'),
        ("cn=Smith\\2C John,dc=x", "cn=smith\\, john,dc=x"),
        ("cn=a+uid=b,dc=x", "uid=b + cn=a,dc=x"),
        ("cn=Zo\\C3\\AB,dc=x", "cn=zoë,dc=x"),
        ("cn=two  spaces,dc=x", "cn=two spaces,dc=x"),
    ],
)
def test_dn_normalisation_matches_equal_dns(left: str, right: str) -> None:
    assert normalize_dn(left) is not None
    assert normalize_dn(left) == normalize_dn(right)


@pytest.mark.parametrize("dn", ["", "   ", "nonsense", "cn=a,,dc=x", "=a", "cn=a\\", "1cn=a", "cn=\\ff"])
def test_dn_normalisation_refuses_non_dns(dn: str) -> None:
    assert normalize_dn(dn) is None


def test_different_dns_differ() -> None:
    assert normalize_dn("cn=a,dc=x") != normalize_dn("cn=b,dc=x")
    assert normalize_dn("cn=a\\,b,dc=x") != normalize_dn("cn=a,b=,dc=x")

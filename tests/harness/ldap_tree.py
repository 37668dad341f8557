"""A realistic directory for the LDAP sync tests, and an LDAP source config that reads it.

    dc=example,dc=org
      ou=people
        ou=staff          alice (Ødegaard), bob, carol (disabled), dave, erin, frank, gina, jürgen
        ou=contractors    mallory, olga
        ou=bulk           bulk0000 … bulk1999 (BULK users)
      ou=groups
        all-staff         alice, bob, engineering (nested)
        engineering       carol, dave, platform (nested)
        platform          erin, engineering (nested: a cycle engineering ↔ platform)
        big               every bulk user (2,000 members)
        Ünicode-Gruppe    jürgen, olga
        posix-admins      posixGroup, memberUid alice and frank
        auditors          groupOfUniqueNames, gina (with a #'0101'B uid suffix)

``carol`` is disabled with ``employeeType: disabled`` (the source's ``disabled_filter``).
"""

from __future__ import annotations

import os
from typing import Any

from harness.slapd import Slapd
from syncd.config.sources import LdapSource

BULK = 2000
STAFF = "ou=staff,ou=people,dc=example,dc=org"
CONTRACTORS = "ou=contractors,ou=people,dc=example,dc=org"
BULK_OU = "ou=bulk,ou=people,dc=example,dc=org"
GROUPS = "ou=groups,dc=example,dc=org"

PEOPLE = {
    "alice": ("Alice", "Ødegaard", STAFF, {}),
    "bob": ("Bob", "Builder", STAFF, {}),
    "carol": ("Carol", "Cruz", STAFF, {"employeeType": "disabled"}),
    "dave": ("Dave", "Doe", STAFF, {}),
    "erin": ("Erin", "Eriksen", STAFF, {}),
    "frank": ("Frank", "Fischer", STAFF, {}),
    "gina": ("Gina", "García", STAFF, {}),
    "jürgen": ("Jürgen", "Müller", STAFF, {}),
    "mallory": ("Mallory", "Mills", CONTRACTORS, {}),
    "olga": ("Olga", "Øberg", CONTRACTORS, {"mobile": "+47 400 00 000"}),
}


def dn(uid: str) -> str:
    if uid.startswith("bulk"):
        return f"uid={uid},{BULK_OU}"
    return f"uid={uid},{PEOPLE[uid][2]}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def person(
    uid: str,
    given: str,
    family: str,
    where: str,
    extra: dict[str, str] | None = None,
    member_of: list[str] | None = None,
) -> str:
    lines = [
        f"dn: uid={uid},{where}",
        "objectClass: inetOrgPerson",
        f"uid: {uid}",
        f"cn: {given} {family}",
        f"sn: {family}",
        f"givenName: {given}",
        f"displayName: {given} {family}",
        f"mail: {uid}@example.org",
        "telephoneNumber: +1 555 0100",
        "title: Engineer",
    ]
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    lines += [f"memberOf: {group}" for group in member_of or ()]
    return "\n".join(lines) + "\n"


def tree_ldif(bulk: int = BULK) -> str:
    """The whole tree as LDIF for ``slapadd`` (UTF-8; no memberOf: syncd reads members from groups)."""
    parts = [
        f"dn: {ou}\nobjectClass: organizationalUnit\nou: {ou.split(',')[0].split('=')[1]}\n"
        for ou in (STAFF, CONTRACTORS, BULK_OU)
    ]
    groups: list[tuple[str, str, list[str]]] = [
        ("all-staff", "groupOfNames", [dn("alice"), dn("bob"), group_dn("engineering")]),
        ("engineering", "groupOfNames", [dn("carol"), dn("dave"), group_dn("platform")]),
        ("platform", "groupOfNames", [dn("erin"), group_dn("engineering")]),
        ("big", "groupOfNames", [dn(f"bulk{i:04d}") for i in range(bulk)] or [dn("alice")]),
        ("Ünicode-Gruppe", "groupOfNames", [dn("jürgen"), dn("olga")]),
    ]
    # slapadd runs no overlays: write memberOf the way the memberof overlay would (it needs it to keep
    # group members right when a user is renamed or deleted later)
    member_of: dict[str, list[str]] = {}
    for cn, _, members in groups:
        for member in members:
            member_of.setdefault(member, []).append(group_dn(cn))
    for uid, (given, family, where, extra) in PEOPLE.items():
        parts.append(person(uid, given, family, where, extra, member_of.get(dn(uid), [])))
    for i in range(bulk):
        uid = f"bulk{i:04d}"
        parts.append(person(uid, "Bulk", f"User{i}", BULK_OU, None, member_of.get(dn(uid), [])))
    for cn, kind, members in groups:
        parts.append(
            f"dn: {group_dn(cn)}\nobjectClass: {kind}\ncn: {cn}\n"
            + "".join(f"member: {m}\n" for m in members)
        )
    parts.append(
        f"dn: {group_dn('posix-admins')}\nobjectClass: posixGroup\ncn: posix-admins\ngidNumber: 5000\n"
        "memberUid: alice\nmemberUid: frank\n"
    )
    parts.append(
        f"dn: {group_dn('auditors')}\nobjectClass: groupOfUniqueNames\ncn: auditors\n"
        f"uniqueMember: {dn('gina')}#'0101'B\n"
    )
    return "\n".join(parts)


def source(slapd: Slapd, name: str = "corp", **overrides: Any) -> LdapSource:
    """An LDAP source reading ``slapd`` as the syncbot account, with ``disabled_filter`` for carol."""
    env = f"SYNCD_TEST_LDAP_PW_{name.upper().replace('-', '_')}"
    os.environ[env] = overrides.pop("password", slapd.bind_password)
    config: dict[str, Any] = {
        "kind": "ldap",
        "name": name,
        "servers": [slapd.url],
        "bind": {"dn": overrides.pop("bind_dn", slapd.bind_dn), "password": {"env": env}},
        "users": {"base": "ou=people,dc=example,dc=org"},
        "groups": {"base": GROUPS},
        "disabled_filter": "(employeeType=disabled)",
        "attributes": {"extra": ["title", "mobile"]},
        "page_size": 100,
        "timeouts": {"connect": 5, "receive": 10, "search": 30},
    }
    config.update(overrides)
    return LdapSource.model_validate(config)

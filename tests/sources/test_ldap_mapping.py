"""Pure parts of the LDAP reader: flavour defaults, anchors, disabled flags, entry mapping and its checks,
DN comparison, member resolution and nesting cycles."""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from syncd.config.sources import LdapSource
from syncd.domain.records import SourceGroup
from syncd.sources.ldap_ber import Entry
from syncd.sources.ldap_entries import GroupCollector, Notes, RawGroup, UserCollector, dn_key
from syncd.sources.ldap_flavours import anchor_text, settings_for, value_text
from syncd.sources.ldap_groups import cycles, groups_by_dn, resolve

os.environ.setdefault("SYNCD_TEST_MAPPING_PW", "pw")


def source(**overrides: Any) -> LdapSource:
    config: dict[str, Any] = {
        "kind": "ldap",
        "name": "corp",
        "servers": ["ldaps://dc1.example.com"],
        "bind": {"dn": "cn=x", "password": {"env": "SYNCD_TEST_MAPPING_PW"}},
        "users": {"base": "dc=example,dc=com"},
        **overrides,
    }
    return LdapSource.model_validate(config)


# ---- flavours --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flavour", "anchor", "username", "feed"),
    [
        ("openldap", "entryUUID", "uid", "syncrepl"),
        ("389ds", "nsUniqueId", "uid", "timestamp"),
        ("freeipa", "ipaUniqueID", "uid", "timestamp"),
        ("active_directory", "objectGUID", "sAMAccountName", "usn"),
    ],
)
def test_flavour_defaults(flavour: str, anchor: str, username: str, feed: str) -> None:
    settings = settings_for(source(flavour=flavour))
    assert (settings.anchor, settings.mapping["username"], settings.feed) == (anchor, username, feed)
    assert settings.user_attributes[0] == anchor


def test_configuration_overrides_the_flavour() -> None:
    settings = settings_for(
        source(
            anchor_attribute="employeeNumber",
            users={"base": "dc=x", "filter": "(objectClass=person)"},
            attributes={"email": "userPrincipalName", "extra": ["department", "Department"]},
            disabled_filter="(description=gone)",
        )
    )
    assert (settings.anchor, settings.user_filter, settings.mapping["email"]) == (
        "employeeNumber", "(objectClass=person)", "userPrincipalName"
    )  # fmt: skip
    assert settings.feed == "timestamp"  # RFC 4533 identifies entries by entryUUID only
    assert settings.disabled_attribute is None and settings.disabled_filter == "(description=gone)"
    assert settings.user_attributes.count("department") == 1  # asked once, whatever the case


@pytest.mark.parametrize(
    ("flavour", "attributes", "disabled"),
    [
        ("active_directory", {"useraccountcontrol": [b"512"]}, False),
        ("active_directory", {"useraccountcontrol": [b"514"]}, True),
        ("active_directory", {"useraccountcontrol": [b"66050"]}, True),
        ("active_directory", {"useraccountcontrol": [b"junk"]}, False),
        ("389ds", {"nsaccountlock": [b"TRUE"]}, True),
        ("389ds", {"nsaccountlock": [b"false"]}, False),
        ("openldap", {"pwdaccountlockedtime": [b"000001010000Z"]}, True),
        ("openldap", {}, False),
    ],
)
def test_disabled_flags(flavour: str, attributes: dict[str, list[bytes]], disabled: bool) -> None:
    assert settings_for(source(flavour=flavour)).is_disabled(attributes) is disabled


def test_object_guid_is_little_endian() -> None:
    raw = bytes.fromhex("1ab50e47cdaddf41909435f8396229d7")  # Samba's jdoe, ldap-lab.md 8.3
    assert anchor_text("objectGUID", raw) == "470eb51a-adcd-41df-9094-35f8396229d7"
    with pytest.raises(ValueError, match="16"):
        anchor_text("objectGUID", b"short")
    assert anchor_text("entryUUID", b"ABC-def") == "abc-def"
    assert value_text(b"\xff\xfe") == "base64://4="


# ---- entries ----------------------------------------------------------------------------------------
def user_entry(uid: str | None, anchor: str | None, dn: str | None = None, **extra: list[bytes]) -> Entry:
    attributes: dict[str, list[bytes]] = {"mail": [f"{uid}@x".encode()], **extra}
    if uid is not None:
        attributes["uid"] = [uid.encode()]
    if anchor is not None:
        attributes["entryuuid"] = [anchor.encode()]
    return Entry(dn or f"uid={uid},dc=x", attributes)


def collector(**overrides: Any) -> tuple[UserCollector, Notes]:
    notes = Notes()
    return UserCollector(settings_for(source(**overrides)), notes), notes


def test_users_map_and_duplicates_are_skipped_both() -> None:
    users, notes = collector(attributes={"extra": ["title"]})
    users.add(user_entry("ann", "a1", title=[b"B", b"A"]))
    users.add(user_entry("Bob", "b1"))
    users.add(user_entry("bob", "b2", dn="uid=bob,ou=other,dc=x"))
    records = users.finish()
    assert [(r.username, r.attributes) for r in records] == [("ann", (("title", "A"), ("title", "B")))]
    assert users.skipped == {"b1", "b2"} and not notes.incomplete
    assert "username 'bob' is used by 2 entries" in notes.warnings[0]


def test_missing_anchor_and_repeated_anchor_make_the_read_incomplete() -> None:
    users, notes = collector()
    users.add(user_entry("ann", None))
    users.add(user_entry("bob", "b1"))
    users.add(user_entry("bob2", "b1"))
    users.finish()
    assert any("has no entryUUID" in n for n in notes.incomplete)
    assert any("returned b1 twice" in n for n in notes.incomplete)


def test_missing_username_is_skipped_with_a_warning() -> None:
    users, notes = collector()
    assert users.add(user_entry(None, "n1")) is None
    assert users.finish() == [] and users.skipped == {"n1"}
    assert "no uid; skipped" in notes.warnings[0] and not notes.incomplete


def test_warnings_are_listed_ten_times_then_counted() -> None:
    notes = Notes()
    for i in range(25):
        notes.warn("kind", f"w{i}")
    assert notes.summary()[-1] == "... and 15 more of: kind" and len(notes.summary()) == 11


def test_group_entry_with_ranged_members() -> None:
    notes = Notes()
    groups = GroupCollector(settings_for(source(flavour="active_directory")), notes)
    guid = uuid.uuid4()
    groups.add(
        Entry("CN=big,DC=x", {"objectguid": [guid.bytes_le], "cn": [b"big"], "member;range=0-1499": [b"a"]})
    )
    groups.add(
        Entry("CN=small,DC=x", {"objectguid": [uuid.uuid4().bytes_le], "cn": [b"small"], "member": [b"b"]})
    )
    assert [g.name for g in groups.range_pending] == ["big"]
    assert groups.groups[str(guid)].member_dns == ["a"]


# ---- DNs and members ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("uid=Ann,OU=People,dc=Example,dc=ORG", "uid=ann,ou=people,dc=example,dc=org"),
        ("cn=Ann Smith, ou=People,dc=x", "CN=ann smith,OU=people,DC=x"),
        ("cn=a\\2Cb,dc=x", "cn=a\\,b,dc=x"),
        ('cn="a,b",dc=x', "cn=a\\,b,dc=x"),
        ("cn=a+uid=b,dc=x", "uid=b+cn=a,dc=x"),
        ("cn=Åsa,dc=x", "CN=åsa,DC=X"),
    ],
)
def test_dn_key_equal(a: str, b: str) -> None:
    assert dn_key(a) == dn_key(b)


def test_dn_key_different() -> None:
    assert dn_key("cn=a\\,b,dc=x") != dn_key("cn=a,cn=b,dc=x")


def test_resolve_members_nested_unknown_and_posix() -> None:
    notes = Notes()
    users = {dn_key("uid=ann,dc=x"): "u-ann", dn_key("uid=bob,dc=x"): "u-bob"}
    raw = [
        RawGroup("g1", "cn=one,dc=x", "one", None, ["UID=Ann,DC=x", "cn=two,dc=x", "uid=ghost,dc=x"], []),
        RawGroup("g2", "cn=two,dc=x", "two", "d", ["uid=bob,dc=x#'0101'B", "cn=two,dc=x"], ["ann", "nobody"]),
    ]
    resolved = {g.anchor: g for g in resolve(raw, users, {"ann": "u-ann"}, groups_by_dn(raw), notes)}
    assert resolved["g1"].member_users == {"u-ann"} and resolved["g1"].member_groups == {"g2"}
    assert resolved["g2"].member_users == {"u-bob", "u-ann"} and resolved["g2"].member_groups == frozenset()
    assert sorted(notes.warnings) == [
        "group one: 1 member(s) are not users or groups this source reads; ignored",
        "group two: 1 member(s) are not users or groups this source reads; ignored",
    ]


def test_cycles_are_found_once_each() -> None:
    def group(anchor: str, *children: str) -> SourceGroup:
        return SourceGroup(anchor, anchor, member_groups=frozenset(children))

    found = cycles(
        [group("a", "b"), group("b", "c"), group("c", "a"), group("d", "d2"), group("d2"), group("e", "e")]
    )
    assert sorted(map(tuple, found)) == [("a", "b", "c", "a"), ("e", "e")]

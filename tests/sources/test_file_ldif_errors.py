"""The LDIF file source: every bad-input path, with the line it is reported on."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from syncd.errors import SourceError
from syncd.sources import read_ldif

PEOPLE = "ou=People,dc=example,dc=com"
GROUPS = "ou=Groups,dc=example,dc=com"


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


def problems(tmp_path: Path, *lines: str) -> list[str]:
    """The problem lines of the one SourceError raised for this file."""
    with pytest.raises(SourceError) as caught:
        read_ldif(write(tmp_path, *lines))
    return str(caught.value).splitlines()[1:]


# --- bad input -----------------------------------------------------------------------------------------


def test_missing_and_not_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^directory\.ldif: file not found"):
        read_ldif(tmp_path / "directory.ldif")
    path = tmp_path / "directory.ldif"
    path.write_bytes(b"dn: uid=a\ncn: Jos\xe9\n")
    with pytest.raises(SourceError) as caught:
        read_ldif(path)
    assert str(caught.value) == "directory.ldif:2: not UTF-8 (byte 0xe9); save the file as UTF-8"


def test_entry_problems_are_all_reported_with_their_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        f"dn: uid=alice,{PEOPLE}",  # 1
        "objectClass: inetOrgPerson",
        "uid: alice",
        "mail: alice",
        "",
        f"dn: uid=bob,{PEOPLE}",  # 6
        "objectClass: person",
        "uid: bob",
        "entryUUID: u1",
        "",
        f"dn: uid=Bob2,{PEOPLE}",  # 11
        "objectClass: person",
        "uid: BOB",
        "entryUUID: u1",
        "entryUUID: u2",
        "",
        f"dn: uid=carol,{PEOPLE}",  # 17
        "objectClass: person",
        "entryUUID: u3",
        "",
        f"dn: uid=dave,{PEOPLE}",  # 21
        "objectClass: person",
        "uid: dave",
        "entryUUID: u1",
        "",
        f"dn: cn=eng,{GROUPS}",  # 26
        "objectClass: groupOfNames",
        "member: not a dn",
        "entryUUID: g1",
        "",
        f"dn: cn=both,{GROUPS}",  # 31
        "objectClass: person",
        "objectClass: groupOfNames",
        "",
        f"dn: UID=dave, {PEOPLE}",  # 35
        "objectClass: person",
        "",
        f"dn: uid=erin,{PEOPLE}",  # 38
        "objectClass: person",
        "uid: erin",
        "mail:: " + base64.b64encode(b"\xff\xfe").decode(),
        "entryUUID:: " + base64.b64encode(b"\x01\x02\xff").decode(),
    ) == [
        "directory.ldif:1: entry has no entryUUID",
        "directory.ldif:4: mail: 'alice' is not an email address",
        "directory.ldif:13: uid: duplicate username 'BOB' (first on line 8)",
        "directory.ldif:15: entryUUID: 2 values; an anchor must have exactly one",
        "directory.ldif:17: entry has no uid",
        "directory.ldif:24: entryUUID: duplicate entryUUID 'u1' (first on line 9)",
        "directory.ldif:26: entry has no cn",
        "directory.ldif:28: member: 'not a dn' is not a valid DN",
        "directory.ldif:31: entry is both a person and a group",
        "directory.ldif:35: dn: duplicate entry (first on line 21)",
        "directory.ldif:38: entry has no entryUUID",
        "directory.ldif:41: mail: value is not UTF-8 text",
        "directory.ldif:42: entryUUID: value is not UTF-8 text",
    ]


def test_syntax_problems_are_all_reported_with_their_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        "version: 2",  # 1
        "",
        " orphan continuation",  # 3
        "cn: no dn first",  # 4
        "",
        "dn: not a dn",  # 6
        "",
        "dn: uid=a,dc=x",  # 8
        "changetype: modify",
        "",
        "dn: uid=b,dc=x",  # 11
        "control: 1.2.3 true",
        "",
        "dn: uid=c,dc=x",  # 14
        "jpegPhoto:< file:///etc/passwd",
        "mail:: not*base64",
        "this line has no colon",
        "",
        "dn:: " + base64.b64encode(b"cn=\xff").decode(),  # 19
    ) == [
        "directory.ldif:1: version: only LDIF version 1 is supported, not 'version: 2'",
        "directory.ldif:3: line starts with a space but there is no line to continue",
        "directory.ldif:4: record does not start with 'dn:'",
        "directory.ldif:6: dn: 'not a dn' is not a valid DN",
        "directory.ldif:9: changetype: change records are not supported, only entries",
        "directory.ldif:12: control: change records are not supported, only entries",
        "directory.ldif:15: jpegPhoto: URL values (':<') are not supported; put the value in the file",
        "directory.ldif:16: mail: the '::' value is not valid base64",
        "directory.ldif:17: expected 'attribute: value', got 'this line has no colon'",
        "directory.ldif:19: dn: 'binary value' is not a valid DN",
    ]


def test_a_file_without_entries_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, "# an export that went wrong", "version: 1") == [
        "directory.ldif:1: file holds no entries"
    ]


def test_anchors_are_unique_across_users_and_groups(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        *person("alice", "x1"),
        f"dn: cn=eng,{GROUPS}",
        "objectClass: groupOfNames",
        "cn: eng",
        "entryUUID: x1",
    ) == ["directory.ldif:9: entryUUID: duplicate entryUUID 'x1' (first on line 4)"]


def test_the_message_names_the_file_and_caps_the_list(tmp_path: Path) -> None:
    lines = [line for n in range(23) for line in person(f"user{n}", f"a{n}", "mail: nope")]
    with pytest.raises(SourceError) as caught:
        read_ldif(write(tmp_path, *lines, name="corp.ldif"))
    message = str(caught.value).splitlines()
    assert message[0] == "corp.ldif: 23 problems, nothing was read:"
    assert message[1] == "corp.ldif:5: mail: 'nope' is not an email address"
    assert len(message) == 22
    assert message[-1] == "... and 3 more"

"""The CSV file source: mapping rules and every bad-input path, on real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.domain.records import SourceGroup, SourceUser
from syncd.errors import SourceError, SyncdError
from syncd.sources import read_csv

HEADER = "id,username,email,given_name,family_name,display_name,phone,disabled"


def write(tmp_path: Path, name: str, *lines: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def problems(tmp_path: Path, users: list[str], groups: list[str] | None = None) -> list[str]:
    """The problem lines of the one SourceError raised for these files."""
    users_path = write(tmp_path, "users.csv", *users)
    groups_path = None if groups is None else write(tmp_path, "groups.csv", *groups)
    with pytest.raises(SourceError) as caught:
        read_csv(users_path, groups_path)
    return str(caught.value).splitlines()[1:]


# --- mapping -------------------------------------------------------------------------------------------


def test_maps_every_user_column_and_keeps_the_rest_as_sorted_attributes(tmp_path: Path) -> None:
    users = write(
        tmp_path,
        "users.csv",
        HEADER + ",title,department,cost_centre",
        "u1,alice,alice@example.com,Alice,Martin,Alice M.,+1 555 0101,false,Manager,IT,",
    )
    snapshot = read_csv(users)
    assert snapshot.users == (
        SourceUser(
            anchor="u1",
            username="alice",
            email="alice@example.com",
            given_name="Alice",
            family_name="Martin",
            display_name="Alice M.",
            phone="+1 555 0101",
            disabled=False,
            dn=None,
            attributes=(("department", "IT"), ("title", "Manager")),
        ),
    )
    assert snapshot.groups == ()
    assert snapshot.complete
    assert snapshot.warnings == ()


def test_only_id_and_username_are_needed_and_empty_values_are_none(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", "id,username,email,phone", "u1,bob,,")
    assert read_csv(users).users == (SourceUser(anchor="u1", username="bob"),)


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("0", False),
        ("", False),
        (" yes ", True),
    ],
)
def test_disabled_accepts_the_usual_spellings(tmp_path: Path, value: str, disabled: bool) -> None:
    users = write(tmp_path, "users.csv", "id,username,disabled", f"u1,bob,{value}")
    assert read_csv(users).users[0].disabled is disabled


def test_header_names_match_ignoring_case_and_spaces_and_values_are_stripped(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", " ID , UserName,Email,Title", " u1 , bob , bob@example.com , Boss ")
    assert read_csv(users).users == (
        SourceUser(anchor="u1", username="bob", email="bob@example.com", attributes=(("Title", "Boss"),)),
    )


def test_utf8_bom_crlf_and_non_ascii_names(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes("\ufeffid,username,display_name\r\nu1,jnunez,José Núñez\r\nu2,lilei,李雷\r\n".encode())
    assert [(u.anchor, u.display_name) for u in read_csv(path).users] == [
        ("u1", "José Núñez"),
        ("u2", "李雷"),
    ]


def test_blank_rows_are_skipped_and_quoted_newlines_keep_line_numbers(tmp_path: Path) -> None:
    users = write(
        tmp_path,
        "users.csv",
        "id,username,title",
        "",
        'u1,alice,"Head of',
        'Things"',
        ",,",
        "u2,bob,x",
        "u2,carol,y",
    )
    with pytest.raises(SourceError) as caught:
        read_csv(users)
    assert str(caught.value).splitlines()[1:] == ["users.csv:7: id: duplicate id 'u2' (first on line 6)"]


def test_groups_map_members_nested_groups_and_cycles(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", "id,username", "u1,alice", "u2,bob")
    groups = write(
        tmp_path,
        "groups.csv",
        "id,name,description,members,member_groups",
        "g1,staff,Everyone,u1; u2;,g2",
        "g2,pilot,,u1,g1;g2",
        "g3,empty,,,",
    )
    snapshot = read_csv(users, groups)
    assert snapshot.groups == (
        SourceGroup(
            anchor="g1",
            name="staff",
            description="Everyone",
            member_users=frozenset({"u1", "u2"}),
            member_groups=frozenset({"g2"}),
        ),
        SourceGroup(
            anchor="g2", name="pilot", member_users=frozenset({"u1"}), member_groups=frozenset({"g1", "g2"})
        ),
        SourceGroup(anchor="g3", name="empty"),
    )


def test_an_unknown_groups_column_is_a_warning(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", "id,username", "u1,alice")
    groups = write(tmp_path, "groups.csv", "id,name,owner", "g1,staff,", "g2,ops,bob", "g3,it,carol")
    snapshot = read_csv(users, groups)
    assert snapshot.warnings == ("groups.csv:3: owner: groups have no such column; its values are ignored",)
    assert [g.anchor for g in snapshot.groups] == ["g1", "g2", "g3"]


# --- bad input -----------------------------------------------------------------------------------------


def test_a_missing_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"^users\.csv: file not found \(") as caught:
        read_csv(tmp_path / "users.csv")
    assert isinstance(caught.value, SyncdError)
    assert caught.value.exit_code == 6


def test_a_missing_groups_file_is_a_source_error(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", "id,username", "u1,alice")
    with pytest.raises(SourceError, match=r"^groups\.csv: file not found"):
        read_csv(users, tmp_path / "groups.csv")


def test_a_directory_is_not_readable(tmp_path: Path) -> None:
    (tmp_path / "users.csv").mkdir()
    with pytest.raises(SourceError, match=r"^users\.csv: can't read "):
        read_csv(tmp_path / "users.csv")


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    users = write(
        tmp_path,
        "users.csv",
        "id,username,display_name",
        "u1,alice,Alice",
        "u2,jose,José",
        encoding="latin-1",
    )
    with pytest.raises(SourceError) as caught:
        read_csv(users)
    assert str(caught.value) == "users.csv:3: not UTF-8 (byte 0xe9); save the file as UTF-8"


def test_an_empty_file_has_no_header(tmp_path: Path) -> None:
    (tmp_path / "users.csv").write_bytes(b"\xef\xbb\xbf")
    with pytest.raises(SourceError) as caught:
        read_csv(tmp_path / "users.csv")
    assert str(caught.value).splitlines()[1:] == ["users.csv:1: file is empty; a header row is required"]


def test_header_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, ["ID,email,,Email", "u1,a@example.com,,"]) == [
        "users.csv:1: header: column 3 has no name",
        "users.csv:1: header: column 'Email' appears twice",
        "users.csv:1: header: missing required column 'username'",
    ]


def test_row_problems_are_all_reported_with_their_line(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        [
            HEADER,
            "u1,alice,alice@example.com,,,,,",
            "u1,bob,bob@example.com,,,,,",
            ",carol,,,,,,",
            "u4,,,,,,,",
            "u5,ALICE,,,,,,",
            "u6,dave,bob,,,,,maybe",
            "u7,erin",
            "u;8,frank,,,,,,",
            "u9,gina,gina@example,,,,,",
        ],
    ) == [
        "users.csv:3: id: duplicate id 'u1' (first on line 2)",
        "users.csv:4: id: missing",
        "users.csv:5: username: missing",
        "users.csv:6: username: duplicate username 'ALICE' (first on line 2)",
        "users.csv:7: email: 'bob' is not an email address",
        "users.csv:7: disabled: 'maybe' is not one of true/false, yes/no, 1/0 or empty",
        "users.csv:8: row has 2 fields, the header has 8",
        "users.csv:9: id: 'u;8' contains ';', which separates ids in groups.csv",
        "users.csv:10: email: 'gina@example' is not an email address",
    ]


def test_broken_quoting_stops_the_file_with_its_line(tmp_path: Path) -> None:
    assert problems(tmp_path, ["id,username", "u1,alice", 'u2,"bob"x', "u3,carol"]) == [
        "users.csv:3: not valid CSV: ',' expected after '\"'"
    ]


def test_group_problems(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        ["id,username", "u1,alice"],
        [
            "id,name,members,member_groups",
            "g1,staff,u1;u2,",
            "g1,other,,",
            "g3,STAFF,,g9",
            "g4,,,",
        ],
    ) == [
        "groups.csv:2: members: no user with id 'u2'",
        "groups.csv:3: id: duplicate id 'g1' (first on line 2)",
        "groups.csv:4: name: duplicate group name 'STAFF' (first on line 2)",
        "groups.csv:4: member_groups: no group with id 'g9'",
        "groups.csv:5: name: missing",
    ]


def test_groups_header_needs_id_and_name(tmp_path: Path) -> None:
    assert problems(tmp_path, ["id,username", "u1,alice"], ["id,members", "g1,u1"]) == [
        "groups.csv:1: header: missing required column 'name'"
    ]


def test_problems_of_both_files_come_in_one_error_users_first(tmp_path: Path) -> None:
    lines = problems(
        tmp_path, ["id,username,email", "u1,alice,nope", "u2,bob,"], ["id,name,members", "g1,staff,u1;u3"]
    )
    assert lines == [
        "users.csv:2: email: 'nope' is not an email address",
        "groups.csv:2: members: no user with id 'u3'",
    ]


def test_a_member_whose_row_is_bad_is_not_reported_twice(tmp_path: Path) -> None:
    assert problems(tmp_path, ["id,username,email", "u1,alice,nope"], ["id,name,members", "g1,staff,u1"]) == [
        "users.csv:2: email: 'nope' is not an email address"
    ]


def test_the_error_names_the_files_and_counts_the_problems(tmp_path: Path) -> None:
    users = write(tmp_path, "users.csv", "id,username,email", "u1,alice,nope")
    with pytest.raises(SourceError) as caught:
        read_csv(users)
    assert str(caught.value).splitlines()[0] == "users.csv: 1 problem, nothing was read:"


def test_the_message_lists_the_first_20_problems_and_counts_the_rest(tmp_path: Path) -> None:
    rows = [f"u{n},user{n},bad{n}" for n in range(25)]
    with pytest.raises(SourceError) as caught:
        read_csv(write(tmp_path, "users.csv", "id,username,email", *rows))
    lines = str(caught.value).splitlines()
    assert lines[0] == "users.csv: 25 problems, nothing was read:"
    assert lines[1] == "users.csv:2: email: 'bad0' is not an email address"
    assert lines[20] == "users.csv:21: email: 'bad19' is not an email address"
    assert lines[21:] == ["... and 5 more"]

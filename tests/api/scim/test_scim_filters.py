"""The filter contract (RFC 7644 §3.4.2.2), on both databases: every operator, logic, grouping, value paths,
case rules per attribute, escaping, and 400 invalidFilter (never all rows) for what can't be compiled."""

from __future__ import annotations

from typing import Any

import pytest

from syncd.api.scim import groups, users
from syncd.api.scim.auth import Client
from syncd.api.scim.context import Context
from syncd.api.scim.errors import InvalidFilterError
from syncd.api.scim.query import Query
from syncd.api.scim.resources import Projection
from syncd.store.db import Database

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
OKTA = Client("okta", frozenset())
OTHER = Client("other", frozenset())

PEOPLE: list[dict[str, Any]] = [
    {
        "userName": "alice@example.com",
        "externalId": "EXT-1",
        "name": {"givenName": "Alice", "familyName": "Archer"},
        "displayName": "Alice Archer",
        "title": "100% Engineer",
        "emails": [
            {"value": "alice@example.com", "type": "work", "primary": True},
            {"value": "alice@home.example", "type": "home"},
        ],
        "phoneNumbers": [{"value": "+1 555 0100", "type": "mobile"}],
        "active": True,
        ENT: {"department": "R&D", "employeeNumber": "1001", "manager": {"value": "boss"}},
    },
    {
        "userName": "Bob_Builder",
        "externalId": "ext-1",
        "name": {"givenName": "Bob"},
        "title": "1000 Engineer",
        "emails": [{"value": "bob@example.org", "type": "work"}],
        "active": False,
        ENT: {"department": "Sales"},
    },
    {
        "userName": "carol",
        "externalId": "EXT-3",
        "displayName": "Ça Rol",
        "emails": [{"value": "CAROL@EXAMPLE.COM", "type": "home", "primary": True}],
        "active": True,
    },
]

CASES: list[tuple[str, set[str]]] = [
    ('userName eq "ALICE@example.com"', {"alice@example.com"}),
    ('USERNAME EQ "carol"', {"carol"}),
    ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "carol"', {"carol"}),
    ('userName ne "carol"', {"alice@example.com", "Bob_Builder"}),
    ('userName co "@EXAMPLE"', {"alice@example.com"}),
    ('userName sw "b"', {"Bob_Builder"}),
    ('userName ew ".COM"', {"alice@example.com"}),
    ('userName co "_"', {"Bob_Builder"}),  # a literal underscore, not "any character"
    ('userName co "%"', set()),  # a literal percent sign
    ('title co "0%"', {"alice@example.com"}),
    ('title sw "100%"', {"alice@example.com"}),
    ('title sw "100"', {"alice@example.com", "Bob_Builder"}),
    ('userName gt "bob"', {"Bob_Builder", "carol"}),  # case-insensitive ordering
    ('userName ge "carol"', {"carol"}),
    ('userName lt "b"', {"alice@example.com"}),
    ('userName le "alice@example.com"', {"alice@example.com"}),
    ('externalId eq "EXT-1"', {"alice@example.com"}),  # case-exact
    ('externalId eq "ext-1"', {"Bob_Builder"}),
    ('externalId sw "EXT"', {"alice@example.com", "carol"}),
    ('externalId co "xt-"', {"Bob_Builder"}),
    ('externalId ew "T-3"', {"carol"}),
    ("active eq true", {"alice@example.com", "carol"}),
    ("active eq false", {"Bob_Builder"}),
    ("active ne true", {"Bob_Builder"}),
    ("displayName pr", {"alice@example.com", "carol"}),
    ("not (displayName pr)", {"Bob_Builder"}),
    ('displayName eq "alice archer"', {"alice@example.com"}),
    ('name.givenName eq "bob"', {"Bob_Builder"}),
    ('name.familyName pr and name.givenName sw "A"', {"alice@example.com"}),
    ('emails[type eq "work" and value co "@example.com"]', {"alice@example.com"}),
    ('emails[type eq "home"]', {"alice@example.com", "carol"}),
    ('emails[type eq "work"].value eq "bob@example.org"', {"Bob_Builder"}),
    ('emails.value eq "carol@example.com"', {"carol"}),  # emails.value is case-insensitive
    ('emails eq "bob@example.org"', {"Bob_Builder"}),  # a multi-valued attribute means its value
    ("emails[primary eq true]", {"alice@example.com", "carol"}),
    ('emails[not (type eq "work")]', {"alice@example.com", "carol"}),
    ("phoneNumbers pr", {"alice@example.com"}),
    ('phoneNumbers[type eq "mobile"].value sw "+1"', {"alice@example.com"}),
    (f'{ENT}:department eq "r&d"', {"alice@example.com"}),
    (f"{ENT}:manager.value pr", {"alice@example.com"}),
    (f'{ENT}:employeeNumber eq "1001" or {ENT}:department eq "Sales"', {"alice@example.com", "Bob_Builder"}),
    ('(userName eq "carol" or userName eq "Bob_Builder") and active eq true', {"carol"}),
    ('userName eq "carol" or userName eq "Bob_Builder" and active eq true', {"carol"}),  # and binds tighter
    ('not (userName eq "carol" or active eq false)', {"alice@example.com"}),
    ('meta.resourceType eq "User"', {"alice@example.com", "Bob_Builder", "carol"}),
    ('meta.created gt "2000-01-01T00:00:00Z"', {"alice@example.com", "Bob_Builder", "carol"}),
    ('meta.lastModified lt "2000-01-01T00:00:00+00:00"', set()),
    ('userName eq "x\\" or 1=1 --"', set()),  # values are bound parameters
    ("title eq null", {"carol"}),
    ("title ne null", {"alice@example.com", "Bob_Builder"}),
    ('nickName eq "nobody"', set()),
]

INVALID = [
    'unknownAttr eq "x"',
    'userName eq "x" and bogus eq "y"',  # never silently dropped
    'bogus eq "x" or userName pr',
    'urn:example:params:scim:schemas:Custom:2.0:User:thing eq "x"',
    'name.bogus eq "x"',
    'emails[bogus eq "x"]',
    'emails[type eq "work"].bogus eq "x"',
    "active gt true",
    'active eq "yes"',
    'meta.created co "2020"',
    'meta.created gt "yesterday"',
    "userName eq 5",
    'name eq "x"',  # complex
    "password pr",  # returned never
    "userName eq",
    'userName xx "x"',
    "(userName pr",
    'userName eq "a\u0000b"',
]


def setup(db: Database) -> Context:
    ctx = Context(db, "https://mfa.example.com/scim/v2")
    for person in PEOPLE:
        users.create(
            ctx, OKTA, {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], **person}, Projection()
        )
    users.create(ctx, OTHER, {"userName": "someone-else", "title": "100% Engineer"}, Projection())
    return ctx


def names(ctx: Context, expression: str) -> set[str]:
    found = users.search(ctx, OKTA, Query(filter=expression, count=100))
    assert found["totalResults"] == len(found["Resources"])
    return {r["userName"] for r in found["Resources"]}


def test_filters(db: Database) -> None:
    ctx = setup(db)
    wrong = {f: (names(ctx, f), expected) for f, expected in CASES if names(ctx, f) != expected}
    assert wrong == {}


@pytest.mark.parametrize("expression", INVALID)
def test_invalid_filters_are_refused_never_all_rows(db: Database, expression: str) -> None:
    ctx = Context(db, "https://mfa.example.com/scim/v2")
    users.create(ctx, OKTA, {"userName": "alice"}, Projection())
    with pytest.raises(InvalidFilterError):
        names(ctx, expression)


def test_group_filters(db: Database) -> None:
    ctx = setup(db)
    ids = {r["userName"]: r["id"] for r in users.search(ctx, OKTA, Query())["Resources"]}
    eng = groups.create(
        ctx,
        OKTA,
        {"displayName": "Engineering", "externalId": "G-1", "members": [{"value": ids["carol"]}]},
        Projection(),
    )[0]
    groups.create(ctx, OKTA, {"displayName": "Sales", "members": [{"value": eng["id"]}]}, Projection())

    def group_names(expression: str) -> set[str]:
        return {r["displayName"] for r in groups.search(ctx, OKTA, Query(filter=expression))["Resources"]}

    assert group_names('displayName eq "engineering"') == {"Engineering"}
    assert group_names('externalId eq "G-1"') == {"Engineering"}
    assert group_names(f'members[value eq "{ids["carol"]}"]') == {"Engineering"}
    assert group_names(f'members.value eq "{eng["id"]}"') == {"Sales"}
    assert group_names('members[type eq "Group"]') == {"Sales"}
    assert group_names("members pr") == {"Engineering", "Sales"}
    assert names(ctx, 'groups[display eq "Engineering"]') == {"carol"}
    assert names(ctx, f'groups.value eq "{eng["id"]}"') == {"carol"}
    with pytest.raises(InvalidFilterError):
        group_names('userName eq "x"')

"""Active Directory paths against a real Samba AD DC on loopback (the ``samba_dc`` session fixture):
objectGUID anchors, userAccountControl, LDAP_MATCHING_RULE_IN_CHAIN, range retrieval, uSNChanged deltas
with tombstones (and without, for an account that can't read them), a changed invocationId."""

from __future__ import annotations

import json
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ldap3
import pytest
import sqlalchemy as sa
from harness.samba import SambaDC

from syncd.config.models import Database as DatabaseConfig
from syncd.config.models import Sync
from syncd.config.sources import LdapSource
from syncd.domain.lifecycle import UserStatus
from syncd.domain.records import CursorExpired
from syncd.sources import ldap_ad
from syncd.sources.ldap import LdapReader
from syncd.sources.ldap_entries import GroupCollector, Notes, RawGroup
from syncd.sources.ldap_flavours import settings_for
from syncd.sources.ldap_read import open_connection
from syncd.store import cursors, groups, schema
from syncd.store.db import Database
from syncd.store.tables import Group, User
from syncd.sync.engine import run_sync

USER = ["top", "person", "organizationalPerson", "user"]
ENABLED, DISABLED = 544, 546  # NORMAL_ACCOUNT + PASSWD_NOTREQD (+ ACCOUNTDISABLE)
BIG = 120
TREE_DELETE = ("1.2.840.113556.1.4.805", True, None)


@dataclass
class Lab:
    """One test's own OU in the shared DC."""

    dc: SambaDC
    conn: ldap3.Connection
    ou: str

    def dn(self, cn: str, ou: str = "Staff") -> str:
        return f"CN={cn},OU={ou},{self.ou}"

    def add_user(self, name: str, *, ou: str = "Staff", uac: int = ENABLED, **attrs: Any) -> None:
        values = {"sAMAccountName": name, "givenName": name.title(), "sn": "Lab",
                  "mail": f"{name}@lab.example.org", "userAccountControl": uac, **attrs}  # fmt: skip
        assert self.conn.add(self.dn(name, ou), USER, values), self.conn.result

    def add_group(self, name: str, members: list[str]) -> None:
        assert self.conn.add(
            self.dn(name, "Groups"), ["top", "group"], {"sAMAccountName": f"{name}-{self.ou[3:9]}"}
        )
        for start in range(0, len(members), 200):
            chunk = members[start : start + 200]
            assert self.conn.modify(self.dn(name, "Groups"), {"member": [(ldap3.MODIFY_ADD, chunk)]}), (
                self.conn.result
            )

    def source(self, name: str = "ad", **overrides: Any) -> LdapSource:
        env = f"SYNCD_TEST_AD_PW_{name.upper()}"
        os.environ[env] = overrides.pop("password", self.dc.admin_password)
        config = {
            "kind": "ldap", "name": name, "flavour": "active_directory", "servers": [self.dc.url],
            "bind": {"dn": overrides.pop("bind_dn", self.dc.admin), "password": {"env": env}},
            "users": {"base": f"OU=Staff,{self.ou}"}, "groups": {"base": f"OU=Groups,{self.ou}"},
            "page_size": 100, "timeouts": {"connect": 5, "receive": 30, "search": 60}, **overrides,
        }  # fmt: skip
        return LdapSource.model_validate(config)


@pytest.fixture
def lab(samba_dc: SambaDC) -> Iterator[Lab]:
    conn = ldap3.Connection(
        ldap3.Server(samba_dc.host, port=389, get_info=ldap3.NONE), samba_dc.admin, samba_dc.admin_password,
        auto_bind=True, raise_exceptions=False,
    )  # fmt: skip
    ou = f"OU=t{secrets.token_hex(4)},{samba_dc.base_dn}"
    try:
        assert conn.add(ou, "organizationalUnit"), conn.result
        lab = Lab(samba_dc, conn, ou)
        for child in ("Staff", "Groups", "Elsewhere"):
            assert conn.add(f"OU={child},{ou}", "organizationalUnit"), conn.result
        for name in ("jdoe", "jörg", "mover", "leaver", "deleteme"):
            lab.add_user(name)
        lab.add_user("asmith", uac=DISABLED)
        for i in range(BIG):
            lab.add_user(f"bulk{i:03d}")
        lab.add_group("engineers", [lab.dn("jdoe"), lab.dn("asmith")])
        lab.add_group("all-staff", [lab.dn("engineers", "Groups"), lab.dn("jörg")])
        lab.add_group("big", [lab.dn(f"bulk{i:03d}") for i in range(BIG)])
        yield lab
    finally:
        conn.delete(ou, controls=[TREE_DELETE])  # sAMAccountNames are unique in the domain: free them
        conn.unbind()


def test_full_read_guid_anchors_uac_nesting_and_usn_cursor(lab: Lab) -> None:
    snapshot = LdapReader(lab.source())()
    assert snapshot.complete, snapshot.incomplete_reason  # no referral to Configuration: domain scope control
    users = {u.username: u for u in snapshot.users}
    assert len(users) == 6 + BIG
    assert [u for u in users if users[u].disabled] == ["asmith"]
    assert users["jörg"].given_name == "Jörg" and users["jdoe"].dn == lab.dn("jdoe")
    lab.conn.search(lab.dn("jdoe"), "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
    raw = lab.conn.response[0]["raw_attributes"]["objectGUID"][0]
    assert users["jdoe"].anchor == str(uuid.UUID(bytes_le=raw))
    by_name = {g.name: g for g in snapshot.groups}
    assert by_name["engineers"].member_users == {users["jdoe"].anchor, users["asmith"].anchor}
    assert by_name["all-staff"].member_groups == {by_name["engineers"].anchor}
    assert len(by_name["big"].member_users) == BIG
    cursor = json.loads(snapshot.cursor or "{}")
    assert cursor["feed"] == "usn" and cursor["usn"] > 0 and cursor["server"].startswith("CN=NTDS Settings")


def test_in_chain_filter_scopes_users_by_nested_group(lab: Lab) -> None:
    in_chain = f"(memberOf:{ldap_ad.IN_CHAIN}:={lab.dn('all-staff', 'Groups')})"
    source = lab.source(users={"base": f"OU=Staff,{lab.ou}", "filter": f"(&(objectClass=user){in_chain})"})
    assert sorted(u.username for u in LdapReader(source)().users) == ["asmith", "jdoe", "jörg"]


def test_range_retrieval_completes_a_truncated_member_list(lab: Lab) -> None:
    """AD sends at most MaxValRange values and a ``member;range=0-1499`` description; Samba never truncates
    by itself, so the first range is cut here and the rest fetched from the real server."""
    lab.conn.search(lab.dn("big", "Groups"), "(objectClass=*)", ldap3.BASE, attributes=["member;range=0-99"])
    first = lab.conn.response[0]["raw_attributes"]
    key = next(k for k in first if k.lower().startswith("member;range="))
    assert key.lower() == "member;range=0-99"
    source = lab.source()
    collector = GroupCollector(settings_for(source), Notes())  # no users known: members stay DNs
    group = RawGroup("x", lab.dn("big", "Groups"), "big", None, [], [])
    collector.add_members(group, first[key])
    connection, _ = open_connection(source)
    try:
        ldap_ad.complete_ranges(connection, collector, group, 30)
    finally:
        connection.unbind()
    assert group.values_read == BIG
    assert len(group.member_dns) == len(set(group.member_dns)) == BIG


def test_dc_state_and_a_changed_invocation_id(lab: Lab) -> None:
    connection, _ = open_connection(lab.source())
    try:
        state = ldap_ad.dc_state(connection, 30)
    finally:
        connection.unbind()
    assert state.naming_context == lab.dc.base_dn and uuid.UUID(state.invocation_id)
    cursor = state.cursor()
    assert state.check(cursor) == state.highest_usn
    with pytest.raises(CursorExpired, match="invocationId changed"):
        state.check({**cursor, "invocation_id": str(uuid.uuid4())})
    with pytest.raises(CursorExpired, match="another domain controller"):
        state.check({**cursor, "server": "CN=NTDS Settings,CN=DC2"})
    with pytest.raises(CursorExpired, match="not below"):
        state.check({**cursor, "usn": state.highest_usn + 1})


# ---- the engine against AD, on SQLite and PostgreSQL ------------------------------------------------------
@pytest.fixture
def db(database_config: DatabaseConfig) -> Iterator[Database]:
    database = Database(database_config)
    schema.upgrade(database)
    yield database
    database.dispose()


def people(db: Database) -> dict[str, User]:
    with db.read() as session:
        return {u.username: u for u in session.scalars(sa.select(User))}


def change_directory(lab: Lab) -> None:
    conn = lab.conn
    assert conn.modify(lab.dn("jdoe"), {"mail": [(ldap3.MODIFY_REPLACE, ["john.doe@lab.example.org"])]})
    assert conn.modify(lab.dn("leaver"), {"userAccountControl": [(ldap3.MODIFY_REPLACE, [DISABLED])]})
    assert conn.modify(lab.dn("asmith"), {"userAccountControl": [(ldap3.MODIFY_REPLACE, [ENABLED])]})
    assert conn.delete(lab.dn("deleteme")), conn.result
    assert conn.modify_dn(lab.dn("mover"), "CN=mover", new_superior=f"OU=Elsewhere,{lab.ou}"), conn.result
    lab.add_user("newcomer")
    assert conn.modify(lab.dn("engineers", "Groups"), {"member": [(ldap3.MODIFY_DELETE, [lab.dn("asmith")])]})


@pytest.mark.parametrize("tombstones", [True, False], ids=["admin", "no-tombstone-access"])
def test_incremental_sync_against_ad(db: Database, lab: Lab, tombstones: bool) -> None:
    if tombstones:
        source = lab.source()
    else:
        name = f"reader{secrets.token_hex(3)}"
        source = lab.source(bind_dn=lab.dc.create_user(name, "Passw0rd!Read1"), password="Passw0rd!Read1")
    first = run_sync(db, source, "ldap", LdapReader(source), Sync())
    assert (first.status, first.counts.created) == ("ok", 6 + BIG), first.reason
    before = people(db)
    change_directory(lab)
    result = run_sync(db, source, "ldap", LdapReader(source), Sync(), mode="incremental")
    assert (result.status, result.mode) == ("ok", "incremental"), (result.reason, result.notes)
    after = people(db)
    assert after["jdoe"].email == "john.doe@lab.example.org" and after["jdoe"].id == before["jdoe"].id
    assert after["leaver"].status is UserStatus.PROVISIONING_DISABLED
    assert after["asmith"].status is UserStatus.UNENROLLED
    for gone in ("deleteme", "mover"):  # deleted, and moved out of the OU: both absent from the anchor set
        assert after[gone].status is UserStatus.PROVISIONING_DISABLED and after[gone].deleted_at is not None
    assert after["newcomer"].status is UserStatus.UNENROLLED
    assert (result.counts.created, result.counts.disabled, result.counts.reenabled) == (1, 3, 1)
    with db.read() as session:
        engineers = session.scalar(sa.select(Group.id).where(Group.name == "engineers"))
        assert engineers is not None
        ids = groups.effective_member_ids(session, engineers)
        assert set(session.scalars(sa.select(User.username).where(User.id.in_(ids)))) == {"jdoe"}
    again = run_sync(db, source, "ldap", LdapReader(source), Sync(), mode="full")
    assert again.plan is not None and again.plan.is_empty, again.plan


def test_another_dc_identity_means_a_full_run(db: Database, lab: Lab) -> None:
    source = lab.source()
    run_sync(db, source, "ldap", LdapReader(source), Sync())
    with db.write() as session:
        stored = cursors.get(session, "ad")
        assert stored is not None and stored.value is not None
        stored.value = json.dumps({**json.loads(stored.value), "invocation_id": str(uuid.uuid4())})
    result = run_sync(db, source, "ldap", LdapReader(source), Sync(), mode="incremental")
    assert (result.status, result.mode) == ("ok", "full")
    assert any("invocationId changed" in note for note in result.notes)


def test_tombstones_are_seen_by_admins_only(lab: Lab) -> None:
    """Why deletions always come from the anchor set too: without rights the answer is empty, not an error."""
    lab.conn.search(lab.dn("deleteme"), "(objectClass=*)", ldap3.BASE, attributes=["objectGUID"])
    anchor = str(uuid.UUID(bytes_le=lab.conn.response[0]["raw_attributes"]["objectGUID"][0]))
    connection, _ = open_connection(lab.source())
    state = ldap_ad.dc_state(connection, 30)
    assert lab.conn.delete(lab.dn("deleteme"))
    name = f"reader{secrets.token_hex(3)}"
    reader_source = lab.source(
        "adr", bind_dn=lab.dc.create_user(name, "Passw0rd!Read1"), password="Passw0rd!Read1"
    )
    reader, _ = open_connection(reader_source)
    try:
        assert anchor in ldap_ad.tombstones(connection, state.naming_context, state.highest_usn, page_size=50,
                                            time_limit=30)  # fmt: skip
        assert (
            ldap_ad.tombstones(reader, state.naming_context, state.highest_usn, page_size=50, time_limit=30)
            == set()
        )
    finally:
        connection.unbind()
        reader.unbind()

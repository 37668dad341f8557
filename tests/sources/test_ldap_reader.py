"""The LDAP reader against a real slapd: the realistic tree, paging, and every way a read goes wrong."""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from harness import ldap_tree
from harness.slapd import Slapd

from syncd.domain.records import Snapshot, SourceGroup, SourceUser
from syncd.errors import SourceError
from syncd.sources.ldap import LdapReader


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    server = Slapd(tmp_path_factory.mktemp("tree"))
    server.load_ldif(ldap_tree.tree_ldif())
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def snapshot(tree: Slapd) -> Snapshot:
    return LdapReader(ldap_tree.source(tree))()


def users_by_name(snapshot: Snapshot) -> dict[str, SourceUser]:
    return {u.username: u for u in snapshot.users}


def groups_by_name(snapshot: Snapshot) -> dict[str, SourceGroup]:
    return {g.name: g for g in snapshot.groups}


# ---- the realistic tree ---------------------------------------------------------------------------
def test_reads_every_user_and_group_completely(snapshot: Snapshot) -> None:
    assert snapshot.complete, snapshot.incomplete_reason
    assert len(snapshot.users) == len(ldap_tree.PEOPLE) + ldap_tree.BULK
    assert set(groups_by_name(snapshot)) == {
        "all-staff", "engineering", "platform", "big", "Ünicode-Gruppe", "posix-admins", "auditors"
    }  # fmt: skip
    assert snapshot.cursor is not None and '"feed": "syncrepl"' in snapshot.cursor
    assert not snapshot.skipped


def test_maps_attributes_including_non_ascii(snapshot: Snapshot) -> None:
    users = users_by_name(snapshot)
    alice = users["alice"]
    assert (alice.given_name, alice.family_name, alice.display_name) == (
        "Alice",
        "Ødegaard",
        "Alice Ødegaard",
    )
    assert alice.email == "alice@example.org" and alice.phone == "+1 555 0100"
    assert alice.dn == ldap_tree.dn("alice")
    assert alice.attributes == (("title", "Engineer"),)
    assert users["olga"].attributes == (("mobile", "+47 400 00 000"), ("title", "Engineer"))
    assert users["jürgen"].family_name == "Müller"
    # entryUUID, as OpenLDAP writes it, is the anchor
    assert len(alice.anchor) == 36 and alice.anchor == alice.anchor.lower()


def test_disabled_filter_marks_only_carol(snapshot: Snapshot) -> None:
    assert [u.username for u in snapshot.users if u.disabled] == ["carol"]


def test_groups_resolve_members_nesting_cycles_posix_and_unique_members(snapshot: Snapshot) -> None:
    users = {u.username: u.anchor for u in snapshot.users}
    groups = groups_by_name(snapshot)
    anchors = {name: g.anchor for name, g in groups.items()}
    assert groups["all-staff"].member_users == {users["alice"], users["bob"]}
    assert groups["all-staff"].member_groups == {anchors["engineering"]}
    assert groups["engineering"].member_groups == {anchors["platform"]}
    assert groups["platform"].member_groups == {anchors["engineering"]}
    assert any("cycle" in w and "engineering" in w and "platform" in w for w in snapshot.warnings)
    assert len(groups["big"].member_users) == ldap_tree.BULK
    assert groups["Ünicode-Gruppe"].member_users == {users["jürgen"], users["olga"]}
    assert groups["posix-admins"].member_users == {users["alice"], users["frank"]}
    assert groups["auditors"].member_users == {users["gina"]}


@pytest.mark.parametrize("page_size", [30, 499, 500, 1000])
def test_paging_returns_every_user_once(tree: Slapd, page_size: int) -> None:
    pages: list[int] = []
    reader = LdapReader(ldap_tree.source(tree, page_size=page_size, groups=None), on_page=pages.append)
    snapshot = reader()
    assert snapshot.complete
    anchors = [u.anchor for u in snapshot.users]
    assert len(anchors) == len(set(anchors)) == len(ldap_tree.PEOPLE) + ldap_tree.BULK
    assert len(pages) == -(-len(anchors) // page_size)


def test_filter_values_and_one_level_scope(tree: Slapd) -> None:
    source = ldap_tree.source(
        tree,
        users={"base": ldap_tree.STAFF, "scope": "one", "filter": "(&(objectClass=inetOrgPerson)(sn=M*))"},
    )
    assert [u.username for u in LdapReader(source)().users] == ["jürgen"]


# ---- bad input and faults ---------------------------------------------------------------------------
def test_size_limit_below_the_directory_size_makes_the_read_incomplete(tree: Slapd) -> None:
    source = ldap_tree.source(tree, bind_dn=tree.limited_dn, password=tree.limited_password)
    snapshot = LdapReader(source)()
    assert not snapshot.complete
    assert snapshot.incomplete_reason is not None and "sizeLimitExceeded (4)" in snapshot.incomplete_reason
    assert len(snapshot.users) == tree.limited_size
    assert snapshot.cursor is None  # an incomplete read never moves the change feed on


def test_wrong_password_fails_the_read(tree: Slapd) -> None:
    with pytest.raises(SourceError, match=r"invalidCredentials|LDAPInvalidCredentialsResult"):
        LdapReader(ldap_tree.source(tree, password="wrong"))()


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port nothing listens on: bound by us (so no one else takes it) but never listening."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_unreachable_servers_fail_with_every_reason(tree: Slapd, dead_port: int) -> None:
    port = dead_port
    source = ldap_tree.source(tree, servers=[f"ldap://127.0.0.1:{port}", tree.url], password="wrong")
    with pytest.raises(SourceError) as error:
        LdapReader(source)()
    assert f"127.0.0.1:{port}" in str(error.value) and "no server could be used" in str(error.value)


def test_failover_to_the_next_server(tree: Slapd, dead_port: int) -> None:
    port = dead_port
    source = ldap_tree.source(tree, servers=[f"ldap://127.0.0.1:{port}", tree.url], groups=None)
    assert LdapReader(source)().complete


@pytest.mark.parametrize("bad", ["(objectClass=inetOrgPerson", "objectClass=person)(", "(&(uid=a)(|(x=1)"])
def test_filter_typo_fails_before_anything_is_sent(tree: Slapd, bad: str) -> None:
    source = ldap_tree.source(tree, users={"base": "ou=people,dc=example,dc=org", "filter": bad})
    with pytest.raises(SourceError, match="users"):
        LdapReader(source)()


def test_base_that_does_not_exist_fails(tree: Slapd) -> None:
    source = ldap_tree.source(tree, users={"base": "ou=nowhere,dc=example,dc=org"})
    with pytest.raises(SourceError, match="noSuchObject"):
        LdapReader(source)()


def test_missing_attributes_are_empty_fields(tree: Slapd) -> None:
    source = ldap_tree.source(tree, attributes={"phone": "homePhone", "extra": ["title", "mobile"]})
    users = users_by_name(LdapReader(source)())
    assert users["alice"].phone is None and users["alice"].email == "alice@example.org"


def test_entry_without_the_anchor_makes_the_read_incomplete(tree: Slapd) -> None:
    # employeeNumber as the anchor: no entry in the tree has it
    source = ldap_tree.source(tree, anchor_attribute="employeeNumber", groups=None)
    snapshot = LdapReader(source)()
    assert not snapshot.complete and snapshot.users == ()
    assert snapshot.incomplete_reason is not None and "has no employeeNumber" in snapshot.incomplete_reason


def test_entry_without_a_username_is_skipped(tree: Slapd) -> None:
    source = ldap_tree.source(tree, attributes={"username": "mobile"}, groups=None)
    snapshot = LdapReader(source)()
    assert snapshot.complete
    assert [u.username for u in snapshot.users] == ["+47 400 00 000"]
    assert len(snapshot.skipped) == len(ldap_tree.PEOPLE) + ldap_tree.BULK - 1
    assert any("no mobile; skipped" in w for w in snapshot.warnings)


def test_duplicate_usernames_are_skipped_both(tree: Slapd) -> None:
    source = ldap_tree.source(tree, attributes={"username": "title"}, groups=None)  # every title is Engineer
    snapshot = LdapReader(source)()
    assert snapshot.complete and snapshot.users == ()
    assert len(snapshot.skipped) == len(ldap_tree.PEOPLE) + ldap_tree.BULK
    assert any(
        "username 'engineer' is used by" in w and "none of them was applied" in w for w in snapshot.warnings
    )


def test_referral_in_scope_makes_the_read_incomplete(slapd_factory: Callable[..., Slapd]) -> None:
    server = slapd_factory(ldif=ldap_tree.tree_ldif(bulk=0))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    server.add_ldif(
        "dn: ou=remote,ou=people,dc=example,dc=org\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: remote\nref: ldap://127.0.0.1:{port}/ou=remote,dc=example,dc=org\n"
    )
    snapshot = LdapReader(ldap_tree.source(server, groups=None))()
    assert not snapshot.complete
    assert (
        snapshot.incomplete_reason is not None and "referrals are not followed" in snapshot.incomplete_reason
    )
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came: our credentials went nowhere else
    listener.close()


def test_slapd_stopped_mid_read_makes_it_incomplete(slapd_factory: Callable[..., Slapd]) -> None:
    server = slapd_factory(ldif=ldap_tree.tree_ldif())
    pages: list[int] = []

    def stop_after_first_page(read: int) -> None:
        pages.append(read)
        if len(pages) == 1:
            server.stop()

    snapshot = LdapReader(ldap_tree.source(server), on_page=stop_after_first_page)()
    assert not snapshot.complete
    assert snapshot.incomplete_reason is not None and "page 2" in snapshot.incomplete_reason
    # the disabled_filter search failed too: who is disabled is unknown, so none of the 100 is used
    assert snapshot.users == () and len(snapshot.skipped) == 100


def test_server_that_stops_answering_times_out(slapd_factory: Callable[..., Slapd]) -> None:
    server = slapd_factory(ldif=ldap_tree.tree_ldif(bulk=0))
    pid = server.pid
    assert pid is not None
    done = threading.Event()

    def freeze(read: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        done.set()

    source = ldap_tree.source(server, page_size=5, timeouts={"connect": 2, "receive": 1, "search": 5})
    try:
        snapshot = LdapReader(source, on_page=freeze)()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert done.is_set() and not snapshot.complete
    assert (
        snapshot.incomplete_reason is not None
        and "no answer from the server within 1" in snapshot.incomplete_reason
    )

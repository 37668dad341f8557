"""Smoke tests of the test harness itself: each fixture talks to a real server."""

from __future__ import annotations

import smtplib
import uuid
from collections.abc import Callable
from email.message import EmailMessage

import pytest
import sqlalchemy as sa
from harness.slapd import Slapd
from harness.smtp import SmtpServer
from ldap3 import BASE, DEREF_NEVER, SUBTREE, Connection, Server


# ---- databases ---------------------------------------------------------------------------------
def test_database_url_smoke(database_url: str, request: pytest.FixtureRequest) -> None:
    kind = request.node.callspec.params["database_url"]
    assert database_url.startswith("sqlite:///" if kind == "sqlite" else "postgresql+psycopg://")
    engine = sa.create_engine(database_url)
    try:
        meta = sa.MetaData()
        things = sa.Table(
            "things",
            meta,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("name", sa.String(50), nullable=False),
        )
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(things.insert(), [{"name": "alpha"}, {"name": "beta"}])
        with engine.connect() as conn:
            names = conn.execute(sa.select(things.c.name).order_by(things.c.name)).scalars().all()
            assert names == ["alpha", "beta"]
            if kind == "postgresql":
                db = conn.execute(sa.text("SELECT current_database()")).scalar_one()
                assert db.startswith("syncd_t_")
    finally:
        engine.dispose()


# ---- LDAP --------------------------------------------------------------------------------------
def _bind(server: Slapd, user: str, password: str) -> Connection:
    return Connection(
        Server(server.url, connect_timeout=5), user, password, auto_bind=True, receive_timeout=10
    )


def test_slapd_smoke_paged_search_as_syncbot(slapd: Slapd) -> None:
    conn = _bind(slapd, slapd.bind_dn, slapd.bind_password)
    try:
        entries = conn.extend.standard.paged_search(
            slapd.suffix,
            "(|(objectClass=organizationalUnit)(objectClass=organization))",
            search_scope=SUBTREE,
            dereference_aliases=DEREF_NEVER,
            attributes=["entryUUID"],
            paged_size=1,
            generator=False,
        )
        dns = {e["dn"].lower() for e in entries if e["type"] == "searchResEntry"}
        assert {slapd.suffix, slapd.people_dn, slapd.groups_dn} <= dns
        assert conn.result["description"] == "success"
    finally:
        conn.unbind()


def test_slapd_smoke_add_ldif_and_entry_uuid(slapd: Slapd) -> None:
    uid = f"smoke-{uuid.uuid4().hex[:8]}"
    dn = f"uid={uid},{slapd.people_dn}"
    slapd.add_ldif(
        f"""\
dn: {dn}
objectClass: inetOrgPerson
uid: {uid}
cn: Smoke Test
sn: Test
givenName: Smoke
mail: {uid}@example.org
"""
    )
    conn = _bind(slapd, slapd.bind_dn, slapd.bind_password)
    try:
        assert conn.search(
            slapd.people_dn, f"(uid={uid})", SUBTREE, dereference_aliases=DEREF_NEVER,
            attributes=["mail", "entryUUID"],
        )  # fmt: skip
        assert len(conn.entries) == 1
        entry = conn.entries[0]
        assert entry.entry_dn.lower() == dn.lower()
        assert str(entry.mail) == f"{uid}@example.org"
        uuid.UUID(str(entry.entryUUID))  # present and well-formed

        # the memberof overlay is loaded: adding a group sets memberOf on its member
        group_dn = f"cn={uid}-group,{slapd.groups_dn}"
        slapd.add_ldif(f"dn: {group_dn}\nobjectClass: groupOfNames\ncn: {uid}-group\nmember: {dn}\n")
        assert conn.search(dn, "(objectClass=*)", BASE, attributes=["memberOf"])
        assert [v.lower() for v in conn.entries[0].memberOf.values] == [group_dn]
        # the root DSE is readable too (what the daemon's connection check would do)
        assert conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
    finally:
        conn.unbind()


def test_slapd_smoke_private_instance_restart(slapd_factory: Callable[..., Slapd]) -> None:
    server = slapd_factory(
        ldif="""\
dn: uid=preloaded,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: preloaded
cn: Pre Loaded
sn: Loaded
"""
    )
    assert "uid=preloaded" in server.ldapsearch(server.people_dn, "(uid=preloaded)", "uid")
    url = server.url
    server.restart()
    assert server.url == url
    assert "uid=preloaded" in server.ldapsearch(server.people_dn, "(uid=preloaded)", "uid")
    server.stop()
    assert not server.running


# ---- SMTP --------------------------------------------------------------------------------------
def test_smtp_smoke(smtp_server: SmtpServer) -> None:
    msg = EmailMessage()
    msg["From"] = "syncd@example.org"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "Enroll your authenticator"
    msg.set_content("Hello Alice\n")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        client.send_message(msg)

    [received] = smtp_server.wait_for(1, timeout=5)
    assert received.mail_from == "syncd@example.org"
    assert received.rcpt_tos == ("alice@example.org",)
    assert received.subject == "Enroll your authenticator"
    assert received.body_text() == "Hello Alice\n"
    assert b"Subject: Enroll your authenticator" in received.data

    smtp_server.stop()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=5)

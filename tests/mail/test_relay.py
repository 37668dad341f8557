"""The outbox relay (syncd.mail.relay) against a real aiosmtpd server on loopback, on both databases:
one connection for many messages, deterministic Message-IDs, 4xx retried on schedule, 5xx failed at once,
SMTP down then back, a crash between send and mark, cancelled links, parallel relays (E1–E7)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Awaitable
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from harness.enrollment import add_user, invite, make_config, make_settings
from harness.net import free_port
from harness.smtp import RecordingHandler, SmtpServer

from syncd.config.models import Config, MailRetry
from syncd.domain import tokens
from syncd.mail.relay import Relay, next_delay, nominal_delay
from syncd.mail.render import Renderer
from syncd.mail.transports import SmtpTransport, Transport
from syncd.store import outbox
from syncd.store.db import Database
from syncd.store.tables import EnrollmentInvite, OutboxMessage, utcnow


def relay_config(port: int, **mail: Any) -> Config:
    section = {
        "transport": "smtp",
        "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5},
        "from_address": "Test MFA <mfa@example.com>",
        **mail,
    }
    return make_config(mail=section, enrollment={"reminders": []})


def statuses(db: Database) -> Counter[str]:
    with db.read() as session:
        return Counter(session.scalars(sa.select(OutboxMessage.status)))


def rows(db: Database) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.dedup_key)))


def drain(relay: Relay) -> int:
    """One pass in its own event loop; the connection is closed at the end (loops don't share sockets)."""

    async def go() -> int:
        try:
            return await relay.drain()
        finally:
            await relay.transport.close()
            relay.close()

    return asyncio.run(go())


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class ScriptedHandler(RecordingHandler):
    """Refuses recipients by local part: ``bad*`` → 550 at RCPT; ``slow*`` → 451 at DATA for the first
    ``defer`` deliveries."""

    def __init__(self, defer: int = 0) -> None:
        super().__init__()
        self.defer = defer
        self.deferred = 0

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("bad"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if envelope.rcpt_tos[0].startswith("slow") and self.deferred < self.defer:
            self.deferred += 1
            return "451 4.7.1 Greylisted, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def scripted() -> Any:
    handler = ScriptedHandler(defer=3)
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ready_timeout=10, server_hostname="localhost"
    )
    controller.start()
    yield handler, port
    controller.stop()


def test_invites_go_out_over_one_connection_with_working_links(db: Database, smtp_server: SmtpServer) -> None:
    config = relay_config(smtp_server.port)
    settings = make_settings()
    ids = [add_user(db, f"user{i}") for i in range(25)]
    issued = {user_id: invite(db, user_id, settings) for user_id in ids}
    transport = SmtpTransport(config.mail)
    clock = Clock()
    relay = Relay(db, config, settings, transport=transport, clock=clock)
    assert drain(relay) == 25
    assert transport.connections == 1
    with db.read() as session:  # the mark (one prebuilt statement on a bare connection) wrote typed values
        marked = session.execute(sa.select(OutboxMessage.sent_at, OutboxMessage.last_error)).all()
    assert set(marked) == {(clock.now, None)}
    received = smtp_server.wait_for(25)
    assert statuses(db) == {"SENT": 25}
    by_id = {m.message["Message-ID"]: m for m in received}
    for user_id, token in issued.items():
        mail = by_id[f"<invite.{user_id}.1@127.0.0.1>"]
        assert mail.subject == "Set up two-step verification for Test Corp"
        assert f"http://127.0.0.1:8080/enroll/{token}" in mail.body_text()
        html = mail.message.get_body(preferencelist=("html",))
        assert html is not None and token in html.get_content()
        assert mail.mail_from == "mfa@example.com" and mail.message["Auto-Submitted"] == "auto-generated"
    assert "help@example.com" in received[0].body_text()
    with db.read() as session:
        stored = session.scalars(sa.select(OutboxMessage.subject)).all()
        assert set(stored) == {"Set up two-step verification for Test Corp"}
        hashes = set(session.scalars(sa.select(EnrollmentInvite.token_hash)))
    assert hashes == {tokens.hash_token(t) for t in issued.values()}


def test_permanent_refusal_fails_once_and_does_not_block_the_queue(db: Database, scripted: Any) -> None:
    handler, port = scripted
    config = relay_config(port, retry={"first": "1m", "factor": 4, "max": "1h", "give_up": "4d", "jitter": 0})
    settings = make_settings()
    clock = Clock()
    bad = add_user(db, "bad", email="bad@example.com")
    slow = add_user(db, "slow", email="slow@example.com")
    good = add_user(db, "good", email="good@example.com")
    for user_id in (bad, slow, good):
        invite(db, user_id, settings, now=clock.now)
    relay = Relay(db, config, settings, clock=clock)
    attempts_at = []
    for _ in range(4):
        drain(relay)
        row = next(r for r in rows(db) if r.user_id == slow)
        attempts_at.append(
            (row.attempts, row.status, round((row.next_attempt_at - clock.now).total_seconds()))
        )
        clock.now = row.next_attempt_at
    by_user = {r.user_id: r for r in rows(db)}
    assert (by_user[bad].status, by_user[bad].attempts) == ("FAILED", 1)
    assert "550" in (by_user[bad].last_error or "")
    assert by_user[good].status == "SENT"
    # 451, 451, 451, then delivered at attempt 4 after 1, 4 and 16 minutes
    assert attempts_at[:3] == [(1, "PENDING", 60), (2, "PENDING", 240), (3, "PENDING", 960)]
    assert (by_user[slow].status, by_user[slow].attempts) == ("SENT", 4)
    assert sorted(m.rcpt_tos[0] for m in handler.messages) == ["good@example.com", "slow@example.com"]


def test_retry_schedule_and_give_up() -> None:
    retry = MailRetry(
        first=timedelta(minutes=1), factor=4, max=timedelta(hours=1), give_up=timedelta(days=4), jitter=0.2
    )
    assert [nominal_delay(retry, n).total_seconds() / 60 for n in range(1, 6)] == [1, 4, 16, 60, 60]
    for n in range(1, 20):
        delay = next_delay(retry, n)
        assert delay is not None
        assert 0.8 * nominal_delay(retry, n) <= delay <= 1.2 * nominal_delay(retry, n)
    total = sum(
        (nominal_delay(retry, n) for n in range(1, 200) if next_delay(retry, n) is not None), timedelta()
    )
    assert timedelta(days=3, hours=23) <= total <= timedelta(days=4)
    assert next_delay(retry, 200) is None


def test_smtp_down_then_back_delivers_everything_once(db: Database) -> None:
    server = SmtpServer()  # address reserved, not started: connections are refused
    config = relay_config(server.port, retry={"first": "1s", "factor": 1, "max": "1s", "jitter": 0})
    settings = make_settings()
    clock = Clock()
    for i in range(10):
        invite(db, add_user(db, f"u{i}"), settings, now=clock.now)
    relay = Relay(db, config, settings, clock=clock)
    for _ in range(3):
        drain(relay)
        clock.now += timedelta(seconds=2)
    assert statuses(db) == {"PENDING": 10}
    assert {r.attempts for r in rows(db)} == {3}
    assert all(
        "Connect" in (r.last_error or "") or "refused" in (r.last_error or "").lower() for r in rows(db)
    )
    server.start()
    try:
        drain(relay)
        received = server.wait_for(10)
        assert statuses(db) == {"SENT": 10}
        clock.now += timedelta(hours=1)
        assert drain(relay) == 0
        assert len(server.messages) == 10
        assert len({m.message["Message-ID"] for m in received}) == 10
    finally:
        server.stop()


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (no mark), and no except-Exception catches it."""


class CrashAfterSend:
    """Delegates to a real transport, then 'dies' (the process would be killed here: nothing is marked)."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner

    async def send(
        self, message: Message, *, sender: str, recipient: str, before_data: Awaitable[Any] | None = None
    ) -> None:
        await self.inner.send(message, sender=sender, recipient=recipient, before_data=before_data)
        raise Killed("killed between the 250 and the mark")

    async def close(self) -> None:
        await self.inner.close()


def test_crash_between_send_and_mark_duplicates_at_most_once_with_the_same_message_id(
    db: Database, smtp_server: SmtpServer
) -> None:
    config = relay_config(smtp_server.port, lease="1m")
    settings = make_settings()
    clock = Clock()
    victim = add_user(db, "victim")
    invite(db, victim, settings, now=clock.now)
    crashing = Relay(db, config, settings, transport=CrashAfterSend(SmtpTransport(config.mail)), clock=clock)

    async def run_until_killed() -> None:
        try:
            await crashing.run_once()
        finally:
            await crashing.transport.close()  # the kernel would close the dead process's socket
            crashing.close()

    with pytest.raises(Killed):
        asyncio.run(run_until_killed())
    assert statuses(db) == {"SENDING": 1}
    restarted = Relay(db, config, settings, clock=clock)
    assert drain(restarted) == 0  # still leased to the dead relay
    clock.now += timedelta(minutes=1, seconds=1)
    assert drain(restarted) == 1
    received = smtp_server.wait_for(2)
    assert [m.message["Message-ID"] for m in received] == [f"<invite.{victim}.1@127.0.0.1>"] * 2
    assert statuses(db) == {"SENT": 1}
    clock.now += timedelta(hours=1)
    drain(restarted)
    assert len(smtp_server.messages) == 2  # and never again


def test_a_revoked_link_is_not_mailed(db: Database, smtp_server: SmtpServer) -> None:
    config = relay_config(smtp_server.port)
    settings = make_settings()
    user_id = add_user(db, "resent")
    invite(db, user_id, settings)
    new_token = invite(db, user_id, settings)  # resend before the relay ran: generation 1 is void
    drain(Relay(db, config, settings))
    [mail] = smtp_server.wait_for(1)
    assert mail.message["Message-ID"] == f"<invite.{user_id}.2@127.0.0.1>" and new_token in mail.body_text()
    assert statuses(db) == {"CANCELLED": 1, "SENT": 1}


def test_three_relays_in_parallel_send_each_message_once(db: Database, smtp_server: SmtpServer) -> None:
    config = relay_config(smtp_server.port, batch_size=20)
    settings = make_settings(max_invites_per_day=100)
    for i in range(150):
        invite(db, add_user(db, f"p{i}"), settings)

    async def one() -> int:
        relay = Relay(db, config, settings)
        try:
            return await relay.drain()
        finally:
            await relay.transport.close()
            relay.close()

    async def three() -> list[int]:
        return await asyncio.gather(one(), one(), one())

    handled = asyncio.run(three())
    assert sum(handled) == 150
    received = smtp_server.wait_for(150)
    assert len(received) == 150 and len({m.message["Message-ID"] for m in received}) == 150
    assert statuses(db) == {"SENT": 150}


def test_templates_are_overridden_from_the_templates_dir(
    db: Database, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    (tmp_path / "invite.subject.txt").write_text("Welcome to {{ org.name }}, {{ user.name }}")
    (tmp_path / "invite.txt").write_text("Go to {{ link }} now.")
    config = relay_config(smtp_server.port, templates_dir=str(tmp_path))
    settings = make_settings()
    user_id = add_user(db, "olga")
    token = invite(db, user_id, settings)
    drain(Relay(db, config, settings))
    [mail] = smtp_server.wait_for(1)
    assert mail.subject == "Welcome to Test Corp, Olga"
    assert mail.body_text().strip() == f"Go to http://127.0.0.1:8080/enroll/{token} now."
    assert (
        mail.message.get_body(preferencelist=("html",)).get_content_subtype() == "html"
    )  # built-in HTML kept


def test_directory_transport_is_idempotent(db: Database, tmp_path: Path) -> None:
    config = make_config(
        mail={"transport": "directory", "directory": str(tmp_path / "mail")}, enrollment={"reminders": []}
    )
    settings = make_settings()
    user_id = add_user(db, "dora")
    invite(db, user_id, settings)
    drain(Relay(db, config, settings))
    with db.write() as session:  # as if the mark had been lost: the same row goes out again
        session.execute(sa.update(OutboxMessage).values(status=outbox.PENDING))
    drain(Relay(db, config, settings))
    files = list((tmp_path / "mail").glob("*.eml"))
    assert [f.name for f in files] == [f"invite.{user_id}.1_127.0.0.1.eml"]


def test_notifications_render_for_every_purpose() -> None:
    config = make_config()
    renderer = Renderer(config.org, config.mail)
    renderer.check()
    rendered = renderer.render("bypass_codes", {"user": {"name": "A & B"}, "count": 3, "at": "now"})
    assert rendered.subject == "Backup codes were created for your Test Corp account"
    assert "A & B" in rendered.text and rendered.html is not None and "A &amp; B" in rendered.html
    assert dataclasses.asdict(rendered).keys() == {"subject", "text", "html"}

"""The outbox relay: claim due rows, render, send over one connection, mark each row right after its reply.

No transaction is open while a message is rendered or sent (reliability.md D3): a claim is one short unit
of work, each mark another. The window in which a crash duplicates a message is the time between the
relay's receipt of the server's ``250`` and the commit of that one row's mark; the duplicate then carries
the same Message-ID (E2). Temporary failures are retried on an exponential schedule with jitter and a
give-up budget (E4); permanent ones are FAILED at once (E3). See docs/adr/0022-mail-relay.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from syncd.config.models import Config, MailRetry
from syncd.errors import MailError, StoreError
from syncd.mail.render import Renderer
from syncd.mail.transports import PermanentError, TransientError, Transport, envelope_sender, make_transport
from syncd.store import invites, outbox
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.tables import EnrollmentInvite, User, utcnow

log = logging.getLogger("syncd.mail.relay")

_random = secrets.SystemRandom()
Clock = Callable[[], datetime]


def nominal_delay(retry: MailRetry, attempt: int) -> timedelta:
    """Delay after failed attempt ``attempt`` (1-based), before jitter."""
    seconds = retry.first.total_seconds() * retry.factor ** max(attempt - 1, 0)
    return timedelta(seconds=min(seconds, retry.max.total_seconds()))


def next_delay(retry: MailRetry, attempt: int, *, jitter: float | None = None) -> timedelta | None:
    """When to try again after attempt ``attempt`` failed, or None when the give-up budget is spent."""
    spent = sum((nominal_delay(retry, n) for n in range(1, attempt + 1)), timedelta())
    if spent > retry.give_up:
        return None
    factor = jitter if jitter is not None else _random.uniform(1 - retry.jitter, 1 + retry.jitter)
    return nominal_delay(retry, attempt) * factor


@dataclass(frozen=True, slots=True)
class _Cancel:
    reason: str


class Relay:
    """Sends the outbox. One instance per process; several processes may run one each (PostgreSQL)."""

    def __init__(
        self,
        db: Database,
        config: Config,
        settings: EnrollmentSettings,
        *,
        transport: Transport | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.settings = settings
        self.renderer = Renderer(config.org, config.mail)
        self.transport = transport or make_transport(config.mail)
        self.sender = envelope_sender(config.mail)
        self.clock = clock
        self.sent = 0
        # A second handle whose commits don't wait for the disk (SQLite: synchronous=NORMAL, which in WAL mode
        # keeps every commit across process crashes; PostgreSQL: synchronous_commit=off).
        self.marks = Database(db.config, flush_commits=False)

    async def run_once(self) -> int:
        """Claim one batch and process it; returns how many rows were claimed."""
        mail = self.config.mail
        lease = mail.lease
        rows = await asyncio.to_thread(self._claim, mail.batch_size, lease)
        if not rows:
            return 0
        prepared = await asyncio.to_thread(self._prepare, rows)
        deadline = time.monotonic() + lease.total_seconds() * 0.8
        pending: asyncio.Future[Any] | None = None  # the previous message's mark, committing in a thread
        try:
            for index, row in enumerate(rows):
                if time.monotonic() > deadline:
                    await _settle(pending)
                    await asyncio.to_thread(self._write, outbox.release, rows[index:])
                    break
                pending = await self._deliver(row, prepared[row.id], pending)
        finally:
            await _settle(pending)
        return len(rows)

    async def drain(self) -> int:
        """Run batches until nothing is due; returns rows processed."""
        total = 0
        while True:
            claimed = await self.run_once()
            total += claimed
            if claimed < self.config.mail.batch_size:
                return total

    async def run_forever(self, stop: asyncio.Event, *, interval: float) -> None:
        """Queue due reminders and drain the outbox every ``interval`` seconds until ``stop`` is set."""
        try:
            while not stop.is_set():
                try:
                    await asyncio.to_thread(self._queue_reminders)
                    await self.drain()
                except (StoreError, MailError) as error:
                    log.error("mail relay pass failed", extra={"reason": str(error)})
                except Exception:  # a bug must not stop the relay for good: log it, go on
                    log.exception("mail relay pass crashed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=interval)
        finally:
            await self.transport.close()
            self.close()

    # ---- one message ------------------------------------------------------------------------------------
    async def _deliver(
        self, row: outbox.Claimed, prepared: dict[str, Any] | _Cancel, previous: asyncio.Future[Any] | None
    ) -> asyncio.Future[Any] | None:
        """Send one row. Returns the future of its SENT mark (left running while the next message's
        envelope goes out), or None when the row was settled here."""
        if isinstance(prepared, _Cancel):
            await _settle(previous)
            await asyncio.to_thread(self._write, outbox.mark_cancelled, row, reason=prepared.reason)
            return None
        try:
            rendered = self.renderer.render(row.purpose, prepared)
            message = self.renderer.message(rendered, to=row.to_address, message_id=row.message_id)
        except MailError as error:
            log.error("mail not rendered", extra={"outbox_id": row.id, "reason": str(error)})
            await _settle(previous)
            await asyncio.to_thread(self._write, outbox.mark_failed, row, error=str(error))
            return None
        try:
            await self.transport.send(
                message, sender=self.sender, recipient=row.to_address, before_data=previous
            )
        except PermanentError as error:
            log.error("mail refused for good", extra={"outbox_id": row.id, "reason": str(error)})
            await _settle(previous)
            await asyncio.to_thread(self._write, outbox.mark_failed, row, error=str(error))
            return None
        except TransientError as error:
            await _settle(previous)
            await asyncio.to_thread(self._retry_later, row, str(error))
            return None
        self.sent += 1
        mark = asyncio.to_thread(self._mark_sent, row, subject=rendered.subject, now=self.clock())
        return asyncio.ensure_future(mark)

    def _retry_later(self, row: outbox.Claimed, error: str) -> None:
        delay = next_delay(self.config.mail.retry, row.attempts)
        if delay is None:
            reason = f"gave up after {row.attempts} attempt(s): {error}"
            log.error("mail given up", extra={"outbox_id": row.id, "reason": reason})
            self._write(outbox.mark_failed, row, error=reason)
            return
        log.warning(
            "mail deferred",
            extra={
                "outbox_id": row.id,
                "attempt": row.attempts,
                "retry_in_s": round(delay.total_seconds()),
                "reason": error,
            },
        )
        self._write(outbox.mark_retry, row, error=error, at=self.clock() + delay)

    # ---- database (called in a worker thread) ------------------------------------------------------------
    def _write(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self.db.write() as session:
            return function(session, *args, **kwargs)

    def _mark_sent(self, row: outbox.Claimed, *, subject: str, now: datetime) -> bool:
        """A SENT mark, on a bare connection (one per message: the cheapest unit of work there is) and
        committed without waiting for the disk flush: a mark lost to a power cut (never to a process crash)
        only means one more copy with the same Message-ID, which the relay allows. No leader fencing: the
        message went out, so recording it is right whoever holds the lock."""
        with self.marks.one_statement() as connection:
            return outbox.mark_sent(connection, row, subject=subject, now=now)

    def close(self) -> None:
        """Release the marks' database handle (the transport is closed by its owner)."""
        self.marks.dispose()

    def _claim(self, limit: int, lease: timedelta) -> list[outbox.Claimed]:
        with self.db.write() as session:
            return outbox.claim(session, limit=limit, lease=lease, now=self.clock())

    def _queue_reminders(self) -> int:
        if not self.settings.reminders:
            return 0
        with self.db.write() as session:
            return invites.queue_reminders(session, self.settings, now=self.clock())

    def _prepare(self, rows: list[outbox.Claimed]) -> dict[str, dict[str, Any] | _Cancel]:
        """Template values per row (names, links derived again), or why the row is no longer wanted."""
        out: dict[str, dict[str, Any] | _Cancel] = {}
        now = self.clock()
        user_ids = {row.user_id for row in rows if row.user_id}
        invite_ids = {str(row.context["invite_id"]) for row in rows if "invite_id" in row.context}
        with self.db.read() as session:
            people = {u.id: u for u in session.scalars(sa.select(User).where(User.id.in_(user_ids)))}
            links = {
                i.id: i
                for i in session.scalars(
                    sa.select(EnrollmentInvite).where(EnrollmentInvite.id.in_(invite_ids))
                )
            }
        for row in rows:
            values: dict[str, Any] = dict(row.context)
            values["user"] = _person(people.get(row.user_id) if row.user_id else None)
            invite_id = row.context.get("invite_id")
            if invite_id is not None:
                invite = links.get(str(invite_id))
                if invite is None or not invites.is_live(invite, now):
                    out[row.id] = _Cancel("link revoked, used or expired before it was sent")
                    continue
                values["link"] = invites.link_for(self.settings, invite.id)
                values["expires_at"] = invite.expires_at.strftime("%Y-%m-%d %H:%M UTC")
            out[row.id] = values
        return out


async def _settle(mark: asyncio.Future[Any] | None) -> None:
    """Wait for a pending mark (its errors propagate)."""
    if mark is not None:
        await mark


def _person(user: User | None) -> dict[str, Any]:
    if user is None:
        return {"name": "there", "username": ""}
    name = user.display_name or " ".join(p for p in (user.given_name, user.family_name) if p) or user.username
    return {"name": name, "username": user.username, "given_name": user.given_name}

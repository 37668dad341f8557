"""Mail relay throughput (issue 5, "Speed"): 10,000 invites drained into aiosmtpd on loopback.

Measured in one run, against baselines of the same run:

* **reuse_vs_new**: a bare aiosmtplib loop over one connection vs a new connection per message
  (``aiosmtplib.send``), messages per second (the new-connection loop sends ``--new-sample`` messages).
* **relay_vs_bare**: time of the relay draining the outbox (claim, render, send, mark each row) vs the bare
  loop with reuse rendering and sending the same messages (target ≤ 1.5: what the outbox itself costs, the
  claims and the marks). The time of a bare loop over messages built beforehand is printed too.
* **msgs_per_s**: the relay's rate.

The SMTP sink is a separate process (both ends are Python on the same machine). The database is SQLite in a
temporary directory with syncd's defaults (WAL, synchronous=FULL) unless ``--database-url`` names another
(PostgreSQL: pass the password in ``SYNCD_BENCH_DB_PASSWORD``).

    .venv/bin/python bench/mail.py [--messages 10000] [--new-sample 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import time
from email.message import Message
from pathlib import Path
from typing import Any

import aiosmtplib
import sqlalchemy as sa
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from syncd.config.models import Config  # noqa: E402
from syncd.mail.relay import Relay  # noqa: E402
from syncd.mail.render import Renderer  # noqa: E402
from syncd.store import invites, schema  # noqa: E402
from syncd.store.db import Database  # noqa: E402
from syncd.store.enrollment import EnrollmentSettings  # noqa: E402
from syncd.store.keys import Keys  # noqa: E402
from syncd.store.tables import OutboxMessage, User  # noqa: E402

SEED_KEY = "bench-seed-key-0123456789abcdefghijklmnopqrstuvwxyz"


def sink(port: int, count: Any, ready: Any) -> None:
    """The SMTP server process: accepts and counts every message."""

    class Counter:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with count.get_lock():
                count.value += 1
            return "250 OK"

    controller = Controller(Counter(), hostname="127.0.0.1", port=port, server_hostname="localhost")
    controller.start()
    ready.set()
    signal.sigwait({signal.SIGTERM})
    controller.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config_for(url: str, port: int) -> Config:
    database: dict[str, Any] = {"url": url}
    if os.environ.get("SYNCD_BENCH_DB_PASSWORD"):
        database["password"] = {"env": "SYNCD_BENCH_DB_PASSWORD"}
    return Config.model_validate(
        {
            "org": {
                "name": "Bench Corp",
                "base_url": "https://mfa.example.com",
                "support_email": "it@example.com",
            },
            "database": database,
            "mail": {
                "transport": "smtp",
                "smtp": {"host": "127.0.0.1", "port": port, "security": "none"},
                "from_address": "Bench MFA <mfa@example.com>",
            },
            "enrollment": {"reminders": [], "max_invites_per_day": 100},
        }
    )


def queue_invites(db: Database, settings: EnrollmentSettings, n: int) -> None:
    for start in range(0, n, 500):
        with db.write() as session:
            rows = [
                {
                    "id": f"u{i:06d}",
                    "username": f"user{i}",
                    "username_key": f"user{i}",
                    "email": f"user{i}@example.com",
                    "given_name": f"User{i}",
                    "attributes": {},
                    "status": "UNENROLLED",
                    "provisioned": True,
                }
                for i in range(start, min(start + 500, n))
            ]
            session.execute(sa.insert(User), rows)
            for user in session.scalars(sa.select(User).where(User.id.in_([r["id"] for r in rows]))):
                invites.issue(session, user, settings, actor="bench", reason="bench")


Job = tuple[str, str, dict[str, Any]]  # recipient, Message-ID, template values


def jobs_of(db: Database, settings: EnrollmentSettings) -> list[Job]:
    """What the relay will send, read from the outbox once (not timed)."""
    out = []
    with db.read() as session:
        for row, user in session.execute(
            sa.select(OutboxMessage, User).join(User, User.id == OutboxMessage.user_id)
        ):
            values = {
                "user": {"name": user.given_name or user.username},
                "link": invites.link_for(settings, str(row.context["invite_id"])),
                "expires_at": "2026-12-01 00:00 UTC",
            }
            out.append((row.to_address, row.message_id, values))
    return out


def build(renderer: Renderer, job: Job) -> Message:
    recipient, message_id, values = job
    return renderer.message(renderer.render("invite", values), to=recipient, message_id=message_id)


async def bare_reuse(port: int, renderer: Renderer, jobs: list[Job], *, prebuilt: bool = False) -> float:
    """One connection; each message rendered and built in the loop, as any sender must (or prebuilt)."""
    ready = [build(renderer, job) for job in jobs] if prebuilt else None
    start = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for i, job in enumerate(jobs):
            message = ready[i] if ready is not None else build(renderer, job)
            await client.send_message(message, sender="mfa@example.com", recipients=[job[0]])
    return time.perf_counter() - start


async def bare_new(port: int, renderer: Renderer, jobs: list[Job]) -> float:
    """A new connection per message (``aiosmtplib.send``)."""
    start = time.perf_counter()
    for job in jobs:
        await aiosmtplib.send(
            build(renderer, job),
            sender="mfa@example.com",
            recipients=[job[0]],
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
        )
    return time.perf_counter() - start


async def relay_drain(relay: Relay) -> float:
    start = time.perf_counter()
    try:
        await relay.drain()
    finally:
        await relay.transport.close()
        relay.close()
    return time.perf_counter() - start


def wait_count(count: Any, target: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while count.value < target:
        if time.monotonic() > deadline:
            raise SystemExit(f"sink got {count.value} of {target} messages")
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--new-sample", type=int, default=2_000)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()

    port = free_port()
    ctx = multiprocessing.get_context("spawn")
    count = ctx.Value("l", 0)
    ready = ctx.Event()
    server = ctx.Process(target=sink, args=(port, count, ready), daemon=True)
    server.start()
    ready.wait(30)
    with tempfile.TemporaryDirectory(prefix="syncd-bench-mail-") as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        config = config_for(url, port)
        settings = EnrollmentSettings.from_config(config, Keys.from_secret(SEED_KEY))
        db = Database(config.database)
        try:
            schema.upgrade(db)
            with db.write() as session:  # a reused PostgreSQL database starts empty
                for table in ("outbox", "enrollment_invites", "audit_log", "users"):
                    session.execute(sa.text(f"DELETE FROM {table}"))
            t0 = time.perf_counter()
            queue_invites(db, settings, args.messages)
            queued = time.perf_counter() - t0
            jobs = jobs_of(db, settings)
            assert len(jobs) == args.messages
            renderer = Renderer(config.org, config.mail)

            t_reuse = asyncio.run(bare_reuse(port, renderer, jobs))
            wait_count(count, args.messages)
            sample = jobs[: args.new_sample]
            t_new = asyncio.run(bare_new(port, renderer, sample))
            wait_count(count, args.messages + len(sample))
            t_prebuilt = asyncio.run(bare_reuse(port, renderer, jobs, prebuilt=True))
            wait_count(count, 2 * args.messages + len(sample))

            relay = Relay(db, config, settings)
            t_relay = asyncio.run(relay_drain(relay))
            wait_count(count, 3 * args.messages + len(sample))
            with db.read() as session:
                sent = session.scalar(sa.select(sa.func.count()).where(OutboxMessage.status == "SENT"))
            assert sent == args.messages, f"{sent} of {args.messages} marked SENT"
        finally:
            db.dispose()
    os.kill(server.pid, signal.SIGTERM)
    server.join(10)

    reuse_rate = args.messages / t_reuse
    new_rate = len(sample) / t_new
    relay_rate = args.messages / t_relay
    print(f"database            {config.database.url.split(':', 1)[0]}")
    rate = args.messages / queued
    print(f"queue {args.messages} invites  {queued:7.2f} s  ({rate:7.0f} /s: users, invites, outbox rows)")
    print(f"bare, one connection {t_reuse:7.2f} s  ({reuse_rate:7.0f} msg/s, rendering each message)")
    prebuilt_rate = args.messages / t_prebuilt
    print(
        f"bare, one connection {t_prebuilt:7.2f} s  ({prebuilt_rate:7.0f} msg/s, messages built beforehand)"
    )
    print(f"bare, new connection {t_new:7.2f} s  ({new_rate:7.0f} msg/s, {len(sample)} messages)")
    print(f"relay (claim/render/send/mark) {t_relay:7.2f} s  ({relay_rate:7.0f} msg/s)")
    print(f"sink received {count.value} messages")
    ratios = f"reuse_vs_new={reuse_rate / new_rate:.2f} relay_vs_bare={t_relay / t_reuse:.2f}"
    print(f"RESULT {ratios} msgs_per_s={relay_rate:.0f}")


if __name__ == "__main__":
    main()

"""The relay inside ``syncd run``, for real: SMTP down for a while then back (everything delivered, once),
and SIGKILL of the daemon after the server took a message but before the relay marked it (at most one
duplicate, with the same Message-ID). Both databases (reliability.md E1, E2, E5)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from harness.daemon import Daemon, write_config, write_users
from harness.net import free_port
from harness.smtp import RecordingHandler, SmtpServer

from syncd.config.models import Database as DatabaseConfig

PEOPLE = [(f"E{i}", f"user{i}", f"user{i}@example.com", f"User{i}") for i in range(5)]


def message_ids(messages: list[Any]) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]) for m in messages)


def test_smtp_down_then_back(tmp_path: Path, database_config: DatabaseConfig) -> None:
    users = tmp_path / "users.csv"
    write_users(users, PEOPLE)
    sink = SmtpServer()  # port reserved, server not started yet: connections are refused
    port = free_port()
    retry = "  retry: {first: 1s, factor: 1, max: 1s, jitter: 0}"
    config = write_config(
        tmp_path, database_config, port=port, smtp_port=sink.port, users=users, mail_extra=retry
    )
    daemon = Daemon(config, port, tmp_path / "syncd.log")
    daemon.start()
    try:
        deadline = time.monotonic() + 30
        while "mail deferred" not in daemon.output():
            assert time.monotonic() < deadline, daemon.output()
            time.sleep(0.2)
        time.sleep(2)  # a few more failed passes
        sink.start()
        received = sink.wait_for(5, timeout=30)
        time.sleep(3)  # later passes must not send anything again
        assert len(sink.messages) == 5
        assert set(message_ids(received).values()) == {1}
        assert sorted(m.rcpt_tos[0] for m in received) == sorted(p[2] for p in PEOPLE)
    finally:
        sink.stop()
        assert daemon.stop() == 0, daemon.output()


class HoldFirstHandler(RecordingHandler):
    """Records every message; keeps the first DATA reply back until ``release`` is set (the daemon is
    killed meanwhile: the server has the message, the relay never marks it)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.first_held = threading.Event()
        self.held = False

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.held:
            self.held = True
            self.first_held.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 60)
        return reply


def test_kill_between_send_and_mark(tmp_path: Path, database_config: DatabaseConfig) -> None:
    users = tmp_path / "users.csv"
    write_users(users, PEOPLE)
    handler = HoldFirstHandler()
    smtp_port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=smtp_port, ready_timeout=10, server_hostname="localhost"
    )
    controller.start()
    port = free_port()
    config = write_config(
        tmp_path, database_config, port=port, smtp_port=smtp_port, users=users, mail_extra="  lease: 2s"
    )
    daemon = Daemon(config, port, tmp_path / "syncd.log")
    try:
        daemon.start()
        assert handler.first_held.wait(30), daemon.output()
        daemon.kill()  # SIGKILL: after the whole message reached the server, before the row is marked
        handler.release.set()
        first_id = str(handler.messages[0].message["Message-ID"])
        daemon.start()
        handler.wait_for(6, timeout=30)
        time.sleep(3)
        counts = message_ids(handler.messages)
        assert len(handler.messages) == 6 and len(counts) == 5
        assert counts[first_id] == 2  # exactly one duplicate, and it carries the same Message-ID
        assert daemon.stop() == 0, daemon.output()
    finally:
        handler.release.set()
        if daemon.process is not None and daemon.process.poll() is None:
            daemon.kill()
        controller.stop()

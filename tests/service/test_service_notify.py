"""sd_notify over a fake NOTIFY_SOCKET: addresses, the watchdog interval, pings from the event loop."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from harness.service_daemon import NotifySocket

from syncd.notify import Notifier


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.send("READY=1") is False


def test_messages_arrive_as_datagrams(tmp_path: Path) -> None:
    sink = NotifySocket(tmp_path / "notify")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(sink.path)})
        notifier.status("migrating")
        notifier.ready("leader; serving")
        notifier.stopping()
        sink.wait_for("STOPPING=1", 5)
        assert sink.fields()[:4] == [
            "STATUS=migrating",
            "READY=1",
            "STATUS=leader; serving",
            f"MAINPID={os.getpid()}",
        ]
    finally:
        sink.close()


def test_abstract_namespace_address() -> None:
    name = f"syncd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).send("READY=1")
        assert sock.recv(100) == b"READY=1"


def test_watchdog_interval_only_for_this_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 30.0
    assert Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "0"}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": "relative/path"}).enabled is False


def test_watchdog_pings_stop_while_the_loop_is_blocked(tmp_path: Path) -> None:
    """The pings come from a task on the event loop: a blocked loop sends none (so systemd restarts it)."""
    sink = NotifySocket(tmp_path / "notify")
    notifier = Notifier({"NOTIFY_SOCKET": str(sink.path), "WATCHDOG_USEC": "200000"})  # ping every 0.1 s

    async def scenario() -> tuple[float, float]:
        stop = asyncio.Event()
        task = asyncio.create_task(notifier.watchdog(stop))
        await asyncio.sleep(0.5)
        blocked_at = time.monotonic()
        time.sleep(1.0)  # a synchronous call on the loop, as a blocking ldap3 call would be
        blocked_until = time.monotonic()
        await asyncio.sleep(0.5)
        stop.set()
        await task
        return blocked_at, blocked_until

    try:
        blocked_at, blocked_until = asyncio.run(scenario())
        time.sleep(0.2)
        pings = [at for at, text in sink.messages if text == "WATCHDOG=1"]
        assert len(pings) >= 6
        during = [at for at in pings if blocked_at + 0.05 < at < blocked_until - 0.05]
        assert during == []
        assert any(at > blocked_until for at in pings)  # and they resume once the loop runs again
    finally:
        sink.close()

"""The systemd notify protocol (sd_notify(3)) over a plain AF_UNIX datagram socket, no dependency.

``READY=1`` once config, migrations and listeners are up; ``STATUS=…`` lines for ``systemctl status``;
``WATCHDOG=1`` from a task on the event loop (so a blocked loop stops the pings and systemd restarts the
service); ``STOPPING=1`` when a stop begins. Without ``$NOTIFY_SOCKET`` (not under systemd) every call
does nothing. See docs/adr/0041-systemd-notify-and-watchdog.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("syncd.notify")


class Notifier:
    """Sends notify messages to the service manager named by the environment (``NOTIFY_SOCKET``)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields as one datagram; False (and a debug log) when it can't be sent."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(payload)
        except OSError as error:
            log.debug("notify message not sent", extra={"reason": error.strerror or str(error)})
            return False
        return True

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading the configuration")

    def reloaded(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    async def watchdog(self, stop: asyncio.Event) -> None:
        """Ping ``WATCHDOG=1`` every half watchdog interval from the event loop until ``stop`` is set."""
        if self.watchdog_interval is None or self.address is None:
            return
        period = self.watchdog_interval / 2
        while not stop.is_set():
            self.send("WATCHDOG=1")
            try:
                await asyncio.wait_for(stop.wait(), timeout=period)
            except TimeoutError:
                continue


def _address(value: str) -> str | None:
    """``/run/systemd/notify`` as is; a leading ``@`` names the abstract namespace (a leading NUL)."""
    if not value or not value.startswith(("/", "@")):
        return None
    return "\0" + value[1:] if value.startswith("@") else value


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds from ``WATCHDOG_USEC``, when it is meant for this process (``WATCHDOG_PID`` unset or ours)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 1_000_000

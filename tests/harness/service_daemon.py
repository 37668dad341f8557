"""``syncd run`` as a real process: its config, a fake systemd notify socket, its logs, signals.

``NotifySocket`` is an AF_UNIX datagram socket standing in for systemd's: the daemon gets its path in
``NOTIFY_SOCKET`` (and ``WATCHDOG_USEC``), and the test reads the messages in order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from harness.net import free_port
from syncd.config.models import Database as DatabaseConfig

SEED_KEY = "daemon-test-seed-key-0123456789abcdefghijklmnopqrstuvwxyz"


def write_users_csv(path: Path, count: int, *, prefix: str = "u", start: int = 0) -> Path:
    """A users CSV of ``count`` users (anchors ``<prefix>-<n>``), like an HR export."""
    lines = ["id,username,email,given_name,family_name,display_name,phone,disabled,title,department"]
    for n in range(start, start + count):
        name = f"{prefix}{n:06d}"
        lines.append(
            f"{prefix}-{n},{name},{prefix}{n}@example.com,Given{n},Family{n},,,false,Staff,D{n % 17}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def service_config(
    tmp_path: Path,
    db: DatabaseConfig,
    *,
    port: int,
    sources: str = "",
    extra: str = "",
    api: str = "",
    name: str = "syncd.yaml",
) -> Path:
    """A daemon config in ``tmp_path`` (seed key file included); ``sources`` is the YAML list body, ``api``
    more keys of the flow-style ``api`` mapping (``", trusted_proxies: [10.0.0.1]"``)."""
    (tmp_path / "seed.key").write_text(SEED_KEY, encoding="utf-8")
    password = f"\n  password: {{file: {db.password.file}}}" if db.password is not None else ""
    text = f"""\
org: {{name: Test Corp, base_url: http://127.0.0.1:{port}}}
database:
  url: {db.url}{password}
secrets: {{seed_key: {{file: seed.key}}}}
sources:
{sources or "  []"}
api: {{listen: 127.0.0.1:{port}{api}}}
logging: {{level: INFO, format: logfmt}}
{extra}"""
    path = tmp_path / name
    path.write_text(text.replace("sources:\n  []", "sources: []"), encoding="utf-8")
    return path


class NotifySocket:
    """Collects sd_notify datagrams sent to a socket file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._cond:
                self.messages.append((time.monotonic(), data.decode("utf-8")))
                self._cond.notify_all()

    def fields(self) -> list[str]:
        """Every ``KEY=value`` line received, in order."""
        with self._cond:
            return [line for _, text in self.messages for line in text.splitlines()]

    def wait_for(self, field: str, timeout: float) -> float:
        """Wait until a datagram with the line ``field`` arrived; its arrival time (monotonic)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, text in self.messages:
                    if field in text.splitlines():
                        return at
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {field} within {timeout} s; got {self.fields()}")
                self._cond.wait(left)

    def close(self) -> None:
        self._closed = True
        self.sock.close()


class Daemon:
    """One ``syncd run`` process; output goes to ``log_path``."""

    def __init__(
        self,
        config: Path,
        *,
        port: int,
        notify: NotifySocket | None = None,
        watchdog_s: float = 0,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.notify = notify
        self.log_path = config.with_suffix(f".{time.monotonic_ns()}.log")
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("SYNCD_CONFIG", None)
        if notify is not None:
            env["NOTIFY_SOCKET"] = str(notify.path)
            if watchdog_s:
                env["WATCHDOG_USEC"] = str(int(watchdog_s * 1_000_000))
        self._log = self.log_path.open("w", encoding="utf-8")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "syncd", "run", "-c", str(config)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=preexec,  # noqa: PLW1509
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until ``/readyz`` answers 200 (or READY=1 arrives, with a notify socket)."""
        if self.notify is not None:
            self.notify.wait_for("READY=1", timeout)
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"daemon not ready in {timeout} s:\n{self.log}")

    def wait_log(self, text: str, timeout: float = 60, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.count(text) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise TimeoutError(f"{text!r} x{count} not logged in {timeout} s:\n{self.log[-4000:]}")

    def readyz(self) -> dict[str, object]:
        response = httpx.get(f"{self.url}/readyz", timeout=5)
        result: dict[str, object] = response.json()
        return result

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def stop(self, timeout: float = 40) -> int:
        """SIGTERM and wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("SYNCD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


__all__ = ["Daemon", "NotifySocket", "free_port", "run_cli", "service_config", "until", "write_users_csv"]

"""``syncd run`` as a real process: a config written for the test, start, wait until ready, stop or kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from harness.enrollment import SEED_KEY
from syncd.config.models import Database as DatabaseConfig

USERS_HEADER = "id,username,email,given_name,family_name,display_name,phone,disabled\n"


def write_users(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    """CSV users: (id, username, email, given name)."""
    lines = [f"{i},{u},{e},{g},Tester,{g} Tester,,false\n" for i, u, e, g in rows]
    path.write_text(USERS_HEADER + "".join(lines), encoding="utf-8")


def write_config(
    root: Path, db: DatabaseConfig, *, port: int, smtp_port: int, users: Path, mail_extra: str = ""
) -> Path:
    (root / "seed.key").write_text(SEED_KEY + "\n", encoding="utf-8")
    password = f"\n  password: {{file: {db.password.file}}}" if db.password is not None else ""
    text = f"""\
org: {{name: Example Corp, base_url: "http://127.0.0.1:{port}", support_email: it@example.com}}
database:
  url: {db.url}{password}
secrets: {{seed_key: {{file: seed.key}}}}
sources:
  - name: hr
    kind: file
    format: csv
    users: {users}
    invite_new_users: true
mail:
  transport: smtp
  smtp: {{host: 127.0.0.1, port: {smtp_port}, security: none, timeout: 5}}
  from_address: "Example Corp MFA <mfa@example.com>"
{mail_extra}
scheduler: {{mail_interval: 1s}}
api: {{listen: "127.0.0.1:{port}"}}
logging: {{level: INFO, format: logfmt}}
"""
    path = root / "syncd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Daemon:
    """One ``syncd run`` process; its output is collected in a file."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log_path = config, port, log
        self.process: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 60) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "-c", str(self.config)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"syncd exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"syncd not ready within {timeout} s:\n{self.output()}")

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

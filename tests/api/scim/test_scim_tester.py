"""scim2-tester (through scim2-cli, as an admin would run it) against the real server on loopback: every
check must be SUCCESS, on both databases, and against the daemon started from the demo config with the
SCIM client the README adds to it (token in a file)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from harness.net import free_port
from harness.scim import ScimServer

ROOT = Path(__file__).resolve().parents[3]
SCIM_CLI = Path(sys.executable).parent / "scim"
STATUS_LINE = re.compile(r"^(SUCCESS|COMPLIANT|ACCEPTABLE|DEVIATION|ERROR|CRITICAL|SKIPPED) ", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# The SCIM client the README tells a new user to add to config/demo.yaml (scripts/demo's token file).
DEMO_SCIM_SOURCE = """
  - name: okta
    kind: scim
    tokens: [{file: ../var/demo-scim.token}]   # openssl rand -base64 32 > var/demo-scim.token
"""


def run_tester(url: str, token: str) -> tuple[int, Counter[str], str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [str(SCIM_CLI), "--url", url, "-h", f"Authorization: Bearer {token}", "test"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    output = ANSI.sub("", result.stdout + result.stderr)
    return result.returncode, Counter(STATUS_LINE.findall(output)), output


def test_every_scim2_tester_check_succeeds(scim: ScimServer) -> None:
    code, counts, output = run_tester(scim.url, scim.tokens["okta"])
    assert set(counts) == {"SUCCESS"} and counts["SUCCESS"] >= 130, output
    assert code == 0, output


def test_the_demo_daemon_with_a_scim_token_file_passes_scim2_tester(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config", tmp_path / "config")
    var = tmp_path / "var"
    var.mkdir(mode=0o700)
    (var / "demo-seed.key").write_text("demo-seed-key-" + "x" * 40 + "\n", encoding="utf-8")
    token = "scim-demo-token-" + os.urandom(16).hex()
    (var / "demo-scim.token").write_text(token + "\n", encoding="utf-8")
    port = free_port()
    config = tmp_path / "config" / "demo.yaml"
    text = config.read_text(encoding="utf-8").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    text = text.replace("\nmail:", DEMO_SCIM_SOURCE + "\nmail:", 1)
    config.write_text(text, encoding="utf-8")
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("SYNCD_CONFIG", None)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.2)
        code, counts, output = run_tester(f"http://127.0.0.1:{port}/scim/v2", token)
        assert set(counts) == {"SUCCESS"} and code == 0, output
        wrong, _, output = run_tester(f"http://127.0.0.1:{port}/scim/v2", token + "x")
        assert wrong == 1 and "the bearer token is not valid" in output
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=30)

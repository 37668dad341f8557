"""The ``syncd`` command as an admin runs it: real processes, real databases, real servers on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from harness.net import free_port
from harness.slapd import Slapd
from harness.smtp import SmtpServer

from syncd.config.models import Database as DatabaseConfig

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo"

Run = Callable[..., subprocess.CompletedProcess[str]]


def syncd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    env.pop("SYNCD_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "syncd", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def write_config(tmp_path: Path, db: DatabaseConfig, *, extra: str = "", port: int = 8080) -> Path:
    shutil.copytree(DEMO, tmp_path / "demo")
    password = f"\n  password: {{file: {db.password.file}}}" if db.password is not None else ""
    (tmp_path / "seed.key").write_text("test-seed-key-0123456789abcdefghijklmnopqrstuvwxyz\n")
    text = f"""\
org: {{name: Test Corp, base_url: http://127.0.0.1:{port}}}
database:
  url: {db.url}{password}
secrets: {{seed_key: {{file: seed.key}}}}
sources:
  - name: demo
    kind: file
    format: csv
    users: demo/users.csv
    groups: demo/groups.csv
mail: {{transport: console}}
api: {{listen: 127.0.0.1:{port}}}
logging: {{level: INFO, format: logfmt}}
{extra}"""
    path = tmp_path / "syncd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, database_config: DatabaseConfig) -> Path:
    return write_config(tmp_path, database_config)


def test_check_config_ok_and_bad(tmp_path: Path, config: Path) -> None:
    ok = syncd("check-config", config)
    assert (ok.returncode, ok.stdout.strip()) == (0, f"{config}: ok (1 source(s))")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        config.read_text().replace("api: {listen: 127.0.0.1:8080}", "api: {listen: 127.0.0.1:99999}")
    )
    result = syncd("check-config", bad)
    line = 1 + bad.read_text().splitlines().index("api: {listen: 127.0.0.1:99999}")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"syncd: {bad}:{line}: api.listen: must be host:port such as 127.0.0.1:8080, got '127.0.0.1:99999'"
    )


def test_check_config_connect_reaches_database_ldap_and_smtp(
    tmp_path: Path, database_config: DatabaseConfig, slapd: Slapd, smtp_server: SmtpServer
) -> None:
    (tmp_path / "bind.pw").write_text(Slapd.bind_password)
    extra = f"""\
  - name: lab
    kind: ldap
    servers: [{slapd.url}]
    bind: {{dn: "{Slapd.bind_dn}", password: {{file: bind.pw}}}}
    users: {{base: "{Slapd.people_dn}"}}
"""
    config = write_config(tmp_path, database_config)
    text = config.read_text().replace(
        "mail: {transport: console}",
        (f"mail:\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {smtp_server.port}, security: none}}"),
    )
    config.write_text(text.replace("    groups: demo/groups.csv\n", "    groups: demo/groups.csv\n" + extra))
    result = syncd("check-config", config, "--connect")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("  database ") and line.endswith(": ok") for line in lines)
    assert f"  source lab {slapd.url}: ok" in lines
    assert f"  smtp 127.0.0.1:{smtp_server.port}: ok" in lines

    (tmp_path / "bind.pw").write_text("wrong-password")
    smtp_server.stop()
    failed = syncd("check-config", config, "--connect")
    assert failed.returncode == 1
    assert f"  source lab {slapd.url}: FAILED" in failed.stdout
    assert "invalidCredentials" in failed.stdout or "LDAPInvalidCredentialsResult" in failed.stdout
    assert f"  smtp 127.0.0.1:{smtp_server.port}: FAILED" in failed.stdout
    assert "wrong-password" not in failed.stdout + failed.stderr


def test_sync_dry_run_then_real_then_users(config: Path) -> None:
    not_yet = syncd("users", "list", "-c", config)
    assert not_yet.returncode == 3 and "run `syncd db upgrade`" in not_yet.stderr

    assert syncd("db", "upgrade", "-c", config).returncode == 0
    dry = syncd("sync", "--dry-run", "-c", config)
    assert dry.returncode == 0, dry.stderr
    assert "  create    user  alice  (new)" in dry.stdout
    assert "  create    user  dvolkov  (new, disabled in source)" in dry.stdout
    assert "would create 12, update 0, disable 0" in dry.stdout
    assert json.loads(syncd("users", "list", "--json", "-c", config).stdout or "null") is None  # nothing yet

    real = syncd("sync", "--source", "demo", "--json", "-c", config)
    assert real.returncode == 0, real.stderr
    summary = json.loads(real.stdout)
    assert summary["status"] == "ok" and summary["counts"]["created"] == 12

    listed = [json.loads(line) for line in syncd("users", "list", "--json", "-c", config).stdout.splitlines()]
    assert len(listed) == 12
    by_name = {u["username"]: u for u in listed}
    assert by_name["dvolkov"]["status"] == "PROVISIONING_DISABLED"
    assert {u["status"] for n, u in by_name.items() if n != "dvolkov"} == {"UNENROLLED"}
    unenrolled = syncd("users", "list", "--status", "unenrolled", "-c", config)
    assert unenrolled.stdout.strip().endswith("11 user(s)")

    shown = json.loads(syncd("users", "show", "ALICE", "--json", "-c", config).stdout)
    assert shown["email"] == "alice.martin@example.com" and "staff" in shown["groups"]
    missing = syncd("users", "show", "nobody", "-c", config)
    assert (missing.returncode, missing.stderr.strip()) == (4, "syncd: no user 'nobody'")


def test_sync_errors_have_exit_codes(tmp_path: Path, config: Path) -> None:
    assert syncd("db", "upgrade", "-c", config).returncode == 0
    unknown = syncd("sync", "--source", "nope", "-c", config)
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "syncd: no source 'nope' (sources: demo)")
    users_csv = tmp_path / "demo" / "users.csv"
    lines = users_csv.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("@example.com", "")
    users_csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    bad = syncd("sync", "-c", config)
    assert bad.returncode == 1
    assert "users.csv:4: email" in bad.stdout
    listed = syncd("users", "list", "--json", "-c", config)
    assert listed.stdout == ""  # nothing half-applied


def test_database_newer_than_code_is_refused(config: Path, database_config: DatabaseConfig) -> None:
    assert syncd("db", "upgrade", "-c", config).returncode == 0
    engine = sa.create_engine(
        database_config.url,
        connect_args={"password": database_config.password.get()} if database_config.password else {},
    )
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'ffff_from_the_future'"))
    engine.dispose()
    for args in (("users", "list"), ("db", "upgrade"), ("run",)):
        result = syncd(*args, "-c", config)
        assert result.returncode == 3, args
        assert "newer than the code" in result.stderr


def test_unwritable_database_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path, DatabaseConfig(url=f"sqlite:///{tmp_path}/missing/dir/syncd.db"))
    result = syncd("db", "upgrade", "-c", config)
    assert (result.returncode, result.stderr.strip()) == (
        3,
        f"syncd: database directory {tmp_path}/missing/dir does not exist",
    )


def test_daemon_serves_health_and_imports_demo_users(tmp_path: Path, database_config: DatabaseConfig) -> None:
    port = free_port()
    config = write_config(tmp_path, database_config, port=port)
    env = {**os.environ, "NO_COLOR": "1"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "syncd", "run", "-c", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline and daemon.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200 and ready.json()["status"] == "ok"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json() == {"status": "ok"}
        while time.monotonic() < deadline:  # the start-up sync is a job that runs once the daemon is ready
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()["sources"].get("demo"):
                break
            time.sleep(0.2)
        listed = syncd("users", "list", "--status", "UNENROLLED", "--json", "-c", config)
        assert len(listed.stdout.splitlines()) == 11
    finally:
        daemon.send_signal(signal.SIGTERM)
        output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "start-up sync finished" in output
    assert "Traceback" not in output

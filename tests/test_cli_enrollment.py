"""``syncd invite`` and ``syncd outbox`` as an admin runs them (real processes, both databases), and
``syncd run`` refusing to start without the seed key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from harness.daemon import write_config, write_users
from harness.net import free_port

from syncd.config.models import Database as DatabaseConfig
from syncd.store.db import Database
from syncd.store.tables import OutboxMessage


def syncd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "syncd", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def setup(tmp_path: Path, db: DatabaseConfig) -> Path:
    users = tmp_path / "users.csv"
    write_users(
        users,
        [
            ("E1", "alice", "alice@example.com", "Alice"),
            ("E2", "bob", "bob@example.com", "Bob"),
            ("E3", "nomail", "", "No"),
        ],
    )
    config = write_config(tmp_path, db, port=free_port(), smtp_port=free_port(), users=users)
    config.write_text(config.read_text().replace("invite_new_users: true", "invite_new_users: false"))
    assert syncd("db", "upgrade", "-c", config).returncode == 0
    assert syncd("sync", "-c", config).returncode == 0
    return config


def test_invite_outbox_list_and_retry(tmp_path: Path, database_config: DatabaseConfig) -> None:
    config = setup(tmp_path, database_config)
    assert json.loads(syncd("outbox", "list", "--json", "-c", config).stdout or "null") is None  # nobody yet

    invited = syncd("invite", "alice", "nomail", "--json", "-c", config)
    assert invited.returncode == 0, invited.stderr
    lines = [json.loads(line) for line in invited.stdout.splitlines()]
    assert lines == [
        {"user": "alice", "status": "queued", "detail": "generation 1"},
        {"user": "nomail", "status": "skipped", "detail": "no email address"},
    ]
    bulk = syncd("invite", "--all-unenrolled", "-c", config)
    assert bulk.returncode == 0 and "queued       bob" in bulk.stdout and "3 user(s) processed" in bulk.stdout

    listed = [
        json.loads(line) for line in syncd("outbox", "list", "--json", "-c", config).stdout.splitlines()
    ]
    assert sorted((row["to"], row["status"]) for row in listed) == [
        ("alice@example.com", "PENDING"),
        ("alice@example.com", "PENDING"),
        ("bob@example.com", "PENDING"),
    ]
    assert all("body" not in key for row in listed for key in row)
    table = syncd("outbox", "list", "-c", config)
    assert "3 PENDING" in table.stdout

    for _ in range(3):
        assert syncd("invite", "alice", "-c", config).returncode == 0
    limited = syncd("invite", "alice", "bob", "-c", config)  # alice: 6th mail in 24 h
    assert limited.returncode == 9
    assert "rate_limited alice" in limited.stdout and "queued       bob" in limited.stdout

    db = Database(database_config)
    try:
        with db.write() as session:
            row = session.scalar(
                sa.select(OutboxMessage).where(OutboxMessage.to_address == "bob@example.com").limit(1)
            )
            assert row is not None
            row.status, row.last_error = "FAILED", "550 5.1.1 no such user"
            failed_id = row.id
    finally:
        db.dispose()
    failed = syncd("outbox", "list", "--status", "failed", "-c", config)
    assert failed_id in failed.stdout and "550 5.1.1" in failed.stdout
    retried = syncd("outbox", "retry", failed_id, "-c", config)
    assert retried.returncode == 0 and "1 message(s) queued again" in retried.stdout
    again = syncd("outbox", "retry", failed_id, "-c", config)
    assert again.returncode == 1 and "not FAILED" in again.stderr
    assert syncd("outbox", "retry", "-c", config).returncode == 2
    assert syncd("invite", "nobody", "-c", config).returncode == 4


def test_run_refuses_to_start_without_the_seed_key(tmp_path: Path, database_config: DatabaseConfig) -> None:
    config = setup(tmp_path, database_config)
    config.write_text(config.read_text().replace("secrets: {seed_key: {file: seed.key}}\n", ""))
    result = syncd("run", "-c", config)
    assert result.returncode == 2
    assert "secrets.seed_key is required" in result.stderr and "openssl rand -base64 32" in result.stderr
    short = tmp_path / "short.key"
    short.write_text("too-short\n")
    config.write_text(
        config.read_text().replace("database:", "secrets: {seed_key: {file: short.key}}\ndatabase:")
    )
    result = syncd("run", "-c", config)
    assert result.returncode == 2 and "at least 32 characters" in result.stderr
    invite = syncd("invite", "alice", "-c", config)
    assert invite.returncode == 2

"""``syncd sync`` and its review commands (``runs``, ``show``, ``approve``, ``reject``) with a CSV source,
in process (click's runner), on SQLite and PostgreSQL; and one incremental run from the command line
against a real slapd."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from harness import ldap_tree
from harness.slapd import Slapd

from syncd.cli import main
from syncd.config import load_config
from syncd.config.models import Database as DatabaseConfig
from syncd.domain.lifecycle import UserStatus
from syncd.store import schema
from syncd.store.db import Database
from syncd.store.tables import User

HEADER = ["id", "username", "email"]


def write_users(path: Path, count: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows([f"u{i}", f"user{i}", f"user{i}@example.com"] for i in range(count))


def write_config(tmp_path: Path, db: DatabaseConfig, source: str) -> Path:
    password = f"\n  password: {{file: {db.password.file}}}" if db.password is not None else ""
    path = tmp_path / "syncd.yaml"
    path.write_text(
        f"org: {{name: Test Corp, base_url: http://127.0.0.1:8080}}\n"
        f"database:\n  url: {db.url}{password}\n"
        f"sources:\n{source}"
        "sync: {max_disable: {count: 500, percent: 20}}\n"
        "mail: {transport: console}\nlogging: {level: WARNING, format: logfmt}\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, database_config: DatabaseConfig) -> Path:
    write_users(tmp_path / "users.csv", 10)
    source = "  - {name: hr, kind: file, format: csv, users: users.csv}\n"
    return write_config(tmp_path, database_config, source)


def syncd(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def json_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def upgrade(config: Path) -> None:
    db = Database(load_config(config).database)
    try:
        schema.upgrade(db)
    finally:
        db.dispose()


def provisioning_disabled(config: Path) -> int:
    db = Database(load_config(config).database)
    try:
        with db.read() as session:
            query = sa.select(sa.func.count()).where(User.status == UserStatus.PROVISIONING_DISABLED)
            return int(session.scalar(query) or 0)
    finally:
        db.dispose()


def held_run(config: Path) -> str:
    upgrade(config)
    assert syncd("sync", "-c", config).exit_code == 0
    write_users(config.parent / "users.csv", 7)  # 3 of 10 gone: over 20 %
    held = syncd("sync", "--json", "-c", config)
    assert held.exit_code == 7, held.output
    [result] = json_lines(held)
    assert result["status"] == "held"
    return str(result["run"])


def test_held_run_listed_shown_and_approved(config: Path) -> None:
    run_id = held_run(config)
    runs = json_lines(syncd("sync", "runs", "--json", "-c", config))
    assert [r["status"] for r in runs] == ["held", "ok"] and runs[0]["run"] == run_id
    table = syncd("sync", "runs", "-c", config)
    assert table.exit_code == 0 and run_id in table.stdout and "2 run(s)" in table.stdout
    shown = syncd("sync", "show", run_id, "-c", config)
    assert shown.exit_code == 0 and "disable   user  user9  (left scope)" in shown.stdout
    assert f"syncd sync approve {run_id}" in shown.stdout
    approved = syncd("sync", "approve", run_id, "--json", "-c", config)
    assert approved.exit_code == 0, approved.output
    [result] = json_lines(approved)
    assert result["status"] == "ok" and result["counts"]["disabled"] == 3  # type: ignore[index]
    again = json.loads(syncd("sync", "show", run_id, "--json", "-c", config).stdout)
    assert again["status"] == "approved" and str(again["decided_by"]).startswith("admin:cli:")
    refused = syncd("sync", "approve", run_id, "-c", config)
    assert refused.exit_code == 2 and f"run {run_id} is approved, not held" in refused.stderr


def test_held_run_rejected(config: Path) -> None:
    run_id = held_run(config)
    rejected = syncd("sync", "reject", run_id, "--note", "HR export was cut short", "-c", config)
    assert rejected.exit_code == 0 and "nothing was applied" in rejected.stdout
    shown = json.loads(syncd("sync", "show", run_id, "--json", "-c", config).stdout)
    assert shown["status"] == "rejected" and "HR export was cut short" in str(shown["reason"])
    assert provisioning_disabled(config) == 0
    missing = syncd("sync", "approve", "nope", "-c", config)
    assert missing.exit_code == 4 and "no sync run 'nope'" in missing.stderr


def test_ldap_source_incremental_from_the_command_line(
    tmp_path: Path, database_config: DatabaseConfig, slapd_factory: Callable[..., Slapd]
) -> None:
    server = slapd_factory(ldif=ldap_tree.tree_ldif(bulk=20))
    (tmp_path / "ldap-pw").write_text(server.bind_password)
    source = (
        f"  - name: corp\n    kind: ldap\n    servers: ['{server.url}']\n"
        f"    bind: {{dn: '{server.bind_dn}', password: {{file: ldap-pw}}}}\n"
        "    users: {base: 'ou=people,dc=example,dc=org'}\n"
        "    groups: {base: 'ou=groups,dc=example,dc=org'}\n"
        "    disabled_filter: '(employeeType=disabled)'\n"
    )
    config = write_config(tmp_path, database_config, source)
    upgrade(config)
    first = json_lines(syncd("sync", "--json", "-c", config))[0]
    assert (first["status"], first["mode"]) == ("ok", "full")
    assert "no change-feed position stored yet: full run" in first["notes"]  # type: ignore[operator]
    server.add_ldif(f"dn: {ldap_tree.dn('frank')}\nchangetype: delete\n")
    second = json_lines(syncd("sync", "--source", "corp", "--json", "-c", config))[0]
    assert (second["status"], second["mode"], second["counts"]["disabled"]) == ("ok", "incremental", 1)  # type: ignore[index]
    full = json_lines(syncd("sync", "--full", "--dry-run", "--json", "-c", config))[0]
    assert (full["mode"], full["plan"]) == ("full", [])

"""``syncd status``: one screen on the state of the service (registered on the group in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from syncd import status
from syncd.cli import _config, config_option, handle_errors, out
from syncd.domain.lifecycle import UserStatus
from syncd.store.db import Database


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def status_cmd(config_path: Path | None, as_json: bool) -> None:
    """One-screen summary: users by status, last run per source, outbox, leader."""
    config = _config(config_path)
    db = Database(config.database)
    try:
        summary = status.summary(config, db)
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(summary.as_json(), ensure_ascii=False))
        return
    out.print(f"database  {summary.database}  (schema {summary.schema})", markup=False)
    out.print(f"leader    {summary.leader}", markup=False)
    counts = [f"{name} {summary.users.get(name.value, 0)}" for name in UserStatus]
    out.print(f"users     {sum(summary.users.values())}: " + ", ".join(counts), markup=False)
    mail = ", ".join(f"{k} {v}" for k, v in sorted(summary.outbox.items())) or "empty"
    out.print(f"outbox    {mail}", markup=False)
    table = Table("source", "kind", "last run", "status", "finished", "reason", box=None, pad_edge=False)
    for name, info in summary.sources.items():
        kind = str(info.get("kind", "")) + ("" if info.get("enabled", True) else " (disabled)")
        reason = str(info.get("reason") or "")
        table.add_row(
            name,
            kind,
            str(info.get("last_run") or "-"),
            str(info.get("status")),
            str(info.get("finished_at") or "-")[:19],
            reason if len(reason) <= 60 else reason[:57] + "...",
        )
    out.print(table)
    for run in summary.running:
        line = (
            f"{run['source']}: run {run['run']} ({run['mode']}) on {run['owner']} since {run['since'][:19]}"
        )
        out.print(f"running   {line}", markup=False)

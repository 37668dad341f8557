"""``syncd sync``: sync now, and review the runs (``runs``, ``show``, ``approve``, ``reject``).

Registered on the ``syncd`` group by :mod:`syncd.cli` (this module reuses its option and error handling).

    syncd sync [--source S] [--full] [--dry-run] [--json]   sync every enabled pull source (or one)
    syncd sync runs [--source S] [--limit N] [--json]        recent runs, newest first
    syncd sync show RUN [--json]                             one run, with the plan kept for held runs
    syncd sync approve RUN                                   read again; apply if within the held plan
    syncd sync reject RUN [--note TEXT]                      apply nothing of a held run
"""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress
from rich.table import Table

from syncd import service
from syncd.cli import EXIT_FAILED, _config, config_option, err, handle_errors, out
from syncd.config import Config
from syncd.errors import UsageError
from syncd.sources.readers import kind_of, reader_for
from syncd.store import runs
from syncd.store.db import Database
from syncd.store.tables import SyncRun
from syncd.sync import review
from syncd.sync.engine import Mode, RunResult, run_sync
from syncd.sync.plan import Op, describe

PULL_KINDS = ("file", "ldap")
EXIT_CODES = {"ok": 0, "incomplete": 0, "held": 7}
COUNTS = ("created", "updated", "disabled", "reenabled", "unchanged", "errors")


@click.group("sync", invoke_without_command=True)
@config_option
@click.option("--source", "source_name", help="Source to sync (default: every enabled pull source).")
@click.option("--full", is_flag=True, help="Full reconciling run (default: incremental where possible).")
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def sync_group(
    ctx: click.Context,
    config_path: Path | None,
    source_name: str | None,
    full: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Sync now: read the source, plan, guard, apply (or print the plan with --dry-run).

    Without --full, sources with a change feed (LDAP) read only what changed since the last run, and fall
    back to a full run when that is not possible. A run the guard holds waits for `syncd sync approve RUN`
    or `syncd sync reject RUN`.
    """
    ctx.obj = {"config_path": config_path}
    if ctx.invoked_subcommand is not None:
        return
    config = _config(config_path)
    if source_name is not None:
        _source(config, source_name)
        names = [source_name]
    else:
        names = [s.name for s in config.sources if s.enabled and getattr(s, "kind", "") in PULL_KINDS]
    db = service.open_database(config, upgrade=False)
    worst = 0
    try:
        if not dry_run and any(config.source(name).invite_new_users for name in names):
            service.enrollment_settings(config, db)  # new users get their invite in the same unit of work
        interactive = not as_json and out.is_terminal
        for name in names:
            mode: Mode = "full" if full else "incremental"
            result = _run(config, db, name, interactive=interactive, mode=mode, dry_run=dry_run)
            _show_result(name, result, dry_run=dry_run, as_json=as_json)
            worst = max(worst, EXIT_CODES.get(result.status, EXIT_FAILED))
    finally:
        db.dispose()
    sys.exit(worst)


@sync_group.command("runs")
@config_option
@click.option("--source", "source_name", help="Only runs of this source.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.pass_context
@handle_errors
def runs_cmd(
    ctx: click.Context, config_path: Path | None, source_name: str | None, limit: int, as_json: bool
) -> None:
    """Recent sync runs, newest first."""
    db = service.open_database(_config(config_path or ctx.obj["config_path"]), upgrade=False)
    try:
        with db.read() as session:
            rows = runs.recent(session, source_name, limit)
    finally:
        db.dispose()
    if as_json:
        for run in rows:
            print(json.dumps(_run_json(run), ensure_ascii=False))
        return
    table = Table(
        "run", "source", "mode", "status", "started", "secs",
        "new", "upd", "dis", "re", "same", "err", "reason", box=None, pad_edge=False,
    )  # fmt: skip
    for run in rows:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else None
        table.add_row(
            run.id, run.source, run.mode + (" dry" if run.dry_run else ""), run.status,
            run.started_at.strftime("%Y-%m-%d %H:%M:%S"), f"{seconds:.1f}" if seconds is not None else "-",
            *(str(getattr(run, k)) for k in COUNTS), _short(run.reason),
        )  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} run(s)")


@sync_group.command("show")
@click.argument("run_id", metavar="RUN")
@config_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@handle_errors
def show_cmd(ctx: click.Context, run_id: str, config_path: Path | None, as_json: bool) -> None:
    """One run, with its plan when it was held or a dry run."""
    db = service.open_database(_config(config_path or ctx.obj["config_path"]), upgrade=False)
    try:
        with db.read() as session:
            run = runs.get(session, run_id)
    finally:
        db.dispose()
    if run is None:
        raise UsageError(f"no sync run {run_id!r}")
    data = {**_run_json(run), "plan": run.plan}
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        if key != "plan":
            out.print(f"{key + ':':12} {value if value not in (None, '') else '-'}", markup=False)
    for row in run.plan or []:
        out.print(f"  {row['op']:9} {row['object']:5} {row['name']}  ({row['reason']})", markup=False)
    if run.status == "held":
        out.print(f"approve with: syncd sync approve {run.id}    reject with: syncd sync reject {run.id}")


@sync_group.command("approve")
@click.argument("run_id", metavar="RUN")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@handle_errors
def approve_cmd(ctx: click.Context, run_id: str, config_path: Path | None, as_json: bool) -> None:
    """Approve a held run: read the source again and apply, if the new plan stays within the held one.

    If the directory changed so that more users (or groups, or memberships) would now be removed than the
    held run showed, nothing is applied: the new run is held for review instead (exit 7).
    """
    config = _config(config_path or ctx.obj["config_path"])
    db = service.open_database(config, upgrade=False)
    try:
        held = review.held_run(db, run_id)
        source = _source(config, held.source)
        read = reader_for(source)
        result = review.approve(db, source, kind_of(source), read, config.sync, run_id, actor=_actor())
    finally:
        db.dispose()
    _show_result(source.name, result, dry_run=False, as_json=as_json)
    if result.status == "held":
        err.print(
            f"syncd: run {run_id} was not applied: the new plan goes further; review run {result.run_id}"
        )
    sys.exit(EXIT_CODES.get(result.status, EXIT_FAILED))


@sync_group.command("reject")
@click.argument("run_id", metavar="RUN")
@config_option
@click.option("--note", help="Why (kept with the run).")
@click.pass_context
@handle_errors
def reject_cmd(ctx: click.Context, run_id: str, config_path: Path | None, note: str | None) -> None:
    """Reject a held run: nothing it planned is applied (a later run planning the same is held again)."""
    db = service.open_database(_config(config_path or ctx.obj["config_path"]), upgrade=False)
    try:
        run = review.reject(db, run_id, actor=_actor(), note=note)
    finally:
        db.dispose()
    out.print(f"run {run.id} rejected by {run.decided_by}; nothing was applied", markup=False)


# ---- helpers ----------------------------------------------------------------------------------------------
def _source(config: Config, name: str) -> Any:
    try:
        return config.source(name)
    except KeyError:
        known = ", ".join(s.name for s in config.sources) or "none configured"
        raise UsageError(f"no source {name!r} (sources: {known})") from None


def _actor() -> str:
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return f"admin:cli:{who}"


def _run(
    config: Config, db: Database, name: str, *, interactive: bool, mode: Mode, dry_run: bool
) -> RunResult:
    source = config.source(name)
    read = reader_for(source)
    if not interactive:
        return run_sync(db, source, kind_of(source), read, config.sync, mode=mode, dry_run=dry_run)
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(f"sync {name}", total=None)
        return run_sync(
            db,
            source,
            kind_of(source),
            read,
            config.sync,
            mode=mode,
            dry_run=dry_run,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )


def _show_result(name: str, result: RunResult, *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_result_json(name, result), ensure_ascii=False))
        return
    plan = result.plan
    if plan is not None and (dry_run or result.status == "held"):
        for action in plan.users:
            out.print(f"  {action.op.value:9} user  {action.username}  ({action.reason})", markup=False)
        for group_action in plan.groups:
            out.print(
                f"  {group_action.op.value:9} group {group_action.name}  ({group_action.reason})",
                markup=False,
            )
    if plan is not None:
        summary = (
            f"create {plan.count(Op.CREATE)}, update {plan.count(Op.UPDATE)}, "
            f"disable {plan.count(Op.DISABLE)}, re-enable {plan.count(Op.REENABLE)}, "
            f"unchanged {plan.unchanged}, groups {len(plan.groups)}"
        )
    else:
        summary = "nothing read"
    verb = "would" if dry_run else "did"
    out.print(f"{name}: run {result.run_id} ({result.mode}) {result.status}: {verb} {summary}", markup=False)
    for line in [result.reason, *result.notes]:
        if line:
            out.print(f"  {line}", markup=False)
    if plan is not None and plan.warnings:
        for warning in plan.warnings[:10]:
            out.print(f"  warning: {warning}", markup=False)
    if result.status == "held":
        out.print(
            f"  approve: syncd sync approve {result.run_id}    reject: syncd sync reject {result.run_id}"
        )


def _result_json(name: str, result: RunResult) -> dict[str, Any]:
    return {
        "source": name,
        "run": result.run_id,
        "mode": result.mode,
        "status": result.status,
        "reason": result.reason,
        "notes": result.notes,
        "warnings": list(result.plan.warnings) if result.plan is not None else [],
        "plan": describe(result.plan) if result.plan is not None else [],
        "counts": {
            k: getattr(result.counts, k) for k in ("created", "updated", "disabled", "reenabled", "errors")
        },
    }


def _run_json(run: SyncRun) -> dict[str, Any]:
    return {
        "run": run.id,
        "source": run.source,
        "mode": run.mode,
        "dry_run": run.dry_run,
        "status": run.status,
        "reason": run.reason,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        **{
            k: getattr(run, k) for k in ("created", "updated", "disabled", "reenabled", "unchanged", "errors")
        },
        "source_users": run.source_users,
        "decided_by": run.decided_by,
    }


def _short(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"

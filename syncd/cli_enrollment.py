"""``syncd invite`` and ``syncd outbox``: enrollment invitations and the mail queue, for admins.

Registered on the ``syncd`` group by :mod:`syncd.cli` (this module reuses its option and error handling).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.table import Table

from syncd import service
from syncd.cli import EXIT_FAILED, _config, config_option, err, handle_errors, out
from syncd.domain.lifecycle import UserStatus
from syncd.errors import RateLimitedError, UsageError
from syncd.store import invites, outbox, users

EXIT_PARTIAL = 9  # some users were rate limited (same code as RateLimitedError)


@click.command("invite")
@click.argument("refs", nargs=-1)
@config_option
@click.option("--all-unenrolled", is_flag=True, help="Invite every UNENROLLED user (bulk).")
@click.option("--source", "source_name", help="With --all-unenrolled: only users of this source.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per user.")
@handle_errors
def invite_cmd(
    refs: tuple[str, ...],
    config_path: Path | None,
    all_unenrolled: bool,
    source_name: str | None,
    as_json: bool,
) -> None:
    """Send (or resend) the enrollment invite to users given by id or username.

    A resend voids the previous link. Users without an email address, or who can't enroll, are skipped
    and listed; users over enrollment.max_invites_per_day are reported (exit 9).
    """
    if not refs and not all_unenrolled:
        raise UsageError("name at least one user, or use --all-unenrolled")
    config = _config(config_path)
    db = service.open_database(config, upgrade=False)
    settings = service.enrollment_settings(config, db)
    with db.read() as session:
        if all_unenrolled:
            ids = [
                u.id
                for u in users.listing(session, status=UserStatus.UNENROLLED, source=source_name, limit=10**6)
            ]
        else:
            ids = [users.find(session, ref).id for ref in refs]  # unknown users stop everything, exit 4
    limited = 0
    for user_id in ids:
        with db.write() as session:
            user = users.find(session, user_id)
            try:
                result = invites.issue(
                    session, user, settings, actor="admin:cli", reason="invited by an admin"
                )
            except RateLimitedError as error:
                limited += 1
                _report(as_json, user.username, "rate_limited", str(error))
                continue
        if isinstance(result, invites.Issued):
            _report(as_json, user.username, "queued", f"generation {result.generation}")
        else:
            _report(as_json, user.username, "skipped", result.reason)
    if not as_json:
        out.print(f"{len(ids)} user(s) processed; the relay sends the mail (see `syncd outbox list`)")
    if limited:
        sys.exit(EXIT_PARTIAL)


def _report(as_json: bool, username: str, status: str, detail: str) -> None:
    if as_json:
        print(json.dumps({"user": username, "status": status, "detail": detail}, ensure_ascii=False))
    else:
        out.print(f"  {status:12} {username}  ({detail})", markup=False)


@click.group("outbox")
def outbox_group() -> None:
    """The mail queue."""


@outbox_group.command("list")
@config_option
@click.option("--status", type=click.Choice(outbox.STATUSES, case_sensitive=False), help="Only this status.")
@click.option("--user", "user_ref", help="Only mail to this user (id or username).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def outbox_list(
    config_path: Path | None, status: str | None, user_ref: str | None, limit: int, as_json: bool
) -> None:
    """List queued, sent and failed mail, newest first (never the bodies)."""
    db = service.open_database(_config(config_path), upgrade=False)
    with db.read() as session:
        user_id = users.find(session, user_ref).id if user_ref else None
        rows = outbox.listing(
            session, status=status.upper() if status else None, user_id=user_id, limit=limit
        )
        counts = outbox.counts_by_status(session)
    if as_json:
        for row in rows:
            data = {
                "id": row.id,
                "purpose": row.purpose,
                "user": row.user_id,
                "to": row.to_address,
                "status": row.status,
                "attempts": row.attempts,
                "message_id": row.message_id,
                "subject": row.subject,
                "created_at": row.created_at.isoformat(),
                "next_attempt_at": row.next_attempt_at.isoformat(),
                "sent_at": row.sent_at.isoformat() if row.sent_at else None,
                "last_error": row.last_error,
            }
            print(json.dumps(data, ensure_ascii=False))
        return
    table = Table("id", "purpose", "to", "status", "tries", "created", "last error", box=None, pad_edge=False)
    for row in rows:
        table.add_row(
            row.id,
            row.purpose,
            row.to_address,
            row.status,
            str(row.attempts),
            row.created_at.strftime("%Y-%m-%d %H:%M"),
            (row.last_error or "")[:80],
        )
    out.print(table)
    out.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "outbox empty", markup=False)


@outbox_group.command("retry")
@click.argument("ids", nargs=-1)
@config_option
@click.option("--all-failed", is_flag=True, help="Retry every FAILED message.")
@handle_errors
def outbox_retry(ids: tuple[str, ...], config_path: Path | None, all_failed: bool) -> None:
    """Queue FAILED messages again (now, with a fresh retry budget)."""
    if not ids and not all_failed:
        raise UsageError("name message ids, or use --all-failed")
    db = service.open_database(_config(config_path), upgrade=False)
    with db.write() as session:
        count = outbox.retry(session, ids, all_failed=all_failed)
    out.print(f"{count} message(s) queued again")
    if ids and count < len(ids):
        err.print(f"syncd: {len(ids) - count} message(s) were not FAILED and were left alone", markup=False)
        sys.exit(EXIT_FAILED)

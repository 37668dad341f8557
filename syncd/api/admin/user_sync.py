"""Sync one user from its source now (``POST /api/v1/users/{userId}/sync``; docs/adr/0051).

A directory can't be asked for one user and applied alone without bypassing the guard, the change-feed
cursor and the anchor bookkeeping, so this runs the user's *source* sync exactly as ``syncd sync --source``
does — incremental where the source has a change feed (LDAP), full otherwise — and reports what the plan did
to this user. The route is a plain ``def``: FastAPI runs it in a worker thread, so the directory read is off
the event loop, and :func:`syncd.sync.engine.run_sync` holds no transaction while it reads. The run row is
the per-source lock, so a run already going (scheduler, CLI, another replica) answers 409.
"""

from __future__ import annotations

from dataclasses import dataclass

from syncd.config.models import Config
from syncd.domain.lifecycle import AuditEvent
from syncd.errors import ConflictError
from syncd.sources.readers import kind_of, reader_for
from syncd.store import audit, user_admin
from syncd.store.db import Database
from syncd.sync.engine import run_sync

PULL_KINDS = ("file", "ldap")


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    run_id: str
    source: str
    mode: str
    status: str
    reason: str | None
    user_action: str
    user_reason: str | None


def sync_user(config: Config, db: Database, user_id: str, *, actor: str) -> SyncOutcome:
    """Run the sync of ``user_id``'s source; ConflictError when there is nothing to pull."""
    with db.read() as session:
        user = user_admin.get(session, user_id, deleted_ok=True)
        name, username = user.managed_by, user.username
    if name is None:
        raise ConflictError(f"user {username} is a manual user: there is no source to pull it from")
    try:
        source = config.source(name)
    except KeyError:
        raise ConflictError(
            f"user {username} is managed by source '{name}', which is not configured any more"
        ) from None
    kind = kind_of(source)
    if kind not in PULL_KINDS:
        raise ConflictError(
            f"user {username} is managed by {kind} source '{name}': its client pushes changes, "
            "there is nothing to pull"
        )
    if not source.enabled:
        raise ConflictError(f"user {username} is managed by source '{name}', which is disabled")
    result = run_sync(db, source, kind, reader_for(source), config.sync, mode="incremental")
    with db.write() as session:
        audit.record(
            session,
            AuditEvent(
                actor, "user.sync_requested", "user", user_id, None, result.status, "sync now", result.run_id
            ),
        )
    action = None
    if result.plan is not None:
        action = next((a for a in result.plan.users if a.user_id == user_id), None)
    if action is not None:
        return SyncOutcome(
            result.run_id, name, result.mode, result.status, result.reason, action.op.value, action.reason
        )
    return SyncOutcome(result.run_id, name, result.mode, result.status, result.reason, "unchanged", None)

"""The job table (ids, never overlapping, coalesced), reload, and the retention purge, on both databases."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from apscheduler.schedulers.base import STATE_PAUSED
from harness.enrollment import add_user, make_config
from harness.service_daemon import write_users_csv

from syncd import logs
from syncd.api.metrics import Metrics
from syncd.config.models import Database as DatabaseConfig
from syncd.domain.lifecycle import DeviceState, DeviceType
from syncd.leader import Leadership
from syncd.scheduler import JobContext, Jobs
from syncd.store import retention, schema
from syncd.store.db import Database
from syncd.store.tables import AuditRecord, Device, EnrollmentInvite, Registration, SourceLink, User, utcnow
from syncd.sync.engine import run_sync


def _config(tmp_path: Path, **extra: object) -> object:
    users = write_users_csv(tmp_path / "hr.csv", 3)
    sources = [
        {
            "name": "hr",
            "kind": "file",
            "format": "csv",
            "users": str(users),
            "schedule": {"full": "0 3 * * *"},
        },
        {"name": "okta", "kind": "scim", "tokens": [{"env": "HOME"}]},
        {"name": "off", "kind": "file", "format": "csv", "users": str(users), "enabled": False},
    ]
    return make_config(sources=sources, **extra)


def test_job_table_and_reload(tmp_path: Path) -> None:
    db = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}"))
    config = _config(tmp_path)

    async def scenario() -> tuple[list[str], list[str], dict[str, object]]:
        jobs = Jobs(
            JobContext(config, db, None, None),  # type: ignore[arg-type]
            unfenced=db,
            leadership=Leadership(),
            metrics=Metrics(),
        )
        jobs.start()
        first = jobs.job_ids()
        job = jobs.aps.get_job("sync:hr:full")
        defaults = {
            "max_instances": job.max_instances,
            "coalesce": job.coalesce,
            "paused": jobs.aps.state == STATE_PAUSED,
        }
        changed = make_config(
            sources=[
                {
                    "name": "hr",
                    "kind": "file",
                    "format": "csv",
                    "users": "/x.csv",
                    "schedule": {"incremental": "5m"},
                }
            ]
        )
        jobs.reload(JobContext(changed, db, None, None))
        second = jobs.job_ids()
        await jobs.shutdown(timeout=5)
        return first, second, defaults

    first, second, defaults = asyncio.run(scenario())
    db.dispose()
    assert first == [
        "mail:relay",
        "mail:reminders",
        "retention:purge",
        "sync:hr:full",
    ]  # not scim, not disabled
    assert second == ["mail:relay", "mail:reminders", "retention:purge", "sync:hr:incremental"]
    assert defaults == {"max_instances": 1, "coalesce": True, "paused": True}  # paused until it leads


def test_runs_use_the_jobs_own_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs go to the jobs' own threads, the same one run after run (in the loop's shared pool each
    100,000-user run left its high-water mark in another thread's malloc arena), with the log context."""
    db = Database(DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}"))
    schema.upgrade(db)
    seen: list[tuple[str, object]] = []

    def spy(*args: object, **kwargs: object) -> object:
        seen.append((threading.current_thread().name, logs._bound.get().get("source")))
        return run_sync(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("syncd.scheduler.run_sync", spy)

    async def scenario() -> None:
        jobs = Jobs(
            JobContext(_config(tmp_path), db, None, None),  # type: ignore[arg-type]
            unfenced=db,
            leadership=Leadership(),
            metrics=Metrics(),
        )
        jobs.start()
        for _ in range(3):
            await jobs.run_job("sync:hr:full")
            await asyncio.gather(*(asyncio.to_thread(time.sleep, 0.01) for _ in range(8)))  # busy the pool
        await jobs.shutdown(timeout=5)

    try:
        asyncio.run(scenario())
        with db.read() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 3
    finally:
        db.dispose()
    assert len(seen) == 3
    assert len({thread for thread, _ in seen}) == 1
    assert seen[0][0].startswith("syncd-sync")
    assert {source for _, source in seen} == {"hr"}


def test_purge_after_retention(database_config: DatabaseConfig) -> None:
    db = Database(database_config)
    schema.upgrade(db)
    try:
        old = add_user(db, "gone-long-ago", provisioned=False)
        recent = add_user(db, "gone-yesterday", provisioned=False)
        live = add_user(db, "still-here")
        now = utcnow()
        with db.write() as session:
            for user_id, when in ((old, now - timedelta(days=40)), (recent, now - timedelta(days=1))):
                user = session.get(User, user_id)
                assert user is not None
                user.deleted_at = when
                session.add(SourceLink(source="hr", object_type="user", anchor=user_id, object_id=user_id))
            session.add(Device(user_id=old, type=DeviceType.TOTP, state=DeviceState.ACTIVE))
            pending = Device(user_id=live, type=DeviceType.TOTP, state=DeviceState.PENDING)
            session.add(pending)
            session.flush()
            session.add(
                Registration(
                    user_id=live,
                    factor_type="TOTP",
                    status="CHALLENGE",
                    device_id=pending.id,
                    expires_at=now - timedelta(days=31),
                )
            )
            session.add(EnrollmentInvite(user_id=live, token_hash="h1", expires_at=now - timedelta(days=31)))
            session.add(EnrollmentInvite(user_id=live, token_hash="h2", expires_at=now + timedelta(days=3)))
        cutoff = now - timedelta(days=30)
        with db.write() as session:
            assert retention.purge_deleted_users(session, before=cutoff) == [old]
            removed = retention.purge_dead_links_and_codes(session, before=cutoff)
        assert removed == {"invites": 1, "bypass_codes": 0, "registrations": 1}
        with db.read() as session:
            assert set(session.scalars(sa.select(User.id))) == {recent, live}
            assert session.scalar(sa.select(sa.func.count()).select_from(Device)) == 0  # cascade + expired
            assert list(session.scalars(sa.select(SourceLink.object_id))) == [recent]
            assert list(session.scalars(sa.select(EnrollmentInvite.token_hash))) == ["h2"]
            actions = list(
                session.scalars(sa.select(AuditRecord.action).where(AuditRecord.actor == "system:retention"))
            )
            assert sorted(actions) == ["device.expired", "user.purged"]
    finally:
        db.dispose()

"""The daemon: open the store (migrating under a lock), sync the pull sources due at start, serve HTTP,
and run the mail relay (with enrollment reminders) as a background task.

This is the foundation's daemon; the service work adds the scheduler, leader election, systemd notify and
SIGHUP reload here (the relay then becomes a scheduled job).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from syncd.api.app import create_app
from syncd.config.models import Config
from syncd.errors import SyncdError
from syncd.mail.relay import Relay
from syncd.mail.render import Renderer
from syncd.sources.readers import kind_of, reader_for
from syncd.store import enrollment, schema
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.keys import keys_from_config
from syncd.sync.engine import Progress, RunResult, run_sync

log = logging.getLogger("syncd.service")


def open_database(config: Config, *, upgrade: bool) -> Database:
    """Open the database; upgrade it under the migration lock, or insist it is current."""
    db = Database(config.database)
    if upgrade:
        before, after = schema.upgrade(db)
        if before != after:
            log.info("database upgraded", extra={"from_revision": before or "empty", "to_revision": after})
    else:
        schema.check_current(db)
    return db


def enrollment_settings(config: Config, db: Database | None = None) -> EnrollmentSettings:
    """The enrollment settings (needs ``secrets.seed_key``: a :class:`ConfigError` says how to make one);
    attached to ``db`` so that syncs invite the new users of sources with ``invite_new_users``."""
    settings = EnrollmentSettings.from_config(config, keys_from_config(config))
    if db is not None:
        enrollment.attach(db, settings)
    return settings


def sync_source(
    config: Config, db: Database, name: str, *, dry_run: bool = False, progress: Progress | None = None
) -> RunResult:
    """Run one sync of the named source now."""
    source = config.source(name)
    return run_sync(
        db, source, kind_of(source), reader_for(source), config.sync, dry_run=dry_run, progress=progress
    )


def startup_syncs(config: Config, db: Database) -> None:
    """Sync every enabled pull source whose schedule asks for a run at start."""
    for source in config.sources:
        if not source.enabled or not source.schedule.on_start or getattr(source, "kind", "") != "file":
            continue
        try:
            result = sync_source(config, db, source.name)
        except SyncdError as error:
            log.error("start-up sync failed", extra={"source": source.name, "reason": str(error)})
            continue
        log.info(
            "start-up sync finished",
            extra={
                "source": source.name,
                "run": result.run_id,
                "status": result.status,
                "users_created": result.counts.created,
            },
        )


def run(config: Config) -> None:
    """Run the daemon in the foreground until SIGINT/SIGTERM."""
    settings = enrollment_settings(config)  # fail closed without the seed key, before touching anything
    Renderer(config.org, config.mail).check()  # overridden templates that don't render stop the start
    db = open_database(config, upgrade=True)
    enrollment.attach(db, settings)
    startup_syncs(config, db)
    app = create_app(config, db, settings)
    relay = Relay(db, config, settings)
    log.info("listening", extra={"address": config.api.listen})
    server = _Server(
        uvicorn.Config(
            app,
            host=config.api.host,
            port=config.api.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=25,
        )
    )
    try:
        asyncio.run(_serve(server, relay, config.scheduler.mail_interval.total_seconds()))
    finally:
        db.dispose()
    log.info("stopped")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: we stop it ourselves and exit 0 on SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server, relay: Relay, interval: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_exit, server, stop, sig)
    relay_task = asyncio.create_task(relay.run_forever(stop, interval=interval), name="mail-relay")
    try:
        await server.serve()
    finally:
        stop.set()
        try:
            await asyncio.wait_for(relay_task, timeout=30)
        except TimeoutError:
            log.warning("mail relay did not stop in 30 s; its claimed mail is released when its lease ends")


def _request_exit(server: uvicorn.Server, stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("stopping", extra={"signal": sig.name})
    server.should_exit = True
    stop.set()

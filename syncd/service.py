"""The daemon: open the store (migrating under a lock), sync the pull sources due at start, serve HTTP.

This is the foundation's daemon; the service work adds the scheduler, leader election, systemd notify and
SIGHUP reload here.
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
from syncd.sources.readers import kind_of, reader_for
from syncd.store import schema
from syncd.store.db import Database
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
    db = open_database(config, upgrade=True)
    startup_syncs(config, db)
    app = create_app(config, db)
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
        asyncio.run(_serve(server))
    finally:
        db.dispose()
    log.info("stopped")


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: we stop it ourselves and exit 0 on SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _request_exit, server, sig)
    await server.serve()


def _request_exit(server: uvicorn.Server, sig: signal.Signals) -> None:
    log.info("stopping", extra={"signal": sig.name})
    server.should_exit = True

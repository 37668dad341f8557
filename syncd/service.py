"""The daemon: one asyncio process that serves the HTTP APIs and, while it leads, runs the scheduled jobs.

Start: config (validated by the caller) → the seed key and mail templates (fail closed) → the SQLite
single-daemon lock → migrations under their lock → listener bound → ``READY=1``. Then the leader
campaign (PostgreSQL advisory lock, or at once on SQLite), the watchdog pings from the loop, and the
jobs of :mod:`syncd.scheduler` (start-up syncs, scheduled syncs, mail relay, reminders, purge).
SIGHUP reloads the config (validated first: a bad file keeps the old one). SIGTERM/SIGINT stop within
30 s: no new requests or jobs, running syncs stop at their next unit of work, the lock is released.
See docs/adr/0040…0043 and docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import uvicorn

from syncd import leader, logs, memory
from syncd.api.app import create_app
from syncd.api.metrics import HttpMetrics, Metrics, metrics_endpoint
from syncd.asgi import RequestIds, Swappable
from syncd.config.loader import load_config
from syncd.config.models import Config
from syncd.errors import ConfigError, SyncdError
from syncd.leader import Leadership
from syncd.mail.relay import Relay
from syncd.mail.render import Renderer
from syncd.mail.transports import PermanentError, TransientError, Transport, make_transport
from syncd.notify import Notifier
from syncd.scheduler import JobContext, Jobs
from syncd.sources.readers import kind_of, reader_for
from syncd.store import enrollment, schema
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.keys import keys_from_config
from syncd.sync.engine import Progress, RunResult, run_sync

log = logging.getLogger("syncd.service")

STOP_BUDGET = 30.0  # seconds from SIGTERM to exit (systemd TimeoutStopSec=30s)
JOBS_STOP_TIMEOUT = 20.0  # running jobs get this long to reach a checkpoint
HTTP_DRAIN_TIMEOUT = 10  # in-flight requests get this long
RESTART_ONLY = ("database", "api", "secrets")  # sections a reload can't change in a running process


def open_database(config: Config, *, upgrade: bool) -> Database:
    """Open the database; upgrade it under the migration lock, or insist it is current."""
    db = Database(config.database)
    _migrate(db, upgrade=upgrade)
    return db


def _migrate(db: Database, *, upgrade: bool) -> None:
    if upgrade:
        before, after = schema.upgrade(db)
        if before != after:
            log.info("database upgraded", extra={"from_revision": before or "empty", "to_revision": after})
    else:
        schema.check_current(db)


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


def run(config: Config, *, path: Path | None = None, leader_poll: float = 5.0) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT; ``path`` is re-read on SIGHUP."""
    notifier = Notifier()
    memory.limit_malloc_arenas()
    settings = enrollment_settings(config)  # fail closed without the seed key, before touching anything
    Renderer(config.org, config.mail).check()  # overridden templates that don't render stop the start
    db = Database(config.database)
    leadership = leader.for_database(db, poll=leader_poll)  # SQLite: refuses a second daemon here
    jobs_db = db
    try:
        notifier.status("migrating the database")
        _migrate(db, upgrade=True)
        if not db.is_sqlite:
            jobs_db = Database(config.database)  # the jobs' units of work are fenced (docs/adr/0040)
            leadership.fence(jobs_db)
        listener = _listen(config)
        daemon = Daemon(config, path, db, jobs_db, settings, leadership, notifier)
        crashed = asyncio.run(daemon.main(listener))
    finally:
        leadership.close()
        for database in {id(db): db, id(jobs_db): jobs_db}.values():
            database.dispose()
    log.info("stopped")
    if crashed:  # a job thread is still inside a unit of work: exiting rolls it back
        logging.shutdown()
        os._exit(0)


def _listen(config: Config) -> socket.socket:
    """Bind the API listener before READY (a port in use is a clear start error, not a late crash)."""
    host, port = config.api.host, config.api.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise ConfigError(f"api.listen {config.api.listen}: can't listen there: {error.strerror}") from error


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: the daemon stops it and exits 0 on SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class CountingTransport:
    """Counts the relay's sends and failures into the metrics, around the configured transport."""

    def __init__(self, inner: Transport, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def send(self, message: Message, **kwargs: Any) -> None:
        try:
            await self.inner.send(message, **kwargs)
        except PermanentError:
            self.metrics.mail_failures.labels("permanent").inc()
            raise
        except TransientError:
            self.metrics.mail_failures.labels("transient").inc()
            raise
        self.metrics.mail_sent.inc()

    async def close(self) -> None:
        await self.inner.close()


class Daemon:
    """The running daemon's parts and its config, replaced as a whole by a successful reload."""

    def __init__(
        self,
        config: Config,
        path: Path | None,
        db: Database,
        jobs_db: Database,
        settings: EnrollmentSettings,
        leadership: Leadership,
        notifier: Notifier,
    ) -> None:
        self.config, self.path, self.db, self.jobs_db = config, path, db, jobs_db
        self.leadership, self.notifier = leadership, notifier
        self.metrics = Metrics(db, role=lambda: leadership.role)
        self.app = Swappable(self._build_app(config, settings))
        self.relay = self._relay(config, settings, None)
        self.jobs = Jobs(
            JobContext(config, jobs_db, self.relay, settings),
            unfenced=db,
            leadership=leadership,
            metrics=self.metrics,
        )
        self._attach(settings)
        self.stop = asyncio.Event()
        self._reloading: asyncio.Task[bool] | None = None

    # ---- building blocks -------------------------------------------------------------------------------
    def _build_app(self, config: Config, settings: EnrollmentSettings) -> Any:
        app = create_app(config, self.db, settings)
        app.state.role = lambda: self.leadership.role
        app.state.metrics = self.metrics
        app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
        return app

    def _relay(self, config: Config, settings: EnrollmentSettings, old: Relay | None) -> Relay:
        if old is not None and old.config.mail == config.mail:
            transport: Transport = old.transport  # same relay settings: keep the open connection
        else:
            transport = CountingTransport(make_transport(config.mail), self.metrics)
        return Relay(self.db, config, settings, transport=transport)

    def _attach(self, settings: EnrollmentSettings) -> None:
        enrollment.attach(self.db, settings)
        enrollment.attach(self.jobs_db, settings)

    def _status(self) -> str:
        return f"{self.leadership.role}; serving on {self.config.api.listen}"

    # ---- main ------------------------------------------------------------------------------------------
    async def main(self, listener: socket.socket) -> bool:
        """Serve until stopped; True when a job thread had to be abandoned (the caller exits hard)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self._request_reload)
        stack = RequestIds(HttpMetrics(self.app, self.metrics, self.app.routes))
        server = _Server(
            uvicorn.Config(
                stack,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=HTTP_DRAIN_TIMEOUT,
                # X-Forwarded-* only from the configured proxies (uvicorn would trust 127.0.0.1 by default).
                proxy_headers=bool(self.config.api.trusted_proxies),
                forwarded_allow_ips=list(self.config.api.trusted_proxies),
            )
        )
        serving = asyncio.create_task(server.serve(sockets=[listener]), name="http")
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if serving.done():
            serving.result()
            raise ConfigError(f"api.listen {self.config.api.listen}: the HTTP server did not start")
        self.jobs.start()
        await asyncio.to_thread(memory.give_back)  # start-up garbage (imports, app) back to the OS
        allocator = os.environ.get("PYTHONMALLOC", "pymalloc")  # syncd.__main__ sets malloc (docs/adr/0044)
        log.info("listening", extra={"address": self.config.api.listen, "allocator": allocator})
        self.notifier.ready(f"{self.leadership.role}; serving on {self.config.api.listen}")
        watchdog = asyncio.create_task(self.notifier.watchdog(self.stop), name="watchdog")
        # The SCIM app's modules load after READY (a fifth of start-up; docs/adr/0044), before a client asks.
        warm_up = asyncio.create_task(asyncio.to_thread(self.app.app.scim_app), name="scim-warm-up")
        campaign = asyncio.create_task(
            self.leadership.campaign(self.stop, self._on_leadership), name="leader"
        )
        stopped = asyncio.create_task(self.stop.wait())
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        return await self._shutdown(server, serving, watchdog, campaign, warm_up)

    async def _shutdown(
        self, server: uvicorn.Server, serving: asyncio.Task[None], *tasks: asyncio.Task[None]
    ) -> bool:
        started = time.monotonic()
        self.stop.set()
        self.notifier.stopping()
        server.should_exit = True
        jobs_done = await self.jobs.shutdown(timeout=JOBS_STOP_TIMEOUT)
        remaining = max(1.0, STOP_BUDGET - 3 - (time.monotonic() - started))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(serving, *tasks, return_exceptions=True), timeout=remaining)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.relay.transport.close(), timeout=2)
        _release(self.relay)
        if not jobs_done:
            log.warning("a job was still running at stop: its open unit of work is rolled back")
        return not jobs_done

    def _request_stop(self, sig: signal.Signals) -> None:
        log.info("stopping", extra={"signal": sig.name})
        self.stop.set()

    def _on_leadership(self, leading: bool) -> None:
        self.jobs.lead(leading)
        self.notifier.status(self._status())

    # ---- reload ----------------------------------------------------------------------------------------
    def _request_reload(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            log.info("reload already in progress")
            return
        self._reloading = asyncio.create_task(self.reload(), name="reload")

    async def reload(self) -> bool:
        """Re-read the config file; apply it when valid, keep the running config otherwise."""
        self.notifier.reloading()
        try:
            if self.path is None:
                raise ConfigError("the daemon was started without a config file path: nothing to reload")
            new, settings = await asyncio.to_thread(self._load_new, self.path)
        except SyncdError as error:
            self.metrics.reloads.labels("refused").inc()
            log.error(
                "configuration reload refused; keeping the running configuration",
                extra={"reason": str(error)},
            )
            self.notifier.reloaded(self._status())
            return False
        old = self.config
        kept = [name for name in RESTART_ONLY if getattr(new, name) != getattr(old, name)]
        if kept:
            log.warning(
                "these settings change only at restart; keeping the running values",
                extra={"sections": ",".join(kept)},
            )
            new = new.model_copy(update={name: getattr(old, name) for name in kept})
        logs.setup(new.logging)
        self._attach(settings)
        app = self._build_app(new, settings)
        app.scim_app()  # cheap now that its modules are loaded
        self.app.app = app
        old_relay, self.relay = self.relay, self._relay(new, settings, self.relay)
        self.jobs.reload(JobContext(new, self.jobs_db, self.relay, settings))
        asyncio.create_task(_close_when_idle(old_relay, self.relay, self.jobs))  # noqa: RUF006
        self.config = new
        changed = [name for name in type(new).model_fields if getattr(new, name) != getattr(old, name)]
        self.metrics.reloads.labels("applied").inc()
        log.info("configuration reloaded", extra={"changed": ",".join(changed) or "nothing"})
        self.notifier.reloaded(self._status())
        return True

    def _load_new(self, path: Path) -> tuple[Config, EnrollmentSettings]:
        new = load_config(path)
        settings = EnrollmentSettings.from_config(new, keys_from_config(new))
        Renderer(new.org, new.mail).check()
        return new, settings


async def _close_when_idle(old: Relay, new: Relay, jobs: Jobs) -> None:
    """Close a replaced relay (and its transport, unless the new one kept it) once no relay job runs."""
    while "mail:relay" in jobs.running_names():
        await asyncio.sleep(1)
    if old.transport is not new.transport:
        with contextlib.suppress(Exception):
            await old.transport.close()
    _release(old)


def _release(relay: Relay) -> None:
    """Let a relay release what it holds besides its transport (newer relays keep a second DB handle)."""
    close = getattr(relay, "close", None)
    if callable(close):
        close()

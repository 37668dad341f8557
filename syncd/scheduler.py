"""The daemon's scheduled jobs (APScheduler 3.x on the asyncio loop), run only while this process leads.

Jobs, each with ``max_instances=1`` and ``coalesce=True`` so a job never overlaps itself and a backlog of
missed runs collapses into one:

* ``sync:<source>:full`` (cron) and ``sync:<source>:incremental`` (interval) per enabled pull source,
  plus a one-off ``sync:<source>:start`` when the process first becomes leader (``schedule.on_start``);
* ``mail:relay`` (every ``scheduler.mail_interval``) and ``mail:reminders`` (every 5 minutes);
* ``retention:purge`` (``scheduler.purge`` cron): users past retention, dead links and codes, kept
  idempotent answers older than a day.

Blocking work (reading a directory, the units of work, argon2) runs in worker threads, never on the
loop. A run checks between its units of work that the daemon is not stopping and still leads; if not it
stops there (everything committed so far is consistent; the next run completes it). Runs of the same
source never overlap across processes either: the run row is the lock (``syncd sync`` gets "already
running"). See docs/adr/0042-scheduler-jobs.md.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from syncd import logs, memory
from syncd.api.metrics import Metrics
from syncd.config.models import Config
from syncd.config.sources import SourceBase
from syncd.errors import AlreadyRunningError, NotLeaderError, SyncdError, SyncInterruptedError
from syncd.leader import Leadership
from syncd.mail.relay import Relay
from syncd.sources.readers import kind_of, reader_for
from syncd.store import idempotency, invites, retention, stale_runs
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.runs import this_process
from syncd.store.tables import utcnow
from syncd.sync.engine import ChangeFeed, RunResult, announcing, run_sync

log = logging.getLogger("syncd.scheduler")

Mode = Literal["full", "incremental"]
PULL_KINDS = ("file", "ldap")
REMINDER_INTERVAL = timedelta(minutes=5)
PURGE_BATCHES = 200  # at most 100,000 users purged per daily job
HEAVY_THREADS = 2  # syncs and purges run here, not in the loop's shared pool (see Jobs._heavy)
T = TypeVar("T")


@dataclass
class JobContext:
    """What the jobs work with; replaced as a whole on reload."""

    config: Config
    db: Database  # fenced: a unit of work of a job commits only while this process leads
    relay: Relay | None
    settings: EnrollmentSettings | None


class Jobs:
    """Owns the APScheduler instance and the job functions."""

    def __init__(
        self, context: JobContext, *, unfenced: Database, leadership: Leadership, metrics: Metrics
    ) -> None:
        self.context = context
        self.unfenced = unfenced  # for cleaning up this process's own run rows after a fenced failure
        self.leadership = leadership
        self.metrics = metrics
        self.stopping = threading.Event()
        self._started_once = False
        self._running: dict[asyncio.Task[Any], str] = {}
        # Runs and purges get threads of their own: in the loop's shared pool a 100,000-user run lands on
        # whichever thread is idle, and each thread's malloc arena keeps that run's high-water mark (RSS
        # grew 2-12 MB per run). Idle threads are reused, so one source's runs stay on one thread.
        self._heavy = ThreadPoolExecutor(max_workers=HEAVY_THREADS, thread_name_prefix="syncd-sync")
        self.aps = AsyncIOScheduler(
            timezone=context.config.scheduler.timezone,
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": None},
        )

    # ---- life cycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start paused: jobs fire only after :meth:`lead` (called when the leadership is won)."""
        self.aps.start(paused=True)
        self._install(self.context.config)

    def lead(self, leading: bool) -> None:
        """Leadership changed: resume (and run the start-up syncs the first time) or pause."""
        if not leading:
            self.aps.pause()
            log.info("scheduled jobs paused: not the leader")
            return
        if not self._started_once:
            self._started_once = True
            for source in self._pull_sources(self.context.config):
                if source.schedule.on_start:
                    mode: Mode = "incremental" if source.schedule.incremental else "full"
                    self.aps.add_job(
                        self._sync,
                        args=[source.name, mode, True],
                        id=f"sync:{source.name}:start",
                        name="start-up sync",
                    )
        self.aps.resume()
        log.info("scheduled jobs running: this process is the leader")

    def reload(self, context: JobContext) -> None:
        """Swap in a new config (validated by the caller) and rebuild the job table."""
        self.context = context
        self._install(context.config)

    async def shutdown(self, timeout: float) -> bool:
        """Stop firing jobs, ask running syncs to stop at their next checkpoint, wait up to ``timeout``.

        True when every running job ended in time.
        """
        self.stopping.set()
        if self.aps.running:
            self.aps.pause()  # no new jobs; shutting the scheduler down now would cancel the running ones
        running = {task for task in self._running if not task.done()}
        pending: set[asyncio.Task[Any]] = set()
        if running:
            log.info("waiting for running jobs", extra={"jobs": len(running)})
            _done, pending = await asyncio.wait(running, timeout=timeout)
            if pending:
                log.warning("jobs still running at stop", extra={"jobs": len(pending)})
        if self.aps.running:
            self.aps.shutdown(wait=False)
        self._heavy.shutdown(wait=False)
        return not pending

    # ---- the job table ---------------------------------------------------------------------------------
    def _install(self, config: Config) -> None:
        wanted: dict[str, tuple[Callable[..., Awaitable[None]], Any, list[Any]]] = {}
        zone = config.scheduler.timezone
        for source in self._pull_sources(config):
            if source.schedule.full:
                trigger = CronTrigger.from_crontab(source.schedule.full, timezone=zone)
                wanted[f"sync:{source.name}:full"] = (self._sync, trigger, [source.name, "full"])
            if source.schedule.incremental:
                every = IntervalTrigger(seconds=source.schedule.incremental.total_seconds(), timezone=zone)
                wanted[f"sync:{source.name}:incremental"] = (self._sync, every, [source.name, "incremental"])
        mail_every = IntervalTrigger(seconds=config.scheduler.mail_interval.total_seconds(), timezone=zone)
        wanted["mail:relay"] = (self._relay, mail_every, [])
        reminders = IntervalTrigger(seconds=REMINDER_INTERVAL.total_seconds(), timezone=zone)
        wanted["mail:reminders"] = (self._reminders, reminders, [])
        wanted["retention:purge"] = (
            self._purge,
            CronTrigger.from_crontab(config.scheduler.purge, timezone=zone),
            [],
        )
        for job in self.aps.get_jobs():
            if job.id not in wanted and not job.id.endswith(":start"):
                job.remove()
        for job_id, (func, trigger, args) in wanted.items():
            self.aps.add_job(func, trigger, args=args, id=job_id, name=job_id, replace_existing=True)
        log.info("jobs scheduled", extra={"jobs": ",".join(sorted(wanted))})

    @staticmethod
    def _pull_sources(config: Config) -> list[SourceBase]:
        return [s for s in config.sources if s.enabled and getattr(s, "kind", "") in PULL_KINDS]

    def running_names(self) -> set[str]:
        """Names of the jobs running right now."""
        return {name for task, name in self._running.items() if not task.done()}

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self.aps.get_jobs())

    async def run_job(self, job_id: str) -> None:
        """Run a scheduled job now (tests, and ``syncd`` tooling); the same wrapper as when it fires."""
        job = self.aps.get_job(job_id)
        if job is None:
            raise KeyError(job_id)
        await job.func(*job.args)

    # ---- the jobs --------------------------------------------------------------------------------------
    async def _on_heavy_thread(self, func: Callable[..., T], *args: Any) -> T:
        """``asyncio.to_thread`` on the jobs' own threads (the bound log context goes along)."""
        call = functools.partial(contextvars.copy_context().run, func, *args)
        return await asyncio.get_running_loop().run_in_executor(self._heavy, call)

    async def _guarded(self, name: str, work: Callable[[], Awaitable[str]]) -> None:
        """Run one job: only while leading and not stopping; every outcome logged and counted."""
        task = asyncio.current_task()
        if task is not None:
            self._running[task] = name
        try:
            if self.stopping.is_set():
                return
            with logs.bound(job=name):
                try:
                    self.leadership.ensure()
                    outcome = await work()
                except NotLeaderError as error:
                    outcome = "not_leader"
                    log.warning("job stopped: not the leader", extra={"reason": str(error)})
                except SyncdError as error:
                    outcome = "failed"
                    log.error("job failed", extra={"reason": str(error), "error_code": error.code})
                except Exception as error:  # a bug must not stop the scheduler: log it, count it, go on
                    outcome = "crashed"
                    log.exception("job crashed", extra={"reason": str(error)[:500]})
                self.metrics.jobs.labels(
                    name.rsplit(":", 1)[0] if name.startswith("sync:") else name, outcome
                ).inc()
        finally:
            if task is not None:
                self._running.pop(task, None)

    async def _sync(self, name: str, mode: Mode, start: bool = False) -> None:
        async def work() -> str:
            context = self.context
            try:
                source = context.config.source(name)
            except KeyError:
                return "skipped"  # removed by a reload while the job was queued
            started = time.monotonic()
            with logs.bound(source=name):
                try:
                    result, asked = await self._on_heavy_thread(self._sync_and_release, context, source, mode)
                except AlreadyRunningError as error:
                    log.info("sync skipped: already running", extra={"reason": str(error)})
                    return "skipped"
                except NotLeaderError:
                    await asyncio.to_thread(
                        self._close_own_run, name, "stopped: this replica lost the leadership"
                    )
                    raise
                seconds = time.monotonic() - started
                ran = str(getattr(result, "mode", asked))  # the mode the engine used (full without a cursor)
                self.metrics.observe_run(name, ran, result.status, result.counts, seconds)
                log.info(
                    "start-up sync finished" if start else "sync finished",
                    extra={
                        "run": result.run_id,
                        "mode": ran,
                        "status": result.status,
                        "users_created": result.counts.created,
                        "users_updated": result.counts.updated,
                        "users_disabled": result.counts.disabled,
                        "users_reenabled": result.counts.reenabled,
                        "users_errors": result.counts.errors,
                        "duration_s": round(seconds, 3),
                        **({"reason": result.reason} if result.reason else {}),
                    },
                )
                return result.status

        await self._guarded(f"sync:{name}:{mode}", work)

    def _sync_and_release(
        self, context: JobContext, source: SourceBase, mode: Mode
    ) -> tuple[RunResult, Mode]:
        """A run, then its memory handed back, in one call: on the same thread (a second call could start
        a second thread while the first one is still marking itself idle)."""
        try:
            return self._sync_blocking(context, source, mode)
        finally:
            self.release_memory()

    def _sync_blocking(self, context: JobContext, source: SourceBase, mode: Mode) -> tuple[RunResult, Mode]:
        """One run in a worker thread; the checkpoint between units of work may stop it."""

        def checkpoint(_done: int, _total: int) -> None:
            if self.stopping.is_set():
                raise SyncInterruptedError("run interrupted between units of work: the daemon is stopping")
            if not self.leadership.is_leader:
                raise SyncInterruptedError(
                    "run interrupted between units of work: this replica lost the lead"
                )

        def started() -> None:  # bind the run id to the logs of the read (the run row exists by now)
            with context.db.read() as session:
                run_id = stale_runs.running_run_of(session, source.name, this_process())
            if run_id is not None:
                logs.bind(run=run_id)

        if not context.db.is_sqlite:  # a run left by a dead process on another host (docs/adr/0040)
            with context.db.write() as session:
                closed = stale_runs.close_orphaned(session, source.name, socket.gethostname())
            if closed:
                log.warning("orphaned run closed", extra={"run": ",".join(closed)})
        reader = reader_for(source)
        asked: Mode = mode if isinstance(reader, ChangeFeed) else "full"  # files have no change feed
        result = run_sync(
            context.db,
            source,
            kind_of(source),
            announcing(reader, started),
            context.config.sync,
            mode=asked,
            progress=checkpoint,
        )
        return result, asked

    def release_memory(self) -> None:
        """Hand the memory a large run freed back to the system: SQLite's page caches, then what glibc
        keeps in its arenas (docs/adr/0044)."""
        try:
            self.context.db.release_caches()
        except SyncdError as error:  # only memory: never fail a run over it
            log.warning("could not release the database caches", extra={"reason": str(error)})
        memory.give_back()

    def _close_own_run(self, source: str, reason: str) -> None:
        try:
            with self.unfenced.write() as session:
                closed = stale_runs.close_running_of(session, source, this_process(), reason)
        except SyncdError as error:
            log.error("could not close the interrupted run", extra={"reason": str(error)})
            return
        if closed:
            log.warning("run closed", extra={"run": ",".join(closed), "reason": reason})

    async def _relay(self) -> None:
        async def work() -> str:
            relay = self.context.relay
            if relay is None:
                return "skipped"
            sent = await relay.drain()
            return "ok" if sent >= 0 else "failed"

        await self._guarded("mail:relay", work)

    async def _reminders(self) -> None:
        async def work() -> str:
            context = self.context
            if context.settings is None or not context.settings.reminders:
                return "skipped"
            settings = context.settings

            def queue() -> int:
                with context.db.write() as session:
                    return invites.queue_reminders(session, settings, now=utcnow())

            queued = await asyncio.to_thread(queue)
            if queued:
                log.info("reminders queued", extra={"count": queued})
            return "ok"

        await self._guarded("mail:reminders", work)

    async def _purge(self) -> None:
        async def work() -> str:
            context = self.context
            cutoff = utcnow() - timedelta(days=context.config.sync.retention_days)
            purged = await self._on_heavy_thread(self._purge_blocking, context.db, cutoff)
            log.info("retention purge finished", extra={"before": cutoff.isoformat(), **purged})
            return "ok"

        await self._guarded("retention:purge", work)

    def _purge_blocking(self, db: Database, cutoff: datetime) -> dict[str, int]:
        users = 0
        for _ in range(PURGE_BATCHES):  # one unit of work per batch of users
            if self.stopping.is_set():
                break
            with db.write() as session:
                batch = retention.purge_deleted_users(session, before=cutoff)
            users += len(batch)
            if len(batch) < retention.CHUNK:
                break
        with db.write() as session:
            dead = retention.purge_dead_links_and_codes(session, before=cutoff)
            dead["idempotency_keys"] = idempotency.purge(session)  # kept answers older than a day
        return {"users_purged": users, **{f"{k}_removed": v for k, v in dead.items()}}

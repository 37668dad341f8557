"""Prometheus metrics: one registry per daemon (no module-level state), served at ``/metrics``.

Counted in this process: sync runs by source, mode and outcome; objects created/updated/disabled/
re-enabled; guard refusals; run durations; mail sent and send failures; verification outcomes (routes
ending in ``/verify``; the finer outcome a route leaves in ``request.state.verification`` wins over the
status); HTTP latency by route template. Read from the database at scrape time (so every
replica shows the same picture): users by status, outbox messages by status and depth, each source's
last run, and whether this replica is the leader. Names are listed in docs/deployment.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncd import __version__
from syncd.errors import StoreError
from syncd.store import outbox, runs, users
from syncd.store.db import Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUN_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """The instruments; ``role`` tells the leader gauge what this replica is."""

    def __init__(self, db: Database | None = None, role: Callable[[], str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_runs = Counter(
            "syncd_sync_runs",
            "Sync runs finished, by source, mode and outcome",
            ["source", "mode", "outcome"],
            registry=r,
        )
        self.sync_objects = Counter(
            "syncd_sync_objects",
            "Users changed by sync runs, by source and change",
            ["source", "change"],
            registry=r,
        )
        self.guard_refusals = Counter(
            "syncd_sync_guard_refusals",
            "Runs held by the guard (awaiting approval), by source",
            ["source"],
            registry=r,
        )
        self.run_duration = Histogram(
            "syncd_sync_run_duration_seconds",
            "Duration of sync runs",
            ["source"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.jobs = Counter(
            "syncd_jobs", "Scheduled job executions, by job and outcome", ["job", "outcome"], registry=r
        )
        self.mail_sent = Counter("syncd_mail_sent", "Messages accepted by the mail relay", registry=r)
        self.mail_failures = Counter(
            "syncd_mail_send_failures",
            "Failed send attempts, by kind (transient, permanent)",
            ["kind"],
            registry=r,
        )
        self.verifications = Counter(
            "syncd_verifications",
            "Code verification requests, by route and outcome",
            ["route", "outcome"],
            registry=r,
        )
        self.http_latency = Histogram(
            "syncd_http_request_duration_seconds",
            "HTTP request latency, by method, route template and status class",
            ["method", "route", "status"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.reloads = Counter("syncd_config_reloads", "SIGHUP reloads, by outcome", ["outcome"], registry=r)
        Gauge("syncd_info", "Version of this syncd", ["version"], registry=r).labels(__version__).set(1)
        if db is not None:
            r.register(_DatabaseCollector(db, role or (lambda: "leader")))

    def observe_run(self, source: str, mode: str, status: str, counts: Any, seconds: float) -> None:
        """Record one finished sync run (``counts`` has created/updated/disabled/reenabled)."""
        self.sync_runs.labels(source, mode, status).inc()
        self.run_duration.labels(source).observe(seconds)
        for change in ("created", "updated", "disabled", "reenabled"):
            value = int(getattr(counts, change, 0) or 0)
            if value:
                self.sync_objects.labels(source, change).inc(value)
        if status == "held":
            self.guard_refusals.labels(source).inc()

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


class _DatabaseCollector(Collector):
    """Gauges read from the database at scrape time (users, outbox, last runs, leadership)."""

    def __init__(self, db: Database, role: Callable[[], str]) -> None:
        self.db = db
        self.role = role

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        leader = GaugeMetricFamily("syncd_leader", "1 when this replica runs the scheduled jobs")
        leader.add_metric([], 1.0 if self.role() == "leader" else 0.0)
        yield leader
        up = GaugeMetricFamily("syncd_database_up", "1 when the database answered this scrape")
        try:
            with self.db.read() as session:
                by_status = users.counts_by_status(session)
                mail = outbox.counts_by_status(session)
                last = runs.recent(session, limit=200)
        except StoreError:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        users_gauge = GaugeMetricFamily("syncd_users", "Users by status", labels=["status"])
        for status, count in sorted(by_status.items()):
            users_gauge.add_metric([status], count)
        yield users_gauge
        mail_gauge = GaugeMetricFamily(
            "syncd_outbox_messages", "Outbox messages by status", labels=["status"]
        )
        for status, count in sorted(mail.items()):
            mail_gauge.add_metric([status], count)
        yield mail_gauge
        depth = GaugeMetricFamily("syncd_outbox_depth", "Messages waiting to be sent (PENDING and SENDING)")
        depth.add_metric([], mail.get("PENDING", 0) + mail.get("SENDING", 0))
        yield depth
        yield from _last_runs(last)


def _last_runs(recent: Any) -> Iterator[GaugeMetricFamily]:
    seen: dict[str, Any] = {}
    for run in recent:
        if run.source not in seen and run.status != "running" and not run.dry_run:
            seen[run.source] = run
    when = GaugeMetricFamily(
        "syncd_sync_last_run_timestamp_seconds",
        "End of the last finished run of each source",
        labels=["source"],
    )
    outcome = GaugeMetricFamily(
        "syncd_sync_last_run_status",
        "1 for the outcome of each source's last finished run",
        labels=["source", "status"],
    )
    for source, run in sorted(seen.items()):
        if run.finished_at is not None:
            when.add_metric([source], run.finished_at.timestamp())
        outcome.add_metric([source, run.status], 1.0)
    yield when
    yield outcome


class HttpMetrics:
    """ASGI middleware: latency by route template (bounded label values) and verification outcomes."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Callable[[], Any]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # the current app's routes (the app may be swapped on reload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        state = scope.setdefault("state", {})  # shared by reference with every Request of this call

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = self._template(scope)
            self.metrics.http_latency.labels(scope["method"], route, f"{status // 100}xx").observe(
                time.perf_counter() - started
            )
            if route.endswith("/verify"):
                outcome = _verification_outcome(status, state.get("verification"))
                self.metrics.verifications.labels(route, outcome).inc()

    def _template(self, scope: Scope) -> str:
        # The route the app resolved, as FastAPI leaves it in the scope (routers included with a prefix
        # match as a whole at the top level, without a path of their own); else match the top level here.
        resolved = scope.get("fastapi", {}).get("effective_route_context")
        template = getattr(resolved, "path_format", None)
        if isinstance(template, str) and template:
            return template
        for route in self.routes():
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return str(getattr(route, "path", "") or "other")
        return "unmatched"


def _verification_outcome(status: int, detail: str | None = None) -> str:
    """``accepted``, ``rejected``, ``locked``, ``rate_limited``, ``error`` from the status — unless the route
    told the finer outcome in ``request.state.verification`` (``POST /api/v1/verify`` answers 200 for every
    decision): ``accepted`` for ``ok``, else the refusal's detail (``wrong_code``, ``unknown_user``,
    ``policy_denied``, … — a fixed set, see :class:`syncd.store.verification.Detail`)."""
    if detail is not None and status < 400:
        return "accepted" if detail == "ok" else detail
    if status < 400:
        return "accepted"
    if status == 423:
        return "locked"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "error"
    return "rejected"


def metrics_endpoint(request: Request) -> Response:
    """``/metrics`` (a plain function: FastAPI runs it in a worker thread, as the scrape reads the DB)."""
    metrics: Metrics = request.app.state.metrics
    return metrics.render()

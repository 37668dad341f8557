"""``syncd run`` as systemd runs it: READY after the listener, STATUS, watchdog, SIGHUP reload, SIGTERM.

Real processes against both databases; a fake NOTIFY_SOCKET stands in for systemd (no systemd is PID 1
on the CI machine; docs/adr/0041).
"""

from __future__ import annotations

import itertools
import re
import secrets
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from harness.net import free_port
from harness.service_daemon import (
    SEED_KEY,
    Daemon,
    NotifySocket,
    run_cli,
    service_config,
    until,
    write_users_csv,
)

from syncd.config.models import Database as DatabaseConfig
from syncd.store.db import Database
from syncd.store.tables import SyncRun, User

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo"


def _demo_source(schedule: str = "{incremental: 1h}") -> str:
    return f"""\
  - name: demo
    kind: file
    format: csv
    users: {DEMO / "users.csv"}
    groups: {DEMO / "groups.csv"}
    schedule: {schedule}
"""


def test_ready_after_listener_status_watchdog_and_stop(
    tmp_path: Path, database_config: DatabaseConfig
) -> None:
    port = free_port()
    config = service_config(tmp_path, database_config, port=port, sources=_demo_source())
    notify = NotifySocket(tmp_path / "notify")
    daemon = Daemon(config, port=port, notify=notify, watchdog_s=1)
    try:
        daemon.wait_ready(60)
        first = httpx.get(f"{daemon.url}/readyz", timeout=5)  # listeners are up by READY=1
        assert first.status_code == 200 and first.json()["role"] in ("leader", "follower")
        assert re.fullmatch(r"[0-9a-f]{16}", first.headers["x-request-id"])
        assert until(lambda: daemon.readyz().get("role") == "leader", 30)
        daemon.wait_log("start-up sync finished")
        body = daemon.readyz()
        assert body["sources"]["demo"]["status"] == "ok"  # type: ignore[index]
        assert until(lambda: notify.fields().count("WATCHDOG=1") >= 3, 10)
        metrics = httpx.get(f"{daemon.url}/metrics", timeout=5).text
        for name in (
            'syncd_sync_runs_total{mode="full",outcome="ok",source="demo"} 1.0',
            "syncd_sync_run_duration_seconds_count",
            'syncd_users{status="UNENROLLED"} 11.0',
            "syncd_outbox_depth",
            "syncd_leader 1.0",
            'syncd_http_request_duration_seconds_count{method="GET",route="/readyz",status="2xx"}',
        ):
            assert name in metrics, name
        stopping_at = time.monotonic()
        assert daemon.stop(timeout=35) == 0, daemon.log
        assert time.monotonic() - stopping_at < 30
        notify.wait_for("STOPPING=1", 5)
    finally:
        daemon.kill()
        notify.close()
    fields = notify.fields()
    assert (
        fields.index("STATUS=migrating the database") < fields.index("READY=1") < fields.index("STOPPING=1")
    )
    assert any(f.startswith("STATUS=leader; serving on 127.0.0.1:") for f in fields)
    log = daemon.log
    assert "Traceback" not in log and SEED_KEY not in log
    finished = next(line for line in log.splitlines() if "start-up sync finished" in line)
    assert re.search(r" run=[A-Za-z0-9_-]{22} ", finished) and "source=demo" in finished


def test_sighup_reload_keeps_a_bad_config_and_applies_a_good_one(tmp_path: Path) -> None:
    port = free_port()
    db = DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}")
    config = service_config(tmp_path, db, port=port, sources=_demo_source())
    good = config.read_text(encoding="utf-8")
    notify = NotifySocket(tmp_path / "notify")
    daemon = Daemon(config, port=port, notify=notify)
    try:
        daemon.wait_ready(60)
        daemon.wait_log("start-up sync finished")
        config.write_text(good.replace("api: {listen:", "api: {lisen:"), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("configuration reload refused; keeping the running configuration")
        assert "api.lisen" in daemon.log and daemon.readyz()["status"] == "ok"

        extra = f"""\
  - name: second
    kind: file
    format: csv
    users: {write_users_csv(tmp_path / "second.csv", 5, prefix="s")}
    schedule: {{incremental: 1s}}
"""
        config.write_text(good.replace("sources:\n", "sources:\n" + extra), encoding="utf-8")
        daemon.signal(signal.SIGHUP)
        daemon.wait_log("configuration reloaded")
        daemon.wait_log("source=second", timeout=30)  # the new source's job runs without a restart
        assert notify.fields().count("RELOADING=1") == 2 and notify.fields().count("READY=1") == 3
        metrics = httpx.get(f"{daemon.url}/metrics", timeout=5).text
        assert 'syncd_config_reloads_total{outcome="refused"} 1.0' in metrics
        assert 'syncd_config_reloads_total{outcome="applied"} 1.0' in metrics
        assert daemon.stop() == 0
    finally:
        daemon.kill()
        notify.close()


def test_second_daemon_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    port = free_port()
    db = DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}")
    config = service_config(tmp_path, db, port=port)
    daemon = Daemon(config, port=port)
    try:
        daemon.wait_ready(60)
        other = service_config(tmp_path, db, port=free_port(), name="other.yaml")
        refused = run_cli("run", "-c", str(other), timeout=60)
        assert refused.returncode == 8
        assert re.fullmatch(
            rf"syncd: another syncd daemon \(pid {daemon.proc.pid} on .+\) is already running on "
            rf"{tmp_path}/syncd.db: SQLite allows one daemon per database file \(stop it first, or use "
            r"PostgreSQL to run several replicas\)",
            refused.stderr.strip(),
        ), refused.stderr
        status = run_cli("status", "-c", str(config))
        assert status.returncode == 0, status.stderr
        assert f"leader    daemon running (pid {daemon.proc.pid} on" in status.stdout
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_cli_sync_while_the_daemon_syncs_is_already_running(
    tmp_path: Path, database_config: DatabaseConfig
) -> None:
    """The run row is the per-source lock across processes: a second run of a source, from the CLI or from
    the daemon's schedule, is refused while one runs, and runs never overlap."""
    port = free_port()
    users = write_users_csv(tmp_path / "big.csv", 20_000)
    source = (
        f"  - {{name: big, kind: file, format: csv, users: {users}, "
        "schedule: {incremental: 2s, on_start: false}}\n"
    )
    config = service_config(tmp_path, database_config, port=port, sources=source)
    assert run_cli("db", "upgrade", "-c", str(config)).returncode == 0
    daemon = Daemon(config, port=port)
    outcomes: list[int] = []
    try:
        daemon.wait_ready(60)
        for _ in range(4):  # the 20,000-user import (daemon or CLI, whichever starts first) takes seconds
            result = run_cli("sync", "--source", "big", "--json", "-c", str(config))
            outcomes.append(result.returncode)
            assert result.returncode in (0, 8), result.stderr
            if result.returncode == 8:
                assert "a sync of big is already running" in result.stderr
            if 8 in outcomes or "sync skipped: already running" in daemon.log:
                break
        assert 8 in outcomes or "sync skipped: already running" in daemon.log, (outcomes, daemon.log[-3000:])
        assert daemon.stop() == 0, daemon.log
    finally:
        daemon.kill()
    db = Database(database_config)
    try:
        with db.read() as session:
            runs = session.scalars(sa.select(SyncRun).order_by(SyncRun.started_at)).all()
    finally:
        db.dispose()
    assert all(run.status != "running" for run in runs)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at  # no overlap


@pytest.mark.parametrize("bad", ["port_in_use", "no_seed_key"])
def test_start_errors_are_one_clear_line(tmp_path: Path, bad: str) -> None:
    port = free_port()
    db = DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}")
    config = service_config(tmp_path, db, port=port)
    if bad == "no_seed_key":
        (tmp_path / "seed.key").unlink()
        result = run_cli("run", "-c", str(config), timeout=60)
        assert result.returncode == 2 and "seed.key" in result.stderr
        return
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        result = run_cli("run", "-c", str(config), timeout=60)
    assert result.returncode == 2
    assert f"syncd: api.listen 127.0.0.1:{port}: can't listen there: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_during_a_sync_stops_between_units_of_work(tmp_path: Path) -> None:
    port = free_port()
    users = write_users_csv(tmp_path / "big.csv", 20_000)
    db = DatabaseConfig(url=f"sqlite:///{tmp_path / 'syncd.db'}")
    config = service_config(
        tmp_path, db, port=port, sources=f"  - {{name: big, kind: file, format: csv, users: {users}}}\n"
    )
    notify = NotifySocket(tmp_path / "notify")
    daemon = Daemon(config, port=port, notify=notify)
    try:
        daemon.wait_ready(60)
        store = Database(db)
        try:

            def applying() -> bool:  # the run has committed at least one batch of users
                with store.read() as session:
                    return bool(session.scalar(sa.select(sa.func.count()).select_from(User)))

            assert until(applying, 60, interval=0.02)
            signalled = time.monotonic()
            assert daemon.stop(timeout=35) == 0, daemon.log
            assert time.monotonic() - signalled < 30
            with store.read() as session:
                run = session.scalars(sa.select(SyncRun)).one()
                count = session.scalar(sa.select(sa.func.count()).select_from(User))
        finally:
            store.dispose()
    finally:
        daemon.kill()
        notify.close()
    assert (count is not None and count % 500 == 0) or count == 20_000  # whole units of work only
    if count < 20_000:
        assert (run.status, run.reason) == (
            "failed",
            "run interrupted between units of work: the daemon is stopping",
        )
    else:
        assert run.status == "ok"


@pytest.mark.parametrize("trusted", ["[]", "[127.0.0.0/8]"])
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    tmp_path: Path, database_config: DatabaseConfig, trusted: str
) -> None:
    """The client address (the failed-auth bucket's key) is the TCP peer unless the peer is a trusted proxy;
    uvicorn on its own would believe X-Forwarded-For from 127.0.0.1."""
    port = free_port()
    limits = "rate_limits: {failed_auth: {per_second: 0.01, burst: 2}}"
    config = service_config(
        tmp_path, database_config, port=port, api=f", trusted_proxies: {trusted}, {limits}"
    )
    daemon = Daemon(config, port=port)
    try:
        daemon.wait_ready(60)

        def verify(forwarded_for: str) -> int:
            key = f"syncd_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"  # well-formed, unknown
            headers = {"authorization": f"Bearer {key}", "x-forwarded-for": forwarded_for}
            return httpx.post(f"{daemon.url}/api/v1/verify", json={}, headers=headers, timeout=10).status_code

        spread = [verify(f"203.0.113.{n}") for n in range(1, 5)]  # a new claimed address each time
        if trusted == "[]":
            assert spread == [401, 401, 429, 429]  # one bucket: the peer's
        else:
            assert spread == [401] * 4  # one bucket per forwarded address
            assert [verify("198.51.100.7") for _ in range(3)] == [401, 401, 429]
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.log

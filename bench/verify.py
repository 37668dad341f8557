#!/usr/bin/env python3
"""Verification and user-listing speed (issue 6): 100,000 users stored, ``POST /api/v1/verify`` for TOTP at
20 concurrent keep-alive clients (wrk), and a filtered user listing page with a sequential client.

* Data: ``--users`` users in one bulk insert per 5,000; the first ``--hot`` of them ACTIVE with a TOTP device
  (seed derived from the user number, sealed as syncd seals it), the rest UNENROLLED.
* Server: syncd's real app (``create_app`` as ``syncd run`` builds it, with the enrollment settings) under
  uvicorn, one process, on SQLite (WAL, ``synchronous=NORMAL``) and on PostgreSQL (a throwaway database).
  The per-key rate limit of ``/verify`` is turned off (it would cap the figure at its 1,000/s default).
* Mix: every request is a *good* code of a distinct user (each user is used once per run, codes for the
  current 30-s step, computed right before the run), so each request is a full success: user lookup,
  status, org and user factor, policy, seed unsealed, HMACs, the replay-guard compare-and-set, the failure
  counter reset and the last-authentication write, committed. Answers other than ALLOW are counted and shown
  (``deny=``); they stay 0 unless a run outlives its slice of users.
* ``verify_vs_bare``: (1 / verify_rps) ÷ (time of one bare ``pyotp.TOTP.verify(code, valid_window=1)`` in a
  loop in this process) — what a served, stored, replay-safe check costs in bare-verification units.
* Listing: ``GET /api/v1/users?status=UNENROLLED&limit=50`` (walking pages by cursor) and ``?q=…`` text
  searches, alternating, one request at a time; ``list_p99_ms`` is the p99 over both (target < 50 ms).

    .venv/bin/python bench/verify.py [--users N] [--hot H] [--duration S] [--rounds R] \
        [--db sqlite,postgresql]

Ends with one line per database:
``RESULT db=… verify_rps=… verify_p99_ms=… verify_vs_bare=… list_p99_ms=…``
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test harness: throwaway PostgreSQL databases

import httpx  # noqa: E402
import pyotp  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import uvicorn  # noqa: E402
from harness.net import free_port  # noqa: E402
from harness.postgres import admin_url_from_env, create_database, drop_database  # noqa: E402

from syncd.api.app import create_app  # noqa: E402
from syncd.config.models import Config  # noqa: E402
from syncd.config.models import Database as DatabaseConfig  # noqa: E402
from syncd.config.secrets import SecretRef  # noqa: E402
from syncd.domain import otp  # noqa: E402
from syncd.service import enrollment_settings  # noqa: E402
from syncd.store import apikeys, schema  # noqa: E402
from syncd.store.db import Database  # noqa: E402
from syncd.store.keys import Keys  # noqa: E402
from syncd.store.tables import Device, User  # noqa: E402

SEED_KEY = "bench-verify-seed-key-0123456789abcdefghijklmnopqrstuvwxyz"
TOTP = otp.TotpSettings(issuer="Bench")


def seed_of(i: int) -> bytes:
    return hmac.new(b"bench-verify", str(i).encode(), hashlib.sha1).digest()


def username(i: int) -> str:
    return f"user{i:06d}"


# ---- data ------------------------------------------------------------------------------------------------
def load(db: Database, users: int, hot: int) -> None:
    """Store the users (bulk inserts) and a sealed TOTP seed for each of the first ``hot``."""
    schema.upgrade(db)
    keys = Keys.from_secret(SEED_KEY)
    now = datetime.now(UTC)
    with db.write() as session:
        for start in range(0, users, 5000):
            rows, devices = [], []
            for i in range(start, min(start + 5000, users)):
                name = username(i)
                rows.append(
                    {"id": f"u{i:06d}", "username": name, "username_key": name,
                     "email": f"{name}@example.com", "given_name": f"Given{i}",
                     "family_name": f"Family{i % 997}", "attributes": {},
                     "display_name": f"Given{i} Family{i % 997}",
                     "status": "ACTIVE" if i < hot else "UNENROLLED",
                     "provisioned": True, "managed_by": None, "created_at": now, "updated_at": now}
                )  # fmt: skip
                if i < hot:
                    device_id = f"d{i:06d}"
                    devices.append(
                        {"id": device_id, "user_id": f"u{i:06d}", "type": "TOTP", "state": "ACTIVE",
                         "name": "Authenticator app",
                         "secret_enc": keys.seal(seed_of(i), f"device:{device_id}"),
                         "created_at": now, "updated_at": now}
                    )  # fmt: skip
            session.execute(sa.insert(User), rows)
            if devices:
                session.execute(sa.insert(Device), devices)


# ---- server ----------------------------------------------------------------------------------------------
def serve(url: str, password: str | None, port: int) -> None:
    """Child process: syncd's app under uvicorn (one worker), as ``syncd run`` builds it."""
    database: dict[str, Any] = {"url": url, "synchronous": "NORMAL"}
    if password:
        database["password"] = {"env": "BENCH_PG_PASSWORD"}
    config = Config.model_validate(
        {
            "org": {"name": "Bench", "base_url": f"http://127.0.0.1:{port}"},
            "database": database,
            "secrets": {"seed_key": {"env": "BENCH_SEED_KEY"}},
            "api": {
                "listen": f"127.0.0.1:{port}",
                "rate_limits": {"verify": {"per_second": 0, "burst": 1}},
            },
        }
    )
    db = Database(config.database)
    app = create_app(config, db, enrollment_settings(config, db))
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")


class Server:
    def __init__(self, name: str, argv: list[str], port: int) -> None:
        self.name, self.port = name, port
        env = {**os.environ, "BENCH_SEED_KEY": SEED_KEY}
        self.process = subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.DEVNULL)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.3)
        raise SystemExit(f"{self.name} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- verification load (wrk) -----------------------------------------------------------------------------
LUA = r"""
bodies, n, allow, deny, bad = {}, 0, 0, 0, 0
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
function init(args)
  local path, token, nthreads = args[1], args[2], tonumber(args[3])
  local i = 0
  for line in io.lines(path) do
    if i % nthreads == id then bodies[#bodies + 1] = line end
    i = i + 1
  end
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  n = n + 1
  return wrk.format("POST", "/api/v1/verify", nil, bodies[((n - 1) % #bodies) + 1])
end
function response(status, headers, body)
  if status ~= 200 then bad = bad + 1
  elseif string.find(body, '"ALLOW"', 1, true) then allow = allow + 1
  else deny = deny + 1 end
end
function done(summary, latency, requests)
  local a, d, b = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("allow"); d = d + t:get("deny"); b = b + t:get("bad") end
  io.write(string.format("COUNTS allow=%d deny=%d bad=%d\n", a, d, b))
end
"""


class Slices:
    """Hands out users not used yet in this database (each once: the replay guard accepts a step once)."""

    def __init__(self, hot: int) -> None:
        self.next, self.hot = 0, hot

    def take(self, count: int) -> range:
        count = max(1, min(count, self.hot - self.next))
        taken = range(self.next, self.next + count)
        self.next += count
        return taken


def write_bodies(path: Path, users: range) -> None:
    now = time.time()
    lines = [
        json.dumps(
            {"user": username(i), "application": "vpn", "factor": "TOTP",
             "code": otp.totp(seed_of(i), now, TOTP)}
        )
        for i in users
    ]  # fmt: skip
    random.shuffle(lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_wrk(
    script: Path, bodies: Path, server: Server, token: str, duration: int, args: Any
) -> dict[str, float]:
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
        "--timeout", "10s",
        "-s", str(script), server.url, "--", str(bodies), token, str(args.threads),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    counts = re.search(r"COUNTS allow=(\d+) deny=(\d+) bad=(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "allow": float(counts.group(1)) if counts else 0.0,
        "deny": float(counts.group(2)) if counts else 0.0,
        "bad": float(counts.group(3)) if counts else 0.0,
        "socket_errors": float(sum(int(x) for x in errors.groups())) if errors else 0.0,
    }


def bare_verify_seconds(samples: int = 20_000) -> float:
    """Seconds per ``pyotp.TOTP.verify(code, valid_window=1)`` of a good code, in a loop (median of 3)."""
    totp = pyotp.TOTP(pyotp.random_base32())
    code = totp.now()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(samples):
            totp.verify(code, valid_window=1)
        times.append((time.perf_counter() - started) / samples)
    return statistics.median(times)


# ---- listing (sequential) --------------------------------------------------------------------------------
def list_p99(server: Server, token: str, requests: int) -> tuple[float, float, float]:
    """p99 (ms) of the status page walk, of the text searches, and of both together."""
    status_ms: list[float] = []
    search_ms: list[float] = []
    rng = random.Random(7)
    cursor: str | None = None
    with httpx.Client(
        base_url=server.url, headers={"authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        for n in range(requests + 20):
            if n % 2 == 0:
                params: dict[str, Any] = {
                    "status": "UNENROLLED",
                    "limit": 50,
                    **({"cursor": cursor} if cursor else {}),
                }
                sink = status_ms
            else:
                params = {
                    "q": rng.choice([f"user0{rng.randrange(1000):03d}", f"Family{rng.randrange(997)}"]),
                    "limit": 50,
                }
                sink = search_ms
            started = time.perf_counter()
            response = client.get("/api/v1/users", params=params)
            took = (time.perf_counter() - started) * 1000
            if response.status_code != 200:
                raise SystemExit(
                    f"GET /api/v1/users {params} answered {response.status_code}: {response.text[:300]}"
                )
            if sink is status_ms:
                cursor = response.json().get("nextCursor")
            if n >= 20:  # the first requests warm caches up
                sink.append(took)
    return p99(status_ms), p99(search_ms), p99(status_ms + search_ms)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


# ---- main --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--hot", type=int, default=80_000, help="users with a TOTP device")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--list-requests", type=int, default=300)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--serve", nargs=3, metavar=("URL", "PASSWORD", "PORT"))
    args = parser.parse_args()
    if args.serve:
        url, password, port = args.serve
        serve(url, password if password != "-" else None, int(port))
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench/verify.py needs wrk (Debian/Ubuntu: apt-get install wrk)")
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-verify-"))
    script = work / "verify.lua"
    script.write_text(LUA, encoding="utf-8")
    admin = admin_url_from_env()
    pg: tuple[str, str] | None = None
    results: list[str] = []
    t0 = time.monotonic()
    try:
        bare = bare_verify_seconds()
        print(f"bare pyotp verify: {bare * 1e6:.1f} µs", flush=True)
        for kind in args.db.split(","):
            if kind == "sqlite":
                url, config = (
                    f"sqlite:///{work / 'syncd.db'}",
                    DatabaseConfig(url=f"sqlite:///{work / 'syncd.db'}"),
                )
                password = "-"
            else:
                pg = create_database(admin)
                parsed = sa.engine.make_url(pg[1])
                url = parsed._replace(password=None).render_as_string(hide_password=False)
                os.environ["BENCH_PG_PASSWORD"] = str(parsed.password or "")
                secret = SecretRef(env="BENCH_PG_PASSWORD") if parsed.password else None
                config = DatabaseConfig(url=url, password=secret)
                password = "yes" if parsed.password else "-"
            started = time.monotonic()
            db = Database(config)
            load(db, args.users, args.hot)
            with db.write() as session:
                token = apikeys.create(session, "bench", ["read", "verify"], actor="admin:bench").key
            db.dispose()
            print(f"{kind}: {args.users} users stored in {time.monotonic() - started:.1f} s", flush=True)
            port = free_port()
            server = Server(f"syncd-{kind}", [__file__, "--serve", url, password, str(port)], port)
            try:
                server.wait()
                results.append(measure(kind, server, token, script, work, bare, args))
            finally:
                server.stop()
            if pg is not None:
                drop_database(admin, pg[0])
                pg = None
        print(f"\ntotal {time.monotonic() - t0:.0f} s")
        for line in results:
            print(line)
    finally:
        if pg is not None:
            drop_database(admin, pg[0])
        shutil.rmtree(work, ignore_errors=True)


def measure(kind: str, server: Server, token: str, script: Path, work: Path, bare: float, args: Any) -> str:
    slices = Slices(args.hot)
    bodies = work / f"bodies-{kind}.jsonl"
    write_bodies(bodies, slices.take(min(4000, args.hot // 5)))
    warm = run_wrk(script, bodies, server, token, 2, args)  # caches, pools, first-request costs
    per_round = (args.hot - slices.next) // args.rounds
    runs = []
    for _ in range(args.rounds):
        write_bodies(bodies, slices.take(per_round))
        runs.append(run_wrk(script, bodies, server, token, args.duration, args))
    rps = statistics.median(r["rps"] for r in runs)
    verify_p99 = statistics.median(r["p99_ms"] for r in runs)
    allow = sum(r["allow"] for r in runs)
    deny = sum(r["deny"] for r in runs)
    bad = sum(r["bad"] + r["socket_errors"] for r in runs)
    status_p99, search_p99, both_p99 = list_p99(server, token, args.list_requests)
    print(
        f"{kind}: verify {rps:.0f}/s p99 {verify_p99:.1f} ms (warm-up {warm['rps']:.0f}/s; "
        f"allow={allow:.0f} deny={deny:.0f} errors={bad:.0f}); "
        f"list p99 status page {status_p99:.1f} ms, text search {search_p99:.1f} ms",
        flush=True,
    )
    return (
        f"RESULT db={kind} verify_rps={rps:.0f} verify_p99_ms={verify_p99:.1f} "
        f"verify_vs_bare={(1 / rps) / bare:.1f} list_p99_ms={both_p99:.1f}"
    )


if __name__ == "__main__":
    main()

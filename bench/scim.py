#!/usr/bin/env python3
"""SCIM speed (issue 4): 100,000 users and 2,000 groups stored, 20 concurrent keep-alive clients (wrk).

Servers, all started before measuring and all holding the same users and groups (same ids):

* ``ref``: scim2-server as its command serves it (wsgiref, in memory), preloaded through its storage API
  (bench/scim_ref.py);
* ``syncd``: syncd's real app (FastAPI + the SCIM app) under uvicorn, one worker, on SQLite and on
  PostgreSQL (``synchronous=NORMAL`` on SQLite, as the bare handler);
* ``bare``: a bare Starlette handler doing one indexed SQLite lookup / insert / update per request
  (bench/scim_bare.py), the practical ceiling of one Python process here.

syncd and the bare handler run under the same uvicorn, which parses HTTP with httptools (a syncd
dependency since ADR 0033's 2026-12-03 update; with h11 both are slower, the bare handler about twice).

Operations: lookup ``GET /Users?filter=userName eq "…"``, create ``POST /Users``, PATCH deactivate,
group member add (PATCH). Each is run for ``--duration`` seconds per server, servers alternating inside
each round so drift hits all alike; the figures are the medians over ``--rounds``. ``write`` is the mean
of the three write operations. Needs ``wrk`` (Debian: ``apt-get install wrk``) and the dev extras.

    .venv/bin/python bench/scim.py [--users N] [--groups M] [--duration S] [--rounds R] \
        [--db sqlite,postgresql]

Ends with one line per database: ``RESULT db=… lookup_vs_ref=… lookup_vs_bare=… write_vs_ref=…
write_vs_bare=… p99_lookup_ms=… lookup_rps=… write_rps=…``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
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
import sqlalchemy as sa  # noqa: E402
import uvicorn  # noqa: E402
from harness.net import free_port  # noqa: E402
from harness.postgres import admin_url_from_env, create_database, drop_database  # noqa: E402

from syncd.__main__ import ALLOCATOR  # noqa: E402
from syncd.api.app import create_app  # noqa: E402
from syncd.config.models import Config  # noqa: E402
from syncd.config.models import Database as DatabaseConfig  # noqa: E402
from syncd.config.secrets import SecretRef  # noqa: E402
from syncd.store import schema  # noqa: E402
from syncd.store.db import Database  # noqa: E402
from syncd.store.tables import Group, SourceLink, User  # noqa: E402

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
OPS = ("lookup", "create", "deactivate", "member_add")
DAEMON_ENV = {"PYTHONMALLOC": ALLOCATOR}  # the allocator `syncd run` uses (docs/adr/0044)
WRITES = ("create", "deactivate", "member_add")
SOURCE = "bench"


# ---- data ------------------------------------------------------------------------------------------------
def user_doc(i: int) -> dict[str, Any]:
    name = f"user{i:06d}@example.com"
    return {
        "schemas": [CORE],
        "externalId": f"bench-u-{i:06d}",
        "userName": name,
        "name": {"givenName": f"Given{i}", "familyName": f"Family{i}"},
        "displayName": f"Given{i} Family{i}",
        "emails": [{"value": name, "type": "work", "primary": True}],
        "active": True,
    }


def load_syncd(db: Database, users: int, groups: int) -> None:
    """Store the users and groups as syncd's SCIM app would have (one bulk insert per table)."""
    schema.upgrade(db)
    now = datetime.now(UTC)
    with db.write() as session:
        for start in range(0, users, 5000):
            rows, links = [], []
            for i in range(start, min(start + 5000, users)):
                doc = user_doc(i)
                uid = doc["externalId"]
                attributes = {k: v for k, v in doc.items() if k not in ("schemas", "userName")}
                rows.append(
                    {"id": uid, "username": doc["userName"], "username_key": doc["userName"].casefold(),
                     "email": doc["userName"], "given_name": f"Given{i}", "family_name": f"Family{i}",
                     "display_name": doc["displayName"], "attributes": attributes, "status": "UNENROLLED",
                     "provisioned": True, "managed_by": SOURCE, "created_at": now, "updated_at": now}
                )  # fmt: skip
                links.append({"source": SOURCE, "object_type": "user", "anchor": uid, "object_id": uid})
            session.execute(sa.insert(User), rows)
            session.execute(sa.insert(SourceLink), links)
        group_rows = [
            {"id": f"bench-g-{j:05d}", "name": f"Group {j}", "name_key": f"group {j}", "managed_by": SOURCE,
             "attributes": {"externalId": f"bench-g-{j:05d}"}, "created_at": now, "updated_at": now}
            for j in range(groups)
        ]  # fmt: skip
        session.execute(sa.insert(Group), group_rows)
        session.execute(
            sa.insert(SourceLink),
            [
                {"source": SOURCE, "object_type": "group", "anchor": g["id"], "object_id": g["id"]}
                for g in group_rows
            ],
        )


# ---- servers ---------------------------------------------------------------------------------------------
def serve_syncd(url: str, password: str | None, port: int, token_file: str) -> None:
    """Child process: syncd's app under uvicorn (one worker), SCIM client ``bench``."""
    database: dict[str, Any] = {"url": url, "synchronous": "NORMAL"}
    if password:
        database["password"] = {"env": "BENCH_PG_PASSWORD"}
    config = Config.model_validate(
        {
            "org": {"name": "Bench", "base_url": f"http://127.0.0.1:{port}"},
            "database": database,
            "sources": [{"name": SOURCE, "kind": "scim", "tokens": [{"file": token_file}]}],
            "api": {"listen": f"127.0.0.1:{port}"},
        }
    )
    db = Database(config.database)
    uvicorn.run(
        create_app(config, db), host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
    )


class Server:
    def __init__(self, name: str, args: list[str], port: int, prefix: str, env: dict[str, str] | None = None):
        self.name, self.port, self.prefix = name, port, prefix
        self.process = subprocess.Popen(
            [sys.executable, *args], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
        )

    def wait(self, token: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}{self.prefix}/ServiceProviderConfig"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}")
            try:
                httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=2)
                return
            except httpx.TransportError:
                time.sleep(0.5)
        raise SystemExit(f"{self.name} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# ---- load --------------------------------------------------------------------------------------------------
LUA = r"""
local users, groups, op, token, prefix, salt = {}, {}, "", "", "", ""
local counter = 0
function init(args)
  op, token, prefix, salt = args[1], args[2], args[3], args[4]
  local n, m = tonumber(args[5]), tonumber(args[6])
  for i = 0, n - 1 do users[#users + 1] = string.format("bench-u-%06d", i) end
  for j = 0, m - 1 do groups[#groups + 1] = string.format("bench-g-%05d", j) end
  math.randomseed(os.time() + tonumber(string.sub(tostring(users):match("0x(%x+)") or "1", -6), 16))
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Content-Type"] = "application/scim+json"
end
local patch = '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":'
function request()
  counter = counter + 1
  local n = math.random(0, #users - 1)
  if op == "lookup" then
    return wrk.format("GET", prefix .. string.format(
      "/Users?filter=userName%%20eq%%20%%22user%06d%%40example.com%%22&startIndex=1&count=100", n))
  elseif op == "create" then
    local name = string.format("new-%s-%d-%d@example.com", salt, math.random(1, 1000000000), counter)
    return wrk.format("POST", prefix .. "/Users", nil,
      '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name .. '","active":true}')
  elseif op == "deactivate" then
    return wrk.format("PATCH", prefix .. "/Users/" .. users[n + 1], nil,
      patch .. '[{"op":"replace","path":"active","value":false}]}')
  else
    local g = groups[math.random(1, #groups)]
    return wrk.format("PATCH", prefix .. "/Groups/" .. g, nil,
      patch .. '[{"op":"add","path":"members","value":[{"value":"' .. users[n + 1] .. '"}]}]}')
  end
end
"""


def run_wrk(script: Path, server: Server, op: str, token: str, args: argparse.Namespace) -> dict[str, float]:
    command = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
        "--timeout", "10s",
        "-s", str(script), f"http://127.0.0.1:{server.port}", "--",
        op, token, server.prefix, secrets.token_hex(4), str(args.users), str(args.groups),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p99_ms": p99_ms,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": float(sum(int(x) for x in errors.groups())) if errors else 0.0,
    }


# ---- main --------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--serve-syncd", nargs=4, metavar=("URL", "PASSWORD", "PORT", "TOKEN_FILE"))
    args = parser.parse_args()
    if args.serve_syncd:
        url, password, port, token_file = args.serve_syncd
        serve_syncd(url, password if password != "-" else None, int(port), token_file)
        return
    if shutil.which("wrk") is None:
        raise SystemExit("bench/scim.py needs wrk (Debian/Ubuntu: apt-get install wrk)")
    kinds = args.db.split(",")
    token = secrets.token_urlsafe(24)
    work = Path(tempfile.mkdtemp(prefix="syncd-bench-scim-"))
    token_file = work / "token"
    token_file.write_text(token, encoding="utf-8")
    script = work / "ops.lua"
    script.write_text(LUA, encoding="utf-8")
    data = work / "data.json"
    data.write_text(json.dumps({
        "users": [user_doc(i) for i in range(args.users)],
        "groups": [{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": f"Group {j}",
                    "externalId": f"bench-g-{j:05d}"} for j in range(args.groups)],
    }), encoding="utf-8")  # fmt: skip
    servers: list[Server] = []
    pg: tuple[str, str] | None = None
    admin = admin_url_from_env()
    try:
        print(f"loading {args.users} users and {args.groups} groups …", flush=True)
        t0 = time.monotonic()
        ref_port = free_port()
        servers.append(
            Server("ref", [str(ROOT / "bench/scim_ref.py"), str(data), str(ref_port), token], ref_port, "/v2")
        )
        sqlite_path = work / "syncd.db"
        sqlite_db = Database(DatabaseConfig(url=f"sqlite:///{sqlite_path}", synchronous="NORMAL"))
        load_syncd(sqlite_db, args.users, args.groups)
        sqlite_db.dispose()
        shutil.copy(sqlite_path, work / "bare.db")
        bare_port = free_port()
        servers.append(
            Server("bare", [str(ROOT / "bench/scim_bare.py"), str(work / "bare.db"), str(bare_port), token],
                   bare_port, "/scim/v2")
        )  # fmt: skip
        targets: dict[str, Server] = {}
        if "sqlite" in kinds:
            port = free_port()
            argv = [__file__, "--serve-syncd", f"sqlite:///{sqlite_path}", "-", str(port), str(token_file)]
            targets["sqlite"] = Server("syncd-sqlite", argv, port, "/scim/v2", DAEMON_ENV)
            servers.append(targets["sqlite"])
        if "postgresql" in kinds:
            pg = create_database(admin)
            url = sa.engine.make_url(pg[1])
            bare_url = url._replace(password=None).render_as_string(hide_password=False)
            pg_config = DatabaseConfig(url=bare_url, password=None)
            os.environ["BENCH_PG_PASSWORD"] = str(url.password or "")
            if url.password:
                pg_config = DatabaseConfig(url=bare_url, password=SecretRef(env="BENCH_PG_PASSWORD"))
            pg_db = Database(pg_config)
            load_syncd(pg_db, args.users, args.groups)
            pg_db.dispose()
            port = free_port()
            argv = [
                __file__,
                "--serve-syncd",
                bare_url,
                "yes" if url.password else "-",
                str(port),
                str(token_file),
            ]
            targets["postgresql"] = Server("syncd-postgresql", argv, port, "/scim/v2", DAEMON_ENV)
            servers.append(targets["postgresql"])
        for server in servers:
            server.wait(token)
        print(f"loaded and started in {time.monotonic() - t0:.0f} s", flush=True)
        order = [servers[0], *targets.values(), servers[1]]
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for server in order:  # warm-up: caches, connection pools, first-request costs
            for op in OPS:
                run_wrk(script, server, op, token, argparse.Namespace(**{**vars(args), "duration": 1}))
        for round_no in range(args.rounds):
            for op in OPS:
                rotation = order[round_no % len(order) :] + order[: round_no % len(order)]
                for server in rotation:
                    results.setdefault((server.name, op), []).append(run_wrk(script, server, op, token, args))
        report(results, targets, args)
    finally:
        for server in servers:
            server.stop()
        if pg is not None:
            drop_database(admin, pg[0])
        shutil.rmtree(work, ignore_errors=True)


def median(results: dict[tuple[str, str], list[dict[str, float]]], server: str, op: str, key: str) -> float:
    return statistics.median(r[key] for r in results[(server, op)])


def report(
    results: dict[tuple[str, str], list[dict[str, float]]], targets: dict[str, Server], args: Any
) -> None:
    names = ["ref", *(s.name for s in targets.values()), "bare"]
    print(f"\nmedian of {args.rounds} rounds × {args.duration} s, {args.connections} connections (wrk):")
    print(f"{'operation':<12}" + "".join(f"{n:>26}" for n in names))
    for op in OPS:
        cells = []
        for name in names:
            rps, p99 = median(results, name, op, "rps"), median(results, name, op, "p99_ms")
            bad = sum(r["non2xx"] + r["socket_errors"] for r in results[(name, op)])
            cells.append(f"{rps:>9.0f}/s p99 {p99:>7.1f} ms" + (f" !{bad:.0f}" if bad else ""))
        print(f"{op:<12}" + "".join(f"{c:>26}" for c in cells))
    print("(!N: non-2xx responses or socket errors over all rounds; scim2-server closes every connection)\n")

    def write_rps(name: str) -> float:
        return statistics.mean(median(results, name, op, "rps") for op in WRITES)

    for kind, server in targets.items():
        lookup = median(results, server.name, "lookup", "rps")
        write = write_rps(server.name)
        print(
            f"RESULT db={kind} lookup_vs_ref={lookup / median(results, 'ref', 'lookup', 'rps'):.2f} "
            f"lookup_vs_bare={lookup / median(results, 'bare', 'lookup', 'rps'):.2f} "
            f"write_vs_ref={write / write_rps('ref'):.2f} write_vs_bare={write / write_rps('bare'):.2f} "
            f"p99_lookup_ms={median(results, server.name, 'lookup', 'p99_ms'):.1f} "
            f"lookup_rps={lookup:.0f} write_rps={write:.0f}"
        )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Daemon start-up and memory (issue 7): READY on an existing 100,000-user database, idle RSS, and RSS across
10 full syncs of 100,000 users (a leak shows as growth from run to run).

1. A 100,000-user CSV source is imported into a fresh database with ``syncd sync`` (not timed).
2. ``syncd run`` starts with a fake ``NOTIFY_SOCKET``: ``ready_s`` is the time from process start to the
   ``READY=1`` datagram (config, migrations check, listener bound; start-up syncs are jobs run after READY).
3. ``idle_rss_mb``: the daemon's RSS 1.5 s after READY, before any sync (``on_start: false``; the first run is
   due 15 s after the scheduler starts, before READY).
4. The source's 15-second incremental schedule (a file source always runs full) then runs ``--runs`` full
   syncs (max_instances=1); RSS is read 0.5 s after each ends, before the next starts (with a 5-second
   schedule the next run, coalesced, started at once and some readings caught its first allocations).
   ``rss_growth_mb`` = RSS after the last run minus RSS after the first (what a leak would add);
   ``post_sync_over_idle_mb`` = after the last minus idle (what a 100,000-user run leaves behind).

Targets: ready_s < 3, rss_growth_mb near 0. Shared, noisy machines: compare runs on the same machine.

    .venv/bin/python bench/startup.py [--users N] [--runs R] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.net import free_port  # noqa: E402
from harness.service_daemon import SEED_KEY, write_users_csv  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def syncd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args], capture_output=True, text=True, check=False, timeout=3600
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--database-url", default=None, help="default: a new SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        root = Path(tmp)
        csv = write_users_csv(root / "users.csv", args.users)
        (root / "seed.key").write_text(SEED_KEY)
        port = free_port()
        url = args.database_url or f"sqlite:///{root / 'syncd.db'}"
        config = root / "syncd.yaml"
        config.write_text(
            f"""\
org: {{name: Bench, base_url: http://127.0.0.1:{port}}}
database: {{url: "{url}"}}
secrets: {{seed_key: {{file: seed.key}}}}
sources:
  - {{name: hr, kind: file, format: csv, users: {csv}, schedule: {{incremental: 15s, on_start: false}}}}
api: {{listen: 127.0.0.1:{port}}}
logging: {{level: INFO, format: logfmt}}
"""
        )
        started = time.monotonic()
        for step in (("db", "upgrade"), ("sync", "--source", "hr")):
            result = syncd(*step, "-c", str(config))
            if result.returncode != 0:
                raise SystemExit(f"syncd {' '.join(step)} failed: {result.stderr}")
        print(f"imported {args.users} users in {time.monotonic() - started:.1f} s")

        notify_path = root / "notify"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        log_path = root / "daemon.log"
        env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
        with log_path.open("w") as log:
            t0 = time.monotonic()
            daemon = subprocess.Popen(
                [sys.executable, "-m", "syncd", "run", "-c", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                sock.settimeout(120)
                while b"READY=1" not in sock.recv(4096).split(b"\n"):
                    pass
                ready_s = time.monotonic() - t0
                time.sleep(1.5)  # the first run starts 15 s after the scheduler
                if 'msg="sync finished"' in log_path.read_text():
                    raise SystemExit("a sync started before the idle reading")
                idle = rss_mb(daemon.pid)
                print(f"READY after {ready_s:.2f} s; idle RSS {idle:.1f} MB")
                after: list[float] = []
                seen = 0
                deadline = time.monotonic() + 600 * args.runs
                while len(after) < args.runs and time.monotonic() < deadline:
                    done = len(re.findall(r'msg="sync finished"', log_path.read_text()))
                    if done > seen:
                        seen = done
                        time.sleep(0.5)  # runs are 15 s apart: the next has not started
                        after.append(rss_mb(daemon.pid))
                        print(f"run {len(after)}: RSS {after[-1]:.1f} MB")
                    time.sleep(0.05)
            finally:
                daemon.terminate()
                daemon.wait(60)
                sock.close()
        if len(after) < args.runs:
            raise SystemExit(f"only {len(after)} runs finished:\n{log_path.read_text()[-3000:]}")
        growth = after[-1] - after[0]
        print(f"post_sync_over_idle_mb={after[-1] - idle:.1f}")
        print(f"RESULT ready_s={ready_s:.2f} idle_rss_mb={idle:.1f} rss_growth_mb={growth:.1f}")


if __name__ == "__main__":
    main()

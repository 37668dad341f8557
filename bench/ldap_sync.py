#!/usr/bin/env python3
"""LDAP sync speed (issue 3): 100,000 users and 2,000 groups in a throwaway slapd, on SQLite and PostgreSQL.

For each database, against a freshly loaded slapd (same data every time):

(a) baseline: a bare ldap3 paged search (``extend.standard.paged_search(generator=True)``, ldap3's
    defaults) streaming the same entries and attributes syncd reads (users, then groups);
(b) syncd's initial full sync into an empty store, in a child process (its peak RSS: ``getrusage`` in the
    child when the sync returns, before the bench's own row counts; ``wait4``'s figure, which includes them,
    is printed beside it);
(c) a full resync with nothing changed (rows written are counted on the write engine);
(d) after 100 users changed and 10 deleted (ldapmodify), an incremental sync: wall time and changes found.

Also ``ldapsearch -E pr=1000/noprompt`` of the same entries, against (a). Targets: (b) <= 1.3 (a),
(c) <= 1.1 (a) and no writes, (d) < 1 s with all 110 changes found, peak RSS of (b) <= 200 MB.

    .venv/bin/python bench/ldap_sync.py [--users N] [--groups M] [--db sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the test harness: throwaway slapd and PostgreSQL databases

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # ldap3 2.9 vs pyasn1 0.6 (see tests/conftest.py)
    import ldap3

import sqlalchemy as sa  # noqa: E402
from harness.postgres import admin_url_from_env, create_database, drop_database  # noqa: E402
from harness.slapd import Slapd  # noqa: E402

from syncd.config import load_config  # noqa: E402
from syncd.sources.readers import kind_of, reader_for  # noqa: E402
from syncd.store.db import Database  # noqa: E402
from syncd.sync.engine import run_sync  # noqa: E402

PEOPLE = "ou=people,dc=example,dc=org"
GROUPS = "ou=groups,dc=example,dc=org"
EXTRA = ["title", "departmentNumber", "employeeNumber"]
USER_ATTRS = [
    "entryUUID",
    "uid",
    "mail",
    "givenName",
    "sn",
    "displayName",
    "telephoneNumber",
    *EXTRA,
    "pwdAccountLockedTime",
]
GROUP_ATTRS = ["entryUUID", "cn", "description", "member", "uniqueMember", "memberUid"]


# ---- data ---------------------------------------------------------------------------------------------
def generate(path: Path, n_users: int, n_groups: int, seed: int = 7) -> dict[str, int]:
    """inetOrgPerson users in ~3 groups each (Zipf-like popularity), 1 % of groups nested, memberOf set."""
    rnd = random.Random(seed)
    cum = list(itertools.accumulate((rank + 1) ** -0.8 for rank in range(n_groups)))
    members: list[list[int]] = [[] for _ in range(n_groups)]
    member_of: list[list[int]] = [[] for _ in range(n_users)]
    for i in range(n_users):
        for g in {bisect.bisect(cum, rnd.random() * cum[-1]) for _ in range(rnd.randint(1, 5))}:
            members[g].append(i)
            member_of[i].append(g)
    nested = {
        rnd.randrange(0, n_groups // 2): rnd.randrange(n_groups // 2, n_groups)
        for _ in range(n_groups // 100)
    }
    udn = [f"uid=user{i:06d},{PEOPLE}" for i in range(n_users)]
    gdn = [f"cn=group{j:04d},{GROUPS}" for j in range(n_groups)]
    with path.open("w", encoding="utf-8") as f:
        for i in range(n_users):
            f.write(
                f"dn: {udn[i]}\nobjectClass: inetOrgPerson\nuid: user{i:06d}\ncn: Given{i} Family{i}\n"
                f"sn: Family{i}\ngivenName: Given{i}\ndisplayName: Given{i} Family{i}\n"
                f"mail: user{i:06d}@example.org\nemployeeNumber: {i}\ntelephoneNumber: +1 555 {i:07d}\n"
                f"title: Engineer\ndepartmentNumber: {i % 50}\n"
            )
            f.writelines(f"memberOf: {gdn[g]}\n" for g in member_of[i])
            f.write("\n")
        for j in range(n_groups):
            f.write(f"dn: {gdn[j]}\nobjectClass: groupOfNames\ncn: group{j:04d}\n")
            f.writelines(f"member: {udn[i]}\n" for i in members[j] or [rnd.randrange(n_users)])
            if j in nested:
                f.write(f"member: {gdn[nested[j]]}\n")
            f.write("\n")
    return {"memberships": sum(len(m) for m in members), "largest": max(len(m) for m in members)}


def changes_ldif(n_users: int, changed: int = 100, deleted: int = 10) -> str:
    rnd = random.Random(11)
    picked = rnd.sample(range(n_users), changed + deleted)
    out = [
        f"dn: uid=user{i:06d},{PEOPLE}\nchangetype: modify\nreplace: title\ntitle: Principal Engineer\n"
        for i in picked[:changed]
    ]
    out += [f"dn: uid=user{i:06d},{PEOPLE}\nchangetype: delete\n" for i in picked[changed:]]
    return "\n".join(out)


# ---- measurements ---------------------------------------------------------------------------------------
def bare_ldap3(slapd: Slapd) -> float:
    """(a): ldap3 out of the box, streaming (entries not kept), users then groups."""
    server = ldap3.Server("127.0.0.1", port=slapd.port, get_info=ldap3.NONE)
    conn = ldap3.Connection(server, slapd.bind_dn, slapd.bind_password, auto_bind=True)
    start = time.perf_counter()
    count = 0
    for base, flt, attrs in (
        (PEOPLE, "(objectClass=inetOrgPerson)", USER_ATTRS),
        (GROUPS, "(objectClass=groupOfNames)", GROUP_ATTRS),
    ):
        for item in conn.extend.standard.paged_search(
            base, flt, attributes=attrs, paged_size=1000, generator=True
        ):
            if item["type"] == "searchResEntry":
                count += len(item["attributes"]) > 0
    elapsed = time.perf_counter() - start
    conn.unbind()
    return elapsed


def c_client(slapd: Slapd) -> float:
    start = time.perf_counter()
    for base, flt, attrs in (
        (PEOPLE, "(objectClass=inetOrgPerson)", USER_ATTRS),
        (GROUPS, "(objectClass=groupOfNames)", GROUP_ATTRS),
    ):
        subprocess.run(
            [
                "ldapsearch",
                "-x",
                "-LLL",
                "-H",
                slapd.url,
                "-D",
                slapd.bind_dn,
                "-w",
                slapd.bind_password,
                "-b",
                base,
                "-E",
                "pr=1000/noprompt",
                flt,
                *attrs,
            ],
            stdout=subprocess.DEVNULL,
            check=True,
        )
    return time.perf_counter() - start


def write_config(path: Path, slapd: Slapd, db_url: str) -> None:
    url = sa.engine.make_url(db_url)
    database: dict[str, Any] = {"url": url._replace(password=None).render_as_string(hide_password=False)}
    if url.password:
        os.environ["BENCH_DB_PASSWORD"] = str(url.password)
        database["password"] = {"env": "BENCH_DB_PASSWORD"}
    os.environ["BENCH_LDAP_PASSWORD"] = slapd.bind_password
    config = {
        "org": {"name": "Bench", "base_url": "http://127.0.0.1:8080"},
        "database": {**database, "synchronous": "NORMAL"},
        "sync": {"max_disable": {"count": 500, "percent": 20}},
        "sources": [
            {
                "name": "lab",
                "kind": "ldap",
                "servers": [slapd.url],
                "flavour": "openldap",
                "bind": {"dn": slapd.bind_dn, "password": {"env": "BENCH_LDAP_PASSWORD"}},
                "users": {"base": PEOPLE},
                "groups": {"base": GROUPS},
                "attributes": {"extra": EXTRA},
                "page_size": 1000,
            }
        ],
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML


def child(config_path: str, mode: str) -> None:
    """Run one sync in this (child) process and print what it did as JSON."""
    config = load_config(config_path)
    db = Database(config.database)
    source = config.source("lab")
    writes = _count_writes(db)
    before = _row_counts(db)
    start = time.perf_counter()
    result = run_sync(db, source, kind_of(source), reader_for(source), config.sync, mode=mode)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    # The sync's own peak: taken before the bench's row counts below fill the read connection's page cache.
    sync_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    changed_rows = sum(abs(after - before[table]) for table, after in _row_counts(db).items())
    db.dispose()
    counts = result.counts
    print(
        json.dumps(
            {
                "seconds": elapsed,
                "status": result.status,
                "mode": result.mode,
                "reason": result.reason,
                "created": counts.created,
                "updated": counts.updated,
                "disabled": counts.disabled,
                "errors": counts.errors,
                "unchanged": result.plan.unchanged if result.plan else 0,
                "writes": writes[0] + changed_rows,
                "sync_peak_mb": sync_peak_kb / 1024,
            }
        )
    )


TABLES = ("users", "source_links", "groups", "group_members", "group_nesting", "audit_log", "sync_cursors")


def _row_counts(db: Database) -> dict[str, int]:
    """Rows per table: catches bulk inserts (COPY) that statement events don't see."""
    with db.read() as session:
        return {t: int(session.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in TABLES}


def _count_writes(db: Database) -> list[int]:
    """Rows inserted, updated or deleted through statements, except the run record itself."""
    total = [0]

    @sa.event.listens_for(db.write_engine, "after_cursor_execute")
    def _count(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        head = statement.lstrip().split(None, 3)
        if head and head[0].upper() in ("INSERT", "UPDATE", "DELETE") and "sync_runs" not in statement[:80]:
            total[0] += max(cursor.rowcount, 0)

    return total


def run_child(config: Path, mode: str) -> tuple[dict[str, Any], float]:
    """Run :func:`child` in a new process; its JSON and its peak RSS in MB (``wait4``)."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(config)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {mode} failed ({proc.returncode})")
    return json.loads(out), usage.ru_maxrss / 1024


def one_database(kind: str, ldif: Path, n_users: int, work: Path) -> dict[str, Any]:
    slapd = Slapd(work / f"slapd-{kind}")
    slapd.load_ldif(ldif)
    slapd.start()
    admin = admin_url_from_env()
    pg_name = None
    try:
        if kind == "sqlite":
            db_url = f"sqlite:///{work / 'bench.db'}"
            (work / "bench.db").unlink(missing_ok=True)
        else:
            pg_name, db_url = create_database(admin)
        config = work / f"bench-{kind}.yaml"
        write_config(config, slapd, db_url)
        from syncd.store import schema  # noqa: PLC0415 - only here: the children don't pay for Alembic

        db = Database(load_config(config).database)
        schema.upgrade(db)
        db.dispose()
        raw = bare_ldap3(slapd)
        c_time = c_client(slapd)
        initial, rss = run_child(config, "full")
        resync, _ = run_child(config, "full")
        slapd.add_ldif(changes_ldif(n_users))
        incremental, _ = run_child(config, "incremental")
    finally:
        slapd.close()
        if pg_name:
            drop_database(admin, pg_name)
    return {
        "db": kind,
        "raw": raw,
        "c": c_time,
        "initial": initial,
        "rss": initial["sync_peak_mb"],
        "rss_exit": rss,
        "resync": resync,
        "incremental": incremental,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[1], args.child[0])
        return
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        ldif = work / "data.ldif"
        start = time.perf_counter()
        stats = generate(ldif, args.users, args.groups)
        print(
            f"generated {args.users} users, {args.groups} groups, {stats['memberships']} memberships "
            f"(largest group {stats['largest']}) in {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        results = [one_database(kind, ldif, args.users, work) for kind in args.db.split(",")]
    report(results)


def report(results: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'db':<11}{'(a) raw s':>10}{'(b) full s':>11}{'(c) resync s':>13}{'(d) incr s':>11}"
        f"{'b/a':>6}{'c/a':>6}{'RSS MB':>8}{'at exit':>8}{'C s':>7}{'a/C':>6}"
    )
    for r in results:
        b, c, d = r["initial"], r["resync"], r["incremental"]
        print(
            f"{r['db']:<11}{r['raw']:>10.2f}{b['seconds']:>11.2f}{c['seconds']:>13.2f}{d['seconds']:>11.3f}"
            f"{b['seconds'] / r['raw']:>6.2f}{c['seconds'] / r['raw']:>6.2f}"
            f"{r['rss']:>8.0f}{r['rss_exit']:>8.0f}{r['c']:>7.2f}"
            f"{r['raw'] / r['c']:>6.1f}"
        )
    for r in results:
        b, c, d = r["initial"], r["resync"], r["incremental"]
        print(
            f"  {r['db']}: (b) {b['status']} created {b['created']} errors {b['errors']}; "
            f"(c) {c['status']} unchanged {c['unchanged']}; "
            f"(d) {d['status']} {d['mode']} updated {d['updated']} disabled {d['disabled']}"
        )
    print()
    for r in results:
        b, c, d = r["initial"], r["resync"], r["incremental"]
        print(
            f"RESULT db={r['db']} full_vs_raw={b['seconds'] / r['raw']:.2f} "
            f"resync_vs_raw={c['seconds'] / r['raw']:.2f} resync_writes={c['writes']} "
            f"incr_s={d['seconds']:.3f} incr_detected={d['updated'] + d['disabled']} "
            f"peak_rss_mb={r['rss']:.0f} c_client_ratio={r['raw'] / r['c']:.1f}"
        )


if __name__ == "__main__":
    main()

"""The database handle (syncd.store.db): SQLite pragmas on every connection (reliability.md D1),
BEGIN IMMEDIATE writers under contention with a control experiment that shows the bug it prevents (D2),
errors for unusable databases, and foreign keys on both databases."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, ExitStack, closing
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, exc

from syncd.config.models import Database as DatabaseConfig
from syncd.domain.lifecycle import DeviceType
from syncd.errors import StoreError
from syncd.store.db import Database
from syncd.store.tables import Device, User

NOBODY = 65534  # uid/gid the permission checks run as when the suite runs as root (root ignores modes)
THREADS, THREAD_TXNS = 8, 200
PROCESSES, PROCESS_TXNS = 4, 200
BUSY_TIMEOUT_MS = 20_000


def sqlite_db(path: Path, **settings: Any) -> Database:
    return Database(DatabaseConfig(url=f"sqlite:///{path}", **settings))


# ---- D1: pragmas on every pooled connection ---------------------------------------------------------


@pytest.mark.parametrize(("synchronous", "expected"), [("FULL", 2), ("NORMAL", 1)])
def test_every_sqlite_connection_of_both_engines_has_the_pragmas(
    tmp_path: Path, synchronous: str, expected: int
) -> None:
    db = sqlite_db(tmp_path / "syncd.db", busy_timeout_ms=12_345, synchronous=synchronous)
    try:
        for _round in range(2):  # the second round reuses the pooled connections
            with ExitStack() as stack:
                # Raw pooled connections: a write-engine Connection would autobegin BEGIN IMMEDIATE, and six
                # of those can't be open at once (by design).
                connections = [
                    stack.enter_context(closing(engine.raw_connection()))
                    for engine in (db.read_engine, db.write_engine)
                    for _ in range(6)
                ]
                assert len({id(conn.dbapi_connection) for conn in connections}) == 12  # all distinct
                for conn in connections:
                    cursor = conn.cursor()
                    pragmas = {
                        name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
                        for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
                    }
                    cursor.close()
                    assert pragmas == {
                        "journal_mode": "wal",
                        "foreign_keys": 1,
                        "busy_timeout": 12_345,
                        "synchronous": expected,
                    }
    finally:
        db.dispose()


def test_write_units_hold_the_write_lock_from_their_first_statement_and_reads_do_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "syncd.db"
    db = sqlite_db(path)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with db.write() as session:
            session.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        with db.write() as session:
            session.execute(sa.text("SELECT count(*) FROM t")).scalar_one()  # a read only, so far
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
        with db.read() as session:
            session.execute(sa.text("SELECT count(*) FROM t")).scalar_one()
            other.execute("BEGIN IMMEDIATE")  # a reader does not block a writer
            other.execute("INSERT INTO t VALUES (1)")
            other.execute("COMMIT")
    finally:
        other.close()
        db.dispose()


# ---- D2: read→write transactions under contention ---------------------------------------------------


def make_counter(begin: Callable[[], AbstractContextManager[Any]]) -> None:
    with begin() as conn:
        conn.execute(sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        conn.execute(sa.text("INSERT INTO counter (id, n) VALUES (1, 0)"))


def increment(begin: Callable[[], AbstractContextManager[Any]]) -> None:
    """One read-then-write transaction: the read comes first, as in the sync engine's units of work."""
    with begin() as conn:
        n = conn.execute(sa.text("SELECT n FROM counter WHERE id = 1")).scalar_one()
        conn.execute(sa.text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})


def run_writers(
    begin: Callable[[], AbstractContextManager[Any]], threads: int, txns: int
) -> tuple[list[str], float]:
    """``threads`` threads, started together, each doing ``txns`` increments.

    Returns the "database is locked"-style errors (OperationalError or StoreError) and the longest
    transaction in seconds.
    """
    barrier = threading.Barrier(threads)
    errors: list[str] = []
    longest = [0.0]

    def writer() -> None:
        barrier.wait(timeout=30)
        for _ in range(txns):
            started = time.monotonic()
            try:
                increment(begin)
            except (exc.OperationalError, StoreError) as error:
                errors.append(str(getattr(error, "orig", None) or error))
            longest[0] = max(longest[0], time.monotonic() - started)

    workers = [threading.Thread(target=writer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers), "a writer hung"
    return errors, longest[0]


def counter_value(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT n FROM counter WHERE id = 1")).scalar_one())


def test_concurrent_read_then_write_units_never_fail_with_database_is_locked(tmp_path: Path) -> None:
    db = sqlite_db(tmp_path / "syncd.db", busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        make_counter(db.write)
        errors, longest = run_writers(db.write, THREADS, THREAD_TXNS)
        assert errors == []
        assert counter_value(db.read_engine) == THREADS * THREAD_TXNS  # no lost update either
        assert longest < BUSY_TIMEOUT_MS / 1000
    finally:
        db.dispose()


def test_control_deferred_transactions_fail_with_database_is_locked(tmp_path: Path) -> None:
    """The same workload on an engine that starts deferred transactions (plain BEGIN, as pysqlite or an
    engine without our begin hook would), busy timeout set: the read→write upgrade of a losing writer
    gets SQLITE_BUSY at once, whatever the busy timeout. This proves the test above can see the bug."""
    engine = sa.create_engine(
        f"sqlite:///{tmp_path / 'control.db'}", connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")  # DEFERRED

    try:
        make_counter(engine.begin)
        started = time.monotonic()
        errors, _longest = run_writers(engine.begin, THREADS, THREAD_TXNS)
        assert errors, "deferred transactions did not collide: the race test can't see the bug"
        assert all("database is locked" in e for e in errors), set(errors)
        assert counter_value(engine) == THREADS * THREAD_TXNS - len(errors)
        # the errors came at once, not after the busy timeout
        assert time.monotonic() - started < BUSY_TIMEOUT_MS / 1000
    finally:
        engine.dispose()


def process_writer(path: str, gate: str, index: int, txns: int) -> tuple[list[str], float]:
    """Runs in a spawned process: wait at the gate, then ``txns`` increments through ``Database.write``."""
    db = sqlite_db(Path(path), busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        db.ping()
        Path(gate, f"ready-{index}").touch()
        deadline = time.monotonic() + 60
        while not Path(gate, "go").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the parent never opened the gate")
            time.sleep(0.005)
        errors: list[str] = []
        longest = 0.0
        for _ in range(txns):
            started = time.monotonic()
            try:
                increment(db.write)
            except (exc.OperationalError, StoreError) as error:
                errors.append(str(error))
            longest = max(longest, time.monotonic() - started)
        return errors, longest
    finally:
        db.dispose()


def test_writers_in_separate_processes_never_fail_with_database_is_locked(tmp_path: Path) -> None:
    path = tmp_path / "syncd.db"
    gate = tmp_path / "gate"
    gate.mkdir()
    db = sqlite_db(path, busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        make_counter(db.write)
        with ProcessPoolExecutor(PROCESSES, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(process_writer, str(path), str(gate), i, PROCESS_TXNS) for i in range(PROCESSES)
            ]
            deadline = time.monotonic() + 60
            while len(list(gate.glob("ready-*"))) < PROCESSES:
                failed = [f for f in futures if f.done()]
                if failed:
                    failed[0].result()  # raises the worker's exception
                assert time.monotonic() < deadline, "the writer processes did not start"
                time.sleep(0.01)
            (gate / "go").touch()
            results = [future.result(timeout=120) for future in futures]
        assert [errors for errors, _ in results] == [[]] * PROCESSES
        assert counter_value(db.read_engine) == PROCESSES * PROCESS_TXNS
        assert max(longest for _, longest in results) < BUSY_TIMEOUT_MS / 1000
    finally:
        db.dispose()


def test_a_failing_unit_of_work_rolls_back(db: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), db.write() as session:
        session.add(User(username="alice", username_key="alice"))
        session.flush()
        raise Boom
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 0


# ---- unusable databases -------------------------------------------------------------------------


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="syncd-store-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        unlock_tree(path)
        shutil.rmtree(path)


def unlock_tree(path: Path) -> None:
    """Give the owner rwx on every directory again (top-down, so locked ones can be entered)."""
    path.chmod(stat.S_IRWXU)
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            unlock_tree(child)


def open_and_write(path: Path) -> str:
    """Open the SQLite database at ``path``, write to it, and say how that went (one line)."""
    try:
        db = sqlite_db(path)
        try:
            db.ping()
            with db.write() as session:
                session.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
                session.execute(sa.text("INSERT INTO probe VALUES (1)"))
        finally:
            db.dispose()
    except StoreError as error:
        return f"StoreError: {error}"
    except Exception as error:  # noqa: BLE001 - the outcome is the result
        return f"{type(error).__module__}.{type(error).__name__}: {error}"
    return "opened"


def open_unprivileged(path: Path) -> str:
    """:func:`open_and_write` as an ordinary user: in a forked child running as ``nobody`` when the
    suite runs as root (root ignores permission bits; the venv's interpreter may not be executable by
    ``nobody``, hence fork without exec)."""
    if os.geteuid() != 0:
        return open_and_write(path)
    # ``nobody`` can't read root's Python installation: load whatever opening a database imports first.
    warm_up = Path(tempfile.mkdtemp(prefix="syncd-store-warm-up-"))
    try:
        assert open_and_write(warm_up / "syncd.db") == "opened"
    finally:
        shutil.rmtree(warm_up)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        status = 1
        try:
            os.close(read_fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_fd, open_and_write(path).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        outcome = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"the unprivileged child failed: {outcome!r}"
    return outcome


def test_absent_database_directory_is_a_store_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(StoreError, match=str(missing)):
        sqlite_db(missing / "syncd.db")


@pytest.mark.parametrize("layout", ["db-in-locked-dir", "db-below-locked-dir"])
def test_unreadable_database_directory_is_a_store_error_naming_it(shared_dir: Path, layout: str) -> None:
    """A directory the user can't search (mode 000): the database in it, or in a directory below it."""
    locked = shared_dir / "locked"
    directory = locked if layout == "db-in-locked-dir" else locked / "sub"
    directory.mkdir(parents=True)
    locked.chmod(0o000)
    outcome = open_unprivileged(directory / "syncd.db")
    assert outcome.startswith("StoreError:"), outcome
    assert str(directory) in outcome


def test_database_directory_without_write_permission_is_a_store_error(shared_dir: Path) -> None:
    readonly = shared_dir / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    outcome = open_unprivileged(readonly / "syncd.db")
    assert outcome.startswith("StoreError:"), outcome
    assert str(readonly) in outcome


def test_read_only_database_file_is_a_store_error(shared_dir: Path) -> None:
    path = shared_dir / "syncd.db"
    db = sqlite_db(path)
    try:
        db.ping()
    finally:
        db.dispose()
    path.chmod(0o444)
    outcome = open_unprivileged(path)
    assert outcome.startswith("StoreError:"), outcome
    assert str(path) in outcome


def test_writable_file_in_a_read_only_directory_is_a_store_error_on_first_use(shared_dir: Path) -> None:
    """WAL needs to create ``-wal``/``-shm`` next to the file: the driver error must become a StoreError."""
    directory = shared_dir / "data"
    directory.mkdir()
    path = directory / "syncd.db"
    db = sqlite_db(path)
    try:
        db.ping()
    finally:
        db.dispose()
    assert sorted(p.name for p in directory.iterdir()) == ["syncd.db"]
    path.chmod(0o666)
    directory.chmod(0o555)
    outcome = open_unprivileged(path)
    assert outcome.startswith("StoreError:"), outcome


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_postgresql_is_a_store_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "pw-Zq81-never-show-me"
    monkeypatch.setenv("SYNCD_TEST_UNREACHABLE_PW", password)
    port = closed_port()
    config = DatabaseConfig(
        url=f"postgresql+psycopg://syncd@127.0.0.1:{port}/syncd",
        password={"env": "SYNCD_TEST_UNREACHABLE_PW"},
    )
    db = Database(config)
    try:
        with pytest.raises(StoreError) as caught:
            db.ping()
    finally:
        db.dispose()
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message
    assert password not in message
    assert password not in "".join(traceback.format_exception(caught.value))  # nor in the chained errors


# ---- foreign keys ---------------------------------------------------------------------------------


def test_foreign_keys_are_enforced(db: Database) -> None:
    with pytest.raises(exc.IntegrityError), db.write() as session:
        session.add(Device(user_id="no-such-user", type=DeviceType.TOTP))
        session.flush()
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Device)) == 0


def test_deleting_a_user_cascades_to_its_devices(db: Database) -> None:
    with db.write() as session:
        user = User(username="bob", username_key="bob")
        session.add(user)
        session.flush()
        session.add(Device(user_id=user.id, type=DeviceType.TOTP))
    with db.write() as session:
        session.execute(sa.delete(User).where(User.id == user.id))
    with db.read() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Device)) == 0


def test_release_caches_gives_back_the_page_caches_of_pooled_connections(db: Database) -> None:
    """After a large sync the daemon drops SQLite's page caches (up to cache_size per pooled connection)
    so RSS returns to the idle level (docs/adr/0044); a no-op on PostgreSQL. Measured with SQLite's own
    counter of the memory it holds, the library Python's sqlite3 module uses."""
    with db.write() as session:
        session.execute(
            sa.insert(User),
            [{"username": f"cache{i:05d}", "username_key": f"cache{i:05d}", "attributes": {"pad": "x" * 400}}
             for i in range(5000)],
        )  # fmt: skip
    with db.read() as session:  # reads through the read engine's pooled connection fill its cache
        assert len(session.execute(sa.select(User.id, User.attributes)).all()) == 5000
    library = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    library.sqlite3_memory_used.restype = ctypes.c_int64
    before = library.sqlite3_memory_used()
    db.release_caches()
    after = library.sqlite3_memory_used()
    if db.is_sqlite:
        assert before - after > 2_000_000  # ~2.5 MB of pages of the 5,000 rows
    with db.read() as session:  # the connections still work, reading from the file
        assert session.scalar(sa.select(sa.func.count()).select_from(User)) == 5000

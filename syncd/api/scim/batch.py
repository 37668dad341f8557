"""Group commit for SCIM writes on SQLite (docs/adr/0033): one thread runs every write of the SCIM app;
the writes that queue while it works share one transaction, each in its own SAVEPOINT, and are answered
after the one COMMIT. A write is an ORM unit of work (:meth:`BatchWriter.session`) or prepared statements
on the driver's connection (:meth:`BatchWriter.driver`, the hot IdP writes).

SQLite has one writer at a time. Run as a thread-pool task each, writes queue on a lock and hand over to
the event loop and back between every two of them; the thread here takes the next write as soon as the
last one ends, and one commit (the WAL append) serves them all. A write that fails rolls back its savepoint
alone: its error is its answer, the others commit. A failed COMMIT (disk full, the leader's fencing check)
fails every write of the batch: none of them is stored, and each client is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from syncd.store.db import Database, translate_errors
from syncd.store.prepared import DriverWork, Statements

T = TypeVar("T")
_Item = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]
_Outcome = tuple[bool, Any]  # (succeeded, value or exception)


class BatchWriter:
    """Runs write functions on one thread, group-committed; :meth:`session` is their unit of work."""

    def __init__(self, db: Database, max_batch: int = 64, idle_seconds: float = 60.0) -> None:
        self.db = db
        self.max_batch = max_batch
        self.idle_seconds = idle_seconds  # the thread ends after this long without a write
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._local = threading.local()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    async def run(self, func: Callable[[], T]) -> T:
        """Run ``func`` (which opens its unit of work with :meth:`session`) and return what it returns once
        its batch has committed, or raise what it raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._start:  # with the thread's decision to end: a write is never left in the queue
            self._queue.put((func, loop, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._main, name="syncd-scim-writer", daemon=True)
                self._thread.start()
        return await future

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """On the writer thread: the batch's session, inside this write's savepoint. Elsewhere (tests, a
        caller outside the app): a unit of work of its own."""
        batch: Session | None = getattr(self._local, "session", None)
        if batch is None:
            with self.db.write() as session:
                yield session
            return
        batch.expunge_all()  # no object loaded by an earlier write: prepared statements may have changed it
        with translate_errors(self.db.display_url), batch.begin_nested():
            yield batch

    @contextlib.contextmanager
    def driver(self, statements: Statements) -> Iterator[DriverWork]:
        """Like :meth:`session`, for writes made of prepared statements (syncd.store.prepared): on the writer
        thread, in the batch's transaction and a SAVEPOINT of their own, issued on the driver's connection
        (SQLAlchemy's nested transaction costs more than a hot write's statements)."""
        batch: Session | None = getattr(self._local, "session", None)
        if batch is None:
            with self.db.write() as session:
                yield DriverWork(session, statements)
            return
        with translate_errors(self.db.display_url):
            work = DriverWork(batch, statements)
            work.execute_text("SAVEPOINT scim_write")
            try:
                yield work
            except BaseException:
                work.execute_text("ROLLBACK TO SAVEPOINT scim_write")
                work.execute_text("RELEASE SAVEPOINT scim_write")
                raise
            work.execute_text("RELEASE SAVEPOINT scim_write")

    @property
    def running(self) -> bool:
        return self._thread is not None

    def _main(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=self.idle_seconds)
            except queue.Empty:
                with self._start:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            outcomes = self._run(batch)
            _answer(batch, outcomes)

    def _run(self, batch: list[_Item]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        try:
            with self.db.write() as session:
                self._local.session = session
                try:
                    for func, _loop, _future in batch:
                        try:
                            outcomes.append((True, func()))
                        except Exception as error:  # noqa: BLE001 - this write's answer; the batch goes on
                            outcomes.append((False, error))
                finally:
                    self._local.session = None
        except Exception as error:  # noqa: BLE001 - the COMMIT (or BEGIN) failed: no write of the batch is stored
            return [(False, error)] * len(batch)
        return outcomes


def _answer(batch: list[_Item], outcomes: list[_Outcome]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], _Outcome]]] = {}
    for (_func, loop, future), outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(loop, []).append((future, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], _Outcome]]) -> None:
    for future, (succeeded, value) in settled:
        if future.cancelled():
            continue
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)

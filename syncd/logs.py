"""Logging set-up: one event per line on standard error (journald-friendly), logfmt or JSON.

Fields bound with :func:`bound` (a job's source and run id, a request's id) are added to every event
logged in that context, threads started with ``asyncio.to_thread`` included.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime

from syncd.config.models import Logging

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"color_message", "message", "asctime"}
_bound: ContextVar[dict[str, object]] = ContextVar("syncd_log_fields", default={})  # noqa: B039 (never mutated)


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every event logged in this context until the block ends."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


def bind(**fields: object) -> None:
    """Add ``fields`` to the events of the rest of the current context (e.g. a run id once it is known)."""
    _bound.set({**_bound.get(), **fields})


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=info logger=syncd.sync msg="…" key=value`` (extra= fields appended)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        return " ".join(f"{key}={_quote(value)}" for key, value in fields.items())


class ConsoleFormatter(logging.Formatter):
    """For people at a terminal: ``06:15:34 INFO  syncd.service: listening address=127.0.0.1:8080``."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        head = (
            f"{fields.pop('ts')!s:.23} {fields.pop('level')!s:7} {fields.pop('logger')}: {fields.pop('msg')}"
        )
        return " ".join([head, *(f"{key}={_quote(value)}" for key, value in fields.items())])


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {
        "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    fields.update(_bound.get())
    fields.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
    if record.exc_info and record.exc_info[0] is not None:
        fields["error"] = record.exc_info[0].__name__
    return fields


def _quote(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' "=\n\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


def setup(config: Logging) -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    if config.format == "json":
        handler.setFormatter(JsonFormatter())
    elif config.format == "logfmt":
        handler.setFormatter(LogfmtFormatter())
    else:
        handler.setFormatter(ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    for noisy in ("uvicorn.access", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

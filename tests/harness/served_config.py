"""The app served for real with a config of the test's choosing (sources, API limits) and optionally
without enrollment keys; like :func:`harness.served.serve`, which always uses the default config."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from harness.enrollment import make_config, make_settings
from harness.net import free_port
from harness.served import Served
from syncd.api.app import create_app
from syncd.store.db import Database


@contextmanager
def serve_with(db: Database, *, enrollment: bool = True, **sections: Any) -> Iterator[Served]:
    """Serve ``create_app`` over loopback with ``make_config(**sections)`` (``org`` filled in)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = make_config(
        org={"name": "Test Corp", "base_url": url, "support_email": "help@example.com"}, **sections
    )
    settings = make_settings(base_url=url)
    app = create_app(config, db, settings if enrollment else None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Served(url, config, settings, db)
    finally:
        server.should_exit = True
        thread.join(10)

"""syncd's HTTP app served for real (uvicorn on a loopback port, in a thread), and enrollment-page helpers."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from harness.enrollment import make_config, make_settings
from harness.net import free_port
from syncd.api.app import create_app
from syncd.config.models import Config
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings


@dataclass
class Served:
    url: str
    config: Config
    settings: EnrollmentSettings
    db: Database

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]


@contextmanager
def serve(db: Database, *, enrollment: bool = True, **sections: Any) -> Iterator[Served]:
    """Serve ``create_app`` over loopback with ``make_config(**sections)`` (``org`` filled in), with the
    enrollment keys unless ``enrollment`` is false."""
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


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    if not match:
        raise AssertionError(f"no CSRF field in {html[:200]!r}")
    return match.group(1)


def start_session(client: httpx.Client, token: str) -> httpx.Response:
    """Open the link's landing page and press Start (the POST that starts the enrollment session)."""
    landing = client.get(f"/enroll/{token}")
    if landing.status_code != 200:
        raise AssertionError(f"landing page answered {landing.status_code}")
    return client.post(f"/enroll/{token}", data={"csrf": csrf_of(landing.text)})

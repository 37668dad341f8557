"""End to end, for real: ``syncd run`` imports users from a CSV file, the invite reaches an aiosmtpd server,
headless Chromium (Debian's ``chromium`` through Playwright) opens the link, starts, reads the key, types the
TOTP from pyotp, and the user is ACTIVE with one ACTIVE TOTP device. Screenshots of every page state, on a
desktop and a phone-sized viewport, go to ``artifacts/screenshots/``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from harness.daemon import Daemon, write_config, write_users
from harness.net import free_port
from harness.smtp import ReceivedMessage, SmtpServer
from playwright.sync_api import sync_playwright

from syncd.config.models import Database as DatabaseConfig
from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus
from syncd.store.db import Database
from syncd.store.tables import Device, User

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("SYNCD_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium", pytrace=False)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def link_in(message: ReceivedMessage) -> str:
    match = re.search(r"(http://127\.0\.0\.1:\d+/enroll/[A-Za-z0-9_-]{43})", message.body_text())
    assert match, message.body_text()
    return match.group(1)


def shot(page: object, viewport: str, state: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{viewport}-{state}.png"), full_page=True)  # type: ignore[attr-defined]


def enroll_in_browser(browser: object, link: str, viewport: str) -> str:
    """Follow the link like a person; returns the secret key read from the page."""
    context = browser.new_context(**VIEWPORTS[viewport])  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(link)
    assert page.locator("main").get_attribute("data-page") == "landing"
    shot(page, viewport, "1-landing")
    page.get_by_role("button", name="Start").click()
    page.wait_for_load_state()
    assert page.url.endswith("/enroll/setup"), (page.url, page.locator("main").inner_html())
    assert page.locator("main").get_attribute("data-page") == "setup"
    assert page.locator(".qr svg").count() == 1
    shot(page, viewport, "2-setup-qr")
    page.get_by_text("Can't scan it? Enter the key by hand").click()
    key = page.locator("#secret-key").inner_text().replace(" ", "")
    shot(page, viewport, "3-setup-manual-key")
    totp = pyotp.TOTP(key)
    wrong = "000000" if totp.now() != "000000" else "111111"
    page.get_by_label("6-digit code").fill(wrong)
    page.get_by_role("button", name="Verify").click()
    assert page.get_by_role("alert").inner_text().startswith("That code is not right")
    shot(page, viewport, "4-wrong-code")
    code = totp.now()
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Verify").click()
    page.wait_for_url("**/enroll/done")
    assert page.locator("main").get_attribute("data-page") == "done"
    assert key not in page.content()
    shot(page, viewport, "5-done")
    # the same code again, through the self-service API with this browser's session: refused (replay)
    replay = context.request.delete(f"{link.rsplit('/enroll/', 1)[0]}/api/mfa/register/TOTP/{code}")
    assert replay.status == 400, replay.text()
    # the link again: used, so the page every dead link gets
    page.goto(link)
    assert page.locator("main").get_attribute("data-page") == "invalid"
    shot(page, viewport, "6-link-used-or-expired")
    context.close()
    fresh = browser.new_context(**VIEWPORTS[viewport])  # type: ignore[attr-defined]
    other = fresh.new_page()
    other.goto(f"{link.rsplit('/enroll/', 1)[0]}/enroll/setup")
    assert other.locator("main").get_attribute("data-page") == "ended"
    shot(other, viewport, "7-session-ended")
    fresh.close()
    return key


def test_import_invite_enroll_in_chromium(
    tmp_path: Path, database_config: DatabaseConfig, smtp_server: SmtpServer, browser: object
) -> None:
    users = tmp_path / "users.csv"
    write_users(
        users,
        [
            ("E1", "alice", "alice@example.com", "Alice"),
            ("E2", "bob", "bob@example.com", "Bob"),
            ("E3", "nomail", "", "Nomail"),
        ],
    )
    port = free_port()
    config = write_config(tmp_path, database_config, port=port, smtp_port=smtp_server.port, users=users)
    daemon = Daemon(config, port, tmp_path / "syncd.log")
    daemon.start()
    try:
        invites = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(2, timeout=30)}
        assert set(invites) == {"alice@example.com", "bob@example.com"}
        keys = {
            "alice": enroll_in_browser(browser, link_in(invites["alice@example.com"]), "desktop"),
            "bob": enroll_in_browser(browser, link_in(invites["bob@example.com"]), "phone"),
        }
        added = smtp_server.wait_for(4, timeout=30)[2:]
        assert sorted(m.rcpt_tos[0] for m in added) == ["alice@example.com", "bob@example.com"]
        assert all(m.subject.startswith("An authenticator was added") for m in added)
        shown = subprocess.run(
            [sys.executable, "-m", "syncd", "users", "show", "alice", "--json", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert '"status": "ACTIVE"' in shown.stdout
    finally:
        assert daemon.stop() == 0, daemon.output()
    output = daemon.output()
    assert "user not invited" in output and "username=nomail" in output  # skipped and reported
    assert "Traceback" not in output
    for key in keys.values():
        assert key not in output  # no seed in the logs
    db = Database(database_config)
    try:
        with db.read() as session:
            for username in ("alice", "bob"):
                user = session.scalar(sa.select(User).where(User.username == username))
                assert user is not None and user.status is UserStatus.ACTIVE
                devices = session.scalars(sa.select(Device).where(Device.user_id == user.id)).all()
                assert [(d.type, d.state) for d in devices] == [(DeviceType.TOTP, DeviceState.ACTIVE)]
    finally:
        db.dispose()
    assert sorted(p.name for p in SHOTS.glob("phone-*.png")) == sorted(
        p.name.replace("desktop", "phone") for p in SHOTS.glob("desktop-*.png")
    )


def test_chromium_is_found_by_path() -> None:
    assert shutil.which("chromium") or Path(CHROMIUM).exists()

"""Enrollment pages over real HTTP (both databases): the GET consumes nothing, the POST needs CSRF and
consumes once, invalid links look alike, security headers, a resend ends the session (O8, O9)."""

from __future__ import annotations

import re

import pyotp
import sqlalchemy as sa
from harness.enrollment import add_user, invite
from harness.served import Served, csrf_of, start_session

from syncd.domain import otp
from syncd.domain.lifecycle import DeviceState, UserStatus
from syncd.store.tables import EnrollmentInvite, User


def key_of(html: str) -> str:
    match = re.search(r'<code id="secret-key" class="key">([A-Z2-7 ]+)</code>', html)
    assert match, html
    return match.group(1).replace(" ", "")


def test_prefetching_consumes_nothing_then_the_flow_enrolls(served: Served) -> None:
    user_id = add_user(served.db, "alice")
    token = invite(served.db, user_id, served.settings)
    with served.client() as scanner:  # mail scanners: HEAD and GETs without cookies
        assert scanner.head(f"/enroll/{token}").status_code in (200, 405)
        assert scanner.get(f"/enroll/{token}").status_code == 200
        assert scanner.get(f"/enroll/{token}").status_code == 200
    with served.client() as browser:
        started = start_session(browser, token)
        assert started.status_code == 303 and started.headers["location"] == "/enroll/setup"
        cookie = started.headers["set-cookie"]
        assert (
            "syncd_enroll=" in cookie
            and "HttpOnly" in cookie
            and "SameSite=strict" in cookie.replace("Strict", "strict")
        )
        setup = browser.get("/enroll/setup")
        assert setup.status_code == 200 and 'data-page="setup"' in setup.text and "<svg" in setup.text
        key = key_of(setup.text)
        assert len(otp.b32decode(key)) == 20
        wrong = browser.post("/enroll/verify", data={"csrf": csrf_of(setup.text), "code": "000000"})
        if pyotp.TOTP(key).now() != "000000":
            assert wrong.status_code == 400 and 'role="alert"' in wrong.text
        done = browser.post(
            "/enroll/verify", data={"csrf": csrf_of(setup.text), "code": pyotp.TOTP(key).now()}
        )
        assert done.status_code == 303 and done.headers["location"] == "/enroll/done"
        final = browser.get("/enroll/done")
        assert final.status_code == 200 and 'data-page="done"' in final.text
        assert key not in final.text and key not in browser.get("/enroll/setup", follow_redirects=True).text
        again = browser.post(f"/enroll/{token}", data={"csrf": "x"})
        assert again.status_code in (403, 410) and key not in again.text
    with served.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None and user.status is UserStatus.ACTIVE


def test_second_post_of_a_link_is_gone_without_a_seed(served: Served) -> None:
    token = invite(served.db, add_user(served.db, "bob"), served.settings)
    with served.client() as browser:
        landing = browser.get(f"/enroll/{token}")
        first = browser.post(f"/enroll/{token}", data={"csrf": csrf_of(landing.text)})
        assert first.status_code == 303
        second = browser.post(f"/enroll/{token}", data={"csrf": csrf_of(landing.text)})
    assert second.status_code == 410 and "secret-key" not in second.text and "otpauth" not in second.text


def test_unknown_used_and_expired_links_get_the_same_page(served: Served) -> None:
    used = invite(served.db, add_user(served.db, "used"), served.settings)
    expired = invite(served.db, expirer := add_user(served.db, "expired"), served.settings)
    revoked = invite(served.db, revoker := add_user(served.db, "revoked"), served.settings)
    invite(served.db, revoker, served.settings)
    with served.db.write() as session:
        session.execute(
            sa.update(EnrollmentInvite)
            .where(EnrollmentInvite.user_id == expirer)
            .values(expires_at=sa.func.current_timestamp())
        )
    with served.client() as browser:
        start_session(browser, used)
    pages = {}
    with served.client() as other:
        for name, token in {
            "unknown": "A" * 43,
            "garbage": "..%2F..",
            "path": "a/b/c",
            "used": used,
            "expired": expired,
            "revoked": revoked,
        }.items():
            response = other.get(f"/enroll/{token}")
            pages[name] = (response.status_code, response.text)
    assert {status for status, _ in pages.values()} == {410}, {k: v[0] for k, v in pages.items()}
    bodies = {body for _, body in pages.values()}
    assert len(bodies) == 1
    assert 'data-page="invalid"' in pages["used"][1] and "This link doesn&#39;t work" in pages["used"][1]


def test_landing_post_needs_its_csrf_cookie_and_same_origin(served: Served) -> None:
    token = invite(served.db, add_user(served.db, "carol"), served.settings)
    with served.client() as browser:
        landing = browser.get(f"/enroll/{token}")
        csrf = csrf_of(landing.text)
        with served.client() as no_cookie:
            assert no_cookie.post(f"/enroll/{token}", data={"csrf": csrf}).status_code == 403
        assert browser.post(f"/enroll/{token}", data={"csrf": "forged"}).status_code == 403
        evil = browser.post(
            f"/enroll/{token}", data={"csrf": csrf}, headers={"origin": "https://evil.example"}
        )
        assert evil.status_code == 403
        assert browser.post(f"/enroll/{token}", data={"csrf": csrf}).status_code == 303  # link still unused


def test_security_headers_on_pages_and_api(served: Served) -> None:
    token = invite(served.db, add_user(served.db, "dave"), served.settings)
    with served.client() as browser:
        for response in (
            browser.get(f"/enroll/{token}"),
            browser.get("/enroll/nope"),
            browser.get("/api/mfa/register/TOTP"),
            browser.get("/healthz"),
        ):
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "script-src" not in csp
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"
        assert browser.get(f"/enroll/{token}").headers["cache-control"] == "no-store"
        css = browser.get("/enroll/assets/enroll.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_a_resend_ends_the_session_of_the_old_link(served: Served) -> None:
    user_id = add_user(served.db, "erin")
    token = invite(served.db, user_id, served.settings)
    with served.client() as browser:
        assert start_session(browser, token).status_code == 303
        assert browser.get("/enroll/setup").status_code == 200
        with served.db.write() as session:  # an admin resends: the consumed link is revoked too
            session.execute(sa.update(EnrollmentInvite).values(revoked_at=sa.func.current_timestamp()))
        ended = browser.get("/enroll/setup")
        assert ended.status_code == 401 and 'data-page="ended"' in ended.text


def test_a_devices_disabled_user_gets_a_clear_refusal(served: Served) -> None:
    user_id = add_user(served.db, "frank")
    token = invite(served.db, user_id, served.settings)
    with served.db.write() as session:
        user = session.get(User, user_id)
        assert user is not None
        session.add(
            __import__("syncd.store.tables", fromlist=["Device"]).Device(
                user_id=user_id, type="PUSH", state=DeviceState.DISABLED
            )
        )
        user.status = UserStatus.DEVICES_DISABLED
    with served.client() as browser:
        page = browser.get(f"/enroll/{token}")
        assert page.status_code == 410  # the link no longer works for a user who can't enroll

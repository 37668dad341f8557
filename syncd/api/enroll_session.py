"""The enrollment session: who the self-service registration API and the enrollment pages talk to.

Definition (docs/adr/0023-enrollment-session.md):

* It starts only with the POST of an enrollment link's landing page, which consumes the link.
* It is the cookie ``syncd_enroll`` = ``INVITE_ID.USER_ID.EXPIRES.MAC``, where MAC is HMAC-SHA256 over the
  rest with the session key (derived from ``secrets.seed_key``). ``HttpOnly``, ``SameSite=Strict``,
  ``Path=/``, ``Secure`` when ``org.base_url`` is https, ``Max-Age`` = ``enrollment.session_ttl`` (15 min).
* On every request it must also still be backed by the database: its invite consumed and not revoked
  (a resend or an admin ends it at once), the user not deleted.
* Forms carry a CSRF token: HMAC of the session cookie (pages after the landing) or of a random
  ``syncd_csrf`` cookie and the link (the landing page); JSON calls must be ``application/json`` and, when
  the browser sends an ``Origin``, come from ``org.base_url``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request, Response

from syncd.domain import tokens
from syncd.errors import UnauthenticatedError
from syncd.store import invites
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings

SESSION_COOKIE = "syncd_enroll"
CSRF_COOKIE = "syncd_csrf"
CSRF_TTL = 3600


@dataclass(frozen=True, slots=True)
class EnrollSession:
    invite_id: str
    user_id: str
    expires: int
    cookie: str


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _secure(settings: EnrollmentSettings) -> bool:
    return settings.base_url.startswith("https://")


def start(response: Response, settings: EnrollmentSettings, *, invite_id: str, user_id: str) -> str:
    """Set the session cookie on ``response``; returns its value."""
    ttl = int(settings.session_ttl.total_seconds())
    body = f"{invite_id}.{user_id}.{int(time.time()) + ttl}"
    value = f"{body}.{_mac(settings.keys.session, 'session|' + body)}"
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=ttl,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )
    response.delete_cookie(CSRF_COOKIE, path="/enroll", samesite="strict", secure=_secure(settings))
    return value


def end(response: Response, settings: EnrollmentSettings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(settings)
    )


def parse(
    value: str | None, settings: EnrollmentSettings, *, now: float | None = None
) -> EnrollSession | None:
    """The session in a cookie value if its MAC is right and it has not expired (no database check)."""
    if not value or value.count(".") != 3:
        return None
    invite_id, user_id, expires, mac = value.split(".")
    body = f"{invite_id}.{user_id}.{expires}"
    if not tokens.equal(mac, _mac(settings.keys.session, "session|" + body)):
        return None
    if not expires.isdigit() or int(expires) <= (now or time.time()):
        return None
    return EnrollSession(invite_id, user_id, int(expires), value)


def current(request: Request, db: Database, settings: EnrollmentSettings) -> EnrollSession | None:
    """The request's valid session (cookie and database agree), else None."""
    session = parse(request.cookies.get(SESSION_COOKIE), settings)
    if session is None:
        return None
    with db.read() as store:
        if not invites.session_valid(store, session.invite_id, session.user_id):
            return None
    return session


def require(request: Request, db: Database, settings: EnrollmentSettings) -> EnrollSession:
    session = current(request, db, settings)
    if session is None:
        raise UnauthenticatedError("no enrollment session: open your enrollment link again")
    return session


# ---- CSRF ----------------------------------------------------------------------------------------------
def session_csrf(session: EnrollSession, settings: EnrollmentSettings) -> str:
    return _mac(settings.keys.session, "csrf|" + session.cookie)


def check_session_csrf(session: EnrollSession, settings: EnrollmentSettings, submitted: str) -> bool:
    return tokens.equal(submitted, session_csrf(session, settings))


def landing_csrf(request: Request, settings: EnrollmentSettings, token: str) -> tuple[str, str | None]:
    """The landing form's token, tied to the ``syncd_csrf`` cookie and the link; plus a new cookie value to
    set when the browser has none yet."""
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    fresh = None
    if len(nonce) != 43:
        nonce = fresh = secrets.token_urlsafe(32)
    return _mac(settings.keys.session, f"landing|{nonce}|{tokens.hash_token(token)}"), fresh


def set_csrf_cookie(response: Response, settings: EnrollmentSettings, nonce: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        nonce,
        max_age=CSRF_TTL,
        path="/enroll",
        httponly=True,
        samesite="strict",
        secure=_secure(settings),
    )


def check_landing_csrf(request: Request, settings: EnrollmentSettings, token: str, submitted: str) -> bool:
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    if len(nonce) != 43:
        return False
    return tokens.equal(submitted, _mac(settings.keys.session, f"landing|{nonce}|{tokens.hash_token(token)}"))


def same_origin(request: Request, settings: EnrollmentSettings) -> bool:
    """False only when the browser names another origin than ``org.base_url``.

    ``Origin: null`` is accepted: browsers send it for form posts from pages with ``Referrer-Policy:
    no-referrer`` (ours). The CSRF token and the ``SameSite=Strict`` cookies are the protection; this check
    only adds a refusal where the browser tells us plainly.
    """
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    want = urlsplit(settings.base_url)
    got = urlsplit(origin)
    return (got.scheme, got.netloc) == (want.scheme, want.netloc)

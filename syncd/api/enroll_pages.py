"""Enrollment pages: server-rendered HTML, no JavaScript, reachable from the link in the invite.

``GET /enroll/{token}`` shows a landing page and changes nothing (mail scanners fetch links);
``POST /enroll/{token}`` (CSRF-checked) consumes the link, starts the enrollment session and generates the
secret; ``/enroll/setup`` shows the QR code and key and asks for one code; ``/enroll/done`` confirms.
Unknown, used, revoked and expired links all get the same page and status, so links can't be probed.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import jinja2
import segno
from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from syncd.api import enroll_session, registration
from syncd.domain import otp
from syncd.errors import DomainError
from syncd.store import invites, registrations
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.registrations import Outcome
from syncd.store.tables import User

router = APIRouter(prefix="/enroll", include_in_schema=False)
MAX_FORM_BYTES = 4096

INVALID_LINK = [
    "This enrollment link can't be used. Links work once and only for a limited time, and a newer "
    "invitation replaces older ones.",
    "If you haven't finished setting up, ask your IT support for a new enrollment email.",
]
SESSION_ENDED = [
    "Your enrollment session has ended (it lasts a few minutes, and only in the browser where it started).",
    "If you haven't finished setting up, ask your IT support for a new enrollment email.",
]


@functools.cache
def _pages() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("syncd.api", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


@functools.cache
def _css() -> bytes:
    return resources.files("syncd.api").joinpath("assets/enroll.css").read_bytes()


def _context(request: Request) -> tuple[Database, EnrollmentSettings]:
    settings = request.app.state.enrollment
    if settings is None:
        raise DomainError("enrollment is not configured on this server")
    return request.app.state.db, settings


def _page(
    request: Request, template: str, status: int = 200, *, page: str | None = None, **values: Any
) -> HTMLResponse:
    """Render a page; ``page`` names the state (``data-page``) for tests and styling."""
    config = request.app.state.config
    org = {"name": config.org.name, "support_email": config.org.support_email}
    state = page or template.removesuffix(".html")
    html = _pages().get_template(template).render(org=org, page=state, **values)
    return HTMLResponse(html, status_code=status)


def _message(request: Request, title: str, paragraphs: list[str], status: int, page: str) -> HTMLResponse:
    return _page(request, "message.html", status, page=page, title=title, paragraphs=paragraphs)


def _invalid(request: Request) -> HTMLResponse:
    return _message(request, "This link doesn't work", INVALID_LINK, 410, "invalid")


def _ended(request: Request) -> HTMLResponse:
    return _message(request, "Session ended", SESSION_ENDED, 401, "ended")


def _see(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return {key: values[0] for key, values in parsed.items()}


@router.get("/assets/enroll.css")
def stylesheet() -> Response:
    return Response(_css(), media_type="text/css", headers={"cache-control": "public, max-age=3600"})


@router.get("/setup")
def setup_page(request: Request) -> Response:
    """The QR code, the key and the code form of the open challenge."""
    db, settings = _context(request)
    session = enroll_session.current(request, db, settings)
    if session is None:
        return _ended(request)
    return _setup(request, db, settings, session)


def _setup(
    request: Request,
    db: Database,
    settings: EnrollmentSettings,
    session: enroll_session.EnrollSession,
    *,
    error: str | None = None,
) -> Response:
    if registration.status(db, session.user_id) == registrations.REGISTERED:
        return _see("/enroll/done")
    csrf = enroll_session.session_csrf(session, settings)
    challenge = registration.pending(db, settings, session.user_id)
    if challenge is None:
        return _page(request, "restart.html", title="Get a new code", csrf=csrf)
    key = otp.b32encode(challenge.secret)
    qr = segno.make(challenge.uri, error="m").svg_inline(
        scale=4, border=2, omitsize=True, title="QR code to scan with your authenticator app"
    )
    labelled = qr.replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1)
    svg = Markup(labelled)  # noqa: S704 - segno's own SVG of a URI it encoded, no user markup
    totp = settings.totp
    return _page(
        request,
        "setup.html",
        400 if error else 200,
        title="Set up your authenticator app",
        qr_svg=svg,
        uri=challenge.uri,
        key_grouped=" ".join(key[i : i + 4] for i in range(0, len(key), 4)),
        account=challenge.account,
        digits=totp.digits,
        period=totp.period,
        algorithm=totp.algorithm,
        expires_at=challenge.expires_at.strftime("%H:%M UTC"),
        csrf=csrf,
        error=error,
    )


@router.post("/setup")
async def restart_setup(request: Request) -> Response:
    """Generate a new secret after the previous one expired."""
    db, settings = _context(request)
    form = await _form(request)
    session = await run_in_threadpool(enroll_session.current, request, db, settings)
    if session is None:
        return _ended(request)
    if not enroll_session.check_session_csrf(session, settings, form.get("csrf", "")):
        return _see("/enroll/setup")
    try:
        await run_in_threadpool(registration.generate, db, settings, session.user_id)
    except DomainError as error:
        return _message(request, "Can't set up a new authenticator", [str(error)], 409, "refused")
    return _see("/enroll/setup")


@router.post("/verify")
async def verify(request: Request) -> Response:
    """Check the code typed by the user."""
    db, settings = _context(request)
    form = await _form(request)
    session = await run_in_threadpool(enroll_session.current, request, db, settings)
    if session is None:
        return _ended(request)
    if not enroll_session.check_session_csrf(session, settings, form.get("csrf", "")):
        return _see("/enroll/setup")
    try:
        outcome = await run_in_threadpool(
            registration.verify, db, settings, session.user_id, form.get("code", "")
        )
    except DomainError as error:
        return _message(request, "Can't finish the set-up", [str(error)], 409, "refused")
    if outcome is Outcome.ACCEPTED:
        return _see("/enroll/done")
    if outcome is Outcome.LOCKED:
        paragraphs = ["Too many wrong codes were entered, so this set-up is locked.", SESSION_ENDED[1]]
        return _message(request, "Set-up locked", paragraphs, 403, "locked")
    return await run_in_threadpool(
        _setup, request, db, settings, session, error=registration.MESSAGES[outcome].capitalize() + "."
    )


@router.get("/done")
def done(request: Request) -> Response:
    db, settings = _context(request)
    session = enroll_session.current(request, db, settings)
    if session is None:
        return _ended(request)
    if registration.status(db, session.user_id) != registrations.REGISTERED:
        return _see("/enroll/setup")
    return _page(request, "done.html", title="You're all set")


@router.get("/{token}")
def landing(token: str, request: Request) -> Response:
    """The page the link opens. Consumes nothing."""
    db, settings = _context(request)
    with db.read() as store:
        invite = invites.live_by_token(store, token)
        user = store.get(User, invite.user_id) if invite is not None else None
        name = (user.given_name or user.display_name or user.username) if user is not None else ""
    if invite is None:
        return _invalid(request)
    csrf, new_nonce = enroll_session.landing_csrf(request, settings, token)
    response = _page(
        request,
        "landing.html",
        title="Set up two-step verification",
        name=name,
        token=token,
        csrf=csrf,
        session_minutes=int(settings.session_ttl.total_seconds() // 60),
    )
    if new_nonce is not None:
        enroll_session.set_csrf_cookie(response, settings, new_nonce)
    return response


@router.post("/{token}")
async def start(token: str, request: Request) -> Response:
    """Consume the link (once), start the enrollment session, generate the secret."""
    db, settings = _context(request)
    form = await _form(request)
    if not await run_in_threadpool(_live, db, token):
        return _invalid(request)  # used, revoked, expired or unknown: the same page as the GET's
    if not enroll_session.same_origin(request, settings) or not enroll_session.check_landing_csrf(
        request, settings, token, form.get("csrf", "")
    ):
        return _message(
            request,
            "Please try again",
            ["The page expired or cookies are blocked. Open the link from your email again."],
            403,
            "csrf",
        )
    started = await run_in_threadpool(_consume, db, settings, token)
    if started is None:
        return _invalid(request)
    invite_id, user_id = started
    response = _see("/enroll/setup")
    enroll_session.start(response, settings, invite_id=invite_id, user_id=user_id)
    try:
        await run_in_threadpool(registration.generate, db, settings, user_id)
    except DomainError as error:
        refused = _message(request, "Can't set up a new authenticator", [str(error)], 409, "refused")
        enroll_session.end(refused, settings)
        return refused
    return response


def _live(db: Database, token: str) -> bool:
    with db.read() as store:
        return invites.live_by_token(store, token) is not None


def _consume(db: Database, settings: EnrollmentSettings, token: str) -> tuple[str, str] | None:
    with db.write() as store:
        invite = invites.live_by_token(store, token)
        if invite is None or not invites.consume(store, invite.id):
            return None
        return invite.id, invite.user_id


@router.get("/{anything:path}")
def not_a_link(anything: str, request: Request) -> Response:
    """Anything else under /enroll/ looks like a dead link, so paths can't be probed either."""
    return _invalid(request)

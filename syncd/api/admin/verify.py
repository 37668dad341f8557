"""Admin API: code verification for applications (``POST /api/v1/verify``, scope ``verify``).

The answer is ``{"result": "ALLOW"|"DENY", "reason": …}`` with three reasons only: ``ok``,
``invalid_credentials`` (unknown user, wrong or replayed code, disabled user, factor off or locked — the
same body and the same work for all, so nothing can be enumerated) and ``policy_denied`` (only after a good
code). The finer reason goes to ``request.state.verification`` (for the metrics middleware) and to the log.
The decision runs in the thread pool (argon2 and HMAC work off the event loop) — the request's only
thread-pool hop: the API key is taken from the auth cache on the event loop. Refusals are paced: a DENY
is answered no sooner than the median time of the recent full code checks (:class:`Pacer`), so an unknown
user (one read) takes as long as a wrong code (reads, a failure count, a committed write). The wait is an
``asyncio.sleep``, which holds no thread. See docs/adr/0054-verification.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import threading
import time
from collections import deque
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from syncd.api.admin.auth import Caller, Scope, require
from syncd.api.admin.schemas import ERRORS, storable
from syncd.errors import NotFoundError
from syncd.store import verification
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.verification import Attempt, Detail, Factor, Reason, Result, Verdict

router = APIRouter(tags=["verify"])
RESPONSES: dict[int | str, dict[str, Any]] = {code: dict(spec) for code, spec in ERRORS.items()}
log = logging.getLogger("syncd.api.verify")


FULL_CHECKS = frozenset(
    {Detail.OK, Detail.WRONG_CODE, Detail.LOCKED_NOW, Detail.REPLAY, Detail.POLICY_DENIED}
)
"""Outcomes for which a code was checked against a stored authenticator and the result written."""


class Pacer:
    """The time a refusal must take: the median of the last ``WINDOW`` full checks (capped at ``CAP``).

    Before any full check was seen the floor is zero (a fresh process answers its first refusals at their
    own speed; the first full checks set the floor)."""

    WINDOW = 64
    CAP = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recent: deque[float] = deque(maxlen=self.WINDOW)

    def observe(self, seconds: float) -> None:
        with self._lock:
            self._recent.append(seconds)

    def floor(self) -> float:
        with self._lock:
            if not self._recent:
                return 0.0
            return min(statistics.median(self._recent), self.CAP)


def _pacer(request: Request) -> Pacer:
    state = request.app.state
    pacer = getattr(state, "verify_pacer", None)
    if pacer is None:
        pacer = state.verify_pacer = Pacer()
    return pacer


Text = Annotated[str, AfterValidator(storable)]


class VerifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Text = Field(min_length=1, max_length=256, description="The user's id or username (any case).")
    application: Text = Field(min_length=1, max_length=128, description="The application asking.")
    factor: Factor
    code: Text = Field(min_length=1, max_length=64, description="The code the user typed.")
    clientIp: Text | None = Field(
        default=None, max_length=64, description="The user's address, for network conditions of policies."
    )


class VerifyResponse(BaseModel):
    result: Result
    reason: Reason


def _write_lock(request: Request) -> contextlib.AbstractContextManager[object]:
    """SQLite: this process's verifications queue on a mutex, not in SQLite's busy handler (which polls
    with sleeps of up to 100 ms; see docs/adr/0033). PostgreSQL: no lock (row locks are enough)."""
    db: Database = request.app.state.db
    if not db.is_sqlite:
        return contextlib.nullcontext()
    state = request.app.state
    lock = getattr(state, "verify_write_lock", None)
    if lock is None:
        lock = state.verify_write_lock = threading.Lock()
    return lock


def _decide(
    request: Request,
    attempt: Attempt,
    settings: EnrollmentSettings,
    lock: contextlib.AbstractContextManager[object],
) -> tuple[Verdict, float]:
    with lock:
        started = time.perf_counter()
        with request.app.state.db.write() as session:
            verdict = verification.verify(session, attempt, settings)
        return verdict, time.perf_counter() - started


@router.post("/verify", response_model=VerifyResponse, responses=RESPONSES)
async def verify(
    body: VerifyRequest,
    request: Request,
    caller: Annotated[Caller, Depends(require(Scope.VERIFY))],
) -> VerifyResponse:
    """Check a user's code for an application: user status, org and user factor, lockout, policy, replay."""
    settings: EnrollmentSettings | None = request.app.state.enrollment
    if settings is None:
        raise NotFoundError("enrollment is not configured")
    attempt = Attempt(
        user=body.user,
        application=body.application,
        factor=body.factor,
        code=body.code,
        client_ip=body.clientIp,
    )
    pacer = _pacer(request)
    lock = _write_lock(request)  # made here, on the event loop: one lock per app, no race
    verdict, took = await run_in_threadpool(_decide, request, attempt, settings, lock)
    if verdict.detail in FULL_CHECKS:
        pacer.observe(took)
    if verdict.result is Result.DENY:
        await asyncio.sleep(max(0.0, pacer.floor() - took))
    request.state.verification = verdict.detail.value
    if verdict.result is Result.DENY:
        log.info(
            "verification denied",
            extra={
                "client": caller.name,
                "user_id": verdict.user_id,
                "application": body.application,
                "factor": body.factor.value,
                "detail": verdict.detail.value,
                "policy_id": verdict.policy_id,
            },
        )
    return VerifyResponse(result=verdict.result, reason=verdict.reason)

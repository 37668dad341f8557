"""TOTP registration as the API and the pages use it: one unit of work per call, outcomes turned into errors
after the commit (so a wrong code's failure count is kept)."""

from __future__ import annotations

from syncd.errors import CodeRejectedError, ExpiredError, FactorLockedError, NotFoundError
from syncd.store import registrations
from syncd.store.db import Database
from syncd.store.enrollment import EnrollmentSettings
from syncd.store.registrations import Challenge, Outcome

MESSAGES = {
    Outcome.WRONG: "that code is not right; check the time on your phone and try the newest code",
    Outcome.REPLAY: "that code was already used; wait for the next one",
    Outcome.LOCKED: "too many wrong codes: this factor is locked; ask your administrator to unlock it",
    Outcome.EXPIRED: "the secret expired before it was confirmed; generate a new one",
    Outcome.NOTHING: "nothing to confirm: generate a secret first",
}


def raise_for(outcome: Outcome) -> None:
    """Turn a refused code check into the error the API maps to a status."""
    if outcome is Outcome.ACCEPTED:
        return
    message = MESSAGES[outcome]
    if outcome is Outcome.LOCKED:
        raise FactorLockedError(message)
    if outcome is Outcome.EXPIRED:
        raise ExpiredError(message)
    if outcome is Outcome.NOTHING:
        raise NotFoundError(message)
    raise CodeRejectedError(message)


def generate(db: Database, settings: EnrollmentSettings, user_id: str) -> Challenge:
    with db.write() as session:
        return registrations.generate(session, user_id, settings)


def pending(db: Database, settings: EnrollmentSettings, user_id: str) -> Challenge | None:
    with db.read() as session:
        return registrations.pending_secret(session, user_id, settings)


def verify(db: Database, settings: EnrollmentSettings, user_id: str, code: str) -> Outcome:
    with db.write() as session:
        return registrations.verify(session, user_id, code, settings)


def status(db: Database, user_id: str) -> str:
    with db.read() as session:
        return registrations.status(session, user_id)


def delete_self(db: Database, settings: EnrollmentSettings, user_id: str, code: str) -> Outcome:
    with db.write() as session:
        return registrations.unregister_self(session, user_id, code, settings)

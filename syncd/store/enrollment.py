"""Enrollment settings as the store needs them, and how they reach a sync's unit of work.

:class:`EnrollmentSettings` is built once from the config and the derived keys. The sync engine builds its
units of work without knowing about enrollment, so the daemon and the CLI attach the settings to the
:class:`~syncd.store.db.Database` (:func:`attach`); every write session then carries them in
``Session.info`` and :func:`of` reads them back (docs/adr/0020-enrollment-outbox-and-layers.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from syncd.config.models import Config
from syncd.domain.otp import TotpSettings
from syncd.store.db import Database
from syncd.store.keys import Keys

INFO_KEY = "syncd.enrollment"


@dataclass(frozen=True, slots=True)
class EnrollmentSettings:
    """Everything invites, registrations and the relay need from the config (and the keys)."""

    keys: Keys
    base_url: str
    mail_host: str  # the right-hand side of Message-IDs
    invite_sources: frozenset[str]
    link_ttl: timedelta
    reminders: tuple[timedelta, ...]
    max_invites_per_day: int
    session_ttl: timedelta
    challenge_ttl: timedelta
    totp: TotpSettings
    max_failures: int

    @classmethod
    def from_config(cls, config: Config, keys: Keys) -> EnrollmentSettings:
        totp = config.factors.totp
        return cls(
            keys=keys,
            base_url=config.org.base_url,
            mail_host=urlsplit(config.org.base_url).hostname or "localhost",
            invite_sources=frozenset(s.name for s in config.sources if s.invite_new_users),
            link_ttl=config.enrollment.link_ttl,
            reminders=tuple(sorted(config.enrollment.reminders)),
            max_invites_per_day=config.enrollment.max_invites_per_day,
            session_ttl=config.enrollment.session_ttl,
            challenge_ttl=config.enrollment.challenge_ttl,
            totp=TotpSettings(
                issuer=totp.issuer or config.org.name,
                digits=totp.digits,
                period=totp.period,
                algorithm=totp.algorithm,
                window=totp.window,
            ),
            max_failures=totp.max_failures,
        )

    def link(self, token: str) -> str:
        """The enrollment page of a link token (always on the configured base URL)."""
        return f"{self.base_url}/enroll/{token}"


def attach(db: Database, settings: EnrollmentSettings) -> None:
    """Make every write unit of work of ``db`` carry ``settings`` (for the sync's invite hook)."""
    db.session_info[INFO_KEY] = settings


def of(session: Session) -> EnrollmentSettings | None:
    """The settings attached to this session's database, if any."""
    settings = session.info.get(INFO_KEY)
    return settings if isinstance(settings, EnrollmentSettings) else None

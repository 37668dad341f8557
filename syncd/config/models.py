"""The root config model and its sections (everything but the sources, which are in ``sources.py``)."""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from syncd.config.secrets import SecretRef
from syncd.config.sources import Source, Strict
from syncd.config.types import ConfigPath, Duration


class Org(Strict):
    """Who runs this service; shown in mails and pages (never taken from a request's Host header)."""

    name: str = Field(min_length=1)
    """Organisation name, e.g. ``Example Corp``."""
    base_url: str
    """Public base URL of syncd's pages, e.g. ``https://mfa.example.com``."""
    support_email: str | None = None
    """Contact shown to users who need help."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"must be an http(s) URL such as https://mfa.example.com, got {value!r}")
        return value.rstrip("/")


class Database(Strict):
    """Where syncd stores everything."""

    url: str = "sqlite:////var/lib/syncd/syncd.db"
    """SQLAlchemy URL: ``sqlite:////abs/path.db`` (relative paths resolve against this file's directory) or
    ``postgresql+psycopg://user@host/db`` (password in ``password``, not in the URL)."""
    password: SecretRef | None = None
    """PostgreSQL password (kept out of the URL)."""
    busy_timeout_ms: int = Field(default=30_000, ge=1000, le=600_000)
    """SQLite: how long a writer waits for the lock."""
    synchronous: Literal["NORMAL", "FULL"] = "FULL"
    """SQLite: FULL survives power loss; NORMAL only process crashes (faster)."""
    pool_size: int = Field(default=5, ge=1, le=100)
    """PostgreSQL: connections kept open per process, and as many more for SCIM ``userName`` lookups
    (made on the event loop apart from the pool, docs/adr/0033): up to twice this many per process."""

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str, info: ValidationInfo) -> str:
        sqlite = re.match(r"^sqlite(\+pysqlite)?:///(?!/)(.+)$", value)
        base = (info.context or {}).get("base_dir")
        if sqlite and base is not None and sqlite.group(2) != ":memory:":
            return f"sqlite:///{(Path(base) / sqlite.group(2)).resolve()}"
        if not re.match(r"^(sqlite|postgresql(\+psycopg)?)://", value):
            raise ValueError(
                f"must start with sqlite:// or postgresql+psycopg://, got {value.split(':', maxsplit=1)[0]!r}"
            )
        if re.match(r"^postgresql[^:]*://[^/@]*:[^/@]*@", value):
            raise ValueError("put the password in database.password, not in the URL")
        return value


class Secrets(Strict):
    """Keys that protect what syncd stores."""

    seed_key: SecretRef | None = None
    """Key that encrypts authenticator seeds at rest and derives enrollment-link and session keys: at least
    32 characters from a random generator (e.g. ``openssl rand -base64 32``). Required by ``syncd run`` and
    ``syncd invite``; changing it voids stored seeds and outstanding links (docs/adr/0021)."""


class Limit(Strict):
    """A count and a percentage; a run exceeding either is held for approval."""

    count: int = Field(ge=0)
    """Most objects one run may change this way."""
    percent: float = Field(gt=0, le=100)
    """Most objects one run may change this way, as a percentage of what the source had."""


class Sync(Strict):
    """Safety limits applied to every run of every source."""

    max_disable: Limit = Field(default_factory=lambda: Limit(count=500, percent=20))
    """Users disabled or deleted by one run."""
    max_membership_removals: Limit = Field(default_factory=lambda: Limit(count=5000, percent=20))
    """Group memberships removed by one run."""
    shrink_floor_percent: float = Field(default=50, ge=0, le=100)
    """A read with fewer users than this share of the last good run is treated as incomplete."""
    retention_days: int = Field(default=30, ge=0, le=3650)
    """Days a user deleted in its source is kept (PROVISIONING_DISABLED) before being purged."""


class Smtp(Strict):
    """The SMTP relay for outgoing mail."""

    host: str
    """Relay host name."""
    port: int = Field(default=587, ge=1, le=65535)
    """Relay port (587 submission with STARTTLS, 465 implicit TLS, 25)."""
    security: Literal["starttls", "tls", "none"] = "starttls"
    """Transport security; certificates are verified unless ``verify`` is false."""
    verify: bool = True
    """Verify the relay's certificate and host name."""
    ca_file: ConfigPath | None = None
    """PEM bundle of CAs to trust instead of the system store."""
    username: str | None = None
    """Login name, if the relay wants one."""
    password: SecretRef | None = None
    """Login password."""
    timeout: float = Field(default=30, gt=0, le=600)
    """Seconds per SMTP command."""


class MailRetry(Strict):
    """When the relay tries again after a temporary failure (4xx reply, network error, timeout)."""

    first: Duration = timedelta(minutes=1)
    """Delay before the first retry (short, for greylisting)."""
    factor: float = Field(default=4, ge=1, le=10)
    """Each further delay is this many times the previous one ..."""
    max: Duration = timedelta(hours=1)
    """... up to this delay (RFC 5321 asks for at least 30 minutes between late retries)."""
    give_up: Duration = timedelta(days=4)
    """After this much accumulated waiting the message is marked FAILED for an admin to look at."""
    jitter: float = Field(default=0.2, ge=0, le=0.5)
    """Each delay is multiplied by a random factor in ``1 ± jitter``."""


class Mail(Strict):
    """How mail leaves syncd."""

    transport: Literal["smtp", "directory", "console"] = "smtp"
    """``smtp``; ``directory`` writes .eml files to ``directory`` (demo, tests); ``console`` logs them."""
    smtp: Smtp | None = None
    """SMTP settings (transport smtp)."""
    directory: ConfigPath | None = None
    """Folder for .eml files (transport directory)."""
    from_address: str = "MFA <mfa@localhost>"
    """The From: header."""
    templates_dir: ConfigPath | None = None
    """A folder whose templates override the built-in ones (same file names, see syncd/mail/templates)."""
    retry: MailRetry = Field(default_factory=MailRetry)
    """Retry schedule after temporary failures."""
    batch_size: int = Field(default=100, ge=1, le=10_000)
    """Messages the relay claims at once (and sends over one connection)."""
    lease: Duration = timedelta(minutes=15)
    """How long a claimed message stays reserved to the relay that claimed it; a relay that dies leaves its
    messages to others after this (keep it above the 10-minute DATA timeout)."""

    @model_validator(mode="after")
    def _transport_settings(self) -> Self:
        if self.transport == "smtp" and self.smtp is None:
            raise ValueError("transport smtp needs an smtp section")
        if self.transport == "directory" and self.directory is None:
            raise ValueError("transport directory needs a directory")
        return self


class Enrollment(Strict):
    """Enrollment invitations."""

    link_ttl: Duration = timedelta(days=7)
    """How long an enrollment link works."""
    reminders: list[Duration] = Field(default_factory=lambda: [timedelta(days=2), timedelta(days=5)])
    """Reminder delays after the invite, for users still UNENROLLED."""
    max_invites_per_day: int = Field(default=5, ge=1, le=100)
    """Per-user limit on invites and reminders (mail queued in any 24 hours)."""
    session_ttl: Duration = timedelta(minutes=15)
    """How long the enrollment session started from a link lasts."""
    challenge_ttl: Duration = timedelta(minutes=10)
    """How long a generated, not yet verified TOTP secret can be confirmed."""

    @field_validator("link_ttl")
    @classmethod
    def _link_ttl(cls, value: timedelta) -> timedelta:
        if value > timedelta(days=30):
            raise ValueError("must be at most 30d (a link is a bearer credential)")
        return value

    @field_validator("session_ttl", "challenge_ttl")
    @classmethod
    def _short(cls, value: timedelta) -> timedelta:
        if value > timedelta(hours=1):
            raise ValueError("must be at most 1h")
        return value


class Totp(Strict):
    """Org-wide TOTP settings (RFC 6238)."""

    issuer: str | None = None
    """Issuer shown in authenticator apps (default: org.name)."""
    digits: Literal[6, 8] = 6
    """Code length."""
    period: int = Field(default=30, ge=15, le=120)
    """Seconds per step."""
    algorithm: Literal["SHA1", "SHA256", "SHA512"] = "SHA1"
    """HMAC algorithm (SHA1 is what most apps support)."""
    window: int = Field(default=1, ge=0, le=10)
    """Steps accepted either side of now."""
    max_failures: int = Field(default=10, ge=1, le=1000)
    """Consecutive failures before the factor is locked for the user."""


class Factors(Strict):
    """Org factor defaults."""

    totp: Totp = Field(default_factory=Totp)
    """TOTP."""


class RateLimit(Strict):
    """A token bucket per API key: ``per_second`` tokens refill it, ``burst`` is its size."""

    per_second: float = Field(ge=0, le=100_000)
    """Sustained requests per second per key; 0 turns the limit off."""
    burst: int = Field(ge=1, le=1_000_000)
    """Requests a key may send at once after being idle."""


class RateLimits(Strict):
    """Per-key limits of the admin API route classes (each replica counts on its own; docs/adr/0055)."""

    verify: RateLimit = Field(default_factory=lambda: RateLimit(per_second=1000, burst=2000))
    """``POST /api/v1/verify``."""
    mail: RateLimit = Field(default_factory=lambda: RateLimit(per_second=1, burst=10))
    """Routes that send mail: enrollment e-mails and bulk factor enrollment."""
    failed_auth: RateLimit = Field(default_factory=lambda: RateLimit(per_second=10, burst=100))
    """Per client address on those routes: answers 401 it may provoke before unknown keys are refused."""


class Api(Strict):
    """The HTTP listener (admin API, SCIM, self-service, pages, health, metrics)."""

    listen: str = "127.0.0.1:8080"
    """``host:port`` to listen on; put a TLS-terminating proxy in front for anything but loopback."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    """Largest request body accepted."""
    trusted_proxies: list[str] = Field(default_factory=list)
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/24``) of the proxies whose ``X-Forwarded-For`` and
    ``X-Forwarded-Proto`` are believed; empty: the client is the TCP peer and those headers are ignored."""
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    """Per-key rate limits of the verification and mail-sending admin routes."""

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network such as 10.0.0.0/24") from None
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"must be host:port such as 127.0.0.1:8080, got {value!r}")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class Scheduler(Strict):
    """Background jobs."""

    timezone: str = "UTC"
    """Time zone of the cron expressions."""
    mail_interval: Duration = timedelta(seconds=10)
    """How often the mail relay looks for queued mail."""
    purge: str = "30 4 * * *"
    """Cron expression for purging users past retention and expired links and codes."""


class Logging(Strict):
    """Logs go to standard error (journald under systemd)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level written."""
    format: Literal["logfmt", "json", "console"] = "logfmt"
    """One event per line: logfmt or JSON; console for humans."""


class Config(Strict):
    """The whole syncd.yaml."""

    org: Org
    """Organisation."""
    database: Database = Field(default_factory=Database)
    """Storage."""
    secrets: Secrets = Field(default_factory=Secrets)
    """Encryption keys."""
    sources: list[Source] = Field(default_factory=list)
    """Directories, SCIM clients and files users come from."""
    sync: Sync = Field(default_factory=Sync)
    """Safety limits."""
    mail: Mail = Field(default_factory=lambda: Mail(transport="console"))
    """Outgoing mail."""
    enrollment: Enrollment = Field(default_factory=Enrollment)
    """Invitations."""
    factors: Factors = Field(default_factory=Factors)
    """Factor settings."""
    api: Api = Field(default_factory=Api)
    """HTTP listener."""
    scheduler: Scheduler = Field(default_factory=Scheduler)
    """Background jobs."""
    logging: Logging = Field(default_factory=Logging)
    """Logs."""

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, value: list[Source]) -> list[Source]:
        names = [source.name for source in value]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"source names must be unique, repeated: {', '.join(duplicates)}")
        known = set(names)
        for source in value:
            unknown = [name for name in source.take_over_from if name not in known]
            if unknown:
                raise ValueError(f"source {source.name}: take_over_from names unknown source(s) {unknown}")
        return value

    def source(self, name: str) -> Source:
        """The source called ``name``; ``KeyError`` when there is none."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)

"""The one error tree of syncd.

Every error syncd raises on purpose derives from :class:`SyncdError`. Foreign errors (ldap3, SQLAlchemy,
aiosmtplib, YAML, OS) are translated at the edge that meets them (``raise ... from exc``) and mapped to
exit codes (CLI) and HTTP/SCIM responses (API) in one place each. ``exit_code`` is what the CLI returns;
``code`` is the stable machine-readable name used in API error bodies.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""

    exit_code: int = 1
    code: str = "error"


class ConfigError(SyncdError):
    """The configuration file is missing, malformed or invalid, or a required secret can't be read."""

    exit_code = 2
    code = "config_invalid"


class UsageError(SyncdError):
    """The command line asks for something that does not exist (an unknown source, user, run)."""

    exit_code = 2
    code = "usage"


class StoreError(SyncdError):
    """The database can't be reached, opened or written."""

    exit_code = 3
    code = "store_unavailable"


class SchemaMismatchError(StoreError):
    """The database schema is not the one this code expects (newer than the code, or not upgraded)."""

    code = "schema_mismatch"


class NotFoundError(SyncdError):
    """An object asked for by id does not exist (or is not visible to the caller)."""

    exit_code = 4
    code = "not_found"


class DomainError(SyncdError):
    """A lifecycle rule refuses the operation (e.g. enrolling while DEVICES_DISABLED)."""

    exit_code = 5
    code = "refused"


class SourceError(SyncdError):
    """A source could not be read completely (file rows invalid, directory unreachable, partial read)."""

    exit_code = 6
    code = "source_failed"


class SyncRefusedError(SyncdError):
    """The sync guard held a run: it would change more than the configured limits allow."""

    exit_code = 7
    code = "sync_held"


class AlreadyRunningError(SyncdError):
    """Another run of the same source (or another daemon on the same SQLite file) is in progress."""

    exit_code = 8
    code = "already_running"


class SyncInterruptedError(SourceError):
    """A run stopped between two units of work because the daemon is stopping or lost the leadership;
    everything committed so far is consistent and the next run completes it."""

    code = "sync_interrupted"


class NotLeaderError(SyncdError):
    """This replica does not hold (or no longer holds) the leader lock, so a scheduled job may not commit
    (fencing: a stale leader can't apply a sync after another replica took over)."""

    exit_code = 8
    code = "not_leader"


class RateLimitedError(SyncdError):
    """A per-user limit refuses the operation for now (e.g. too many invites in 24 hours)."""

    exit_code = 9
    code = "rate_limited"


class UnauthenticatedError(SyncdError):
    """The caller has no valid session or credential for this operation."""

    exit_code = 10
    code = "unauthenticated"


class ForbiddenError(SyncdError):
    """The caller is authenticated but its credential lacks the scope the operation needs."""

    exit_code = 10
    code = "forbidden"


class ConflictError(SyncdError):
    """The request conflicts with the current state (a duplicate name, an idempotency key reused with another
    body, an object managed by a source changed through the admin API)."""

    exit_code = 5
    code = "conflict"


class CodeRejectedError(SyncdError):
    """A one-time code was wrong, already used, or the factor is locked after too many failures."""

    exit_code = 5
    code = "invalid_code"


class FactorLockedError(CodeRejectedError):
    """Too many consecutive wrong codes: the factor is locked for this user until an admin unlocks it."""

    code = "factor_locked"


class ExpiredError(SyncdError):
    """What was asked for existed but has expired or was used (a pending secret, a session)."""

    exit_code = 4
    code = "expired"


class MailError(SyncdError):
    """Mail could not be rendered or handed to the relay."""

    code = "mail_failed"


class SmtpError(MailError):
    """The SMTP relay could not be reached or refused us."""

    code = "smtp_failed"

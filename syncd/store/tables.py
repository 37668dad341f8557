"""SQLAlchemy 2 models: the whole schema. Alembic migrations in ``store/migrations`` must match it.

Conventions: opaque random string ids (:func:`new_id`), UTC timestamps, soft deletion via ``deleted_at``,
secrets only as hashes (``*_hash``) or ciphertext (``*_enc``), statuses as strings from ``domain``.
"""

from __future__ import annotations

import enum
import secrets
from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from syncd.domain.lifecycle import DeviceState, DeviceType, UserStatus

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A URL-safe random id of 22 characters (about 128 bits) that starts with a letter or digit.

    ``token_urlsafe`` starts one id in 32 with ``-`` or ``_``; a command line such as
    ``syncd sync show -Xy…`` would take a leading ``-`` for an option, so those draws are made again.
    """
    while True:
        value = secrets.token_urlsafe(16)
        if value[0].isalnum():
            return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _enum(kind: type[enum.Enum]) -> sa.Enum:
    return sa.Enum(kind, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
    }


def _id() -> Mapped[str]:
    return mapped_column(sa.String(32), primary_key=True, default=new_id)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


def _fk(target: str, *, nullable: bool = False, ondelete: str = "CASCADE") -> Mapped[Any]:
    return mapped_column(
        sa.String(32), sa.ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True
    )


class fold_case(FunctionElement[str]):  # lower case like sa.func.lower
    """A text column with its letters folded to lower case, ordered by code point (UTF-8 bytes): the key of
    the admin listing's ``q`` prefix search (docs/adr/0051, "Text search").

    SQLite: ``col COLLATE NOCASE`` (folds ASCII only, as SQLite's ``lower()``; an index on it is a plain
    column index, which SQLAlchemy reflects, unlike ``lower(col)``). PostgreSQL: ``lower(col)`` (the
    database's LC_CTYPE: ASCII only under ``C``, every letter under a UTF-8 locale), indexed with
    ``text_pattern_ops`` and compared with ``~>=~`` / ``~<~`` (byte order whatever the collation).
    """

    type = sa.String()
    inherit_cache = True
    name = "fold_case"


@compiles(fold_case, "sqlite")
def _fold_case_sqlite(element: fold_case, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"{compiler.process(column, **kw)} COLLATE NOCASE"


@compiles(fold_case, "postgresql")
def _fold_case_postgresql(element: fold_case, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"lower({compiler.process(column, **kw)})"


PREFIX_COLUMNS = ("username", "email", "given_name", "family_name", "display_name")
"""Columns the admin listing's ``q`` matches by prefix, each with an ``ix_users_<column>_prefix`` index."""


def _prefix_index(column: str) -> sa.Index:
    label = f"{column}_folded"
    return sa.Index(
        f"ix_users_{column}_prefix",
        fold_case(sa.column(column)).label(label),
        postgresql_ops={label: "text_pattern_ops"},
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        sa.Index(
            "uq_users_username_key_live",
            "username_key",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        # Part A (issue 6, docs/adr/0051): admin user listing by status / source in username order.
        *(
            sa.Index(
                f"ix_users_{column}_live",
                column,
                "username_key",
                "id",
                sqlite_where=sa.text("deleted_at IS NULL"),
                postgresql_where=sa.text("deleted_at IS NULL"),
            )
            for column in ("status", "managed_by")
        ),
        # Part A, text search (docs/adr/0051): q is a case-insensitive prefix of these columns.
        *(_prefix_index(column) for column in PREFIX_COLUMNS),
    )

    id: Mapped[str] = _id()
    username: Mapped[str] = mapped_column(sa.String(256))
    username_key: Mapped[str] = mapped_column(sa.String(256), index=True)  # casefolded, for lookups
    email: Mapped[str | None] = mapped_column(sa.String(320), index=True)
    given_name: Mapped[str | None] = mapped_column(sa.String(256))
    family_name: Mapped[str | None] = mapped_column(sa.String(256))
    display_name: Mapped[str | None] = mapped_column(sa.String(512))
    phone: Mapped[str | None] = mapped_column(sa.String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[UserStatus] = mapped_column(_enum(UserStatus), index=True, default=UserStatus.UNENROLLED)
    provisioned: Mapped[bool] = mapped_column(default=True)
    managed_by: Mapped[str | None] = mapped_column(sa.String(64), index=True)  # source name; None = manual
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)  # soft deletion (purge after retention)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (
        sa.Index(
            "uq_groups_name_key_live",
            "name_key",
            unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(sa.String(256))
    name_key: Mapped[str] = mapped_column(sa.String(256), index=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    attributes: Mapped[dict[str, Any] | None] = mapped_column()  # SCIM: externalId and other attributes
    managed_by: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    deleted_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class GroupMember(Base):
    """Direct user membership; effective membership adds :class:`GroupNesting` transitively."""

    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    managed_by: Mapped[str | None] = mapped_column(sa.String(64))
    display: Mapped[str | None] = mapped_column(sa.String(512))  # SCIM members.display as the client sent it


class GroupNesting(Base):
    """``child`` is a member of ``parent``. Cycles are allowed in data; readers guard against them."""

    __tablename__ = "group_nesting"

    parent_id: Mapped[str] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    child_id: Mapped[str] = mapped_column(
        sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    managed_by: Mapped[str | None] = mapped_column(sa.String(64))
    display: Mapped[str | None] = mapped_column(sa.String(512))  # SCIM members.display as the client sent it


class SourceLink(Base):
    """Ties a source's immutable anchor to a user or group. Never keyed by DN or username."""

    __tablename__ = "source_links"
    __table_args__ = (sa.Index("ix_source_links_object", "object_type", "object_id"),)

    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    object_type: Mapped[str] = mapped_column(sa.String(8), primary_key=True)  # "user" | "group"
    anchor: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    object_id: Mapped[str] = mapped_column(sa.String(32))
    dn: Mapped[str | None] = mapped_column(sa.Text)
    fingerprint: Mapped[str | None] = mapped_column(sa.String(64))  # hash of the last-applied source record
    in_scope: Mapped[bool] = mapped_column(default=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
    type: Mapped[DeviceType] = mapped_column(_enum(DeviceType))
    state: Mapped[DeviceState] = mapped_column(_enum(DeviceState), default=DeviceState.PENDING)
    name: Mapped[str | None] = mapped_column(sa.String(128))
    secret_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # encrypted seed (TOTP)
    hardware_token_id: Mapped[str | None] = _fk("hardware_tokens.id", nullable=True, ondelete="SET NULL")
    last_step: Mapped[int | None] = mapped_column(sa.BigInteger)  # last accepted TOTP step (replay guard)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()


class HardwareToken(Base):
    __tablename__ = "hardware_tokens"

    id: Mapped[str] = _id()
    serial: Mapped[str] = mapped_column(sa.String(128), unique=True)
    otp_type: Mapped[str] = mapped_column(sa.String(8))  # "TOTP" | "HOTP"
    seed_enc: Mapped[bytes] = mapped_column(sa.LargeBinary)
    digits: Mapped[int] = mapped_column(default=6)
    period: Mapped[int] = mapped_column(default=30)
    algorithm: Mapped[str] = mapped_column(sa.String(8), default="SHA1")
    counter: Mapped[int] = mapped_column(sa.BigInteger, default=0)  # HOTP: next expected counter
    drift: Mapped[int] = mapped_column(default=0)  # TOTP: steps of clock drift learned on resync
    user_id: Mapped[str | None] = mapped_column(
        sa.ForeignKey("users.id", ondelete="SET NULL"),
        unique=True,  # one hardware token per user
    )
    imported_at: Mapped[datetime] = _created()


class BypassCode(Base):
    __tablename__ = "bypass_codes"

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
    code_hash: Mapped[str] = mapped_column(sa.String(255))  # argon2id
    expires_at: Mapped[datetime | None] = mapped_column()
    uses_left: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    # Part B (issue 6, docs/adr/0052): 4-bit lookup tag so a check verifies ~one argon2 hash, not all.
    lookup_tag: Mapped[str | None] = mapped_column(sa.String(2))


class Policy(Base):
    __tablename__ = "policies"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    description: Mapped[str | None] = mapped_column(sa.Text)
    priority: Mapped[int] = mapped_column(default=100)
    rules: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PolicyAssignment(Base):
    __tablename__ = "policy_assignments"
    __table_args__ = (
        sa.CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="one_target"),
        sa.UniqueConstraint("policy_id", "user_id", "group_id"),
    )

    id: Mapped[str] = _id()
    policy_id: Mapped[str] = _fk("policies.id")
    user_id: Mapped[str | None] = _fk("users.id", nullable=True)
    group_id: Mapped[str | None] = _fk("groups.id", nullable=True)


class OrgFactor(Base):
    __tablename__ = "org_factors"

    id: Mapped[str] = _id()
    factor_type: Mapped[str] = mapped_column(sa.String(32), unique=True)
    provider: Mapped[str] = mapped_column(sa.String(64), default="SYNCD")
    status: Mapped[str] = mapped_column(sa.String(16), default="ACTIVE")  # ACTIVE | INACTIVE
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UserFactor(Base):
    """Per-user, per-factor state: enablement, failure counter and lock, last authentication."""

    __tablename__ = "user_factors"

    user_id: Mapped[str] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    factor_type: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    failures: Mapped[int] = mapped_column(default=0)
    locked_at: Mapped[datetime | None] = mapped_column()
    last_auth_status: Mapped[str | None] = mapped_column(sa.String(32))
    last_auth_at: Mapped[datetime | None] = mapped_column()


class Registration(Base):
    """A self-service registration in progress (CHALLENGE) or done (REGISTERED)."""

    __tablename__ = "registrations"

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
    factor_type: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16))
    secret_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    device_id: Mapped[str | None] = _fk("devices.id", nullable=True, ondelete="SET NULL")
    expires_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = _created()


class EnrollmentInvite(Base):
    __tablename__ = "enrollment_invites"

    id: Mapped[str] = _id()
    user_id: Mapped[str] = _fk("users.id")
    token_hash: Mapped[str] = mapped_column(sa.String(128), unique=True)
    generation: Mapped[int] = mapped_column(default=1)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()
    created_at: Mapped[datetime] = _created()
    reminders_sent: Mapped[int] = mapped_column(default=0, server_default="0")  # reminders queued so far


class OutboxMessage(Base):
    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[str] = _id()
    user_id: Mapped[str | None] = _fk("users.id", nullable=True, ondelete="SET NULL")
    purpose: Mapped[str] = mapped_column(sa.String(64))
    dedup_key: Mapped[str] = mapped_column(sa.String(255), unique=True)  # (user, purpose, link generation)
    message_id: Mapped[str] = mapped_column(sa.String(255))
    to_address: Mapped[str] = mapped_column(sa.String(320))
    # Template mail keeps only its context (ids, no secrets) and is rendered by the relay when it is sent;
    # the rendered subject is stored then, the bodies never (they may hold an enrollment link).
    context: Mapped[dict[str, Any] | None] = mapped_column()
    subject: Mapped[str | None] = mapped_column(sa.String(512))
    body_text: Mapped[str | None] = mapped_column(sa.Text)
    body_html: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="PENDING")  # PENDING SENDING SENT FAILED
    # attempts is bumped when a relay claims the row and fences its later mark (WHERE attempts = claimed)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = _created()
    sent_at: Mapped[datetime | None] = mapped_column()


class SyncRun(Base):
    __tablename__ = "sync_runs"
    __table_args__ = (
        # At most one running run per source: the run row is the lock (SQLite and PostgreSQL alike).
        sa.Index(
            "uq_sync_runs_one_running",
            "source",
            unique=True,
            sqlite_where=sa.text("status = 'running'"),
            postgresql_where=sa.text("status = 'running'"),
        ),
    )

    id: Mapped[str] = _id()
    source: Mapped[str] = mapped_column(sa.String(64), index=True)
    mode: Mapped[str] = mapped_column(sa.String(16))  # full | incremental
    dry_run: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(16))  # running ok failed held incomplete approved rejected
    owner: Mapped[str | None] = mapped_column(sa.String(128))  # host:pid of the process running it
    reason: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column()
    created: Mapped[int] = mapped_column(default=0)
    updated: Mapped[int] = mapped_column(default=0)
    disabled: Mapped[int] = mapped_column(default=0)
    reenabled: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    errors: Mapped[int] = mapped_column(default=0)
    source_users: Mapped[int | None] = mapped_column()  # users read, for the shrink floor
    plan: Mapped[list[Any] | None] = mapped_column()  # kept for held and dry runs
    decided_by: Mapped[str | None] = mapped_column(sa.String(128))  # approve/reject actor


class SyncCursor(Base):
    __tablename__ = "sync_cursors"

    source: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))
    value: Mapped[str | None] = mapped_column(sa.Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ApiClient(Base):
    __tablename__ = "api_clients"

    id: Mapped[str] = _id()
    name: Mapped[str] = mapped_column(sa.String(128))
    key_prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)  # shown in lists, finds the hash
    key_hash: Mapped[str] = mapped_column(sa.String(128))
    scopes: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = (sa.Index("ix_audit_log_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(sa.String(128))
    action: Mapped[str] = mapped_column(sa.String(64))
    target_type: Mapped[str] = mapped_column(sa.String(32))
    target_id: Mapped[str] = mapped_column(sa.String(64))
    old: Mapped[str | None] = mapped_column(sa.String(64))
    new: Mapped[str | None] = mapped_column(sa.String(64))
    reason: Mapped[str | None] = mapped_column(sa.Text)
    run_id: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    details: Mapped[dict[str, Any] | None] = mapped_column()


class IdempotencyKey(Base):
    """A POST that creates secrets or sends mail, remembered by its ``Idempotency-Key`` for a day.

    A retry with the same key and body gets the first response again (sealed: it may hold bypass codes);
    the same key with another body is a conflict. Rows are purged after ``IDEMPOTENCY_TTL``.
    """

    __tablename__ = "idempotency_keys"

    client_id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    request_hash: Mapped[str] = mapped_column(sa.String(64))  # SHA-256 of method, path and body
    status_code: Mapped[int | None] = mapped_column()  # None while the first request is in flight
    response_enc: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # sealed JSON body
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

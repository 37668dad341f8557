"""Config models of the sources: LDAP/AD directories, SCIM clients, CSV/LDIF files."""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syncd.config.secrets import SecretRef
from syncd.config.types import ConfigPath, Duration

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Schedule(Strict):
    """When the daemon syncs this source. Either may be left out."""

    full: str | None = None
    """Cron expression (5 fields, the scheduler's time zone) for full reconciling runs, e.g. ``0 3 * * *``."""
    incremental: Duration | None = None
    """Interval between incremental runs, e.g. ``5m``."""
    on_start: bool = True
    """Run a sync of this source when the daemon starts."""

    @field_validator("full")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) != 5:
            raise ValueError(f"must be a 5-field cron expression such as '0 3 * * *', got {value!r}")
        return value


class SourceBase(Strict):
    """Settings every source has."""

    name: str
    """Unique name (lowercase letters, digits, ``-``, ``_``); audit actors read ``ldap:NAME``."""
    enabled: bool = True
    """A disabled source is neither scheduled nor accepted (SCIM answers 401)."""
    invite_new_users: bool = False
    """Send the enrollment invite to users this source creates."""
    take_over_from: list[str] = Field(default_factory=list)
    """Names of other sources whose users this source may take over when the username matches."""
    schedule: Schedule = Field(default_factory=Schedule)
    """When to sync (pull sources only)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SOURCE_NAME.match(value):
            raise ValueError(f"must be lowercase letters, digits, '-' or '_' (max 63), got {value!r}")
        return value


class LdapTls(Strict):
    """TLS for ``ldaps://`` and StartTLS. Certificate verification is on unless turned off here."""

    verify: bool = True
    """Verify the server certificate and host name. Turn off only for a lab."""
    ca_file: ConfigPath | None = None
    """PEM bundle of CAs to trust instead of the system store."""
    client_cert_file: ConfigPath | None = None
    """Client certificate (PEM) for SASL EXTERNAL."""
    client_key_file: ConfigPath | None = None
    """Key of the client certificate (PEM)."""


class LdapBind(Strict):
    """How syncd authenticates to the directory."""

    method: Literal["simple", "sasl_external"] = "simple"
    """``simple`` (DN + password) or ``sasl_external`` (the TLS client certificate)."""
    dn: str | None = None
    """Bind DN of the read-only service account (simple bind)."""
    password: SecretRef | None = None
    """Bind password (simple bind)."""

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.method == "simple" and (self.dn is None or self.password is None):
            raise ValueError("simple bind needs dn and password")
        return self


class LdapSearch(Strict):
    """One subtree to read."""

    base: str
    """Base DN."""
    filter: str | None = None
    """LDAP filter (RFC 4515); the flavour's default when left out."""
    scope: Literal["subtree", "one"] = "subtree"
    """Search scope below the base."""


class LdapTimeouts(Strict):
    """Time limits on every LDAP call, in seconds."""

    connect: float = Field(default=10, gt=0, le=300)
    """TCP connect (and TLS handshake) time limit."""
    receive: float = Field(default=60, gt=0, le=3600)
    """Time limit waiting for any one response."""
    search: int = Field(default=300, gt=0, le=86400)
    """Server-side time limit of a search (sent to the server)."""


class LdapAttributes(Strict):
    """Which directory attribute feeds which user field (flavour defaults when left out)."""

    username: str | None = None
    """e.g. ``uid`` or ``sAMAccountName``."""
    email: str | None = None
    """e.g. ``mail``."""
    given_name: str | None = None
    """e.g. ``givenName``."""
    family_name: str | None = None
    """e.g. ``sn``."""
    display_name: str | None = None
    """e.g. ``displayName``."""
    phone: str | None = None
    """e.g. ``telephoneNumber`` or ``mobile``."""
    extra: list[str] = Field(default_factory=list)
    """More attributes to keep with the user (returned by the API)."""


class LdapSource(SourceBase):
    """An LDAP directory or Active Directory, pulled on a schedule."""

    kind: Literal["ldap"]
    servers: list[str] = Field(min_length=1)
    """Server URLs in failover order: ``ldaps://host[:port]``, or ``ldap://host[:port]`` with StartTLS."""
    start_tls: bool = False
    """Upgrade ``ldap://`` connections with StartTLS."""
    tls: LdapTls = Field(default_factory=LdapTls)
    """Certificate checking."""
    bind: LdapBind
    """Credentials."""
    flavour: Literal["openldap", "389ds", "freeipa", "active_directory"] = "openldap"
    """Server type: decides the anchor attribute, the disabled flag and the change feed."""
    anchor_attribute: str | None = None
    """Immutable id attribute; default from the flavour (entryUUID, nsUniqueId, ipaUniqueID, objectGUID)."""
    users: LdapSearch
    """Where the users are."""
    groups: LdapSearch | None = None
    """Where the groups are (leave out to import no groups)."""
    attributes: LdapAttributes = Field(default_factory=LdapAttributes)
    """Attribute mapping."""
    disabled_filter: str | None = None
    """Filter matching disabled accounts (default from the flavour, e.g. ``(pwdAccountLockedTime=*)``)."""
    page_size: int = Field(default=500, ge=1, le=1000)
    """RFC 2696 page size."""
    timeouts: LdapTimeouts = Field(default_factory=LdapTimeouts)
    """Time limits."""

    @field_validator("servers")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^ldaps?://[^/\s]+/?$", url):
                raise ValueError(f"must be ldap://host[:port] or ldaps://host[:port], got {url!r}")
        return value


class ScimSource(SourceBase):
    """A SCIM 2.0 client (Okta, Entra ID, …) that pushes users and groups to ``/scim/v2``."""

    kind: Literal["scim"]
    tokens: list[SecretRef] = Field(min_length=1)
    """Bearer tokens this client may use (two during a rotation)."""


class FileSource(SourceBase):
    """CSV or LDIF exports of users and groups, read on a schedule (demo, air-gapped sites)."""

    kind: Literal["file"]
    format: Literal["csv", "ldif"]
    """``csv``: ``users`` and optional ``groups`` CSV files; ``ldif``: one LDIF file in ``users``."""
    users: ConfigPath
    """The users CSV, or the LDIF file with users and groups."""
    groups: ConfigPath | None = None
    """The groups CSV (csv format only)."""
    anchor_attribute: str = "entryUUID"
    """LDIF only: the attribute used as the immutable anchor."""
    disabled_attribute: str | None = "pwdAccountLockedTime"
    """LDIF only: an entry carrying this attribute is disabled."""

    @model_validator(mode="after")
    def _groups_only_csv(self) -> Self:
        if self.format == "ldif" and self.groups is not None:
            raise ValueError("groups is for the csv format; an LDIF file holds users and groups together")
        return self


Source = Annotated[LdapSource | ScimSource | FileSource, Field(discriminator="kind")]

"""What differs between directory servers: anchors, filters, attribute names, disabled flags, change feeds.

:func:`settings_for` merges a flavour's defaults with what the admin configured into one
:class:`Settings` the readers use; nothing else in syncd looks at ``source.flavour``.

| flavour | anchor | users | disabled | change feed |
|---|---|---|---|---|
| openldap | entryUUID | inetOrgPerson | ``pwdAccountLockedTime`` present | RFC 4533 syncrepl |
| 389ds | nsUniqueId | inetOrgPerson | ``nsAccountLock: true`` | modifyTimestamp + anchor set |
| freeipa | ipaUniqueID | person | ``nsAccountLock: true`` | modifyTimestamp + anchor set |
| active_directory | objectGUID | person users | ``userAccountControl`` bit 2 | uSNChanged + invocationId |
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from syncd.config.sources import LdapSource

Feed = Literal["syncrepl", "usn", "timestamp"]
FIELDS = ("username", "email", "given_name", "family_name", "display_name", "phone")
BINARY_GUIDS = frozenset({"objectguid", "ms-ds-consistencyguid"})
UAC_ACCOUNTDISABLE = 0x2
# LDAP_SERVER_DOMAIN_SCOPE_OID: AD answers a subtree search of the domain with continuation references to
# the partitions below it (Configuration, DomainDnsZones…), which would make every read look incomplete.
# This control asks it not to (users and groups never live there); other referrals still count.
DOMAIN_SCOPE = ("1.2.840.113556.1.4.1339", False, None)


@dataclass(frozen=True, slots=True)
class Flavour:
    """One server type's defaults."""

    anchor: str
    user_filter: str
    group_filter: str
    mapping: Mapping[str, str]
    disabled_attribute: str
    feed: Feed
    group_name: str = "cn"


_INET = {
    "username": "uid",
    "email": "mail",
    "given_name": "givenName",
    "family_name": "sn",
    "display_name": "displayName",
    "phone": "telephoneNumber",
}
_GROUPS = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"

FLAVOURS: dict[str, Flavour] = {
    "openldap": Flavour(
        "entryUUID", "(objectClass=inetOrgPerson)", _GROUPS, _INET, "pwdAccountLockedTime", "syncrepl"
    ),
    "389ds": Flavour(
        "nsUniqueId", "(objectClass=inetOrgPerson)", _GROUPS, _INET, "nsAccountLock", "timestamp"
    ),
    "freeipa": Flavour(
        "ipaUniqueID",
        "(objectClass=person)",
        "(|(objectClass=groupOfNames)(objectClass=ipaUserGroup))",
        _INET,
        "nsAccountLock",
        "timestamp",
    ),
    "active_directory": Flavour(
        "objectGUID",
        "(&(objectCategory=person)(objectClass=user))",
        "(objectClass=group)",
        {**_INET, "username": "sAMAccountName"},
        "userAccountControl",
        "usn",
    ),
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the LDAP readers need to know about one source, defaults filled in.

    Attribute names are kept as configured (servers answer in their own case); ``keys`` are lowercase.
    """

    name: str
    flavour: str
    anchor: str
    user_filter: str
    group_filter: str
    mapping: Mapping[str, str]
    extra: tuple[str, ...]
    disabled_attribute: str | None
    disabled_filter: str | None
    group_name: str
    feed: Feed
    search_controls: tuple[tuple[str, bool, bytes | None], ...] = ()

    @property
    def user_attributes(self) -> list[str]:
        """The attributes a user search asks for."""
        wanted = [self.anchor, *self.mapping.values(), *self.extra]
        if self.disabled_attribute:
            wanted.append(self.disabled_attribute)
        seen: dict[str, str] = {}
        for name in wanted:
            seen.setdefault(name.lower(), name)
        return list(seen.values())

    @property
    def group_attributes(self) -> list[str]:
        return [self.anchor, self.group_name, "description", "member", "uniqueMember", "memberUid"]

    def is_disabled(self, attributes: Mapping[str, list[bytes]]) -> bool:
        """The flavour's own disabled flag, read from a user's (lowercase-keyed) attributes."""
        if self.disabled_attribute is None:
            return False
        values = attributes.get(self.disabled_attribute.lower())
        if not values:
            return False
        if self.flavour == "active_directory":
            try:
                return bool(int(values[0]) & UAC_ACCOUNTDISABLE)
            except ValueError:
                return False
        if self.disabled_attribute.lower() == "nsaccountlock":
            return values[0].strip().lower() == b"true"
        return True  # presence, e.g. pwdAccountLockedTime


def settings_for(source: LdapSource) -> Settings:
    """The flavour's defaults overridden by the source's configuration."""
    flavour = FLAVOURS[source.flavour]
    configured = source.attributes
    mapping = {name: getattr(configured, name) or flavour.mapping[name] for name in FIELDS}
    anchor = source.anchor_attribute or flavour.anchor
    feed: Feed = flavour.feed
    if feed == "syncrepl" and anchor.lower() != "entryuuid":
        feed = "timestamp"  # RFC 4533 names entries by entryUUID only
    return Settings(
        name=source.name,
        flavour=source.flavour,
        anchor=anchor,
        user_filter=source.users.filter or flavour.user_filter,
        group_filter=(source.groups.filter if source.groups else None) or flavour.group_filter,
        mapping=mapping,
        extra=tuple(configured.extra),
        disabled_attribute=None if source.disabled_filter else flavour.disabled_attribute,
        disabled_filter=source.disabled_filter,
        group_name=flavour.group_name,
        feed=feed,
        search_controls=(DOMAIN_SCOPE,) if source.flavour == "active_directory" else (),
    )


def anchor_text(attribute: str, raw: bytes) -> str:
    """The anchor as stored: GUIDs (AD ``objectGUID``, little-endian) as UUID text, the rest as text."""
    if attribute.lower() in BINARY_GUIDS:
        if len(raw) != 16:
            raise ValueError(f"{attribute} of {len(raw)} bytes, expected 16")
        return str(uuid.UUID(bytes_le=raw))
    text = value_text(raw)
    return text.lower() if attribute.lower() == "entryuuid" else text


def guid_filter_value(anchor: str) -> str:
    """An objectGUID anchor as an escaped binary filter value (``\\1a\\b5…``, RFC 4515)."""
    raw = uuid.UUID(anchor).bytes_le
    return "".join(f"\\{byte:02x}" for byte in raw)


def value_text(raw: bytes) -> str:
    """A directory value as text: UTF-8, or ``base64:`` and the base64 of a binary value."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")

"""Opening LDAP connections the safe way: TLS verified by default, time limits, no referral chasing."""

from __future__ import annotations

import math
import ssl
from urllib.parse import urlparse

import ldap3
from ldap3.core import exceptions as ldap_errors

from syncd.config.sources import LdapSource
from syncd.errors import SourceError


def tls_for(source: LdapSource) -> ldap3.Tls:
    """ldap3's default is not to verify certificates; syncd verifies unless ``tls.verify: false``."""
    tls = source.tls
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=str(tls.ca_file) if tls.ca_file else None,
        local_certificate_file=str(tls.client_cert_file) if tls.client_cert_file else None,
        local_private_key_file=str(tls.client_key_file) if tls.client_key_file else None,
    )


def server_for(source: LdapSource, url: str) -> ldap3.Server:
    parsed = urlparse(url)
    use_ssl = parsed.scheme == "ldaps"
    return ldap3.Server(
        parsed.hostname or "",
        port=parsed.port or (636 if use_ssl else 389),
        use_ssl=use_ssl,
        tls=tls_for(source) if (use_ssl or source.start_tls) else None,
        get_info=ldap3.NONE,
        connect_timeout=source.timeouts.connect,
    )


def connect(source: LdapSource, url: str) -> ldap3.Connection:
    """Connect and bind to one server of ``source``; :class:`SourceError` says why it failed."""
    bind = source.bind
    kwargs: dict[str, object] = {
        # ldap3 packs the receive timeout into SO_RCVTIMEO as a C long: it must be a whole number
        "receive_timeout": math.ceil(source.timeouts.receive),
        "auto_referrals": False,
        "raise_exceptions": True,
        "read_only": True,
    }
    if bind.method == "sasl_external":
        kwargs.update(authentication=ldap3.SASL, sasl_mechanism=ldap3.EXTERNAL)
    else:
        assert bind.dn is not None and bind.password is not None
        kwargs.update(user=bind.dn, password=bind.password.get(), authentication=ldap3.SIMPLE)
    connection = ldap3.Connection(server_for(source, url), **kwargs)
    try:
        connection.open()
        if source.start_tls and not url.startswith("ldaps://"):
            connection.start_tls()
        connection.bind()
    except ldap_errors.LDAPException as error:
        sock = connection.socket  # ldap3 forgets, but does not close, the socket of a refused connect
        connection.unbind()
        if sock is not None:
            sock.close()
        raise SourceError(f"{url}: {type(error).__name__}: {error}") from error
    return connection


def probe(source: LdapSource) -> list[tuple[str, str | None]]:
    """Try every server of ``source``: (url, None) when it answers and accepts the bind, else (url, why)."""
    out: list[tuple[str, str | None]] = []
    for url in source.servers:
        try:
            connect(source, url).unbind()
        except SourceError as error:
            out.append((url, str(error)))
        else:
            out.append((url, None))
    return out

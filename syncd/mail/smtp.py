"""SMTP connections with TLS verified by default (aiosmtplib)."""

from __future__ import annotations

import ssl

import aiosmtplib

from syncd.config.models import Smtp
from syncd.errors import SmtpError

__all__ = ["SmtpError", "connect", "probe", "tls_context"]


def tls_context(config: Smtp) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if not config.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def connect(config: Smtp) -> aiosmtplib.SMTP:
    """Connect, secure and log in; the caller sends and quits."""
    client = aiosmtplib.SMTP(
        hostname=config.host,
        port=config.port,
        timeout=config.timeout,
        use_tls=config.security == "tls",
        start_tls=config.security == "starttls",
        tls_context=tls_context(config) if config.security != "none" else None,
    )
    try:
        await client.connect()
        if config.username is not None and config.password is not None:
            await client.login(config.username, config.password.get())
    except (aiosmtplib.SMTPException, OSError) as error:
        client.close()
        raise SmtpError(f"{config.host}:{config.port}: {type(error).__name__}: {error}") from error
    return client


async def probe(config: Smtp) -> None:
    """Raise :class:`SmtpError` unless the relay accepts a connection (and the login, if configured)."""
    client = await connect(config)
    try:
        await client.quit()
    except aiosmtplib.SMTPException as error:
        raise SmtpError(f"{config.host}:{config.port}: {error}") from error

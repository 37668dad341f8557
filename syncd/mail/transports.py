"""Where rendered mail goes: an SMTP relay (one connection reused), a directory of .eml files, the log.

Every transport raises :class:`TransientError` for what may work later (4xx replies, refused or dropped
connections, timeouts, TLS or login trouble) and :class:`PermanentError` for 5xx replies about the message
or its recipient (RFC 5321 §4.2.1; reliability.md E3).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Awaitable
from email.message import Message
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib

from syncd.config.models import Mail
from syncd.errors import MailError
from syncd.mail import smtp
from syncd.mail.render import SMTP_POLICY

log = logging.getLogger("syncd.mail")

DATA_TIMEOUT = 600.0  # RFC 5321 §4.5.3.2.6: wait up to 10 minutes for the reply to the final dot (E5)


class TransientError(MailError):
    """Try again later."""


class PermanentError(MailError):
    """Don't try again: the relay refused this message for good."""


class Transport(Protocol):
    async def send(
        self, message: Message, *, sender: str, recipient: str, before_data: Awaitable[Any] | None = None
    ) -> None:
        """Deliver ``message``; ``before_data`` (the previous message's mark) is awaited before the message
        itself is handed over, so at most one delivered message is ever unmarked."""
        ...

    async def close(self) -> None: ...


class SmtpTransport:
    """Sends over one authenticated, TLS-verified connection, reopened only when it breaks."""

    def __init__(self, config: Mail) -> None:
        assert config.smtp is not None
        self.config = config.smtp
        self._client: aiosmtplib.SMTP | None = None
        self.connections = 0

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        try:
            self._client = await smtp.connect(self.config)
        except MailError as error:
            raise TransientError(str(error)) from error
        self.connections += 1
        return self._client

    async def send(
        self, message: Message, *, sender: str, recipient: str, before_data: Awaitable[Any] | None = None
    ) -> None:
        """MAIL and RCPT overlap with ``before_data``; DATA starts only once it is done."""
        client = await self._connected()
        data = message.as_bytes(policy=SMTP_POLICY)
        try:
            await client.mail(sender, timeout=self.config.timeout)
            await client.rcpt(recipient, timeout=self.config.timeout)
            if before_data is not None:
                try:
                    await before_data
                except BaseException:
                    await self._reset()
                    raise
            await client.data(data, timeout=DATA_TIMEOUT)
        except aiosmtplib.SMTPResponseException as error:
            await self._reset()
            reply = f"{error.code} {error.message}".strip()
            if 500 <= error.code < 600:
                raise PermanentError(f"relay refused the message: {reply}") from error
            raise TransientError(f"relay deferred the message: {reply}") from error
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            await self._drop()
            raise TransientError(f"{type(error).__name__}: {error}") from error

    async def _reset(self) -> None:
        client = self._client
        if client is None:
            return
        try:
            await client.rset(timeout=self.config.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            await self._drop()

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=self.config.timeout)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


class DirectoryTransport:
    """Writes each message to ``<directory>/<message-id>.eml`` (atomic; a resend overwrites the same file)."""

    def __init__(self, config: Mail) -> None:
        assert config.directory is not None
        self.directory = Path(config.directory)

    async def send(
        self, message: Message, *, sender: str, recipient: str, before_data: Awaitable[Any] | None = None
    ) -> None:
        if before_data is not None:
            await before_data
        name = re.sub(r"[^A-Za-z0-9._-]", "_", str(message["Message-ID"]).strip("<>")) + ".eml"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes(policy=SMTP_POLICY))
            os.replace(tmp, self.directory / name)
        except OSError as error:
            raise TransientError(f"can't write {self.directory / name}: {error.strerror}") from error

    async def close(self) -> None:
        return None


class ConsoleTransport:
    """Logs who would get what; never the body (it may hold an enrollment link)."""

    async def send(
        self, message: Message, *, sender: str, recipient: str, before_data: Awaitable[Any] | None = None
    ) -> None:
        if before_data is not None:
            await before_data
        log.info(
            "mail (console transport, body not shown)",
            extra={
                "to": recipient,
                "subject": str(message["Subject"]),
                "message_id": str(message["Message-ID"]),
            },
        )

    async def close(self) -> None:
        return None


def make_transport(config: Mail) -> Transport:
    if config.transport == "smtp":
        return SmtpTransport(config)
    if config.transport == "directory":
        return DirectoryTransport(config)
    return ConsoleTransport()


def envelope_sender(config: Mail) -> str:
    """The bare address of ``from_address`` for MAIL FROM."""
    return parseaddr(config.from_address)[1] or config.from_address

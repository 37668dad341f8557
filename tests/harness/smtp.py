"""An in-process SMTP sink (aiosmtpd) that records every message it receives."""

from __future__ import annotations

import email
import email.message
import email.policy
import errno
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from harness.net import LOCALHOST, free_port


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: email.message.EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"] or "")

    def body_text(self) -> str:
        """The text/plain part (else the HTML part), decoded, with SMTP's CRLF line ends turned into LF."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return "" if part is None else str(part.get_content()).replace("\r\n", "\n")


class RecordingHandler:
    """aiosmtpd handler: accepts everything and appends it to a thread-safe list."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: list[ReceivedMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        msg = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(msg, email.message.EmailMessage)
        received = ReceivedMessage(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
            data=data,
            message=msg,
        )
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()
        return "250 Message accepted for delivery"

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._cond:
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMessage]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= count, timeout=timeout):
                raise TimeoutError(
                    f"SMTP sink got {len(self._messages)} message(s), expected {count} within {timeout} s"
                )
            return list(self._messages)


class SmtpServer:
    """aiosmtpd ``Controller`` on 127.0.0.1 and a free port (plain SMTP, no TLS, no AUTH).

    ``host``/``port`` are fixed at construction, so stop() then start() serves on the same address.
    """

    def __init__(self, port: int | None = None) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.handler = RecordingHandler()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    def start(self) -> None:
        if self._controller is not None:
            return
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            controller = Controller(
                self.handler,
                hostname=self.host,
                port=self.port,
                ready_timeout=10,
                server_hostname="localhost",  # skips socket.getfqdn(), which can hang on DNS
            )
            try:
                controller.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == attempts - 1:
                    raise
                self.port = free_port()
                time.sleep(0.01)
                continue
            self._controller = controller
            return

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived; return all of them. TimeoutError otherwise."""
        return self.handler.wait_for(count, timeout)

    def clear(self) -> None:
        self.handler.clear()

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SmtpServer {self.host}:{self.port} running={self.running}>"

"""Streaming one LDAP search over an open ldap3 connection, message by message.

ldap3's synchronous strategies keep every response of an operation in memory before returning any of it,
and decode each one twice (see :mod:`syncd.sources.ldap_ber`). Here ldap3 still opens the connection
(TLS, certificate checks, StartTLS, bind, time limits) and encodes the request; the responses are read
from the connection's socket as they arrive and decoded with :func:`ldap_ber.decode_message`, so a page of
a search is in memory only while it is being read.

Failures are :class:`~syncd.errors.SourceError`: :class:`RequestError` when ldap3 refuses to build the
request (e.g. a filter typo: nothing was sent), :class:`ConnectionLost` when the connection fails or
the server disconnects mid-operation. A generator left before its ``Done`` closes the connection, so a
half-read response can never be mistaken for the next operation's.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.operation.search import search_operation

from syncd.errors import SourceError
from syncd.sources.ldap_ber import BerError, Done, Message, decode_message, message_size

Scope = Literal["base", "one", "subtree"]
Control = tuple[str, bool, bytes | None] | Any  # (oid, critical, encoded value) or an ldap3 Control

_SCOPES = {"base": ldap3.BASE, "one": ldap3.LEVEL, "subtree": ldap3.SUBTREE}
_RECV = 256 * 1024
NOTICE_OF_DISCONNECTION = "1.3.6.1.4.1.1466.20036"


class RequestError(SourceError):
    """ldap3 could not build the request (bad filter or attribute list); nothing was sent."""


class ConnectionLost(SourceError):
    """The connection failed, timed out, or was closed by the server in the middle of an operation."""


def check_filter(search_filter: str) -> None:
    """Raise :class:`RequestError` if ldap3 can't parse ``search_filter`` (RFC 4515)."""
    try:
        search_operation("", search_filter, ldap3.BASE, ldap3.DEREF_NEVER, [ldap3.NO_ATTRIBUTES], 0, 0, False,
                         True, True, None, validator=None, check_names=False)  # fmt: skip
    except (ldap_errors.LDAPException, ValueError, TypeError) as error:
        raise RequestError(f"filter {search_filter!r} is not a valid LDAP filter: {error}") from error


def search(
    connection: ldap3.Connection,
    base: str,
    search_filter: str,
    attributes: Sequence[str],
    *,
    scope: Scope = "subtree",
    controls: Sequence[Control] = (),
    size_limit: int = 0,
    time_limit: int = 0,
) -> Iterator[Message]:
    """Send one search request and yield its responses; the last one yielded is a :class:`Done`."""
    try:
        request = search_operation(
            base,
            search_filter,
            _SCOPES[scope],
            ldap3.DEREF_NEVER,  # RFC 4533 servers reject the sync control with ldap3's DEREF_ALWAYS
            list(attributes) or [ldap3.NO_ATTRIBUTES],
            size_limit,
            time_limit,
            False,
            True,
            True,
            None,
            validator=None,
            check_names=False,
        )
    except (ldap_errors.LDAPException, ValueError, TypeError) as error:
        raise RequestError(f"search of {base!r} with filter {search_filter!r}: {error}") from error
    try:
        message_id = connection.strategy.send("searchRequest", request, list(controls) or None)
    except (ldap_errors.LDAPException, OSError) as error:
        close(connection)
        raise ConnectionLost(f"sending the search of {base!r} failed: {error}") from error
    connection.strategy._outstanding.pop(message_id, None)  # we read the answer ourselves
    done = False
    try:
        for answer_id, message in _receive(connection):
            if answer_id == message_id:
                done = isinstance(message, Done)
                yield message
                if done:
                    return
            elif answer_id == 0 and isinstance(message, Done):
                why = message.message or "no reason given"
                raise ConnectionLost(f"the server ended the connection (result {message.code}: {why})")
            else:
                raise ConnectionLost(f"answer to an unknown request {answer_id} (expected {message_id})")
    finally:
        if not done:
            close(connection)


def _receive(connection: ldap3.Connection) -> Iterator[tuple[int, Message]]:
    sock = connection.socket
    if sock is None:
        raise ConnectionLost("the connection is closed")
    buf = b""
    while True:
        try:
            data = sock.recv(_RECV)
        except TimeoutError as error:
            timeout = connection.receive_timeout
            raise ConnectionLost(f"no answer from the server within {timeout} s") from error
        except (OSError, ssl.SSLError) as error:
            raise ConnectionLost(f"receiving from the server failed: {error}") from error
        if not data:
            raise ConnectionLost("the server closed the connection in the middle of a search")
        buf = buf + data if buf else data
        start, have = 0, len(buf)
        try:
            while True:
                size = message_size(buf, start)
                if size is None or start + size > have:
                    break
                yield decode_message(buf, start, start + size)
                start += size
        except BerError as error:
            raise ConnectionLost(f"the server sent a malformed message: {error}") from error
        buf = buf[start:]


def close(connection: ldap3.Connection) -> None:
    """Unbind if the connection still works; close its socket in any case (ldap3 may just drop it)."""
    sock = connection.socket
    try:
        connection.unbind()
    except (ldap_errors.LDAPException, OSError):
        connection.closed = True
    finally:
        if sock is not None:
            sock.close()

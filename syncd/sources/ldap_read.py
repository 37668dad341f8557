"""RFC 2696 paged searches, streamed page by page, that say exactly why they stopped early.

A paged search ends well only with ``success`` and an empty paging cookie. Anything else — another
result code (sizeLimitExceeded, timeLimitExceeded, adminLimitExceeded, busy, unavailable, …), a
referral or a search continuation (never chased: ldap3 would resend our bind credentials to whatever
server it names), a timeout, a dropped connection, a malformed answer — raises :class:`Incomplete`
naming the search, the page and the cause. The caller decides whether what was read so far is still
worth applying (adds and updates: yes; disables: never).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import ldap3
from ldap3.core.results import RESULT_CODES
from ldap3.protocol.rfc2696 import paged_search_control

from syncd.config.sources import LdapSource
from syncd.errors import SourceError
from syncd.sources import ldap_wire
from syncd.sources.ldap_ber import Done, Entry, Reference, paged_cookie
from syncd.sources.ldap_connect import connect

PAGED_RESULTS = "1.2.840.113556.1.4.319"
NO_SUCH_OBJECT = 32

PageHook = Callable[[int], None]


class Incomplete(SourceError):
    """A search stopped before the server said it was done; ``code`` is the LDAP result code, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.result_code = code


@dataclass(frozen=True, slots=True)
class Search:
    """One search: where, what, and a name for messages (``users``, ``groups``, …)."""

    what: str
    base: str
    filter: str
    attributes: Sequence[str]
    scope: ldap_wire.Scope = "subtree"
    controls: tuple[ldap_wire.Control, ...] = ()


def describe(done: Done) -> str:
    name = RESULT_CODES.get(done.code, "unknown result")
    text = f"{name} ({done.code})"
    if done.message:
        text += f": {done.message}"
    if done.referrals:
        text += f"; referral to {', '.join(done.referrals)} not followed"
    return text


def paged(
    connection: ldap3.Connection,
    search: Search,
    *,
    page_size: int,
    time_limit: int,
    on_page: PageHook | None = None,
) -> Iterator[Entry]:
    """Yield every entry ``search`` matches, one page in memory at a time."""
    cookie = b""
    page = 0
    read = 0
    while True:
        page += 1
        control = paged_search_control(True, page_size, cookie)
        done: Done | None = None
        referrals: list[str] = []
        try:
            for message in ldap_wire.search(
                connection,
                search.base,
                search.filter,
                search.attributes,
                scope=search.scope,
                controls=[control, *search.controls],
                time_limit=time_limit,
            ):
                if isinstance(message, Entry):
                    read += 1
                    yield message
                elif isinstance(message, Reference):
                    referrals += message.urls  # read on to the end: the connection stays usable
                elif isinstance(message, Done):
                    done = message
        except ldap_wire.ConnectionLost as error:
            raise Incomplete(f"{search.what} search, page {page} (after {read} entries): {error}") from error
        assert done is not None
        if referrals:
            raise Incomplete(
                f"{search.what} search: the server referred to {', '.join(referrals)} "
                "(referrals are not followed)",
                code=10,
            )
        if done.code != 0:
            raise Incomplete(
                f"{search.what} search stopped at page {page} after {read} entries: {describe(done)}",
                code=done.code,
            )
        cookie = paged_cookie(done.controls.get(PAGED_RESULTS))
        if on_page is not None:
            on_page(read)
        if not cookie:
            return


def single(connection: ldap3.Connection, search: Search, *, time_limit: int) -> list[Entry]:
    """An unpaged search expected to return a handful of entries (base-scope reads, the root DSE)."""
    entries: list[Entry] = []
    try:
        for message in ldap_wire.search(
            connection,
            search.base,
            search.filter,
            search.attributes,
            scope=search.scope,
            controls=search.controls,
            time_limit=time_limit,
        ):
            if isinstance(message, Entry):
                entries.append(message)
            elif isinstance(message, Done) and message.code != 0:
                raise Incomplete(f"{search.what}: {describe(message)}", code=message.code)
    except ldap_wire.ConnectionLost as error:
        raise Incomplete(f"{search.what}: {error}") from error
    return entries


def open_connection(source: LdapSource) -> tuple[ldap3.Connection, str]:
    """Connect and bind to the first server of ``source`` that accepts us, in the configured order."""
    problems: list[str] = []
    for url in source.servers:
        try:
            return connect(source, url), url
        except SourceError as error:
            problems.append(str(error))
    raise SourceError(f"source {source.name}: no server could be used: " + "; ".join(problems))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a read builds many long-lived objects.

    Collections triggered by the allocations of a large read re-scan every record built so far; they
    would double its CPU time, and a read creates no reference cycles to collect.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

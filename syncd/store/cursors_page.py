"""Opaque keyset-pagination cursors for the admin API: ``(sort key, id)`` of the last row of a page.

A cursor is URL-safe base64 of a small JSON array. It is not a secret and not signed: a forged cursor only
moves the start of the next page. A cursor that does not decode is a :class:`~syncd.errors.UsageError`.
"""

from __future__ import annotations

import base64
import binascii
import json

from syncd.errors import UsageError

MAX_CURSOR = 1024


def encode(key: str, row_id: str) -> str:
    raw = json.dumps([key, row_id], ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(cursor: str) -> tuple[str, str]:
    """The ``(key, id)`` a cursor from :func:`encode` holds; UsageError for anything else."""
    if len(cursor) > MAX_CURSOR:
        raise UsageError("cursor: too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise UsageError("cursor: not a cursor from this API") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise UsageError("cursor: not a cursor from this API")
    return value[0], value[1]

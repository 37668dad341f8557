"""Enrollment-link tokens: derived, hashed and compared in constant time. Pure.

A link token is ``base64url(HMAC-SHA256(link_key, "invite:" + invite_id))``: 256 bits that nobody without
the link key (derived from ``secrets.seed_key``) can compute, even with a copy of the database. The database
keeps only its SHA-256 (a plain hash is enough for a high-entropy token, see docs/adr/0021); the mail relay
derives the token again when it renders the mail, so no table, outbox row or log holds a usable link.
"""

from __future__ import annotations

import base64
import hashlib
import hmac


def link_token(link_key: bytes, invite_id: str) -> str:
    """The token of invite ``invite_id`` (43 URL-safe characters)."""
    mac = hmac.new(link_key, f"invite:{invite_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")


def hash_token(token: str) -> str:
    """What the database stores and looks tokens up by (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    """Cheap shape check before touching the database (43 URL-safe base64 characters)."""
    return len(text) == 43 and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


def equal(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))

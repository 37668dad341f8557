"""Bypass codes: generation, argon2id hashing and the lookup tag (docs/adr/0052). Pure, no storage.

* Codes are ``digits`` uniform decimal digits from :mod:`secrets` (never a formatted random number with a
  bias), shown to the admin once and stored only as an argon2id hash.
* One argon2id verification costs ~10–30 ms here (:data:`HASHER` parameters in the ADR). So that checking
  a code costs about one verification whatever the number of live codes, each code also stores a 4-bit
  lookup tag (the first hex digit of SHA-256 over user id and code): only the codes whose tag matches are
  verified, and when none does a dummy hash is verified instead (:func:`burn`), so the time does not
  tell whether the user exists or has codes.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass, field

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher(time_cost=3, memory_cost=12288, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
"""argon2id, t=3, m=12 MiB, p=1: 16–23 ms per verification on the reference machine (ADR 0052)."""

DEFAULT_COUNT, MIN_COUNT, MAX_COUNT = 10, 1, 50
DEFAULT_DIGITS, MIN_DIGITS, MAX_DIGITS = 9, 8, 12
DEFAULT_USES, MIN_USES, MAX_USES = 1, 1, 10
DEFAULT_EXPIRY, MIN_EXPIRY, MAX_EXPIRY = 86_400, 300, 30 * 86_400
MAX_LIVE = 100
"""At most this many live codes per user (``preserveExisting`` can't pile them up without end)."""


@dataclass(frozen=True, slots=True)
class NewCode:
    """A generated code: the plaintext (shown once), its hash and its lookup tag."""

    plaintext: str = field(repr=False)
    code_hash: str
    tag: str


def new_code(digits: int) -> str:
    """``digits`` uniform random decimal digits."""
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def normalise(code: str) -> str:
    """What a person typed, without spaces and dashes."""
    return "".join(ch for ch in code if ch not in " -\t")


def lookup_tag(user_id: str, code: str) -> str:
    """One hex digit (4 bits) of SHA-256(user id, code): narrows the verifications to ~1."""
    return hashlib.sha256(f"{user_id}\x00{code}".encode()).hexdigest()[0]


def make_codes(user_id: str, count: int, digits: int) -> list[NewCode]:
    """``count`` distinct codes with their hashes (slow: ~count × one hash; call outside a transaction)."""
    plain: list[str] = []
    while len(plain) < count:
        code = new_code(digits)
        if code not in plain:
            plain.append(code)
    return [NewCode(code, HASHER.hash(code), lookup_tag(user_id, code)) for code in plain]


def matches(code_hash: str, code: str) -> bool:
    """Does ``code`` match this argon2id hash? (Never raises for a wrong code or a damaged hash.)"""
    try:
        return HASHER.verify(code_hash, code)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash() -> str:
    return HASHER.hash(secrets.token_hex(16))


def burn(code: str) -> None:
    """Spend one verification's time on ``code`` against a dummy hash (it never matches)."""
    matches(_dummy_hash(), code or "0")

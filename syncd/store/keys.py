"""The keys derived from ``secrets.seed_key`` and the sealing of seeds at rest (AES-256-GCM).

One secret from outside the database (a file or systemd credential) gives three independent keys through
HKDF-SHA256 with distinct labels: seeds at rest, enrollment-link tokens, enrollment-session cookies. A
sealed value is ``b"\\x01" + nonce(12) + ciphertext+tag`` with the row it belongs to as associated data, so
a ciphertext copied onto another row does not decrypt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syncd.config.models import Config
from syncd.errors import ConfigError, StoreError

MIN_SECRET_CHARS = 32
_VERSION = b"\x01"
_SALT = b"syncd key derivation v1"


class SealError(StoreError):
    """A sealed value can't be opened: the seed key changed, or the row was tampered with."""

    code = "seal_failed"


@dataclass(frozen=True, slots=True)
class Keys:
    """The derived keys. ``repr`` never shows them."""

    seed: bytes
    link: bytes
    session: bytes

    @classmethod
    def from_secret(cls, secret: str) -> Keys:
        if len(secret) < MIN_SECRET_CHARS:
            raise ConfigError(
                f"secrets.seed_key must be at least {MIN_SECRET_CHARS} characters from a random generator "
                f"(e.g. `openssl rand -base64 32`), got {len(secret)}"
            )
        material = secret.encode("utf-8")
        return cls(
            seed=_derive(material, b"seeds at rest"),
            link=_derive(material, b"enrollment links"),
            session=_derive(material, b"enrollment sessions"),
        )

    def __repr__(self) -> str:
        return "Keys(…)"

    def seal(self, plaintext: bytes, aad: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + AESGCM(self.seed).encrypt(nonce, plaintext, aad.encode())

    def unseal(self, sealed: bytes, aad: str) -> bytes:
        if not sealed.startswith(_VERSION) or len(sealed) < 1 + 12 + 16:
            raise SealError("sealed value has an unknown format")
        try:
            return AESGCM(self.seed).decrypt(sealed[1:13], sealed[13:], aad.encode())
        except InvalidTag:
            raise SealError(
                "sealed value does not open with this seed key (was secrets.seed_key changed?)"
            ) from None


def keys_from_config(config: Config) -> Keys:
    """The keys of ``config``; a clear :class:`ConfigError` when ``secrets.seed_key`` is missing."""
    if config.secrets.seed_key is None:
        raise ConfigError(
            "secrets.seed_key is required: it encrypts authenticator seeds and protects enrollment links. "
            "Create one with `openssl rand -base64 32 > /etc/syncd/seed-key` (mode 0600) and set "
            "secrets: {seed_key: {file: /etc/syncd/seed-key}} (or a systemd credential)"
        )
    try:
        secret = config.secrets.seed_key.get()
    except ValueError as error:
        raise ConfigError(f"secrets.seed_key: {error}") from None
    return Keys.from_secret(secret)


def _derive(material: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=b"syncd " + label).derive(material)

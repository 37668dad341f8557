"""Secret references: a secret is never written inline in the YAML file.

A secret is given as exactly one of ``{file: PATH}``, ``{env: NAME}`` or ``{credential: NAME}`` (a systemd
credential, read from ``$CREDENTIALS_DIRECTORY/NAME``, e.g. from ``LoadCredential=`` in the unit).
:func:`syncd.config.loader.load_config` reads every reference once at load time, so a missing secret stops
the daemon at start with the file, line and field that named it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, PrivateAttr, model_validator

from syncd.config.types import ConfigPath


class SecretRef(BaseModel):
    """Where to read one secret from. Exactly one of ``file``, ``env``, ``credential``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: ConfigPath | None = None
    """A file holding the secret (trailing newline stripped). Keep it mode 0600."""
    env: str | None = None
    """The name of an environment variable holding the secret."""
    credential: str | None = None
    """The name of a systemd credential (``$CREDENTIALS_DIRECTORY/<name>``)."""

    _value: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("file", "env", "credential") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of file, env, credential")
        return self

    def describe(self) -> str:
        """Where the secret comes from, for messages (never the secret itself)."""
        if self.file is not None:
            return f"file {self.file}"
        if self.env is not None:
            return f"environment variable {self.env}"
        return f"systemd credential {self.credential}"

    def load(self) -> None:
        """Read the secret now; raise ``ValueError`` saying why it can't be read."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
        else:
            path = self.file if self.file is not None else self._credential_path()
            try:
                value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except FileNotFoundError:
                raise ValueError(f"secret file {path} does not exist") from None
            except OSError as exc:
                raise ValueError(f"secret file {path} can't be read: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise ValueError(f"secret file {path} is not UTF-8 text") from None
        if not value:
            raise ValueError(f"the secret in {self.describe()} is empty")
        self._value = value

    def get(self) -> str:
        """The secret's value (loaded at config load time)."""
        if self._value is None:
            self.load()
        assert self._value is not None
        return self._value

    def __repr__(self) -> str:
        return f"SecretRef({self.describe()})"

    __str__ = __repr__

    def _credential_path(self) -> Path:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"systemd credential {self.credential} asked for, but $CREDENTIALS_DIRECTORY is not set"
            )
        return Path(directory) / str(self.credential)

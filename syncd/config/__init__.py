"""Typed configuration: pydantic models of syncd.yaml and the loader that reports problems by line."""

from syncd.config.loader import default_path, load_config
from syncd.config.models import Config
from syncd.config.secrets import SecretRef
from syncd.config.sources import FileSource, LdapSource, ScimSource, Source

__all__ = [
    "Config",
    "FileSource",
    "LdapSource",
    "ScimSource",
    "SecretRef",
    "Source",
    "default_path",
    "load_config",
]

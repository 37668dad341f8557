"""Test harness: throwaway PostgreSQL databases, OpenLDAP slapd instances and an SMTP sink.

Each module works without pytest (plain classes and context managers); ``tests/conftest.py`` wraps them
in fixtures.
"""

from harness.net import free_port
from harness.postgres import (
    DEFAULT_PG_URL,
    PostgresUnavailable,
    admin_url_from_env,
    check_postgres,
    make_database_url,
)
from harness.slapd import Slapd, SlapdError, SlapdNotInstalled
from harness.smtp import ReceivedMessage, SmtpServer

__all__ = [
    "DEFAULT_PG_URL",
    "PostgresUnavailable",
    "ReceivedMessage",
    "Slapd",
    "SlapdError",
    "SlapdNotInstalled",
    "SmtpServer",
    "admin_url_from_env",
    "check_postgres",
    "free_port",
    "make_database_url",
]

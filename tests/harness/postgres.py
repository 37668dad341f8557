"""Throwaway PostgreSQL databases (one per test) and SQLite files behind one interface.

The admin URL comes from ``SYNCD_TEST_PG_URL`` (``scripts/test`` sets it up); it is an SQLAlchemy URL with
the ``postgresql+psycopg://`` scheme and must be allowed to CREATE DATABASE.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

ENV_VAR = "SYNCD_TEST_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://syncd_test:syncd_test@127.0.0.1:5432/postgres"
DB_PREFIX = "syncd_t_"

DatabaseKind = Literal["sqlite", "postgresql"]


class PostgresUnavailable(RuntimeError):
    """The test PostgreSQL server cannot be reached or refuses the admin login."""


def admin_url_from_env() -> str:
    return os.environ.get(ENV_VAR) or DEFAULT_PG_URL


def to_psycopg_dsn(url: str) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) -> libpq URI for raw psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (SQLAlchemy form, password kept)."""
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def check_postgres(admin_url: str, timeout: int = 5) -> str:
    """Connect once and return the server version; raise PostgresUnavailable with a helpful message."""
    shown = make_url(admin_url).render_as_string(hide_password=True)
    try:
        with psycopg.connect(to_psycopg_dsn(admin_url), autocommit=True, connect_timeout=timeout) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise PostgresUnavailable(
            f"PostgreSQL is not usable at {shown}: {str(exc).strip()}\n"
            f"Run the suite with scripts/test (it starts PostgreSQL and creates the syncd_test role), "
            f"or point {ENV_VAR} at a server where that user may CREATE DATABASE."
        ) from exc
    return str(row[0]) if row else "?"


def create_database(admin_url: str) -> tuple[str, str]:
    """Create a fresh, empty database; return (name, SQLAlchemy URL)."""
    name = DB_PREFIX + secrets.token_hex(6)
    with psycopg.connect(to_psycopg_dsn(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )
    return name, with_database(admin_url, name)


def drop_database(admin_url: str, name: str) -> None:
    """Drop a database, disconnecting whatever is still connected to it."""
    with psycopg.connect(to_psycopg_dsn(admin_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def make_database_url(kind: DatabaseKind, tmp_path: Path, admin_url: str | None = None) -> Iterator[str]:
    """Yield an SQLAlchemy URL of a fresh, empty database of ``kind``; clean it up afterwards.

    ``sqlite``: a file ``syncd.db`` in ``tmp_path``. ``postgresql``: a new database ``syncd_t_<hex>`` on the
    server of ``admin_url`` (default: ``SYNCD_TEST_PG_URL``), dropped WITH (FORCE) on exit.
    """
    if kind == "sqlite":
        yield f"sqlite:///{Path(tmp_path).resolve() / 'syncd.db'}"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown database kind {kind!r}")
    admin = admin_url or admin_url_from_env()
    name, url = create_database(admin)
    try:
        yield url
    finally:
        drop_database(admin, name)

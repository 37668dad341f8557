"""Shared fixtures: databases (SQLite and PostgreSQL), OpenLDAP slapd, an SMTP sink.

See tests/harness/ for the classes behind them; scripts/test prepares the machine (slapd, PostgreSQL).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness.postgres import (
    PostgresUnavailable,
    admin_url_from_env,
    check_postgres,
    make_database_url,
)
from harness.samba import SambaDC, SambaUnavailable
from harness.slapd import Slapd, SlapdNotInstalled
from harness.smtp import SmtpServer
from sqlalchemy.engine import make_url

from syncd.config.models import Database as DatabaseConfig
from syncd.config.secrets import SecretRef

# ldap3 2.9.1 imports names that pyasn1 >= 0.6 deprecates (tagMap, typeMap); with `filterwarnings = error`
# that DeprecationWarning would make every first `import ldap3` fail. Import it once here, silenced; the
# warning is raised only at import time, so later imports (tests, syncd.sources) get the cached module.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", r"(tagMap|typeMap) is deprecated", DeprecationWarning)
    import ldap3  # noqa: F401


# ---- databases ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """SQLAlchemy URL of a PostgreSQL login that may CREATE DATABASE (``SYNCD_TEST_PG_URL``).

    Fails (never skips) when the server does not answer.
    """
    url = admin_url_from_env()
    try:
        check_postgres(url)
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a fresh, empty database: ``sqlite:///<tmp_path>/syncd.db`` or a new PostgreSQL
    database ``syncd_t_<hex>`` that is dropped after the test. Dispose your engines before the test ends.
    """
    kind = request.param
    admin_url = request.getfixturevalue("pg_admin_url") if kind == "postgresql" else None
    with make_database_url(kind, tmp_path, admin_url) as url:
        yield url


@pytest.fixture
def database_config(database_url: str, tmp_path: Path) -> DatabaseConfig:
    """The ``database`` config section for ``database_url``, as an admin would write it: any password moved
    out of the URL into a secret file (syncd refuses passwords inside the URL)."""
    url = make_url(database_url)
    if url.password is None:
        return DatabaseConfig(url=database_url)
    secret = tmp_path / "db-password"
    secret.write_text(str(url.password), encoding="utf-8")
    bare = url._replace(password=None).render_as_string(hide_password=False)
    return DatabaseConfig(url=bare, password=SecretRef(file=secret))


# ---- LDAP --------------------------------------------------------------------------------------
def _new_slapd(base_dir: Path) -> Slapd:
    try:
        return Slapd(base_dir)
    except SlapdNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One running slapd for the whole session (base entries only at the start; tests share it, so
    give the entries you add unique names). Use ``slapd_factory`` to stop/restart or bulk-load."""
    server = _new_slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def slapd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Slapd]]:
    """Make private slapd instances: ``slapd_factory(start=True, ldif=None)``.

    ``ldif`` (text or path) is bulk-loaded with slapadd before the start. All instances are stopped and
    removed at the end of the test.
    """
    made: list[Slapd] = []

    def factory(*, start: bool = True, ldif: str | Path | None = None) -> Slapd:
        server = _new_slapd(tmp_path_factory.mktemp("slapd"))
        made.append(server)
        if ldif is not None:
            server.load_ldif(ldif)
        if start:
            server.start()
        return server

    yield factory
    for server in made:
        server.close()


# ---- Samba AD DC -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SambaDC]:
    """A running Samba Active Directory DC (LAB.EXAMPLE.ORG) on port 389 of 127.0.0.1 or ::1 (``.host``,
    ``.url``) for one test module, freshly provisioned (10-40 s); runs sharing a machine take turns (see
    harness/samba.py).
    Tests add what they need under their own OU. Fails (never skips) when Samba can't run here;
    scripts/test installs it."""
    try:
        dc = SambaDC(tmp_path_factory.mktemp("samba") / "dc")
        dc.provision()
        dc.start()
    except SambaUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield dc
    finally:
        dc.close()


# ---- SMTP --------------------------------------------------------------------------------------
@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A running SMTP sink on 127.0.0.1 (``.host``, ``.port``, ``.messages``, ``.wait_for(n, timeout)``)."""
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()

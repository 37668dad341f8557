"""The ``syncd`` command.

Exit codes (also in the README): 0 success; 1 the operation failed (a check or a sync run failed);
2 bad config or usage; 3 database unreachable or schema mismatch; 4 not found; 5 refused by a lifecycle
rule; 6 a source could not be read; 7 a sync run was held by the guard; 8 already running; 70 internal error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from syncd import __version__, logs, service
from syncd.config import Config, LdapSource, load_config
from syncd.config.loader import default_path
from syncd.domain.lifecycle import UserStatus
from syncd.errors import StoreError, SyncdError
from syncd.mail import smtp
from syncd.sources import ldap_connect
from syncd.store import groups, schema, users
from syncd.store.db import Database

EXIT_FAILED = 1
EXIT_INTERNAL = 70

F = TypeVar("F", bound=Callable[..., Any])
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def config_option(func: F) -> F:
    """``-c/--config PATH`` on every command (default ``$SYNCD_CONFIG`` or ``/etc/syncd/syncd.yaml``)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(path_type=Path),
        default=None,
        help="Config file (default: $SYNCD_CONFIG or /etc/syncd/syncd.yaml).",
    )(func)


def handle_errors(func: F) -> F:
    """Map syncd errors to one line on stderr and their exit code; bugs to exit 70 without a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SyncdError as error:
            for line in str(error).splitlines():
                err.print(f"syncd: {line}", markup=False)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as error:
            err.print(f"syncd: internal error: {type(error).__name__} (please report it)", markup=False)
            if "--debug" in sys.argv:
                raise
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def _config(path: Path | None, *, read_secrets: bool = True) -> Config:
    config = load_config(path or default_path(), read_secrets=read_secrets)
    logs.setup(config.logging)
    return config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncd")
def main() -> None:
    """syncd keeps an MFA service's users in step with your directories."""


@main.command("run")
@config_option
@handle_errors
def run_cmd(config_path: Path | None) -> None:
    """Run the daemon: migrate, serve the HTTP API, run the scheduled jobs (SIGHUP reloads the config)."""
    service.run(_config(config_path), path=config_path or default_path())


@main.command("check-config")
@click.argument("path", required=False, type=click.Path(path_type=Path))
@config_option
@click.option("--connect", is_flag=True, help="Also try the database, every LDAP server and the SMTP relay.")
@handle_errors
def check_config(path: Path | None, config_path: Path | None, connect: bool) -> None:
    """Validate a config file (and, with --connect, reach what it names)."""
    target = path or config_path or default_path()
    config = load_config(target)
    out.print(f"{target}: ok ({len(config.sources)} source(s))", markup=False)
    if not connect:
        return
    failures = 0
    for label, problem in _connection_checks(config):
        failures += problem is not None
        status = "ok" if problem is None else f"FAILED: {problem}"
        out.print(f"  {label}: {status}", markup=False)
    if failures:
        sys.exit(EXIT_FAILED)


def _connection_checks(config: Config) -> list[tuple[str, str | None]]:
    checks: list[tuple[str, str | None]] = []
    try:
        db = Database(config.database)
        try:
            db.ping()
        finally:
            db.dispose()
        checks.append((f"database {db.display_url}", None))
    except StoreError as error:
        checks.append(("database", str(error)))
    for source in config.sources:
        if isinstance(source, LdapSource):
            for url, problem in ldap_connect.probe(source):
                checks.append((f"source {source.name} {url}", problem))
    if config.mail.transport == "smtp" and config.mail.smtp is not None:
        relay = config.mail.smtp
        try:
            asyncio.run(smtp.probe(relay))
            checks.append((f"smtp {relay.host}:{relay.port}", None))
        except SyncdError as error:
            checks.append((f"smtp {relay.host}:{relay.port}", str(error)))
    return checks


@main.group("db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@config_option
@handle_errors
def db_upgrade(config_path: Path | None) -> None:
    """Upgrade the database schema to this version (safe to run on a current database)."""
    config = _config(config_path)
    db = Database(config.database)
    before, after = schema.upgrade(db)
    out.print(
        f"database at {after}" + (f" (was {before or 'empty'})" if before != after else " (already current)")
    )


@db_group.command("status")
@config_option
@handle_errors
def db_status(config_path: Path | None) -> None:
    """Show the schema revision of the database and of this code."""
    db = Database(_config(config_path).database)
    out.print(f"database: {schema.current_revision(db) or 'empty'}; this syncd: {schema.head_revision()}")
    schema.check_current(db)


@main.group("users")
def users_group() -> None:
    """Users."""


@users_group.command("list")
@config_option
@click.option("--status", type=click.Choice([s.value for s in UserStatus], case_sensitive=False))
@click.option("--source", "source_name", help="Only users managed by this source.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=1000, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@handle_errors
def users_list(
    config_path: Path | None, status: str | None, source_name: str | None, limit: int, as_json: bool
) -> None:
    """List users (by username)."""
    db = service.open_database(_config(config_path), upgrade=False)
    with db.read() as session:
        rows = users.listing(
            session, status=UserStatus(status.upper()) if status else None, source=source_name, limit=limit
        )
        if as_json:
            for user in rows:
                print(json.dumps(_user_json(user), ensure_ascii=False))
            return
        table = Table("id", "username", "email", "status", "source", box=None, pad_edge=False)
        for user in rows:
            table.add_row(user.id, user.username, user.email or "", user.status.value, user.managed_by or "-")
        out.print(table)
        out.print(f"{len(rows)} user(s)")


@users_group.command("show")
@click.argument("ref")
@config_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def users_show(ref: str, config_path: Path | None, as_json: bool) -> None:
    """Show one user (by id or username)."""
    db = service.open_database(_config(config_path), upgrade=False)
    with db.read() as session:
        user = users.find(session, ref)
        data = {**_user_json(user), "groups": groups.names_of_user(session, user.id)}
    if as_json:
        print(json.dumps(data, ensure_ascii=False))
        return
    for key, value in data.items():
        out.print(f"{key + ':':15} {value if value not in (None, '', [], {}) else '-'}", markup=False)


def _user_json(user: Any) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "given_name": user.given_name,
        "family_name": user.family_name,
        "display_name": user.display_name,
        "phone": user.phone,
        "status": user.status.value,
        "source": user.managed_by,
        "attributes": user.attributes,
        "created_at": user.created_at.isoformat(),
        "updated_at": user.updated_at.isoformat(),
        "deleted_in_source_at": user.deleted_at.isoformat() if user.deleted_at else None,
    }


# Enrollment and mail commands live in their own module (it reuses the helpers above).
from syncd.cli_enrollment import invite_cmd, outbox_group  # noqa: E402
from syncd.cli_sync import sync_group  # noqa: E402

main.add_command(sync_group)
main.add_command(invite_cmd)
main.add_command(outbox_group)

from syncd.cli_service import status_cmd  # noqa: E402

main.add_command(status_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()

from syncd.cli_apikey import apikey_group  # noqa: E402

main.add_command(apikey_group)

from syncd.cli_tokens import tokens_group  # noqa: E402

main.add_command(tokens_group)

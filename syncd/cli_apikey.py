"""``syncd apikey``: admin API keys (create, list, rotate, revoke).

Registered on the ``syncd`` group by :mod:`syncd.cli`. A new key is printed once, on standard output, and
is never shown again (only its digest is stored).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from pathlib import Path
from typing import Any

import click
from pydantic import TypeAdapter, ValidationError
from rich.table import Table

from syncd import service
from syncd.cli import _config, config_option, handle_errors, out
from syncd.config.types import Duration
from syncd.errors import UsageError
from syncd.store import apikeys
from syncd.store.tables import ApiClient, utcnow

_DURATION: TypeAdapter[Any] = TypeAdapter(Duration)


def _actor() -> str:
    user = os.environ.get("SUDO_USER") or getpass.getuser()
    return f"admin:cli:{user}@{socket.gethostname()}"


def _duration(text: str | None, option: str) -> Any:
    if text is None:
        return None
    try:
        return _DURATION.validate_python(text)
    except ValidationError:
        raise UsageError(f"{option}: expected a duration such as 90d, 12h or 30m, got {text!r}") from None


def _json(client: ApiClient) -> dict[str, Any]:
    def when(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": client.id,
        "name": client.name,
        "prefix": client.key_prefix,
        "scopes": client.scopes,
        "created": when(client.created_at),
        "expires": when(client.expires_at),
        "last_used": when(client.last_used_at),
        "revoked": when(client.revoked_at),
    }


@click.group("apikey")
def apikey_group() -> None:
    """Admin API keys (Authorization: Bearer <key> on /api/v1)."""


@apikey_group.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="read, manage (implies read) or verify; repeat or comma-separate.",
)
@click.option("--expires", help="Lifetime, e.g. 90d (default: no expiry).")
@config_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def create_cmd(
    name: str, scopes: tuple[str, ...], expires: str | None, config_path: Path | None, as_json: bool
) -> None:
    """Make a key and print it once."""
    lifetime = _duration(expires, "--expires")
    wanted = [s for group in scopes for s in group.split(",")]
    db = service.open_database(_config(config_path), upgrade=False)
    try:
        with db.write() as session:
            made = apikeys.create(
                session, name, wanted, actor=_actor(), expires_at=utcnow() + lifetime if lifetime else None
            )
            data = {**_json(made.client), "key": made.key}
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(data))
        return
    print(made.key)
    click.echo(
        f"API key {data['prefix']} ({', '.join(data['scopes'])}) created; the line above is shown only once.",
        err=True,
    )


@apikey_group.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per key.")
@handle_errors
def list_cmd(config_path: Path | None, as_json: bool) -> None:
    """Every key (never the key itself)."""
    db = service.open_database(_config(config_path), upgrade=False)
    try:
        with db.read() as session:
            rows = [_json(c) for c in apikeys.listing(session)]
    finally:
        db.dispose()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("id", "prefix", "name", "scopes", "created", "expires", "last used", "revoked", box=None)
    for row in rows:
        table.add_row(
            row["id"], row["prefix"], row["name"], ",".join(row["scopes"]),
            *((row[k] or "-")[:19] for k in ("created", "expires", "last_used", "revoked")),
        )  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} key(s)")


@apikey_group.command("revoke")
@click.argument("ref", metavar="ID-OR-PREFIX")
@config_option
@handle_errors
def revoke_cmd(ref: str, config_path: Path | None) -> None:
    """Stop a key working (other replicas within 10 seconds)."""
    db = service.open_database(_config(config_path), upgrade=False)
    try:
        with db.write() as session:
            client = apikeys.revoke(session, ref, actor=_actor())
            prefix = client.key_prefix
    finally:
        db.dispose()
    out.print(f"API key {prefix} revoked")


@apikey_group.command("rotate")
@click.argument("ref", metavar="ID-OR-PREFIX")
@click.option("--grace", default="1d", show_default=True, help="How long the old key keeps working.")
@config_option
@click.option("--json", "as_json", is_flag=True)
@handle_errors
def rotate_cmd(ref: str, grace: str, config_path: Path | None, as_json: bool) -> None:
    """Make a new key with the same name and scopes; the old one ends after --grace."""
    period = _duration(grace, "--grace")
    db = service.open_database(_config(config_path), upgrade=False)
    try:
        with db.write() as session:
            made = apikeys.rotate(session, ref, actor=_actor(), grace=period)
            data = {**_json(made.client), "key": made.key}
    finally:
        db.dispose()
    if as_json:
        print(json.dumps(data))
        return
    print(made.key)
    click.echo(f"new API key {data['prefix']}; the old one works for {grace} more.", err=True)

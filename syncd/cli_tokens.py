"""``syncd tokens``: the hardware-token inventory (import an OATH CSV or PSKC file, list tokens).

Registered on the ``syncd`` group by :mod:`syncd.cli`. The import uses the same parser and store function
as ``POST /api/v1/hardware-tokens/import``: every token or none, every bad row reported (docs/adr/0052).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from syncd import service
from syncd.cli import _config, config_option, handle_errors, out
from syncd.cli_apikey import _actor
from syncd.domain import token_files
from syncd.errors import UsageError
from syncd.store import hardware_tokens
from syncd.store.keys import keys_from_config

MAX_FILE_BYTES = 5 * 1024 * 1024


@click.group("tokens")
def tokens_group() -> None:
    """Hardware tokens (OATH HOTP/TOTP) in the inventory."""


def _format_of(path: Path, given: str | None) -> str:
    if given:
        return given
    return "pskc" if path.suffix.lower() in (".xml", ".pskc") else "csv"


@tokens_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(token_files.FORMATS),
    help="csv (OATH: serial,secret,type,digits,period|counter,algorithm) or pskc (RFC 6030). "
    "Default: pskc for .xml/.pskc files, else csv.",
)
@config_option
@handle_errors
def import_cmd(file: Path, fmt: str | None, config_path: Path | None) -> None:
    """Import every token of FILE, or none when any row is bad (all problems are listed)."""
    if file.stat().st_size > MAX_FILE_BYTES:
        raise UsageError(f"{file}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"{file}: can't be read as UTF-8 text ({error})") from None
    config = _config(config_path)
    keys = keys_from_config(config)
    parsed = token_files.parse(text, _format_of(file, fmt))
    db = service.open_database(config, upgrade=False)
    try:
        with db.write() as session:
            count = hardware_tokens.import_tokens(session, parsed, keys=keys, actor=_actor())
    finally:
        db.dispose()
    out.print(f"{count} hardware token(s) imported from {file.name}")


@tokens_group.command("list")
@click.option("--assigned/--unassigned", default=None, help="Only assigned or only free tokens.")
@click.option("--serial-prefix", help="Only serials starting with this.")
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
@handle_errors
def list_cmd(
    assigned: bool | None, serial_prefix: str | None, config_path: Path | None, as_json: bool
) -> None:
    """Every token (never its seed), ordered by serial."""
    db = service.open_database(_config(config_path), upgrade=False)
    rows: list[dict[str, Any]] = []
    try:
        with db.read() as session:
            cursor: str | None = None
            while True:
                page = hardware_tokens.listing(
                    session, assigned=assigned, serial_prefix=serial_prefix, limit=500, cursor=cursor
                )
                rows.extend(
                    {
                        "id": t.id,
                        "serial": t.serial,
                        "type": t.otp_type,
                        "digits": t.digits,
                        "algorithm": t.algorithm,
                        "user_id": t.user_id,
                        "imported": t.imported_at.isoformat(),
                    }
                    for t in page.items
                )
                cursor = page.next_cursor
                if cursor is None:
                    break
    finally:
        db.dispose()
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    table = Table("id", "serial", "type", "digits", "algorithm", "user", "imported", box=None)
    for row in rows:
        table.add_row(
            row["id"], row["serial"], row["type"], str(row["digits"]), row["algorithm"],
            row["user_id"] or "-", row["imported"][:19],
        )  # fmt: skip
    out.print(table)
    out.print(f"{len(rows)} token(s)")

"""``syncd tokens import`` and ``syncd tokens list`` (in-process, both databases): the same parser and store
function as the API, all-or-nothing imports with every bad row reported."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from click.testing import CliRunner
from harness.daemon import write_config, write_users
from harness.net import free_port

from syncd.cli import main
from syncd.config.models import Database as DatabaseConfig
from syncd.store import schema
from syncd.store.db import Database

SEED = bytes(range(16))


def test_import_and_list(tmp_path: Path, database_config: DatabaseConfig) -> None:
    users = tmp_path / "users.csv"
    write_users(users, [("E1", "alice", "alice@example.com", "Alice")])
    config = write_config(tmp_path, database_config, port=free_port(), smtp_port=free_port(), users=users)
    runner = CliRunner()
    db = Database(database_config)
    schema.upgrade(db)
    db.dispose()

    good = tmp_path / "tokens.csv"
    good.write_text(f"serial,secret,type,digits,period,algorithm\nA-1,{SEED.hex()},HOTP,6,0,SHA1\n")
    pskc = tmp_path / "tokens.xml"
    pskc.write_text(
        '<KeyContainer Version="1.0" xmlns="urn:ietf:params:xml:ns:keyprov:pskc"><KeyPackage>'
        "<DeviceInfo><SerialNo>B-1</SerialNo></DeviceInfo>"
        '<Key Id="1" Algorithm="urn:ietf:params:xml:ns:keyprov:pskc:totp"><Data><Secret>'
        f"<PlainValue>{base64.b64encode(SEED).decode()}</PlainValue></Secret></Data></Key>"
        "</KeyPackage></KeyContainer>"
    )
    done = runner.invoke(main, ["tokens", "import", str(good), "-c", str(config)])
    assert done.exit_code == 0, done.output
    assert "1 hardware token(s) imported from tokens.csv" in done.output
    assert runner.invoke(main, ["tokens", "import", str(pskc), "-c", str(config)]).exit_code == 0

    bad = tmp_path / "bad.csv"
    bad.write_text(f"C-1,{SEED.hex()}\nA-1,{SEED.hex()}\nC-2,{SEED[:8].hex()}\n")
    refused = runner.invoke(main, ["tokens", "import", str(bad), "--format", "csv", "-c", str(config)])
    assert refused.exit_code == 2
    assert "line 2: serial 'A-1' is already stored" in refused.output
    assert "line 3: seed is 64 bits" in refused.output

    listed = runner.invoke(main, ["tokens", "list", "--json", "-c", str(config)])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert [(r["serial"], r["type"], r["user_id"]) for r in rows] == [
        ("A-1", "HOTP", None),
        ("B-1", "TOTP", None),
    ]
    assert SEED.hex() not in listed.output
    table = runner.invoke(main, ["tokens", "list", "--unassigned", "--serial-prefix", "B", "-c", str(config)])
    assert "B-1" in table.output and "A-1" not in table.output and "1 token(s)" in table.output

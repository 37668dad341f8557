"""Config loading: every bad input gives one line naming the file, the line and the field."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from syncd.config import FileSource, LdapSource, ScimSource, load_config
from syncd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
org:
  name: Example Corp
  base_url: https://mfa.example.com/
database:
  url: sqlite:///state/syncd.db
sources:
  - name: corp
    kind: ldap
    servers: [ldaps://dc1.example.com, ldaps://dc2.example.com:3269]
    bind:
      dn: cn=syncd,dc=example,dc=com
      password: {file: secrets/bind.pw}
    users: {base: "ou=people,dc=example,dc=com"}
    page_size: 1000
  - name: okta
    kind: scim
    tokens:
      - {env: OKTA_TOKEN}
  - name: hr
    kind: file
    format: csv
    users: hr/users.csv
enrollment:
  link_ttl: 3d
  reminders: [1d, 2w]
"""


def write(tmp_path: Path, text: str, name: str = "syncd.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


@pytest.fixture
def good(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "bind.pw").write_text("s3cret\n", encoding="utf-8")
    monkeypatch.setenv("OKTA_TOKEN", "tok-123")
    return write(tmp_path, GOOD)


def test_good_config_loads_with_paths_secrets_and_durations(good: Path, tmp_path: Path) -> None:
    config = load_config(good)
    assert config.org.base_url == "https://mfa.example.com"
    assert config.database.url == f"sqlite:///{tmp_path / 'state' / 'syncd.db'}"
    ldap, scim, file = config.sources
    assert isinstance(ldap, LdapSource) and isinstance(scim, ScimSource) and isinstance(file, FileSource)
    assert ldap.tls.verify is True  # verification on by default
    assert ldap.bind.password is not None and ldap.bind.password.get() == "s3cret"
    assert scim.tokens[0].get() == "tok-123"
    assert file.users == tmp_path / "hr" / "users.csv"
    assert config.enrollment.link_ttl == timedelta(days=3)
    assert config.enrollment.reminders == [timedelta(days=1), timedelta(weeks=2)]
    assert config.sync.max_disable.count == 500 and config.sync.max_disable.percent == 20


def test_secret_never_shown_in_repr(good: Path) -> None:
    config = load_config(good)
    assert "s3cret" not in repr(config) and "tok-123" not in repr(config)


def test_value_out_of_range_names_line_and_field(good: Path) -> None:
    good.write_text(good.read_text().replace("page_size: 1000", "page_size: 5000"))
    assert error_of(good) == f"{good}:14: sources[0].page_size: must be ≤ 1000, got 5000"


def test_unknown_key(good: Path) -> None:
    good.write_text(good.read_text().replace("  link_ttl: 3d", "  link_tll: 3d"))
    assert error_of(good) == f"{good}:24: enrollment.link_tll: unknown field"


def test_wrong_type(good: Path) -> None:
    good.write_text(good.read_text().replace("page_size: 1000", "page_size: lots"))
    message = error_of(good)
    assert message.startswith(f"{good}:14: sources[0].page_size: ")
    assert "integer" in message and "'lots'" in message


def test_missing_required_field(tmp_path: Path) -> None:
    path = write(tmp_path, "org:\n  name: X\n")
    assert error_of(path) == f"{path}:1: org.base_url: required field missing"


def test_unknown_source_kind(tmp_path: Path) -> None:
    path = write(tmp_path, "org: {name: X, base_url: https://x}\nsources:\n  - name: a\n    kind: nis\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: sources[0]: kind must be one of")
    assert "'nis'" in message


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "org:\n  name: X\n  base_url: [unclosed\ndatabase: {}\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "YAML syntax error" in message
    assert "\n" not in message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "org:\n  name: X\n  base_url: https://x\n  name: Y\n")
    assert error_of(path) == f"{path}:4: org.name: duplicate key (first on line 2)"


def test_missing_secret_file(good: Path, tmp_path: Path) -> None:
    (tmp_path / "secrets" / "bind.pw").unlink()
    assert error_of(good) == (
        f"{good}:12: sources[0].bind.password: secret file {tmp_path / 'secrets' / 'bind.pw'} does not exist"
    )


def test_missing_secret_env(good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OKTA_TOKEN")
    assert error_of(good) == f"{good}:18: sources[1].tokens[0]: environment variable OKTA_TOKEN is not set"


def test_secret_from_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "seed-key").write_text("k" * 44)
    path = write(
        tmp_path, "org: {name: X, base_url: https://x}\nsecrets:\n  seed_key: {credential: seed-key}\n"
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(path)
    assert config.secrets.seed_key is not None and config.secrets.seed_key.get() == "k" * 44
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert "CREDENTIALS_DIRECTORY is not set" in error_of(path)


def test_inline_secret_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "org: {name: X, base_url: https://x}\nmail:\n  transport: smtp\n"
        "  smtp: {host: mail, password: hunter2}\n",
    )
    message = error_of(path)
    assert message.startswith(f"{path}:4: mail.smtp.password: ")
    assert "hunter2" not in message.split(":", 3)[3] or "dictionary" in message


def test_secret_ref_needs_exactly_one_location(tmp_path: Path) -> None:
    path = write(tmp_path, "org: {name: X, base_url: https://x}\nsecrets:\n  seed_key: {file: a, env: B}\n")
    assert error_of(path) == f"{path}:3: secrets.seed_key: give exactly one of file, env, credential"


def test_password_in_database_url_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "org: {name: X, base_url: https://x}\ndatabase:\n  url: postgresql://u:pw@db/x\n")
    assert error_of(path) == f"{path}:3: database.url: put the password in database.password, not in the URL"


def test_duplicate_source_names(tmp_path: Path) -> None:
    text = (
        "org: {name: X, base_url: https://x}\nsources:\n"
        "  - {name: a, kind: file, format: csv, users: u.csv}\n"
        "  - {name: a, kind: file, format: csv, users: v.csv}\n"
    )
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}:2: sources: source names must be unique, repeated: a"


def test_bad_duration(tmp_path: Path) -> None:
    path = write(tmp_path, "org: {name: X, base_url: https://x}\nenrollment:\n  link_ttl: 0d\n")
    message = error_of(path)
    assert message.startswith(f"{path}:3: enrollment.link_ttl: must be a positive duration")


def test_several_problems_one_line_each(tmp_path: Path) -> None:
    path = write(tmp_path, "org: {name: X, base_url: https://x}\napi:\n  listen: nowhere\n  color: red\n")
    lines = error_of(path).splitlines()
    assert lines == [
        f"{path}:3: api.listen: must be host:port such as 127.0.0.1:8080, got 'nowhere'",
        f"{path}:4: api.color: unknown field",
    ]


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    text = 'org: {name: X, base_url: https://x}\napi:\n  trusted_proxies: [10.0.0.0/8, "::1", lb.example]\n'
    message = error_of(write(tmp_path, text))
    assert message.startswith(f"{tmp_path / 'syncd.yaml'}:3: api.trusted_proxies")
    assert "'lb.example' is not an IP address or network such as 10.0.0.0/24" in message


def test_file_problems(tmp_path: Path) -> None:
    assert error_of(tmp_path / "absent.yaml") == f"{tmp_path / 'absent.yaml'}: config file does not exist"
    assert error_of(tmp_path) == f"{tmp_path}: is a directory, not a config file"
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("org: {name: Caf\xe9}\n".encode("latin-1"))
    assert "not UTF-8" in error_of(latin)
    empty = write(tmp_path, "", "empty.yaml")
    assert error_of(empty).startswith(f"{empty}:1: the file must be a mapping")


def test_shipped_configs_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo and the commented example must always load (example: without reading its secrets)."""
    demo = load_config(ROOT / "config" / "demo.yaml", read_secrets=False)  # scripts/demo makes its key
    assert [s.name for s in demo.sources] == ["demo"]
    example = load_config(ROOT / "config" / "syncd.example.yaml", read_secrets=False)
    assert {s.kind for s in example.sources} == {"ldap", "scim", "file"}

"""Load and validate syncd.yaml; every problem becomes one line ``FILE:LINE: FIELD: what is wrong``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from syncd.config.models import Config
from syncd.config.secrets import SecretRef
from syncd.errors import ConfigError

DEFAULT_PATH = Path("/etc/syncd/syncd.yaml")
ENV_VAR = "SYNCD_CONFIG"
MAX_ERRORS = 10

Loc = tuple[str | int, ...]


def default_path() -> Path:
    """``$SYNCD_CONFIG`` if set, else ``/etc/syncd/syncd.yaml``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_config(path: Path | str, *, read_secrets: bool = True) -> Config:
    """Read, parse and validate the config file; read every secret it references.

    Raises :class:`ConfigError` whose message has one line per problem, each naming the file, the line and
    the field path.
    """
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: config file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{name}: permission denied reading the config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    data, lines = _parse(text, name)
    if not isinstance(data, dict):
        raise ConfigError(f"{name}:1: the file must be a mapping of sections (org, database, sources, …)")
    try:
        config = Config.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_format_errors(name, lines, exc.errors())) from None
    if read_secrets:
        problems = []
        for loc, ref in _secret_refs(config, ()):
            try:
                ref.load()
            except ValueError as exc:
                problems.append(f"{name}:{_line_of(lines, loc)}: {_dotted(loc)}: {exc}")
        if problems:
            raise ConfigError("\n".join(problems))
    return config


def _parse(text: str, name: str) -> tuple[Any, dict[Loc, int]]:
    """YAML → Python data plus the line number of every key and list item (1-based)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{name}:{line}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}: YAML error: {exc}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _index(node, (), lines, name)
    return data, lines


def _index(node: yaml.Node, loc: Loc, lines: dict[Loc, int], name: str) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                field = _dotted((*loc, key))
                raise ConfigError(f"{name}:{line}: {field}: duplicate key (first on line {seen[key]})")
            seen[key] = line
            lines[(*loc, key)] = line
            _index(value_node, (*loc, key), lines, name)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines, name)


def _yaml_loc(loc: tuple[str | int, ...], lines: dict[Loc, int]) -> Loc:
    """Map a pydantic error location to a location in the YAML, dropping union tags such as ``ldap``."""
    out: Loc = ()
    for part in loc:
        if (*out, part) in lines:
            out = (*out, part)
        elif isinstance(part, str) and part in {"ldap", "scim", "file"} and out and isinstance(out[-1], int):
            continue  # the discriminator of a tagged union, not a key in the file
        else:
            out = (*out, part)
    return out


def _line_of(lines: dict[Loc, int], loc: Loc) -> int:
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _format_errors(name: str, lines: dict[Loc, int], errors: list[ErrorDetails]) -> str:
    out = []
    for error in errors[:MAX_ERRORS]:
        loc = _yaml_loc(tuple(error["loc"]), lines)
        out.append(f"{name}:{_line_of(lines, loc)}: {_dotted(loc)}: {_message(error)}")
    if len(errors) > MAX_ERRORS:
        out.append(f"{name}: … and {len(errors) - MAX_ERRORS} more problems")
    return "\n".join(out)


def _shown(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _message(error: ErrorDetails) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return "required field missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "less_than_equal":
        return f"must be ≤ {ctx['le']}, got {_shown(value)}"
    if kind == "less_than":
        return f"must be < {ctx['lt']}, got {_shown(value)}"
    if kind == "greater_than_equal":
        return f"must be ≥ {ctx['ge']}, got {_shown(value)}"
    if kind == "greater_than":
        return f"must be > {ctx['gt']}, got {_shown(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}, got {_shown(value)}"
    if kind == "union_tag_invalid":
        return f"kind must be one of {ctx['expected_tags']}, got {_shown(ctx.get('tag'))}"
    if kind == "union_tag_not_found":
        return "required field 'kind' missing (ldap, scim or file)"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    message = error["msg"]
    message = message[0].lower() + message[1:]
    return (
        f"{message}, got {_shown(value)}"
        if value is not None and not isinstance(value, dict | list)
        else message
    )


def _secret_refs(model: Any, loc: Loc) -> Iterator[tuple[Loc, SecretRef]]:
    if isinstance(model, SecretRef):
        yield loc, model
    elif isinstance(model, BaseModel):
        for field in type(model).model_fields:
            yield from _secret_refs(getattr(model, field), (*loc, field))
    elif isinstance(model, list):
        for i, item in enumerate(model):
            yield from _secret_refs(item, (*loc, i))

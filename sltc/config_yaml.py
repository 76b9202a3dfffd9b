"""A config as YAML: a ``model.yaml`` read within limits (size, nesting, aliases), ``--set``
overrides applied, and a run's ``config.yaml`` written; validation is the schema's
(``sltc.config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml

from .config import RunConfig, fields_at, from_dict, kind_name
from .format.errors import ConfigError
from .format.limits import read_limited

MAX_CONFIG_BYTES = 1 << 20  # a config file; real ones are a few hundred bytes
MAX_CONFIG_NODES = 100_000  # values after YAML aliases are expanded (an alias bomb's billions)
MAX_CONFIG_DEPTH = 64


def apply_override(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``KEY=VALUE`` in place; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    parts = key.split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set train.epochs=5")
    value = parse_yaml(raw, f"--set {key}")
    node = data
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{'.'.join(parts[:i + 1])}' is a {kind_name(node)}, "
                              "not a section")
    if value is None and not _nullable(parts):
        node.pop(parts[-1], None)  # null on a key that cannot be null: back to its default
    else:
        node[parts[-1]] = value


def _nullable(parts: list[str]) -> bool:
    """Whether the key ``parts`` names can hold null (unknown keys: yes, so that
    validation names them)."""
    field = (fields_at(parts) or {}).get(parts[-1])
    return field is None or type(None) in get_args(field.annotation)


def _size(value, depth: int = 0, seen: dict | None = None) -> int:
    """The number of values in ``value`` with every alias expanded, counted without
    expanding them (a shared list is counted once and reused)."""
    seen = {} if seen is None else seen
    if not isinstance(value, (dict, list)):
        return 1
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"values nest deeper than {MAX_CONFIG_DEPTH} levels; a config is "
                          "a few flat sections")
    if id(value) not in seen:
        children = value.values() if isinstance(value, dict) else value
        seen[id(value)] = 1 + sum(_size(v, depth + 1, seen) for v in children)
    return seen[id(value)]


def parse_yaml(text: str, source: str):
    """``yaml.safe_load`` with the limits a config needs: no nesting past
    ``MAX_CONFIG_DEPTH``, no more than ``MAX_CONFIG_NODES`` values once aliases expand."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}: invalid YAML{where}; fix the syntax") from None
    except RecursionError:
        raise ConfigError(f"{source}: values nest too deeply; a config is a few flat "
                          "sections") from None
    try:
        size = _size(value)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if size > MAX_CONFIG_NODES:
        raise ConfigError(f"{source}: {size} values once YAML aliases are expanded (the "
                          f"limit is {MAX_CONFIG_NODES}); remove the aliases")
    return value


def _read_text(path: Path) -> str:
    """A config file's text: a regular file, at most ``MAX_CONFIG_BYTES``, UTF-8."""
    if not path.exists():
        raise ConfigError(f"config file {path} not found; pass the path to a model.yaml")
    raw = read_limited(path, MAX_CONFIG_BYTES, "config (model.yaml)", ConfigError)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the config as "
                          "UTF-8") from None


def load_config(path: str | Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML file (or defaults), apply ``--set`` overrides, validate."""
    data: dict[str, Any] = {}
    source = str(path) if path else "config"
    if path is not None:
        data = parse_yaml(_read_text(Path(path)), source)
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level is a {kind_name(data)}, not a mapping of "
                              "sections; start from sltc config --example")
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(data, source)


def config_yaml(config: RunConfig) -> str:
    """The YAML of a run's ``config.yaml`` (``rundir.write_config`` writes it)."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)

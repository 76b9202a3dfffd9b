"""The config's reference: every key with its type, default, range and reason
(``sltc config``), and a complete example file (``sltc config --example``), read off the
schema (``sltc.config``)."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml

from .config import SECTIONS, RunConfig, default_of


def _type_name(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        shown = " | ".join(_type_name(a) for a in args if a is not type(None))
        return shown + (" | null" if type(None) in args else "")
    if origin is list:
        return f"list[{_type_name(args[0])}]"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def reference() -> list[dict[str, Any]]:
    """Every key of the config, in file order: dotted name, type, default and reason."""
    rows = []
    for name, field in RunConfig.model_fields.items():
        owner = SECTIONS.get(name)
        items = [(f"{name}.{f.alias or k}", f) for k, f in owner.model_fields.items()] \
            if owner else [(name, field)]
        rows += [{"key": key, "type": _type_name(f.annotation), "default": default_of(f),
                  "range": _range(f), "reason": f.description or ""} for key, f in items]
    return rows


def _range(field) -> str | None:
    """The bounds of a field (or of each item of a list field), e.g. ``[1, 65536]``."""
    metadata, each = field.metadata, ""
    lists = [t for t in (field.annotation, *get_args(field.annotation)) if get_origin(t) is list]
    item = get_args(lists[0])[0] if lists else None
    if get_origin(item) is Annotated:
        metadata, each = [m for a in get_args(item)[1:] for m in a.metadata], "each in "
    low = next((f"[{m.ge}" for m in metadata if hasattr(m, "ge")), None) or \
        next((f"({m.gt}" for m in metadata if hasattr(m, "gt")), None)
    high = next((f"{m.le}]" for m in metadata if hasattr(m, "le")), None) or \
        next((f"{m.lt})" for m in metadata if hasattr(m, "lt")), None)
    if low is None and high is None:
        return None
    return f"{each}{low or '(-inf'}, {high or 'inf)'}"


def example_yaml() -> str:
    """A complete config with every key at its default, each under its reason."""
    lines, section = [], None
    for row in reference():
        head, _, key = row["key"].rpartition(".")
        if head != section:
            section = head
            lines += ["", f"{head}:"] if head else []
        indent = "  " if head else ""
        value = yaml.safe_dump(row["default"], default_flow_style=True).strip()
        value = value.removesuffix("\n...").removesuffix("...").strip()
        lines += [f"{indent}# {row['reason']}", f"{indent}{key or row['key']}: {value}"]
    return "\n".join(lines).strip() + "\n"

"""Experiment configs are stdlib frozen dataclasses; the CLI's ``--set key=value`` overrides are
parsed by each field's type. Unknown keys are errors with suggestions; nothing is evaluated."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from dnnkit.core.validation import suggest

__all__ = ["apply_overrides", "config_to_dict", "parse_value"]


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false).")


def parse_value(text: str, tp: Any) -> Any:
    """Parse ``text`` as type ``tp`` (int, float, bool, str, tuples/lists of those, Optional)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if text.strip().lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return parse_value(text, a)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin in (tuple, list):
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        inner = args[0] if args else str
        vals = [parse_value(p.strip(), inner) for p in parts]
        return tuple(vals) if origin is tuple else vals
    if origin is typing.Literal:
        if text in [str(a) for a in args]:
            return next(a for a in args if str(a) == text)
        raise ValueError(f"{text!r} is not one of {list(args)}.")
    if tp is bool:
        return _parse_bool(text)
    if tp is int:
        return int(text)
    if tp is float:
        return float(text)
    if tp is str:
        return text
    return json.loads(text)


def apply_overrides(cfg: Any, overrides: list[str] | dict[str, Any]) -> Any:
    """Return a copy of the frozen dataclass ``cfg`` with ``key=value`` overrides applied."""
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"Config must be a dataclass instance. Got {type(cfg).__name__} instead.")
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    items: list[tuple[str, Any]] = []
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"Override {item!r} must look like key=value.")
            k, v = item.split("=", 1)
            items.append((k.strip(), v))
    changes: dict[str, Any] = {}
    for key, raw in items:
        if key not in fields:
            raise KeyError(f"Unknown config key {key!r} for {type(cfg).__name__}."
                           f"{suggest(key, sorted(fields))} Valid keys: {sorted(fields)}")
        try:
            changes[key] = parse_value(raw, hints[key]) if isinstance(raw, str) else raw
        except (ValueError, TypeError) as exc:
            raise ValueError(f"Cannot parse {key}={raw!r} as {hints[key]}: {exc}") from None
    return dataclasses.replace(cfg, **changes)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-friendly dict of a dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))

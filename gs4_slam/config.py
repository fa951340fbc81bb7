"""YAML configuration mapped strictly onto dataclasses.

Every component owns a dataclass of its settings; a YAML file is an overlay of
those fields. Loading is strict: an unknown key or a value of the wrong type is
an error that names the key and the file, never silently ignored. A file may
start from others with ``inherit_from`` (a path or a list, relative to the
file itself); later files override earlier ones key by key.

The same fields become ROS parameters with dotted names (``tracking.max_iters``)
through :func:`flatten`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or file is invalid; the message says which and why."""


def load_yaml_layers(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read ``path`` and everything it inherits from, merged into one dict."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: inherit_from cycle through {[str(p) for p in _seen]}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    parents = data.pop("inherit_from", [])
    merged: dict = {}
    for parent in [parents] if isinstance(parents, str) else parents:
        merged = merge(merged, load_yaml_layers(path.parent / parent, _seen + (path,)))
    return merge(merged, data)


def merge(base: dict, overlay: dict) -> dict:
    """Recursive dict merge; ``overlay`` wins, nested mappings merge key by key."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, defaults filling what is absent."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(fields)}"
        )
    kwargs = {
        name: _coerce(hints[name], value, f"{where}.{name}" if where else name)
        for name, value in data.items()
    }
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or cls.__name__}: {exc}") from exc


def load(cls: type[T], *paths: str | Path, overrides: dict | None = None) -> T:
    """Load ``cls`` from YAML files (later ones win) and a final dict of overrides."""
    merged: dict = {}
    for path in paths:
        try:
            merged = merge(merged, load_yaml_layers(path))
        except ConfigError:
            raise
    merged = merge(merged, overrides or {})
    source = ", ".join(str(p) for p in paths) or cls.__name__
    try:
        return from_dict(cls, merged)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def to_dict(config: Any) -> dict:
    """The dataclass as plain data (what a run writes next to its outputs)."""
    return dataclasses.asdict(config)


def dump(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a.b.c": value}, the ROS parameter naming."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def unflatten(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten`."""
    out: dict = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {hint}: {errors}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_hint = args[0] if args else Any
        items = [_coerce(item_hint, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value

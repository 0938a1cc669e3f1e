"""Config files and command-line overrides for the dataclasses of :mod:`training.config`:
``load_config`` (defaults < YAML < a command's flags < ``--set``), ``apply_sets`` (dotted
``--set a.b=VALUE`` paths, YAML-parsed and type-checked against the field annotations) and
``ConfigError`` (an unknown key or a wrong type, naming the valid keys)."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A YAML file, a flag or a ``--set`` names an unknown field or gives a value of the wrong type."""


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (int -> float widened, "1e-3" read as a float
    for float fields, as PyYAML keeps exponents without a dot as strings); ConfigError otherwise."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arm in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arm, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: expected {_type_name(hint)}, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list ({_type_name(hint)}), got {value!r}")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{where}: expected a mapping ({_type_name(hint)}), got {value!r}")
        return {k: _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r} (quote it: '{value}')")
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise ConfigError(f"{where}: expected {_type_name(hint)}, got {value!r}")


def _fields(obj: Any) -> dict[str, Any]:
    """Field name -> resolved annotation of a config dataclass instance."""
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def _unknown(key: str, where: str, known: Any) -> ConfigError:
    return ConfigError(f"{where}: unknown key {key!r} (valid keys: {', '.join(sorted(known))})")


def _join(where: str, key: str) -> str:
    return where + key if where.endswith(" ") else f"{where}.{key}"


def _apply(obj: Any, overrides: dict[str, Any], where: str) -> Any:
    """Set ``overrides`` (nested mappings for nested dataclasses) on the dataclass ``obj``, each value
    type-checked against its field's annotation."""
    names = _fields(obj)
    for key, value in overrides.items():
        if key not in names:
            raise _unknown(key, where, names)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                kind = type(current).__name__
                raise ConfigError(f"{_join(where, key)}: expected a mapping of {kind} fields, got {value!r}")
            _apply(current, value, _join(where, key))
        else:
            setattr(obj, key, _coerce(value, names[key], _join(where, key)))
    return obj


def _split_pair(pair: str) -> tuple[list[str], Any]:
    key, sep, raw = pair.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {pair!r}: expected section.key=value (e.g. genrec.epochs=2)")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {pair!r}: the value is not valid YAML ({getattr(exc, 'problem', None) or exc})"
        ) from None
    return parts, value


def dotted_overrides(pairs: list[str], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``["genrec.epochs=2", "semantic_ids.codebook_size=16"]`` -> nested overrides for :func:`load_config`
    (each value read as YAML: numbers, booleans, lists), merged into a copy of ``base``."""
    out: dict[str, Any] = copy.deepcopy(base) if base else {}
    for pair in pairs:
        parts, value = _split_pair(pair)
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {pair!r}: {part!r} is already set to a value")
            node = child
        node[parts[-1]] = value
    return out


def apply_sets(obj: T, pairs: list[str]) -> T:
    """``--set a.b.c=VALUE`` pairs, in order, on the config dataclass ``obj``: a dotted path through its
    nested dataclasses (and ``dict`` fields, whose keys are free), the value read as a YAML scalar or
    flow collection and type-checked against the field's annotation. Unknown path or wrong type:
    :class:`ConfigError` naming the valid keys."""
    for pair in pairs:
        parts, value = _split_pair(pair)
        node: Any = obj
        hint: Any = type(obj)
        for depth, part in enumerate(parts):
            section = ".".join(parts[:depth])
            where = "--set " + ".".join(parts[: depth + 1])
            last = depth == len(parts) - 1
            if dataclasses.is_dataclass(node):
                names = _fields(node)
                if part not in names:
                    inside = f" in {section}" if section else ""
                    known = ", ".join(sorted(names))
                    raise ConfigError(f"--set {pair}: unknown key {part!r}{inside} (valid keys: {known})")
                if last:
                    _apply(node, {part: value}, "--set " + section)
                    break
                hint, child = names[part], getattr(node, part)
            else:  # inside a dict field: keys are free, values typed by the dict's annotation
                hint = typing.get_args(hint)[1] if typing.get_origin(hint) is dict else Any
                if last:
                    node[part] = _coerce(value, hint, where)
                    break
                child = node.setdefault(part, {})
            if not (dataclasses.is_dataclass(child) or isinstance(child, dict)):
                raise ConfigError(f"--set {pair}: {'.'.join(parts[: depth + 1])} is a value, not a section")
            node = child
    return obj


def load_config(
    cls: type[T], path: Path | None = None, overrides: dict[str, Any] | None = None, sets: list[str] | None = None
) -> T:
    """Defaults of ``cls`` updated by a YAML file, then by ``overrides`` (a command's own flags), then by
    ``sets`` (``--set section.key=value`` pairs, :func:`apply_sets`): each later one wins."""
    obj = cls()
    if path is not None:
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at top level")
        _apply(obj, data, str(path))
    if overrides:
        _apply(obj, overrides, "overrides")
    if sets:
        apply_sets(obj, sets)
    return obj

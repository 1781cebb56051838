"""Configuration dataclasses <-> JSON, and config files that hold only overrides of a named base.

Every configuration in handvox is a frozen dataclass (hashable, comparable, saved with what it
made). :func:`to_dict` / :func:`from_dict` convert one to and from JSON-ready dicts for any such
dataclass, nested ones included: tuples become lists and back, ``inf`` becomes ``"inf"`` and
back, unknown keys are refused by name, missing keys take the field's default (so files written
before a field existed still load). A dataclass with a ``parse(text)`` classmethod and a ``spec``
property (e.g. :class:`handvox.io.datasets.DatasetSpec`) is written as that string.

Config files (:func:`read_config_file`): TOML whose ``base`` names what it overrides (a preset
the caller knows, or another config file, relative to this one), holding only what differs,
each value with its reason in a comment. JSON files (full dumps, as runs save them) still load.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A config dataclass (or anything nested in one) as JSON-ready data."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(type(obj), "parse") and hasattr(obj, "spec"):
            return obj.spec
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    return obj


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build ``cls`` (a config dataclass) from :func:`to_dict`'s output.

    Raises:
        ValueError: an unknown key or a value of the wrong kind, naming where it is
            (``where`` prefixes the path, e.g. the file).
    """
    return _build(cls, data, where or cls.__name__)


def _build(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        real = [a for a in args if a is not type(None)]
        return _build(real[0], value, where) if len(real) == 1 else _tuples(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, str) and hasattr(tp, "parse"):
            return tp.parse(value)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a table of {tp.__name__} settings, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{where}: unknown {tp.__name__} fields {unknown}")
        kwargs = {k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) == len(value):
            return tuple(
                _build(a, v, f"{where}[{i}]")
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        return _tuples(value)
    if tp is float and isinstance(value, str) and value in ("inf", "-inf"):
        return float(value)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return _tuples(value)


def _tuples(x: Any) -> Any:
    # JSON has no tuples; config dataclasses are frozen and hashable, so nested lists -> tuples.
    return tuple(_tuples(v) for v in x) if isinstance(x, list) else x


def merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``: tables merge key by key, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path: str | Path, presets: dict[str, Any]) -> dict:
    """The settings of a config file as one dict: its ``base`` (a key of ``presets``, whose
    value is a dict or a callable returning one, or a config file relative to this one)
    with the file's own values merged on top. JSON files are taken as they are.

    Raises:
        ValueError: unreadable file, unknown base, or a base cycle, naming the file.
    """
    return _read(Path(path), presets, ())


def _read(path: Path, presets: dict[str, Any], seen: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"{path}: config bases form a cycle")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read the config file ({e.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except ValueError as e:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ValueError(f"{path}: not valid {kind}: {e}") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if base in presets:
        preset = presets[base]
        start = preset() if callable(preset) else preset
    else:
        file = (path.parent / base).resolve()
        if not file.is_file():
            known = ", ".join(sorted(presets))
            raise ValueError(f"{path}: base {base!r} is neither a preset ({known}) nor a file")
        start = _read(file, presets, (*seen, path))
    return merge(start, data)

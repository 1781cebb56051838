"""Datasets by name: one spec string for a dataset wherever one is named (``handvox predict
--dataset``, ``handvox train --data``, config files), and the factory that opens it.

A spec is ``KIND:ROOT[?key=value&...][@WEIGHT]``, e.g. ``nyu:/data/nyu?kinect=2`` or
``synthetic:/data/synth@0.5``. Each reader declares the options a spec may give it
(``OPTIONS``: name -> how the text is read); ``@WEIGHT`` is a mixing weight for training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from inspect import signature
from pathlib import Path
from typing import Any

from handvox.io.frames import FrameDataset
from handvox.io.icvl import ICVLDataset
from handvox.io.msra import MSRADataset
from handvox.io.nyu import NYUDataset
from handvox.io.synthetic import SyntheticDataset

READERS: dict[str, type[FrameDataset]] = {
    "nyu": NYUDataset,
    "icvl": ICVLDataset,
    "msra": MSRADataset,
    "synthetic": SyntheticDataset,
}


def register_reader(kind: str, where: str) -> None:
    """Make ``kind`` name the reader ``where`` (``"package.module:Class"``, imported when a spec
    of that kind is first used): how a package above this one adds a kind (training's ``render``,
    :class:`handvox.synth.stream.RenderedFrames`, which this package must not import: synthesis
    imports it), without importing it into every process that only might use it."""
    known = _LAZY.get(kind)
    if kind in READERS or (known is not None and known != where):
        raise ValueError(f"dataset kind {kind!r} is taken")
    _LAZY[kind] = where


# Kinds registered by register_reader, not imported yet: kind -> "module:Class".
_LAZY: dict[str, str] = {}


def _reader(kind: str) -> type[FrameDataset]:
    kind = kind.lower()
    if kind in _LAZY and kind not in READERS:
        module, _, name = _LAZY[kind].partition(":")
        READERS[kind] = getattr(import_module(module), name)
    try:
        return READERS[kind]
    except KeyError:
        raise ValueError(
            f"unknown dataset {kind!r}; choose one of {sorted({*READERS, *_LAZY})}"
        ) from None


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset to read: ``kind`` (a key of :data:`READERS`), its ``root``, reader ``options``
    as given (``(key, text)`` pairs, sorted; each key one of the reader's ``OPTIONS``) and an
    optional mixing ``weight`` (training only)."""

    kind: str
    root: str
    options: tuple[tuple[str, str], ...] = ()
    weight: float | None = None

    def __post_init__(self) -> None:
        allowed: dict[str, Callable[[str], Any]] = _reader(self.kind).OPTIONS
        for key, _ in self.options:
            if key not in allowed:
                raise ValueError(
                    f"{self.spec}: option {key!r} is not one of "
                    f"{', '.join(f'{k}=...' for k in allowed) or 'none'} for {self.kind}"
                )
        if self.weight is not None and not self.weight > 0:
            raise ValueError(f"{self.spec}: weight must be > 0")

    @classmethod
    def parse(cls, spec: str) -> DatasetSpec:
        """``KIND:ROOT[?key=value&...][@WEIGHT]`` -> DatasetSpec (ValueError naming the spec)."""
        kind, sep, rest = spec.partition(":")
        if not sep or not kind or not rest:
            raise ValueError(f"dataset {spec!r}: expected KIND:ROOT, e.g. nyu:/data/nyu")
        weight = None
        head, at, tail = rest.rpartition("@")
        if at:
            try:
                weight, rest = float(tail), head
            except ValueError:
                pass  # an @ inside the path
        root, _, query = rest.partition("?")
        if not root:
            raise ValueError(f"dataset {spec!r}: expected KIND:ROOT, e.g. nyu:/data/nyu")
        options = []
        for kv in filter(None, query.split("&")):
            k, eq, v = kv.partition("=")
            if not eq:
                raise ValueError(f"dataset {spec!r}: option {kv!r} is not key=value")
            options.append((k, v))
        return cls(kind.lower(), root, tuple(sorted(options)), weight)

    @property
    def spec(self) -> str:
        """The spec string (``parse(spec)`` gives this object back)."""
        s = f"{self.kind}:{self.root}"
        if self.options:
            s += "?" + "&".join(f"{k}={v}" for k, v in self.options)
        return s + ("" if self.weight is None else f"@{self.weight:g}")

    def reader_options(self) -> dict[str, Any]:
        """The options, read as the reader declares (ValueError naming the spec)."""
        allowed = _reader(self.kind).OPTIONS
        out = {}
        for key, text in self.options:
            try:
                out[key] = allowed[key](text)
            except ValueError:
                raise ValueError(f"dataset {self.spec}: bad value in {key}={text}") from None
        return out

    def open(self, **defaults: Any) -> FrameDataset:
        """The dataset, with the spec's options over ``defaults``. A default the reader does not
        take is left out (ICVL has one joint set; its caller checks the one it gets)."""
        cls = _reader(self.kind)
        takes = signature(cls.__init__).parameters
        kwargs = {k: v for k, v in defaults.items() if k in takes} | self.reader_options()
        try:
            return cls(self.root, **kwargs)
        except ValueError as e:
            raise ValueError(f"dataset {self.spec}: {e}") from None


def open_dataset(name: str, root: str | Path, **kwargs: Any) -> FrameDataset:
    """Open a dataset by name: nyu, icvl, msra or synthetic; kwargs go to its class."""
    return _reader(name)(root, **kwargs)

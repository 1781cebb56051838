"""Left or right: which hand a cube shows, for ``hand="auto"``.

The hand check's ``left`` logit (:mod:`handvox.estimator.check`) learned too little to decide
(docs/benchmarks.md, "Left or right"). This network decides: the pose net's encoder (its
levels as :class:`~handvox.estimator.networks.PoseNetConfig` gives them, started from the shipped
pose net's weights and fine-tuned) and a small head over its flattened feature map: a net that
already knows where the joints are needs little to tell which way the thumb lies.

Its logit that the hand is a right one is antisymmetric by construction,
``s(x) = g(x) - g(flip_x(x))``: a cube and its mirror (the same hand taken for the other one)
always get opposite answers, so the accuracy measured on right hands holds for left ones. At
inference the logit is averaged over the cube turned about the viewing axis by each of
``angles_deg`` (chosen on validation frames). Trained ad hoc so far (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from handvox import config as cfgio
from handvox.atomic import atomic_path, write_text
from handvox.errors import DataError
from handvox.estimator.cpu import frozen_for_cpu
from handvox.estimator.networks import DenseTrunk, PoseNetConfig
from handvox.estimator.volume import VolumeConfig

DEFAULT_HANDEDNESS_DIR = Path(__file__).resolve().parents[1] / "data" / "handedness"


@dataclass(frozen=True)
class HandednessConfig:
    """The network and the cubes it reads.

    Attributes:
        pose: the pose net whose encoder levels it has (``channels``, ``kernel``,
            ``batch_norm``, ``input_size``; the rest unused).
        volume: the TSDF cube (the pose path's).
        hidden: units of the head's hidden layer.
        dropout: before it, in training.
        angles_deg: the cube turned about the viewing axis by each; the logits averaged.
        segment_method: how the cubes it learned were centred (``SegmentConfig.method``).
    """

    pose: PoseNetConfig = PoseNetConfig()
    volume: VolumeConfig = VolumeConfig(size=32, voxel_mm=9.375)
    hidden: int = 128
    dropout: float = 0.3
    angles_deg: tuple[float, ...] = (0.0,)
    segment_method: str = "learned"

    def to_dict(self) -> dict:
        return cfgio.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HandednessConfig:
        return cfgio.from_dict(cls, d)


class HandednessNet(nn.Module):
    """``(B, 1, D, D, D)`` TSDF -> ``(B,)`` logit that the hand is a right one (module
    docstring): the encoder's levels, 2^3 max pooling between them, then flatten, dropout,
    ``hidden`` units, one logit."""

    def __init__(self, config: HandednessConfig):
        super().__init__()
        self.encoder = DenseTrunk(config.pose).encoder
        self.pool = nn.MaxPool3d(2)
        size = config.pose.input_size // 2 ** (len(self.encoder) - 1)
        channels = config.pose.levels[-1][-1]
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout),
                                  nn.Linear(channels * size**3, config.hidden), nn.ReLU(),
                                  nn.Linear(config.hidden, 1))  # fmt: skip

    def g(self, x: Tensor) -> Tensor:
        """The one-sided score ``(B,)``; :meth:`forward` is its antisymmetric part."""
        for i, level in enumerate(self.encoder):
            x = level(self.pool(x) if i else x)
        return self.head(x)[:, 0]

    def forward(self, tsdf: Tensor) -> Tensor:
        # One batch of both, cheaper than two calls; split by chunk, not by len(): a traced
        # graph (frozen_for_cpu) keeps chunk's halves symbolic where len() would be a constant.
        shown, mirrored = self.g(torch.cat([tsdf, tsdf.flip(-1)])).chunk(2)
        return shown - mirrored


@dataclass
class Handedness:
    """A loaded classifier: its network (eval mode), config and what was measured of it
    (``meta``: ``validation`` and ``held_out`` accuracies, the data and commands)."""

    net: nn.Module
    config: HandednessConfig
    meta: dict

    @property
    def accuracy(self) -> float:
        """Share of held-out synthetic hands it tells right (NaN when not recorded): what
        ``hand="auto"`` is allowed on (:data:`~handvox.estimator.check.HANDEDNESS_MIN`)."""
        return float(self.meta.get("held_out", {}).get("accuracy", float("nan")))

    def for_cpu(self) -> Handedness:
        """The same classifier run as :func:`~handvox.estimator.cpu.frozen_for_cpu` (faster on
        CPU, the same logits within float rounding)."""
        size = self.config.volume.size
        net = frozen_for_cpu(self.net.cpu(), torch.zeros(1, 1, size, size, size))
        return dataclasses.replace(self, net=net)


def save_handedness(net: HandednessNet, config: HandednessConfig, meta: dict,
                    folder: str | Path) -> Path:  # fmt: skip
    """``folder/model.safetensors`` and ``folder/config.json`` (``config`` and ``meta``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    text = json.dumps({"config": config.to_dict(), "meta": meta}, indent=2) + "\n"
    write_text(folder / "config.json", text)
    return folder


def load_handedness(folder: str | Path = DEFAULT_HANDEDNESS_DIR) -> Handedness:
    """A :class:`Handedness` from ``folder`` (:func:`save_handedness`), in eval mode."""
    folder = Path(folder)
    try:
        d = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = HandednessConfig.from_dict(d["config"])
        net = HandednessNet(config)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise DataError(folder, f"not a handedness classifier folder: {e}") from e
    return Handedness(net.eval(), config, dict(d.get("meta", {})))


@lru_cache(maxsize=1)
def shipped_handedness() -> Handedness | None:
    """The classifier shipped in the package (None where it holds none)."""
    if not (DEFAULT_HANDEDNESS_DIR / "config.json").is_file():
        return None
    return load_handedness(DEFAULT_HANDEDNESS_DIR)


def right_logits(handedness: Handedness, cubes: Tensor) -> Tensor:
    """``(B,)`` logit that each hand is a right one, averaged over its cubes: ``(A * B, 1, D,
    D, D)``, the ``B`` hands' cubes at the first angle of ``handedness.config.angles_deg``, then
    at the second, ... (one network call for all)."""
    n = len(cubes) // len(handedness.config.angles_deg)
    with torch.inference_mode():
        return handedness.net(cubes).view(-1, n).mean(0)

"""A trained estimator on disk: ``model.safetensors`` (weights) + ``config.json`` (everything
needed to rebuild and run it). Training state for resuming (optimiser, epoch, RNG) is kept apart
by the trainer; this file is what inference, export and the shipped model read.

Layout of a model folder::

    model.safetensors   tensors named pose.<param> and, with refinement, refine.<param>
    config.json         {"format": "handvox-model", "version": 1, "estimator": EstimatorConfig,
                         "meta": {...free-form: data, command, metrics...}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from handvox import config as cfgio
from handvox.atomic import atomic_path, write_text
from handvox.errors import DataError, HandvoxError
from handvox.estimator.networks import PoseNet, PoseNetConfig, RefineNet, RefineNetConfig
from handvox.estimator.segment import SegmentConfig
from handvox.estimator.volume import VolumeConfig

FORMAT = "handvox-model"
VERSION = 1


@dataclass(frozen=True)
class EstimatorConfig:
    """The whole estimator: joint set, volume, networks, segmentation.

    ``refine`` is None for a pose-only model. ``pose.input_size`` must equal ``volume.size``.
    """

    joint_set: str = "canonical21"
    volume: VolumeConfig = field(default_factory=VolumeConfig)
    pose: PoseNetConfig = field(default_factory=lambda: PoseNetConfig(num_joints=21))
    refine: RefineNetConfig | None = None
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    # Extra passes at inference: the cube re-centred on the mean of the joints just predicted
    # (for models trained with AugmentConfig.label_centre_prob > 0).
    recentre: int = 0
    # Test-time rotations (degrees about the viewing axis, besides 0): the pose net also runs
    # on the cube rotated by each angle, as training's augmentation rotates it, and the
    # predictions, rotated back, are averaged.
    test_rotations_deg: tuple[float, ...] = ()
    # Test-time scales (besides 1): the plain cube also scaled by each factor (> 1: the hand
    # looks smaller to the network), as training's augmentation scales it.
    test_scales: tuple[float, ...] = ()
    # A frame whose predicted hand points more than this far from up in the image (degrees, the
    # wrist -> middle MCP direction) is estimated again on a cube turned to hold it upright, as
    # most training views show hands; None: never (views that turn the hand over are rare in
    # rendered training data, and errors there are higher: docs/benchmarks.md).
    upright_beyond_deg: float | None = None
    # Per joint, the spread (mm) of the dense head's heatmaps at which its confidence halves,
    # from validation hand frames (handvox calibrate; handvox.train.confidence says how): per
    # joint, as joints spread and err differently on every frame. Empty: not calibrated
    # (confidence from test-time views, if any).
    joint_spread_mm: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.joint_spread_mm:
            if self.pose.head != "dense":
                raise ValueError("joint_spread_mm needs the dense head (its heatmaps spread)")
            if len(self.joint_spread_mm) != self.pose.num_joints or not all(
                math.isfinite(s) and s > 0 for s in self.joint_spread_mm
            ):
                raise ValueError(
                    f"joint_spread_mm must hold {self.pose.num_joints} positive numbers, got "
                    f"{self.joint_spread_mm}"
                )
        if self.upright_beyond_deg is not None and not 0 <= self.upright_beyond_deg < 180:
            raise ValueError(
                f"upright_beyond_deg must be in [0, 180) or None, got {self.upright_beyond_deg}"
            )
        if any(not math.isfinite(a) or a == 0 for a in self.test_rotations_deg):
            raise ValueError(
                f"test_rotations_deg must be finite and non-zero, got {self.test_rotations_deg}"
            )
        if any(not math.isfinite(s) or s <= 0 or s == 1 for s in self.test_scales):
            raise ValueError(
                f"test_scales must be finite, positive and not 1, got {self.test_scales}"
            )
        if self.pose.input_size != self.volume.size:
            raise ValueError(
                f"pose net input {self.pose.input_size} != volume size {self.volume.size}"
            )
        if self.pose.head == "dense" and not math.isclose(
            self.volume.cube_mm, 2 * self.pose.target_scale_mm
        ):
            raise ValueError(
                f"the dense head's heatmaps span the cube: target_scale_mm must be half the "
                f"cube's edge ({self.volume.cube_mm / 2:g} mm), not {self.pose.target_scale_mm:g}"
            )

    def to_dict(self) -> dict[str, Any]:
        return cfgio.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EstimatorConfig:
        return cfgio.from_dict(cls, d)


@dataclass
class Estimator:
    """Networks plus their config, as loaded from a model folder."""

    config: EstimatorConfig
    pose_net: PoseNet
    refine_net: RefineNet | None
    meta: dict[str, Any] = field(default_factory=dict)


def build_networks(config: EstimatorConfig) -> tuple[PoseNet, RefineNet | None]:
    """Fresh (randomly initialised) networks for ``config``."""
    return PoseNet(config.pose), None if config.refine is None else RefineNet(config.refine)


def _state(pose_net: nn.Module, refine_net: nn.Module | None) -> dict[str, torch.Tensor]:
    # DDP wraps modules in .module; save the plain names.
    tensors = {}
    for prefix, net in (("pose", pose_net), ("refine", refine_net)):
        if net is None:
            continue
        net = getattr(net, "module", net)
        for k, v in net.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().to("cpu").contiguous()
    return tensors


def save_model(
    folder: str | Path,
    config: EstimatorConfig,
    pose_net: nn.Module,
    refine_net: nn.Module | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``folder`` atomically (each file is
    written to a temporary name and renamed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if (config.refine is None) != (refine_net is None):
        raise ValueError("refine_net must be given exactly when config.refine is set")
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file(_state(pose_net, refine_net), str(tmp))
    doc = {"format": FORMAT, "version": VERSION, "estimator": config.to_dict(), "meta": meta or {}}
    write_text(folder / "config.json", json.dumps(doc, indent=2, default=_default) + "\n")
    return folder


def _default(o: Any) -> Any:
    if is_dataclass(o):
        return cfgio.to_dict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_config(folder: str | Path) -> tuple[EstimatorConfig, dict[str, Any]]:
    """The estimator config and meta of a model folder, without loading weights."""
    path = Path(folder) / "config.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, "no such file (is this a handvox model folder?)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable model config ({e})") from None
    if doc.get("format") != FORMAT:
        raise DataError(path, f"not a handvox model config (format={doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise DataError(path, f"model format version {doc.get('version')}, expected {VERSION}")
    try:
        return EstimatorConfig.from_dict(doc["estimator"]), doc.get("meta", {})
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"invalid estimator config ({e})") from None


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> Estimator:
    """Rebuild the networks of a model folder and load their weights (eval mode)."""
    config, meta = read_config(folder)
    weights = Path(folder) / "model.safetensors"
    try:
        tensors = load_file(str(weights), device=str(device))
    except FileNotFoundError:
        raise DataError(weights, "no such file") from None
    except (SafetensorError, OSError) as e:
        raise DataError(weights, f"unreadable or corrupt weights ({e})") from None
    pose_net, refine_net = build_networks(config)
    for prefix, net in (("pose", pose_net), ("refine", refine_net)):
        if net is None:
            continue
        sub = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        try:
            net.load_state_dict(sub, strict=True)
        except RuntimeError as e:
            raise DataError(weights, f"weights do not match config.json ({e})") from None
        net.to(device).eval()
    return Estimator(config, pose_net, refine_net, meta)


def average_models(folders: list[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of the weights of model folders that share their networks
    (checkpoints of one run, or of runs continuing one another: weight averaging, as in SWA).

    Batch-norm running statistics are averaged like the weights (not recomputed); the config
    (inference settings included) and meta are the first folder's, with ``meta["averaged_from"]``
    naming every source. Writes atomically (:func:`save_model`).

    Raises:
        HandvoxError: fewer than two folders, or networks that differ.
    """
    if len(folders) < 2:
        raise HandvoxError("averaging needs at least two model folders")
    models = [load_model(f) for f in folders]
    first = models[0]
    for f, m in zip(folders[1:], models[1:], strict=True):
        for part in ("joint_set", "volume", "pose", "refine"):
            if getattr(m.config, part) != getattr(first.config, part):
                raise HandvoxError(
                    f"{f}: its {part} differs from {folders[0]}'s; only models with the same "
                    "networks can be averaged"
                )
    states = [_state(m.pose_net, m.refine_net) for m in models]
    mean = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            mean[k] = (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
        else:  # batch-norm step counters
            mean[k] = max(s[k] for s in states)
    pose_net, refine_net = build_networks(first.config)
    for prefix, net in (("pose", pose_net), ("refine", refine_net)):
        if net is not None:
            net.load_state_dict({k[len(prefix) + 1 :]: v for k, v in mean.items()
                                 if k.startswith(prefix + ".")})  # fmt: skip
    keep = ("epoch", "step", "best_val", "time_s", "command")
    sources = [{"folder": str(f), **{k: m.meta[k] for k in keep if k in m.meta}}
               for f, m in zip(folders, models, strict=True)]  # fmt: skip
    meta = {**first.meta, "averaged_from": sources}
    return save_model(out, first.config, pose_net, refine_net, meta)

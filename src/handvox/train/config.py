"""What defines a training run: :class:`TrainConfig`, the named bases of config files
(:data:`PRESETS`) and the estimator a run trains (:func:`resolve_estimator`).

Modes (:attr:`TrainConfig.mode`):

* ``pose``: the pose net alone on the raw TSDF.
* ``refine``: pre-trains the refinement net on (raw, clean) TSDF pairs (L2 on the TSDF); needs
  datasets with clean depth (handvox's synthetic data, NYU's ``synthdepth``).
* ``finetune``: refinement net (from ``init``, e.g. a ``refine`` run) and pose net trained
  together on the pose loss, plus ``refine_weight`` times the TSDF loss (default 0).
* ``joint``: the paper's joint training of both nets from scratch: pose loss +
  ``refine_weight`` (default 1) times the TSDF loss.

Defaults are the paper's: 30 epochs, batch 6, Adam with learning rate 1e-4, L2 loss (MSE of the
normalised targets; errors are reported in mm). Under ``torchrun`` (DDP) the batch size is per
process.

Config files (``handvox train --config``, :func:`load_config`): TOML naming a ``base`` (a key of
:data:`PRESETS` or another config file) and holding only what differs from it, or JSON (a run's
``train_config.json``: every field).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handvox import config as cfgio
from handvox.estimator.networks import RefineNetConfig
from handvox.estimator.presets import compact_estimator, dense_estimator, paper_estimator
from handvox.estimator.weights import EstimatorConfig, load_model
from handvox.io.datasets import DatasetSpec, register_reader
from handvox.joints import get_joint_set
from handvox.train.augment import AugmentConfig

# Training also reads frames rendered as it goes (render:FOLDER?seed=S&frames=N: the recipe of a
# synthetic folder), imported only by runs that use it (the renderer is heavy).
register_reader("render", "handvox.synth.stream:RenderedFrames")

MODES = ("pose", "refine", "finetune", "joint")
# Fields that may change when a run is resumed: how it runs and when it validates and keeps
# models, not what its steps compute (a validation changes no weight).
RUN_FIELDS = ("epochs", "num_workers", "device", "checkpoint_every", "progress", "val_every",
              "keep_checkpoints")  # fmt: skip
# Fields that saved configs (train_config.json, train_state.pt, model folders' meta) may still
# hold, with the one value they ever had: handvox trains with Adam on an L2 loss only.
RETIRED_FIELDS = {"optimizer": "adam", "loss": "l2"}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as ``train_config.json``).

    Attributes:
        data: training sources; with ``weight`` on any of them, each epoch holds as many
            samples as all training frames together, shared in proportion to the weights
            (sources without one weigh 1); otherwise every frame once.
        val_data: explicit validation sources; when empty, ``val_fraction`` of each source,
            in blocks of ``val_block`` consecutive frames (so neighbouring frames of a
            sequence do not straddle the split) drawn with ``val_seed``.
        val_max_frames: at most this many validation frames (evenly spaced; 0: all).
        mode: ``pose``, ``refine``, ``finetune`` or ``joint`` (module docstring).
        lr, weight_decay: of Adam (the only optimiser; the loss is L2).
        lr_schedule: ``constant`` or ``cosine`` (decaying to 0 over the run's steps); either
            multiplied by a linear warmup over the first ``warmup_steps``.
        refine_weight: weight of the TSDF loss in ``finetune`` / ``joint`` (None: 0 / 1).
        init: a model folder whose weights start the run (required for ``finetune``: its
            refinement net).
        estimator: volume and networks; None: the init model's, else the paper's (60^3 x 5
            mm, Table 3): :func:`resolve_estimator`.
        use_mask: hand mask from segmentation in the TSDF (pixels outside it count as
            background), as the paper assumes; inference must do the same.
        skip_outside_cube: skip training and validation frames with a joint outside the cube
            around the segmented COM (a segmentation blunder; counted and reported).
        weight_init: of the refinement net: ``prior`` (:func:`handvox.train.trainer.init_refine`,
            needed for it to learn at all) or ``torch`` (PyTorch's default, which the pose net
            keeps: He init made its first epochs worse, toy data 16^3: 54 vs 33 mm after one
            epoch).
        checkpoint_every: steps between train-state checkpoints (also written at each
            validation); val_every: steps between validations besides each epoch's end (0: none).
        keep_checkpoints: also keep the model at every validation, in
            ``checkpoints/stepNNNNNNN/`` (for weight averaging: ``handvox average``).
        channels_last: channels-last 3D memory format on CPU (the same numbers, faster:
            docs/benchmarks.md, "Training step speed").
        total_steps: > 0: the run ends after this many optimiser steps (validated and saved
            there, even within an epoch) and a cosine schedule spans them; ``epochs`` still
            bounds it. Gives runs on data of different sizes one step budget.
        amp: ``bf16``: forward passes under bfloat16 autocast (weights, gradients and the
            optimiser stay float32); faster training steps on CPUs with AVX512-BF16 (an ad-hoc
            probe: docs/benchmarks.md, "Training step speed"). Validation always runs in
            float32.
        deterministic: ``torch.use_deterministic_algorithms``.
    """

    data: tuple[DatasetSpec, ...] = ()
    joint_set: str = "canonical21"
    val_data: tuple[DatasetSpec, ...] = ()
    val_fraction: float = 0.1
    val_block: int = 50
    val_seed: int = 0
    val_max_frames: int = 2000
    mode: str = "pose"
    epochs: int = 30
    batch_size: int = 6
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 0
    refine_weight: float | None = None
    init: str | None = None
    estimator: EstimatorConfig | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    use_mask: bool = True
    skip_outside_cube: bool = True
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    checkpoint_every: int = 500
    val_every: int = 0
    keep_checkpoints: bool = False
    weight_init: str = "prior"
    channels_last: bool = True
    amp: str = "none"
    deterministic: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.weight_init not in ("prior", "torch"):
            raise ValueError("weight_init must be 'prior' or 'torch' (PyTorch's default)")
        if self.amp not in ("none", "bf16"):
            raise ValueError("amp must be 'none' or 'bf16'")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError("lr_schedule must be 'constant' or 'cosine'")
        if self.mode == "finetune" and not self.init:
            raise ValueError("mode 'finetune' needs init: a model folder with a refinement net")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.total_steps < 0:
            raise ValueError("epochs >= 0, batch_size >= 1, lr > 0 and total_steps >= 0 required")
        for s in self.data + self.val_data:
            if dict(s.options).get("split") == "test":
                raise ValueError(f"{s.spec}: training and validation never read the test split")
        if not self.val_data and not 0 < self.val_fraction < 1:
            raise ValueError("val_fraction must lie in (0, 1) without val_data")
        get_joint_set(self.joint_set)

    @property
    def tsdf_weight(self) -> float:
        """Weight of the TSDF loss."""
        if self.mode == "refine":
            return 1.0
        if self.mode == "pose":
            return 0.0
        default = 1.0 if self.mode == "joint" else 0.0
        return default if self.refine_weight is None else self.refine_weight

    @property
    def needs_clean(self) -> bool:
        return self.tsdf_weight > 0

    def to_dict(self) -> dict[str, Any]:
        return cfgio.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "") -> TrainConfig:
        """From :meth:`to_dict`'s output, or a saved config that still holds a retired field
        (:data:`RETIRED_FIELDS`) at its only value; ValueError naming ``where`` otherwise."""
        d = dict(d)
        where = where or cls.__name__
        for key, only in RETIRED_FIELDS.items():
            if key in d and (value := d.pop(key)) != only:
                raise ValueError(
                    f"{where}: {key} {value!r} is not available: handvox trains with {key} "
                    f"{only!r} only (the field is gone; leave it out)"
                )
        return cfgio.from_dict(cls, d, where)


def resolve_estimator(cfg: TrainConfig) -> EstimatorConfig:
    """The run's estimator: ``cfg.estimator``, else the init model's, else the paper's; with a
    refinement net exactly when the mode uses one."""
    est = cfg.estimator
    if est is None and cfg.init:
        est = load_model(cfg.init).config
    if est is None:
        est = paper_estimator(cfg.joint_set, refine=cfg.mode != "pose")
    if cfg.mode != "pose" and est.refine is None:
        est = dataclasses.replace(est, refine=RefineNetConfig())
    if est.joint_set != get_joint_set(cfg.joint_set).name:
        raise ValueError(f"estimator joint set {est.joint_set} != training set {cfg.joint_set}")
    if est.pose.num_joints != len(get_joint_set(cfg.joint_set)):
        raise ValueError(f"pose net has {est.pose.num_joints} joints, {cfg.joint_set} has more")
    return est


# --- config files ---------------------------------------------------------------------------


# Named bases of config files (``base = "paper"``): the paper's training defaults (TrainConfig's)
# with the paper's networks (Table 3 at 60^3 x 5 mm), with handvox's compact pose net, or with the
# compact encoder and the dense head; the canonical 21 joints.
PRESETS = {
    "paper": lambda: TrainConfig(estimator=paper_estimator("canonical21", refine=False)).to_dict(),
    "compact": lambda: TrainConfig(estimator=compact_estimator()).to_dict(),
    "dense": lambda: TrainConfig(estimator=dense_estimator()).to_dict(),
}


def read_config(path: str | Path) -> dict[str, Any]:
    """A config file's settings as one dict (its base's with its own on top;
    :func:`handvox.config.read_config_file` with :data:`PRESETS`)."""
    return cfgio.read_config_file(path, PRESETS)


def load_config(path: str | Path) -> TrainConfig:
    """The TrainConfig of a config file (TOML over a base, or a full JSON dump)."""
    return TrainConfig.from_dict(read_config(path), where=str(path))

"""Training of the volumetric estimator (``handvox train``): configuration, the loop,
checkpoints and resumption, logs and plots, and the command line.

What a run reads (sources, frame scans, the training/validation split, epoch plans and the
samples: TSDF volume and pose target of each frame) is in :mod:`handvox.train.data`.

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

Output folder::

    train_config.json   the TrainConfig of the run
    train_state.pt      everything needed to continue (weights, Adam, epoch, step, RNG states,
                        log rows), written atomically every ``checkpoint_every`` steps and at
                        each validation; a rerun with the same folder resumes from it
    log.csv, curves.png losses and validation errors (one row per validation)
    best/, last/        model folders (handvox.estimator.weights): best validation error, latest
    checkpoints/        with keep_checkpoints: the model at every validation, stepNNNNNNN/
    scan/               cached COMs and segmentation failures of every frame
    split.json          the training and validation frames of each source

Exact resumption: the frame order of epoch ``e`` is a function of ``(seed, e)``, the
augmentation of the sample at position ``p`` of epoch ``e`` of ``(seed, e, p)`` and the
dropout masks of step ``s`` of ``(seed, s, rank)``; so a resumed run needs only the step it
stopped at and repeats the uninterrupted run bit for bit (CPU, ``deterministic=True``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from handvox.atomic import atomic_path, write_text
from handvox.errors import HandvoxError
from handvox.estimator.networks import RefineNetConfig
from handvox.estimator.presets import paper_estimator
from handvox.estimator.volume import decode_joints
from handvox.estimator.weights import EstimatorConfig, build_networks, load_model, save_model
from handvox.io.datasets import DatasetSpec
from handvox.joints import get_joint_set
from handvox.train.augment import AugmentConfig
from handvox.train.data import (
    _Batches,
    _Frames,
    _interval,
    _Keyed,
    _prepare_frames,
    epoch_plan,
)

MODES = ("pose", "refine", "finetune", "joint")
STATE_NAME = "train_state.pt"
STATE_VERSION = 1
LOG_FIELDS = (
    "epoch", "step", "train_loss", "train_mm", "train_tsdf", "val_mm", "val_pct20", "val_pct40",
    "val_pct50", "val_tsdf", "val_tsdf_raw", "lr", "time_s",
)  # fmt: skip
# Fields that may change when a run is resumed: how it runs, not what it computes.
RUN_FIELDS = ("epochs", "num_workers", "device", "checkpoint_every", "progress")


# --- configuration --------------------------------------------------------------------------
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
        refine_weight: weight of the TSDF loss in ``finetune`` / ``joint`` (None: 0 / 1).
        init: a model folder whose weights start the run (required for ``finetune``: its
            refinement net).
        estimator: volume and networks; None: the paper's (60^3 x 5 mm, Table 3).
        use_mask: hand mask from segmentation in the TSDF (pixels outside it count as
            background), as the paper assumes; inference must do the same.
        skip_outside_cube: skip training and validation frames with a joint outside the cube
            around the segmented COM (a segmentation blunder; counted and reported).
        weight_init: of the refinement net: ``prior`` (:func:`init_refine`, needed for it
            to learn at all) or ``torch`` (PyTorch's default, which the pose net keeps: He
            init made its first epochs worse, toy data 16^3: 54 vs 33 mm after one epoch).
        checkpoint_every: steps between train-state checkpoints (also written at each
            validation); val_every: steps between validations besides each epoch's end (0: none).
        keep_checkpoints: also keep the model at every validation, in
            ``checkpoints/stepNNNNNNN/`` (for weight averaging: ``handvox average``).
        channels_last: channels-last 3D memory format on CPU (the same numbers, ~1.5x faster).
        total_steps: > 0: the run ends after this many optimiser steps (validated and saved
            there, even within an epoch) and a cosine schedule spans them; ``epochs`` still
            bounds it. Gives runs on data of different sizes one step budget.
        amp: ``bf16``: forward passes under bfloat16 autocast (weights, gradients and the
            optimiser stay float32); ~1.7x faster training steps on CPUs with AVX512-BF16
            (compact pose net, batch 32, 2 cores; an ad-hoc probe under load, 41 -> 69
            samples/s). Validation always runs in float32.
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
    optimizer: str = "adam"
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    total_steps: int = 0
    loss: str = "l2"
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
        if self.optimizer != "adam" or self.loss != "l2":
            raise ValueError("only optimizer 'adam' and loss 'l2' are implemented")
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
        d = dataclasses.asdict(self)
        d["estimator"] = None if self.estimator is None else self.estimator.to_dict()
        d["data"] = [s.spec for s in self.data]
        d["val_data"] = [s.spec for s in self.val_data]
        return json.loads(json.dumps(d, default=str))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        if set(d) - names:
            raise ValueError(f"TrainConfig: unknown fields {sorted(set(d) - names)}")
        for key in ("data", "val_data"):
            if key in d:
                d[key] = tuple(
                    s if isinstance(s, DatasetSpec) else DatasetSpec.parse(s) for s in d[key]
                )
        if isinstance(d.get("estimator"), dict):
            d["estimator"] = EstimatorConfig.from_dict(d["estimator"])
        if isinstance(d.get("augment"), dict):
            a = dict(d["augment"])
            if "scale" in a:
                a["scale"] = tuple(a["scale"])
            d["augment"] = AugmentConfig(**a)
        return cls(**d)


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


# --- networks -------------------------------------------------------------------------------
class _Model(nn.Module):
    """The trained part: refinement net (or None) feeding the pose net (or None)."""

    def __init__(self, pose: nn.Module | None, refine: nn.Module | None):
        super().__init__()
        self.pose, self.refine = pose, refine

    def forward(self, volume: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        refined = self.refine(volume) if self.refine is not None else None
        pred = None
        if self.pose is not None:
            pred = self.pose(refined if refined is not None else volume)
        return pred, refined


# --- distributed ----------------------------------------------------------------------------
@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # this module started the process group

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        parts: list = [None] * self.world
        dist.all_gather_object(parts, obj)
        return parts


def _setup_dist(device: torch.device) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return _Dist(), device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    owned = not dist.is_initialized()
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if owned:
        from datetime import timedelta

        backend = "nccl" if device.type == "cuda" else "gloo"
        # Long timeout: rank 0 may write checkpoints while the others wait.
        dist.init_process_group(backend, timeout=timedelta(hours=2))
    if device.type == "cpu":
        torch.set_num_threads(
            max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world)))
        )
    return _Dist(dist.get_rank(), dist.get_world_size(), local, owned), device


# --- helpers --------------------------------------------------------------------------------
def _step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def _lr(cfg: TrainConfig, step: int, total: int) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "cosine" and total > 0:
        return warm * cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return warm * cfg.lr


def _rng_state() -> dict[str, Any]:
    npst = np.random.get_state(legacy=False)  # noqa: NPY002 (saved for completeness)
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            **npst,
            "state": {
                k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in npst["state"].items()
            },
        },
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = dict(state["numpy"])
    npst["state"] = {
        k: (np.asarray(v, np.uint32) if isinstance(v, list) else v)
        for k, v in npst["state"].items()
    }
    np.random.set_state(npst)  # noqa: NPY002
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))


def write_log(path: Path, rows: list[dict[str, Any]]) -> None:
    """``log.csv``: one row per validation (columns :data:`LOG_FIELDS`, empty when n/a)."""

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    lines = [",".join(LOG_FIELDS)]
    lines += [",".join(fmt(r.get(k)) for k in LOG_FIELDS) for r in rows]
    write_text(path, "\n".join(lines) + "\n")


def plot_curves(path: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """``curves.png``: training loss and validation error against epochs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in rows]

    def col(k: str) -> list[float]:
        return [np.nan if r.get(k) is None else r[k] for r in rows]

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    a.plot(ep, col("train_loss"), "o-", label="train loss")
    if any(np.isfinite(col("val_tsdf"))):
        a.plot(ep, col("val_tsdf"), "s-", label="val TSDF L2")
        a.plot(ep, col("val_tsdf_raw"), "k:", label="val TSDF L2, raw input")
    if any(np.isfinite(col("train_tsdf"))):
        a.plot(ep, col("train_tsdf"), "^--", label="train TSDF L2")
    a.set(xlabel="epoch", ylabel="loss (MSE)", yscale="log", title="loss")
    a.grid(alpha=0.3)
    a.legend()
    if any(np.isfinite(col("val_mm"))):
        b.plot(ep, col("train_mm"), "o--", label="train (augmented)")
        b.plot(ep, col("val_mm"), "s-", label="validation")
        b.set(xlabel="epoch", ylabel="mean joint error (mm)", title="joint error")
        b.legend()
    else:
        b.text(0.5, 0.5, "no pose net trained in this mode", ha="center", va="center")
    b.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


# --- the run --------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What :func:`train` did: the output folder, the best validation metrics, the step reached
    and whether the run completed all epochs."""

    out: Path
    best: dict[str, float]
    step: int
    epoch: float
    finished: bool
    log: list[dict[str, Any]]
    skipped: dict[str, int]


class _Stop(Exception):
    pass


def init_refine(net: nn.Module, mean_tsdf: float) -> nn.Module:
    """Initialise the refinement net for a start at the constant ``mean_tsdf``: He (Kaiming
    normal, fan-in) weights and zero biases for the layers followed by a ReLU; the output layer
    Glorot uniform at gain 0.01, its bias ``atanh(mean_tsdf)``.

    Why: the clean TSDF is +1 (free space) in most voxels. Started at 0, Adam reaches that mean
    fastest by scaling up all weights at once, not through the one output bias; the activations
    then explode (pre-tanh values in the thousands within 20 steps at lr 1e-3), tanh saturates
    at +1 everywhere and its gradient vanishes: the net stays at "all free space" (toy data:
    val TSDF L2 0.31 for good, the raw input's being 0.035). Starting at the mean removes the
    push; with it the same runs reach 0.025 in 200 steps, at lr 1e-3 and 1e-4 alike.
    """
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d))]
    for i, m in enumerate(layers):
        if i == len(layers) - 1:
            nn.init.xavier_uniform_(m.weight, gain=0.01)
            nn.init.constant_(m.bias, math.atanh(min(max(mean_tsdf, -0.99), 0.99)))
        else:
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


def _mean_clean_tsdf(frames: _Frames, count: int = 32) -> float:
    """Mean clean TSDF of ``count`` training frames spread over the pools (unaugmented)."""
    pool = np.concatenate(frames.train_pools)
    pick = pool[np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(np.int64)]
    return float(np.mean([frames.samples[(int(i), -1, -1)]["clean"].mean() for i in pick]))


def _build_model(
    cfg: TrainConfig, est: EstimatorConfig, prior_tsdf: float
) -> tuple[nn.Module, nn.Module | None]:
    """Both networks of ``est`` (pose net always, as the model folder holds one), started from
    ``cfg.init`` where it has matching weights."""
    torch.manual_seed(cfg.seed)
    pose, refine = build_networks(est)
    if refine is not None and cfg.weight_init == "prior":
        init_refine(refine, prior_tsdf)
    if cfg.init:
        init = load_model(cfg.init)
        trained = init.meta.get("trained", ["pose"] + (["refine"] if init.refine_net else []))
        if refine is not None and init.refine_net is not None:
            if init.config.refine != est.refine:
                raise HandvoxError(f"{cfg.init}: its refinement net differs from the config's")
            refine.load_state_dict(init.refine_net.state_dict())
        elif cfg.mode == "finetune":
            raise HandvoxError(f"{cfg.init}: no refinement net to fine-tune")
        if "pose" in trained and init.config.pose == est.pose:
            pose.load_state_dict(init.pose_net.state_dict())
        elif "pose" in trained and cfg.mode != "refine":
            # Silently starting from scratch would waste the run that was meant to continue it.
            raise HandvoxError(
                f"{cfg.init}: its pose net differs from the config's (estimator.pose), so its "
                "weights cannot start this run"
            )
    return pose, refine


def train(
    cfg: TrainConfig,
    out: str | Path,
    *,
    resume: bool | None = None,
    max_steps: int | None = None,
    on_step=None,
    command: str | None = None,
) -> TrainResult:
    """Train (or continue training) into the folder ``out``.

    Args:
        cfg: the run's configuration.
        resume: True: continue from ``out/train_state.pt`` (error if absent); False: start
            afresh (error if present); None: continue when present. On resumption fields other
            than :data:`RUN_FIELDS` must equal the saved config.
        max_steps: stop (state saved) once this many optimiser steps are done in all.
        on_step: optional ``f(step)`` called after each optimiser step (tests use it to kill a
            run between checkpoints).
        command: the command line recorded in the model folders' meta.
    Returns:
        :class:`TrainResult`.
    """
    out = Path(out)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    ctx, device = _setup_dist(device)
    try:
        return _Trainer(cfg, out, device, ctx, command).run(resume, max_steps, on_step)
    finally:
        if ctx.owned and dist.is_initialized():
            dist.destroy_process_group()


def _check_resumable(saved: TrainConfig, cfg: TrainConfig) -> TrainConfig:
    a, b = saved.to_dict(), cfg.to_dict()
    diff = [k for k in a if k not in RUN_FIELDS and a[k] != b[k]]
    if diff:
        raise HandvoxError(
            f"the output folder holds a run with another config (differs in {', '.join(diff)}); "
            "use another --out, or resume with the same settings"
        )
    return dataclasses.replace(saved, **{k: getattr(cfg, k) for k in RUN_FIELDS})


class _Trainer:
    def __init__(self, cfg: TrainConfig, out: Path, device, ctx: _Dist, command: str | None):
        self.cfg, self.out, self.device, self.ctx = cfg, out, device, ctx
        self.command = command or " ".join(sys.argv)

    # -- state
    def _load_state(self, resume: bool | None) -> dict[str, Any] | None:
        path = self.out / STATE_NAME
        state = None
        if self.ctx.main:
            exists = path.is_file()
            if resume and not exists:
                state = {"error": f"{path}: no training state to resume from"}
            elif resume is False and exists:
                state = {"error": f"{path} exists; use another --out or resume"}
            elif exists:
                state = torch.load(path, map_location="cpu", weights_only=True)
        state = self.ctx.broadcast(state)
        if state is not None and "error" in state:
            raise HandvoxError(state["error"])
        return state

    def _save_state(self, **extra: Any) -> None:
        if not self.ctx.main:
            return
        pose, refine = self.nets
        state = {
            "version": STATE_VERSION,
            "config": self.cfg.to_dict(),
            "estimator": self.est.to_dict(),
            "world_size": self.ctx.world,
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "step": self.step,
            "pose": pose.state_dict(),
            "refine": None if refine is None else refine.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": {"name": self.cfg.lr_schedule, "step": self.step},
            "best": self.best,
            "log": self.log,
            "acc": self.acc,
            "time_s": self.elapsed(),
            "rng": _rng_state(),
            "skipped": self.frames.skipped,
            **extra,
        }
        with atomic_path(self.out / STATE_NAME) as tmp:
            torch.save(state, tmp)

    def elapsed(self) -> float:
        return self.time_before + time.perf_counter() - self.t0

    # -- setup
    def run(self, resume: bool | None, max_steps: int | None, on_step) -> TrainResult:
        cfg, ctx = self.cfg, self.ctx
        if ctx.main:
            self.out.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        state = self._load_state(resume)
        if state is not None:
            self.cfg = cfg = _check_resumable(TrainConfig.from_dict(state["config"]), cfg)
            if state["world_size"] != ctx.world:
                raise HandvoxError(
                    f"the run was started with {state['world_size']} processes, not {ctx.world}"
                )
            self.est = EstimatorConfig.from_dict(state["estimator"])
        else:
            self.est = resolve_estimator(cfg)
        torch.use_deterministic_algorithms(cfg.deterministic)
        if ctx.main:
            write_text(self.out / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.frames = _prepare_frames(cfg, self.est, self.out, ctx)
        if ctx.main:
            specs = [src.spec for src in cfg.data + cfg.val_data]
            write_text(self.out / "split.json", json.dumps(self.frames.split(specs)) + "\n")

        # The refinement net's starting point (init_refine) needs the data's mean clean TSDF.
        prior = 1.0
        if state is None and self.est.refine is not None and cfg.needs_clean:
            prior = _mean_clean_tsdf(self.frames)
        pose, refine = _build_model(cfg, self.est, prior)
        self.nets = (pose, refine)
        trained_pose = pose if cfg.mode != "refine" else None
        trained_refine = refine if cfg.mode != "pose" else None
        model = _Model(trained_pose, trained_refine).to(self.device)
        self.fmt = (
            torch.channels_last_3d
            if (cfg.channels_last and self.device.type == "cpu")
            else torch.contiguous_format
        )
        model = model.to(memory_format=self.fmt)
        self.opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.best: dict[str, float] = {}
        self.log: list[dict[str, Any]] = []
        self.acc = [0.0, 0.0, 0.0, 0.0]  # loss sum, mm sum, tsdf sum, samples since last row
        self.time_before = 0.0
        if state is not None:
            pose.load_state_dict(state["pose"])
            if refine is not None:
                refine.load_state_dict(state["refine"])
            self.opt.load_state_dict(state["optimizer"])
            self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
            self.step, self.best, self.log = state["step"], state["best"], state["log"]
            self.acc, self.time_before = state["acc"], state["time_s"]
            _set_rng_state(state["rng"])
        self.model = model
        self.ddp = model
        if ctx.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(model, device_ids=ids)
        self.t0 = time.perf_counter()
        if ctx.main:
            write_log(self.out / "log.csv", self.log)  # drops rows written after the state
            self._announce(state is not None)
        return self._loop(max_steps, on_step)

    def _announce(self, resumed: bool) -> None:
        f = self.frames
        n_train = sum(len(p) for p in f.train_pools)
        sk = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in f.skipped.items())
        print(
            f"handvox train: mode {self.cfg.mode}, {n_train} training frames "
            f"(skipped: {sk}), {len(f.val)} validation frames, volume "
            f"{self.est.volume.size}^3 x {self.est.volume.voxel_mm:g} mm, {self.ctx.world} "
            f"process(es) on {self.device}"
            + (f"; resuming at epoch {self.epoch + 1} step {self.step}" if resumed else ""),
            file=sys.stderr,
            flush=True,
        )

    def _loaders(self) -> tuple[DataLoader, _Batches, DataLoader]:
        cfg, f, ctx = self.cfg, self.frames, self.ctx
        weights = None
        if any(s.weight is not None for s in cfg.data):
            weights = [1.0 if s.weight is None else s.weight for s in cfg.data]
        batches = _Batches(
            lambda e: epoch_plan(f.train_pools, weights, cfg.seed, e),
            cfg.batch_size,
            ctx.rank,
            ctx.world,
        )
        common = dict(
            num_workers=cfg.num_workers,
            persistent_workers=cfg.num_workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        train_loader = DataLoader(f.samples, batch_sampler=batches, **common)
        mine = [(int(i), -1, -1) for i in f.val[ctx.rank :: ctx.world]]
        # No gradients in validation: larger batches are cheap.
        val_loader = DataLoader(_Keyed(f.samples, mine), batch_size=2 * cfg.batch_size, **common)
        return train_loader, batches, val_loader

    # -- training
    def _forward(self, batch: dict[str, Any], net: nn.Module):
        vol = batch["volume"].to(self.device, non_blocking=True).contiguous(memory_format=self.fmt)
        return net(vol)

    def _loop(self, max_steps: int | None, on_step) -> TrainResult:
        from tqdm import tqdm

        cfg, ctx = self.cfg, self.ctx
        train_loader, batches, self.val_loader = self._loaders()
        total = sum(batches.steps(e) for e in range(cfg.epochs))
        if cfg.total_steps:
            total = min(total, cfg.total_steps)
        w = cfg.tsdf_weight
        stopped = False
        if self.step == 0 and not self.log:
            self._validate_and_log(batches)  # the untrained model: the curves' first point
        try:
            while self.epoch < cfg.epochs and self.step < total:
                steps = batches.steps(self.epoch)
                batches.set_epoch(self.epoch, self.step_in_epoch)
                bar = tqdm(
                    total=steps,
                    initial=self.step_in_epoch,
                    unit="batch",
                    desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                    disable=not (cfg.progress and ctx.main),
                    mininterval=_interval(),
                    dynamic_ncols=True,
                )
                with bar:
                    for batch in train_loader:
                        if max_steps is not None and self.step >= max_steps:
                            raise _Stop  # a resumed run already there: not one step more
                        self._train_step(batch, w, total)
                        self.step_in_epoch += 1
                        self.step += 1
                        bar.update(1)
                        if self.acc[3]:
                            bar.set_postfix_str(self._postfix(), refresh=False)
                        if on_step is not None:
                            on_step(self.step)
                        if (
                            cfg.val_every
                            and self.step % cfg.val_every == 0
                            and self.step_in_epoch < steps
                        ):
                            self._validate_and_log(batches)
                        elif cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                            self._save_state()
                        if max_steps is not None and self.step >= max_steps:
                            raise _Stop
                        if self.step >= total:
                            break  # total_steps reached within the epoch
                if self.step_in_epoch >= steps:
                    self.epoch += 1
                    self.step_in_epoch = 0
                self._validate_and_log(batches)
        except _Stop:
            stopped = True
            self._save_state()
            self._save_model("last")
        ctx.barrier()
        if ctx.main and not stopped:
            self._summary()
        return TrainResult(
            self.out,
            dict(self.best),
            self.step,
            self._epochs_done(batches),
            not stopped and (self.epoch >= cfg.epochs or self.step >= total),
            list(self.log),
            dict(self.frames.skipped),
        )

    def _postfix(self) -> str:
        n = self.acc[3]
        s = f"loss {self.acc[0] / n:.4g}"
        if self.cfg.mode != "refine":
            s += f" {self.acc[1] / n:.1f} mm"
        return s

    def _train_step(self, batch: dict[str, Any], w: float, total: int) -> None:
        cfg = self.cfg
        lr = _lr(cfg, self.step, total)
        for g in self.opt.param_groups:
            g["lr"] = lr
        torch.manual_seed(_step_seed(cfg.seed, self.step, self.ctx.rank))
        self.ddp.train()
        with torch.autocast(self.device.type, torch.bfloat16, enabled=cfg.amp == "bf16"):
            pred, refined = self._forward(batch, self.ddp)
        pred = None if pred is None else pred.float()
        refined = None if refined is None else refined.float()
        loss = torch.zeros((), device=self.device)
        n = len(batch["frame"])
        if pred is not None:
            target = batch["target"].to(self.device)
            loss = loss + torch.mean((pred - target) ** 2)
            with torch.no_grad():
                mm = torch.linalg.vector_norm(pred - target, dim=-1).mean(-1)
                mm = mm * batch["scale"].to(self.device) * self.est.pose.target_scale_mm
                self.acc[1] += float(mm.sum())
        if refined is not None and w > 0:
            clean = batch["clean"].to(self.device).contiguous(memory_format=self.fmt)
            tsdf = torch.mean((refined - clean) ** 2)
            loss = loss + w * tsdf
            self.acc[2] += float(tsdf.detach()) * n
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.acc[0] += float(loss.detach()) * n
        self.acc[3] += n

    # -- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean joint error (mm), fractions within 20/40/50 mm and TSDF L2 on the val frames."""
        from handvox.eval.files import fraction_within, joint_errors

        self.model.eval()
        errs, tsdf_sum, raw_sum, n = [], 0.0, 0.0, 0
        for batch in self.val_loader:
            pred, refined = self._forward(batch, self.model)
            if pred is not None:
                unit = self.est.pose.target_scale_mm
                xyz = decode_joints(pred.cpu(), batch["com"], unit, batch["angle"], batch["scale"])
                errs.append(joint_errors(xyz.numpy(), batch["joints"].numpy()))
            if refined is not None and "clean" in batch:
                clean = batch["clean"].to(self.device)
                tsdf_sum += float(((refined - clean) ** 2).mean(dim=(1, 2, 3, 4)).sum())
                raw = batch["volume"].to(self.device)
                raw_sum += float(((raw - clean) ** 2).mean(dim=(1, 2, 3, 4)).sum())
            n += len(batch["frame"])
        parts = self.ctx.gather((errs, tsdf_sum, raw_sum, n))
        errs = [e for p in parts for e in p[0]]
        n = sum(p[3] for p in parts)
        res: dict[str, float] = {}
        if errs:
            e = np.concatenate(errs)
            res["val_mm"] = float(e.mean())
            for t, frac in zip((20, 40, 50), fraction_within(e, [20, 40, 50]), strict=True):
                res[f"val_pct{t}"] = 100.0 * float(frac)
        if self.frames.samples.clean and n:
            res["val_tsdf"] = sum(p[1] for p in parts) / n
            res["val_tsdf_raw"] = sum(p[2] for p in parts) / n  # the unrefined input's
        return res

    def _validate_and_log(self, batches: _Batches) -> None:
        res = self.validate()
        acc = self.ctx.sum(list(self.acc), self.device)
        n = acc[3]
        row = {
            "epoch": round(self._epochs_done(batches), 4),
            "step": self.step,
            "train_loss": acc[0] / n if n else None,
            "train_mm": acc[1] / n if n and self.cfg.mode != "refine" else None,
            "train_tsdf": acc[2] / n if n and self.cfg.tsdf_weight > 0 else None,
            "lr": self.opt.param_groups[0]["lr"],
            "time_s": round(self.elapsed(), 1),
            **res,
        }
        self.acc = [0.0, 0.0, 0.0, 0.0]
        self.log.append(row)
        key = "val_tsdf" if self.cfg.mode == "refine" else "val_mm"
        improved = key in res and (not self.best or res[key] < self.best[key])
        if improved:
            self.best = {**res, "epoch": row["epoch"], "step": self.step}
        if self.ctx.main:
            write_log(self.out / "log.csv", self.log)
            plot_curves(self.out / "curves.png", self.log, f"handvox train ({self.cfg.mode})")
            if improved:
                self._save_model("best")
            self._save_model("last")
            if self.cfg.keep_checkpoints:
                self._save_model(f"checkpoints/step{self.step:07d}")
            self._save_state()
            msg = ", ".join(f"{k} {v:.4g}" for k, v in res.items())
            from tqdm import tqdm

            # tqdm.write keeps the line apart from a progress bar being drawn.
            tqdm.write(f"epoch {row['epoch']:g} step {self.step}: {msg}", file=sys.stderr)

    def _epochs_done(self, batches: _Batches) -> float:
        steps = batches.steps(min(self.epoch, max(self.cfg.epochs - 1, 0)))
        return self.epoch + (self.step_in_epoch / steps if steps else 0.0)

    # -- outputs
    def _save_model(self, name: str) -> None:
        if not self.ctx.main:
            return
        pose, refine = self.nets
        trained = {"pose": ["pose"], "refine": ["refine"]}.get(self.cfg.mode, ["pose", "refine"])
        meta = {
            "command": self.command,
            "mode": self.cfg.mode,
            "trained": trained,
            "data": [s.spec for s in self.cfg.data],
            "val_data": [s.spec for s in self.cfg.val_data],
            "train_frames": int(sum(len(p) for p in self.frames.train_pools)),
            "val_frames": int(len(self.frames.val)),
            "skipped": self.frames.skipped,
            "epoch": self.epoch,
            "step": self.step,
            "best_val": self.best,
            "time_s": round(self.elapsed(), 1),
            "input": {"com": "segment_hand on the input depth", "mask": self.cfg.use_mask},
            "train_config": self.cfg.to_dict(),
            "torch": torch.__version__,
        }
        save_model(self.out / name, self.est, pose, refine, meta)

    def _summary(self) -> None:
        b = self.best
        if "val_mm" in b:
            pct = "/".join(f"{b[f'val_pct{t}']:.1f}" for t in (20, 40, 50))
            msg = f"best validation error {b['val_mm']:.2f} mm (20/40/50 mm: {pct} %)"
        elif "val_tsdf" in b:
            msg = f"best validation TSDF L2 {b['val_tsdf']:.5f}"
        else:
            msg = "no validation"
        at = f" at epoch {b['epoch']:g}" if b else ""
        print(f"handvox train: done; {msg}{at}; model in {self.out / 'best'}", file=sys.stderr)


# --- command line ---------------------------------------------------------------------------

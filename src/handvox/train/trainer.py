"""Training of the volumetric estimator (``handvox train``): :func:`train`, set-up and the loop.

What defines a run (modes, defaults): :mod:`handvox.train.config`; what it reads:
:mod:`handvox.train.data`; its processes: :mod:`handvox.train.distributed`; where it stands and
how it resumes: :mod:`handvox.train.state`; what it reports: :mod:`handvox.train.logs`.

Output folder::

    train_config.json   the TrainConfig of the run
    train_state.pt      everything needed to continue (weights, Adam, epoch, step, RNG states,
                        log rows), written atomically every ``checkpoint_every`` steps and at
                        each validation; a rerun with the same folder resumes from it
    log.csv, curves.png losses and validation errors (one row per validation)
    best/, last/        model folders (handvox.estimator.weights): best validation error, latest
    checkpoints/        with keep_checkpoints: the model at every validation, stepNNNNNNN/
    scan/               cached COMs, masks and segmentation failures of every frame, shared
                        with other runs of the same data and segmentation through
                        $HANDVOX_SCAN_CACHE (default ~/.cache/handvox/scans; "off": not shared)
    split.json          the training and validation frames of each source

A resumed run repeats the uninterrupted one bit for bit (CPU, ``deterministic=True``; how:
:mod:`handvox.train.state`).
"""

from __future__ import annotations

import json
import math
import sys
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import (
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    LinearLR,
)

from handvox.atomic import remove_stale_temps, write_text, writer_lock
from handvox.errors import HandvoxError
from handvox.estimator.locate import hand_finder
from handvox.estimator.volume import decode_joints
from handvox.estimator.weights import EstimatorConfig, build_networks, load_model, save_model
from handvox.eval.metrics import fraction_within, joint_errors
from handvox.train.config import TrainConfig, resolve_estimator
from handvox.train.data import Loaders, RunFrames, make_loaders, prepare_frames
from handvox.train.distributed import Dist, setup_distributed
from handvox.train.logs import RunningMeans, best_summary, plot_curves, progress_bar, say, write_log
from handvox.train.state import (
    RunState,
    load_state,
    restore_rng,
    resumed_config,
    save_state,
    step_seed,
)


@dataclass
class TrainResult:
    """What :func:`train` did: the output folder, the best validation metrics, the step and
    epoch reached, whether the run completed, its log rows and the frames it skipped."""

    out: Path
    best: dict[str, float]
    step: int
    epoch: float
    finished: bool
    log: list[dict[str, Any]]
    skipped: dict[str, int]


class _Stop(Exception):
    """``max_steps`` reached: the run stops there, its state saved."""


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
            than :data:`handvox.train.config.RUN_FIELDS` must equal the saved config.
        max_steps: stop (state saved) once this many optimiser steps are done in all.
        on_step: optional ``f(step)`` called after each optimiser step (tests use it to kill a
            run between checkpoints).
        command: the command line recorded in the model folders' meta.
    Returns:
        :class:`TrainResult`.
    """
    ctx, device = setup_distributed(cfg.device)
    out = Path(out)
    try:
        with ExitStack() as stack:
            if ctx.main:  # one writer a run folder; a killed one's temporaries go
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(writer_lock(out, "train", "a training run"))
                for folder in [out, *(p for p in out.iterdir() if p.is_dir())]:
                    remove_stale_temps(folder)
            run = _Run.start(cfg, out, device, ctx, resume, command or " ".join(sys.argv))
            result = _loop(run, max_steps, on_step)
            # Every process past its last collective before any tears the group down.
            ctx.barrier()
            return result
    finally:
        ctx.close()


def _loop(run: _Run, max_steps: int | None, on_step) -> TrainResult:
    """The training loop: epochs of optimiser steps, validating (and saving) at each epoch's
    end, every ``val_every`` steps, at ``total_steps`` and where ``max_steps`` stops it; the
    state also every ``checkpoint_every`` steps."""
    cfg, ctx, device, st = run.cfg, run.ctx, run.device, run.state
    model, opt, sched, batches = run.ddp, run.opt, run.sched, run.loaders.batches
    unit = run.est.pose.target_scale_mm
    stopped = False
    if st.step == 0 and not st.log:
        run.validate_and_log()  # the untrained model: the curves' first point
    try:
        while st.epoch < cfg.epochs and st.step < run.total_steps:
            steps = batches.steps(st.epoch)
            batches.set_epoch(st.epoch, st.step_in_epoch)
            bar = progress_bar(total=steps, initial=st.step_in_epoch, unit="batch",
                               desc=f"epoch {st.epoch + 1}/{cfg.epochs}",
                               show=cfg.progress and ctx.main)  # fmt: skip
            with bar:
                for batch in run.loaders.train:
                    if max_steps is not None and st.step >= max_steps:
                        raise _Stop  # a resumed run already there: not one step more
                    # Dropout masks, like all else a step draws, are a function of the step.
                    torch.manual_seed(step_seed(cfg.seed, st.step, ctx.rank))
                    model.train()
                    with torch.autocast(device.type, torch.bfloat16, enabled=cfg.amp == "bf16"):
                        pred, refined = model(run.input(batch["volume"]))
                    loss, mm, tsdf = torch.zeros((), device=device), 0.0, 0.0
                    if pred is not None:  # L2 on the normalised joint targets
                        pred, target = pred.float(), batch["target"].to(device)
                        loss = loss + torch.mean((pred - target) ** 2)
                        with torch.no_grad():
                            err = torch.linalg.vector_norm(pred - target, dim=-1).mean(-1)
                            mm = float((err * batch["scale"].to(device) * unit).sum())
                    if refined is not None and cfg.tsdf_weight > 0:  # L2 on the TSDF
                        tsdf_l2 = torch.mean((refined.float() - run.input(batch["clean"])) ** 2)
                        loss = loss + cfg.tsdf_weight * tsdf_l2
                        tsdf = float(tsdf_l2.detach())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    st.lr = sched.get_last_lr()[0]
                    opt.step()
                    sched.step()
                    st.meters.add(len(batch["frame"]), float(loss.detach()), mm, tsdf)
                    st.step += 1
                    st.step_in_epoch += 1
                    bar.update(1)
                    bar.set_postfix_str(st.meters.postfix(cfg.mode), refresh=False)
                    if on_step is not None:
                        on_step(st.step)
                    if cfg.val_every and st.step % cfg.val_every == 0 and st.step_in_epoch < steps:
                        run.validate_and_log()
                    elif cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0:
                        run.checkpoint()
                    if max_steps is not None and st.step >= max_steps:
                        raise _Stop
                    if st.step >= run.total_steps:
                        break  # total_steps reached within the epoch
            if st.step_in_epoch >= steps:
                st.epoch, st.step_in_epoch = st.epoch + 1, 0
            run.validate_and_log()
        if st.log and st.log[-1]["step"] != st.step:
            # Resumed from a state saved at the run's last step but killed before the
            # validation that follows it (the loop above has no step left to enter for).
            if st.step_in_epoch >= batches.steps(st.epoch):
                st.epoch, st.step_in_epoch = st.epoch + 1, 0
            run.validate_and_log()
    except _Stop:
        stopped = True
        if st.log and st.log[-1]["step"] == st.step:
            run.checkpoint()
            run.save_model("last")
        else:
            # A run that ends validates: best/ is a validated model, never the untrained one
            # only because max_steps came before the first validation.
            run.validate_and_log()
    ctx.barrier()
    if ctx.main and not stopped:
        print(f"handvox train: done; {best_summary(st.best)}; model in {run.out / 'best'}",
              file=sys.stderr)  # fmt: skip
    finished = not stopped and (st.epoch >= cfg.epochs or st.step >= run.total_steps)
    return TrainResult(run.out, dict(st.best), st.step, run.epochs_done(), finished, list(st.log),
                       dict(run.frames.skipped))  # fmt: skip


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int, step: int = 0):
    """The learning-rate schedule from ``torch.optim.lr_scheduler``, advanced to optimiser step
    ``step``: a linear warm-up over ``cfg.warmup_steps`` (``LinearLR``) times, for ``cosine``, a
    cosine reaching 0 at step ``total`` (``CosineAnnealingLR``), chained multiplicatively
    (``ChainedScheduler``: the warm-up scales the cosine, where ``SequentialLR`` would delay it).

    A resumed run builds it afresh and steps it to where it was (scalar updates: milliseconds for
    tens of thousands of steps), so the values are those of an uninterrupted run bit for bit,
    and a run resumed with more epochs (``epochs`` is a RUN_FIELD) follows the cosine re-spanned
    over its new ``total`` from the step it is at.
    """
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"] = cfg.lr
    parts: list[torch.optim.lr_scheduler.LRScheduler] = []
    if cfg.warmup_steps > 1:
        w = cfg.warmup_steps
        parts.append(LinearLR(opt, start_factor=1.0 / w, end_factor=1.0, total_iters=w - 1))
    if cfg.lr_schedule == "cosine" and total > 0:
        parts.append(CosineAnnealingLR(opt, T_max=total, eta_min=0.0))
    if not parts:
        parts.append(ConstantLR(opt, factor=1.0, total_iters=0))
    sched = ChainedScheduler(parts, optimizer=opt)
    with warnings.catch_warnings():  # stepping without optimiser steps is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(step, total) if cfg.lr_schedule == "cosine" else step):
            sched.step()
    return sched


# --- the networks ---------------------------------------------------------------------------
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


def _mean_clean_tsdf(frames: RunFrames, count: int = 32) -> float:
    """Mean clean TSDF of ``count`` training frames spread over the pools (unaugmented)."""
    pool = np.concatenate(frames.train_pools)
    pick = pool[np.linspace(0, len(pool) - 1, min(count, len(pool))).round().astype(np.int64)]
    return float(np.mean([frames.samples[(int(i), -1, -1)]["clean"].mean() for i in pick]))


def _build_networks(
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


# --- a run: set-up, validation, outputs -----------------------------------------------------
@dataclass
class _Run:
    """A run set up for the loop: its config, data, networks, optimiser and state."""

    cfg: TrainConfig
    est: EstimatorConfig
    out: Path
    device: torch.device
    ctx: Dist
    command: str
    frames: RunFrames
    loaders: Loaders
    pose: nn.Module  # both networks of est (saved whatever the mode trains)
    refine: nn.Module | None
    model: _Model  # the trained ones
    ddp: nn.Module  # model, under DDP when there are several processes
    opt: torch.optim.Optimizer
    sched: ChainedScheduler
    total_steps: int  # the run's end: all epochs' steps, or fewer with cfg.total_steps
    state: RunState

    @classmethod
    def start(cls, cfg: TrainConfig, out: Path, device: torch.device, ctx: Dist,
              resume: bool | None, command: str) -> _Run:  # fmt: skip
        if ctx.main:
            out.mkdir(parents=True, exist_ok=True)
        ctx.barrier()
        saved = load_state(out, resume, ctx)
        if saved is not None:
            cfg = resumed_config(saved, cfg, ctx.world)
            est = EstimatorConfig.from_dict(saved["estimator"])
        else:
            est = resolve_estimator(cfg)
        torch.use_deterministic_algorithms(cfg.deterministic)
        if ctx.main:
            write_text(out / "train_config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        frames = prepare_frames(cfg, est, out, ctx)
        if ctx.main:
            specs = [src.spec for src in cfg.data + cfg.val_data]
            write_text(out / "split.json", json.dumps(frames.split(specs)) + "\n")

        # The refinement net's starting point (init_refine) needs the data's mean clean TSDF.
        prior = 1.0
        if saved is None and est.refine is not None and cfg.needs_clean:
            prior = _mean_clean_tsdf(frames)
        pose, refine = _build_networks(cfg, est, prior)
        trained = (pose if cfg.mode != "refine" else None, refine if cfg.mode != "pose" else None)
        model = _Model(*trained)
        model = model.to(device).to(memory_format=_memory_format(cfg, device))
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        state = RunState(lr=cfg.lr)
        if saved is not None:
            pose.load_state_dict(saved["pose"])
            if refine is not None:
                refine.load_state_dict(saved["refine"])
            opt.load_state_dict(saved["optimizer"])
            state = RunState.from_saved(saved)
            restore_rng(saved)
        loaders = make_loaders(cfg, frames, ctx, device)
        total = sum(loaders.batches.steps(e) for e in range(cfg.epochs))
        if cfg.total_steps:
            total = min(total, cfg.total_steps)
        sched = lr_schedule(opt, cfg, total, state.step)
        run = cls(cfg, est, out, device, ctx, command, frames, loaders, pose, refine, model,
                  ctx.wrap(model, device), opt, sched, total, state)  # fmt: skip
        if ctx.main:
            write_log(out / "log.csv", state.log)  # drops rows written after the state
            run.announce(resumed=saved is not None)
        state.start_clock()
        return run

    def announce(self, resumed: bool) -> None:
        f = self.frames
        n_train = sum(len(p) for p in f.train_pools)
        sk = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in f.skipped.items())
        print(
            f"handvox train: mode {self.cfg.mode}, {n_train} training frames "
            f"(skipped: {sk}), {len(f.val)} validation frames, volume "
            f"{self.est.volume.size}^3 x {self.est.volume.voxel_mm:g} mm, {self.ctx.world} "
            f"process(es) on {self.device}"
            + (
                f"; resuming at epoch {self.state.epoch + 1} step {self.state.step}"
                if resumed
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )

    def input(self, volume: torch.Tensor) -> torch.Tensor:
        """A batch of volumes on the device, in the networks' memory format."""
        fmt = _memory_format(self.cfg, self.device)
        return volume.to(self.device, non_blocking=True).contiguous(memory_format=fmt)

    def epochs_done(self) -> float:
        st, cfg = self.state, self.cfg
        steps = self.loaders.batches.steps(min(st.epoch, max(cfg.epochs - 1, 0)))
        return st.epoch + (st.step_in_epoch / steps if steps else 0.0)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean joint error (mm), fractions within 20/40/50 mm and TSDF L2 on the val frames."""
        self.model.eval()
        errs, tsdf_sum, raw_sum, n = [], 0.0, 0.0, 0
        for batch in self.loaders.val:
            pred, refined = self.model(self.input(batch["volume"]))
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

    def validate_and_log(self) -> None:
        """Validate, add the log row, keep the best; write the log, curves, models and state."""
        cfg, st = self.cfg, self.state
        res = self.validate()
        row = {
            "epoch": round(self.epochs_done(), 4),
            "step": st.step,
            **st.meters.summed(self.ctx, self.device).means(cfg.mode, cfg.tsdf_weight),
            "lr": st.lr,
            "time_s": round(st.elapsed(), 1),
            **res,
        }
        st.meters = RunningMeans()
        st.log.append(row)
        key = "val_tsdf" if cfg.mode == "refine" else "val_mm"
        improved = key in res and (not st.best or res[key] < st.best[key])
        if improved:
            st.best = {**res, "epoch": row["epoch"], "step": st.step}
        if self.ctx.main:
            write_log(self.out / "log.csv", st.log)
            plot_curves(self.out / "curves.png", st.log, f"handvox train ({cfg.mode})")
            if improved:
                self.save_model("best")
            self.save_model("last")
            if cfg.keep_checkpoints:
                self.save_model(f"checkpoints/step{st.step:07d}")
            self.checkpoint()
            msg = ", ".join(f"{k} {v:.4g}" for k, v in res.items())
            say(f"epoch {row['epoch']:g} step {st.step}: {msg}")

    def checkpoint(self) -> None:
        """Write ``train_state.pt`` (main process)."""
        if not self.ctx.main:
            return
        save_state(
            self.out,
            self.state,
            config=self.cfg.to_dict(),
            estimator=self.est.to_dict(),
            world_size=self.ctx.world,
            pose=self.pose.state_dict(),
            refine=None if self.refine is None else self.refine.state_dict(),
            optimizer=self.opt.state_dict(),
            scheduler={"name": self.cfg.lr_schedule, "step": self.state.step},
            skipped=self.frames.skipped,
        )

    def save_model(self, name: str) -> None:
        """The model folder ``out/name`` (main process): both networks, with the run's record."""
        if not self.ctx.main:
            return
        cfg, st, frames = self.cfg, self.state, self.frames
        trained = {"pose": ["pose"], "refine": ["refine"]}.get(cfg.mode, ["pose", "refine"])
        meta = {
            "command": self.command,
            "mode": cfg.mode,
            "trained": trained,
            "data": [s.spec for s in cfg.data],
            "val_data": [s.spec for s in cfg.val_data],
            "train_frames": int(sum(len(p) for p in frames.train_pools)),
            "val_frames": int(len(frames.val)),
            "skipped": frames.skipped,
            "epoch": st.epoch,
            "step": st.step,
            "best_val": st.best,
            "time_s": round(st.elapsed(), 1),
            "input": {
                "com": f"{hand_finder(self.est.segment)} on the input depth",
                "mask": cfg.use_mask,
            },
            "train_config": cfg.to_dict(),
            "torch": torch.__version__,
        }
        save_model(self.out / name, self.est, self.pose, self.refine, meta)


def _memory_format(cfg: TrainConfig, device: torch.device) -> torch.memory_format:
    # Channels-last 3D: the same numbers, faster on CPU (docs/benchmarks.md, "Training step speed").
    if cfg.channels_last and device.type == "cpu":
        return torch.channels_last_3d
    return torch.contiguous_format

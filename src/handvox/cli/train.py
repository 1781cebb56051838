"""``handvox train`` (its arguments, and how they become a :class:`TrainConfig`) and
``handvox train-locator``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from handvox.atomic import remove_stale_temps, writer_lock
from handvox.errors import HandvoxError
from handvox.estimator.check import HandCheckConfig
from handvox.estimator.locate import GRID_WIDTH
from handvox.estimator.pipeline import DEFAULT_MODEL_DIR
from handvox.estimator.presets import paper_estimator, small_estimator
from handvox.estimator.weights import load_model
from handvox.io.datasets import DatasetSpec
from handvox.train.augment import AugmentConfig
from handvox.train.check import (
    CheckTrainConfig,
    cached_check_frames,
    calibrate_spread,
    choose_threshold,
    train_check,
)
from handvox.train.config import TrainConfig, read_config
from handvox.train.locator import LocatorTrainConfig, make_locator_data, train_locator
from handvox.train.trainer import train


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, bool | None]:
    """The TrainConfig of ``handvox train`` arguments (the parser: :mod:`handvox.cli.main`), and the
    resume flag.

    Precedence: explicit flags, then ``--config FILE`` (TOML over a base, or JSON), then the
    config of a run in ``--out`` (resuming), then the defaults.
    """
    base: dict[str, Any] = {}
    state_cfg = Path(args.out) / "train_config.json"
    try:
        if args.config is not None:
            base = read_config(args.config)
        elif (args.resume or not args.data) and state_cfg.is_file():
            base = read_config(state_cfg)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    over: dict[str, Any] = {}
    for name, key in [
        ("mode", "mode"),
        ("epochs", "epochs"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("val_fraction", "val_fraction"),
        ("workers", "num_workers"),
        ("device", "device"),
        ("seed", "seed"),
        ("init", "init"),
        ("joint_set", "joint_set"),
        ("refine_weight", "refine_weight"),
        ("checkpoint_every", "checkpoint_every"),
        ("val_every", "val_every"),
    ]:
        v = getattr(args, name, None)
        if v is not None:
            over[key] = str(v) if key == "init" else v
    if args.data:
        over["data"] = [DatasetSpec.parse(s) for s in args.data]
    if args.val_data:
        over["val_data"] = [DatasetSpec.parse(s) for s in args.val_data]
    if args.no_augment:
        over["augment"] = AugmentConfig(enabled=False)
    if args.keep_checkpoints:
        over["keep_checkpoints"] = True
    if args.quiet:
        over["progress"] = False
    d = {**base, **over}
    if not d.get("data"):
        raise HandvoxError("no training data: give --data KIND:ROOT (or --config, or --resume)")
    try:
        cfg = TrainConfig.from_dict(d)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    if args.small or args.volume_size:
        size = args.volume_size or 32
        if args.small:
            est = small_estimator(cfg.joint_set, refine=cfg.mode != "pose", size=size)
        else:  # the paper's networks on another grid of the 300 mm cube
            est = paper_estimator(cfg.joint_set, refine=cfg.mode != "pose")
            est = dataclasses.replace(
                est,
                volume=dataclasses.replace(est.volume, size=size, voxel_mm=300.0 / size),
                pose=dataclasses.replace(est.pose, input_size=size),
            )
        cfg = dataclasses.replace(cfg, estimator=est)
    return cfg, (True if args.resume else None)


def run(args: argparse.Namespace) -> None:
    """``handvox train``."""
    cfg, resume = config_from_args(args)
    try:
        res = train(cfg, args.out, resume=resume, max_steps=args.max_steps)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    if res.finished and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"best": res.best, "step": res.step, "skipped": res.skipped}))


def run_locator(args: argparse.Namespace) -> None:
    """``handvox train-locator``."""
    if args.frames < 1 or args.val_frames < 1:
        raise HandvoxError("--frames and --val-frames must be at least 1")
    names = ("steps", "batch_size", "val_every", "width", "grid_width", "lr", "warmup_steps",
             "scenes", "keep", "flip_prob")  # fmt: skip
    overrides = {k: getattr(args, k) for k in names}
    if args.init is not None:
        overrides["init"] = str(args.init)
    if args.teacher is not None:
        overrides["teacher"] = str(args.teacher)
    config = LocatorTrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    data = args.out / "data"
    # frames on another grid are other data (the default grid's names as before: runs resume)
    grid = "" if config.grid_width == GRID_WIDTH else f"-grid{config.grid_width}"
    if config.scenes != "shipped":  # and frames of other scenes too
        grid += f"-{config.scenes}"
    train_npz = data / f"train-{args.frames}{grid}.npz"
    val_npz = data / f"val-{args.val_frames}{grid}.npz"
    args.out.mkdir(parents=True, exist_ok=True)
    # One writer a run folder; a killed one's temporaries go (as handvox train does).
    with writer_lock(args.out, "train-locator", "a locator training run"):
        for folder in [args.out, *(p for p in args.out.iterdir() if p.is_dir())]:
            remove_stale_temps(folder)
        if not train_npz.is_file():
            make_locator_data(train_npz, args.frames, args.workers,
                              grid_width=config.grid_width, scenes=config.scenes)  # fmt: skip
        if not val_npz.is_file():
            # frames 10^6 .. of each scene: never a training frame
            make_locator_data(val_npz, args.val_frames, args.workers, first=10**6,
                              grid_width=config.grid_width, scenes=config.scenes)  # fmt: skip
        torch.set_num_threads(args.threads)
        best = train_locator(train_npz, val_npz, args.out, config)
    print(f"locator: {best}")


def run_check(args: argparse.Namespace) -> None:
    """``handvox train-check``."""
    model = args.model or DEFAULT_MODEL_DIR
    est = load_model(model)
    config = HandCheckConfig(volume=est.config.volume, segment_method=est.config.segment.method)
    overrides = {k: getattr(args, k) for k in ("steps", "val_every")}
    run = CheckTrainConfig(**{k: v for k, v in overrides.items() if v is not None})
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "cubes"
    cache.mkdir(exist_ok=True)

    def load(roots: list[Path]) -> dict:
        parts = []
        for r in roots:
            name = str(r.resolve()).strip("/").replace("/", "_")
            parts.append(cached_check_frames(r, cache / f"{name}.pt", est.config.segment, config,
                                             progress=not args.quiet))  # fmt: skip
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    train, val = load(args.data), load(args.val)
    meta = {"data": [str(r) for r in args.data], "val": [str(r) for r in args.val],
            "segment_from": str(model), "command": " ".join(sys.argv)}  # fmt: skip
    info = train_check(train, val, args.out, config, run, meta, progress=not args.quiet)
    threshold = choose_threshold(args.out, val, args.keep)
    print(f"threshold {threshold:.4f}: keeps {100 * args.keep:.1f} % of the validation hands")
    spread = calibrate_spread(args.out, model, args.val, progress=not args.quiet)
    print(f"spread_mm {spread:.2f} (median test-time-view spread on validation hand frames)")
    best = min(info["log"], key=lambda r: r["val_loss"])
    print(f"hand check in {args.out}: validation at step {best['step']}: "
          + json.dumps({k: round(v, 4) for k, v in best.items() if k != "step"}))  # fmt: skip

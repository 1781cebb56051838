"""``handvox train``: its arguments, and how they become a :class:`TrainConfig`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from handvox.errors import HandvoxError
from handvox.estimator.presets import paper_estimator, small_estimator
from handvox.io.datasets import DatasetSpec
from handvox.train.augment import AugmentConfig
from handvox.train.trainer import TrainConfig, train


def config_from_args(args) -> tuple[TrainConfig, bool | None]:
    """The TrainConfig of ``handvox train`` arguments (see cli.py), and the resume flag.

    Precedence: explicit flags, then ``--config FILE``, then a state in ``--out`` (resuming),
    then the defaults.
    """
    base: dict[str, Any] = {}
    state_cfg = Path(args.out) / "train_config.json"
    if args.config is not None:
        base = json.loads(Path(args.config).read_text())
    elif (args.resume or not args.data) and state_cfg.is_file():
        base = json.loads(state_cfg.read_text())
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
    if getattr(args, "keep_checkpoints", False):
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
        make = small_estimator if args.small else None
        if make is not None:
            est = make(cfg.joint_set, refine=cfg.mode != "pose", size=size)
        else:
            est = paper_estimator(cfg.joint_set, refine=cfg.mode != "pose")
            est = dataclasses.replace(
                est,
                volume=dataclasses.replace(est.volume, size=size, voxel_mm=300.0 / size),
                pose=dataclasses.replace(est.pose, input_size=size),
            )
        cfg = dataclasses.replace(cfg, estimator=est)
    return cfg, (True if args.resume else None)


def run_cli(args) -> None:
    """``handvox train``."""
    cfg, resume = config_from_args(args)
    try:
        res = train(cfg, args.out, resume=resume, max_steps=args.max_steps)
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    if res.finished and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"best": res.best, "step": res.step, "skipped": res.skipped}))


def _cmd_train(args: argparse.Namespace) -> None:
    run_cli(args)


def add_train_command(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the estimator (resumable; multi-GPU/multi-node with torchrun)",
        description="Train the volumetric estimator; defaults are the paper's (30 epochs, "
        "batch 6, Adam lr 1e-4, L2 loss, 60^3 x 5 mm volume). Rerunning with the same --out "
        "resumes. Multi-process: torchrun --nproc_per_node N -m handvox.cli train ...",
    )
    p.add_argument(
        "--data",
        action="append",
        help="training data KIND:ROOT[?key=value&...][@WEIGHT], KIND one of synthetic, nyu, "
        "icvl, msra (repeat to mix; weights share each epoch); nyu/icvl read the train split",
    )
    p.add_argument("--val-data", action="append", help="explicit validation data (same form)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--config", type=Path, help="TrainConfig JSON (flags override it)")
    p.add_argument("--joint-set", help="joint set to train (default canonical21)")
    p.add_argument("--mode", choices=["pose", "refine", "finetune", "joint"])
    p.add_argument("--init", type=Path, help="model folder to start from (finetune: required)")
    p.add_argument("--refine-weight", type=float, help="TSDF loss weight (finetune/joint)")
    p.add_argument("--epochs", type=int, help="default 30")
    p.add_argument("--batch-size", type=int, help="per process; default 6")
    p.add_argument("--lr", type=float, help="Adam learning rate; default 1e-4")
    p.add_argument("--volume-size", type=int, help="voxels per axis of the 300 mm cube")
    p.add_argument("--small", action="store_true", help="CPU-sized networks, 32^3 volume")
    p.add_argument("--val-fraction", type=float, help="default 0.1 (without --val-data)")
    p.add_argument("--no-augment", action="store_true", help="no rotation/scale/COM jitter")
    p.add_argument("--workers", type=int, help="DataLoader worker processes; default 2")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--seed", type=int)
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (500)")
    p.add_argument("--val-every", type=int, help="steps between extra validations (0)")
    p.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep the model at every validation in OUT/checkpoints/ (for handvox average)",
    )
    p.add_argument("--max-steps", type=int, help="stop after this many steps (resumable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

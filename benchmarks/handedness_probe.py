"""Train and measure a left-or-right classifier for ``hand="auto"``
(:mod:`handvox.estimator.handedness`, issue 13).

    python benchmarks/handedness_probe.py --model src/handvox/data/default_model \
        --train MIX/{base,mesh,tof,stereo,ego,desk,ego2,ego3} --val VAL/{base,...,desk} \
        --test DEMO/domains/* DEMO/testset --frames 1250 --steps 2000 --out /tmp/hd \
        --save /tmp/hd/classifier

Every frame is a right hand. Its cube is the pose path's (the model's segmentation and volume);
the classifier (:class:`~handvox.estimator.handedness.HandednessNet`) is the pose net's encoder
(its weights to start from, batch norm kept as trained; or ``--init``, a classifier folder to go
on from) and a small head, with an antisymmetric logit: a frame and its mirror (a left hand)
always get opposite answers, so accuracy on right hands is accuracy on left hands too, and every
training frame teaches both. Training cubes are turned about the viewing axis by up to
``--turn`` degrees (a rotation keeps which hand it is). The checkpoint kept is the one best on
``--val`` (one cube); then the set of test-time turns (``--views``, logits averaged) best on
``--val``; ``--test`` (held-out shapes and seeds) is scored once, with both. Writes
``OUT/result.json`` (accuracy per set), the cubes it cached (``OUT/*.pt``) and, with ``--save``,
the classifier's folder (:func:`~handvox.estimator.handedness.save_handedness`: the chosen
turns in its config; its validation and held-out accuracies in its meta, the latter what
``hand="auto"`` is allowed on).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from handvox.atomic import atomic_path
from handvox.estimator.handedness import (
    HandednessConfig,
    HandednessNet,
    load_handedness,
    save_handedness,
)
from handvox.estimator.pipeline import HandPoseEstimator, hand_volumes
from handvox.estimator.weights import load_model
from handvox.io.synthetic import SyntheticDataset


def cubes(model: Path, dirs: list[Path], frames: int, turn: float, seed: int,
          angles: tuple[float, ...] = (0.0,)) -> dict:  # fmt: skip
    """``volume`` ``(N, A, 1, D, D, D)`` float16 and ``source`` ``(N,)`` of up to ``frames``
    random frames a folder, each found by the model's segmentation (frames it misses are left
    out): its cube turned by each of ``angles`` degrees plus, with ``turn``, one random angle of
    up to ``turn`` for all."""
    est = HandPoseEstimator.from_folder(model)
    volume_cfg = est.config.volume
    rng = np.random.default_rng(seed)
    vols, source = [], []
    for k, d in enumerate(dirs):
        ds = SyntheticDataset(d, load_clean=False)
        for i in rng.choice(len(ds), min(frames, len(ds)), replace=False):
            rec = ds[int(i)]
            seg = est.segment(rec.depth[None], rec.camera, None)[0]
            if seg.found:
                angle = float(rng.uniform(-turn, turn)) if turn else 0.0
                vol = torch.cat([hand_volumes(rec.depth[None], [seg], rec.camera, volume_cfg,
                                              angle_deg=angle + a) for a in angles])  # fmt: skip
                vols.append(vol.half())
                source.append(k)
    return {"volume": torch.stack(vols), "source": torch.tensor(source)}


def cached(path: Path, *args) -> dict:
    """:func:`cubes` of ``args``, kept in ``path`` and made again when the arguments differ."""
    key = repr(args)
    if path.exists():
        saved = torch.load(path)
        if saved.get("key") == key:
            return saved
    with atomic_path(path) as tmp:
        torch.save({**cubes(*args), "key": key}, tmp)
    return torch.load(path)


@torch.inference_mode()
def accuracy(net: HandednessNet, data: dict, views: list[int] | None = None) -> tuple[float, list]:
    """Share of right hands called right, over all and per source, %: the logit averaged over
    the cubes ``views`` (indices into the data's angles; default: all)."""
    net.eval()
    vol = data["volume"] if views is None else data["volume"][:, views]
    n, a = vol.shape[:2]
    flat = vol.flatten(0, 1)
    logit = torch.cat([net(flat[i : i + 128].float()) for i in range(0, len(flat), 128)])
    right = logit.view(n, a).mean(1) > 0
    per = [100 * right[data["source"] == k].float().mean().item()
           for k in range(int(data["source"].max()) + 1)]  # fmt: skip
    return 100 * right.float().mean().item(), per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--val", type=Path, nargs="+", required=True)
    ap.add_argument("--test", type=Path, nargs="+", default=[])
    ap.add_argument("--frames", type=int, default=1250, help="training frames a folder")
    ap.add_argument("--turn", type=float, default=30.0)
    ap.add_argument("--views", default="0;-20,0,20;-30,-15,0,15,30",
                    help="';'-separated sets of test-time turns (degrees) whose logits are "
                    "averaged; the best on --val is the one --test is scored with")  # fmt: skip
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--init", type=Path, help="a classifier folder to go on from (default: the "
                    "model's pose net's encoder and a new head)")  # fmt: skip
    ap.add_argument("--lr", type=float, nargs=2, default=(3e-4, 1e-3), metavar=("ENCODER", "HEAD"),
                    help="peak learning rates (one-cycle schedule)")  # fmt: skip
    ap.add_argument("--save", type=Path, help="write the kept classifier's folder here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    view_sets = [[float(a) for a in v.split(",")] for v in args.views.split(";")]
    angles = tuple(sorted({a for v in view_sets for a in v}))
    index = [[angles.index(a) for a in v] for v in view_sets]
    train = cached(args.out / "train.pt", args.model, args.train, args.frames, args.turn, 0)
    train["volume"] = train["volume"][:, 0]
    val = cached(args.out / "val.pt", args.model, args.val, 100_000, 0.0, 1, angles)
    torch.manual_seed(0)
    model = load_model(args.model)
    config = HandednessConfig(pose=model.config.pose, volume=model.config.volume,
                              segment_method=model.config.segment.method)  # fmt: skip
    net = HandednessNet(config)
    if args.init is not None:
        start = load_handedness(args.init)
        if start.config.pose != config.pose or start.config.volume != config.volume:
            raise SystemExit(f"{args.init}: a classifier of another pose net or cube")
        net.load_state_dict(start.net.state_dict())
    else:
        net.encoder.load_state_dict(model.pose_net.features.encoder.state_dict())
    # The encoder starts trained, the head from nothing: the head learns faster.
    lrs = list(args.lr)
    opt = torch.optim.AdamW([{"params": net.encoder.parameters(), "lr": lrs[0]},
                             {"params": net.head.parameters(), "lr": lrs[1]}],
                            weight_decay=1e-4)  # fmt: skip
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lrs, total_steps=args.steps,
                                                pct_start=0.1)  # fmt: skip
    log, best, t0 = [], (-1.0, None), time.time()
    for step in range(1, args.steps + 1):
        net.train()
        for m in net.modules():  # batch norm as the pose net learned it (right hands)
            if isinstance(m, nn.BatchNorm3d):
                m.eval()
        x = train["volume"][torch.randint(0, len(train["volume"]), (args.batch,))].float()
        loss = F.softplus(-net(x)).mean()  # every training frame is a right hand
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == args.steps:
            acc, per = accuracy(net, val, [angles.index(0.0)])
            log.append({"step": step, "val": acc, "val_per_source": per,
                        "s_per_step": (time.time() - t0) / step})  # fmt: skip
            print(json.dumps(log[-1]), flush=True)
            if acc > best[0]:
                best = (acc, copy.deepcopy(net.state_dict()), step)
    net.load_state_dict(best[1])
    # Then the test-time turns, on validation too: the first set of the best, then fewest views.
    val_views = [accuracy(net, val, ix)[0] for ix in index]
    chosen = max(range(len(index)), key=lambda k: (val_views[k], -len(index[k])))
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "log": log,
              "kept_step": best[2], "val": best[0], "val_views": dict(zip(args.views.split(";"),
              val_views, strict=True)), "views": view_sets[chosen], "test": {}}  # fmt: skip
    print("validation by views:", result["val_views"], "-> views", view_sets[chosen], flush=True)
    frames = {}
    for d in args.test:
        data = cached(args.out / f"test-{d.name}.pt", args.model, [d], 100_000, 0.0, 2, angles)
        result["test"][str(d)] = accuracy(net, data, index[chosen])[0]
        frames[str(d)] = len(data["volume"])
        print(d, f"{result['test'][str(d)]:.1f} %", flush=True)
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    if args.save is not None:
        total = sum(frames.values())
        held = sum(result["test"][d] * frames[d] for d in frames) / total / 100 if total else np.nan
        meta = {"validation": {"accuracy": best[0] / 100, "views": result["val_views"]},
                "held_out": {"accuracy": held, "frames": total, "per_set": result["test"]},
                "kept_step": best[2], "command": " ".join(sys.argv)}  # fmt: skip
        views = tuple(float(a) for a in view_sets[chosen])
        save_handedness(net, dataclasses.replace(config, angles_deg=views), meta, args.save)
        print(f"classifier in {args.save}: held out {100 * held:.1f} % of {total} frames")


if __name__ == "__main__":
    main()

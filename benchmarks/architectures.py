"""The pose networks under one data set and one budget: the paper's exact pose network,
handvox's compact one and the dense head, each trained from scratch by
:func:`handvox.train.trainer.train` with the same training config (data, batch, optimiser,
schedule, augmentation, segmentation), only the estimator differing, then scored on the held-out
test set and the validation set of :mod:`handvox.eval.protocol` and on the cross-domain suite
(:data:`handvox.eval.protocol.DOMAIN_SETS`; ``--domain-frames 0`` skips it).

* ``compact``: the estimator of ``--config`` (the shipped model's: 32^3 x 9.375 mm, 2.6 M
  parameters).
* ``dense``: the same with the dense head in place of the FC layers
  (:func:`handvox.estimator.presets.dense_head`: 16^3 heatmaps and a soft-argmax, 0.58 M).
* ``paper``: :func:`handvox.estimator.presets.paper_estimator` (Table 3b at 60^3 x 5 mm, 59.6 M
  parameters) with the config's segmentation.

The budget is wall-clock time on the machine at hand, set as optimiser steps per network
(``--steps compact=N,paper=M``; a cosine schedule spans each run's steps), or one step budget
for all (``--steps compact=N,dense=N,paper=N``); the report gives the minutes each took.
Scored as trained (fp32 networks, one pass, no test-time rotations), frames without a hand
found count as failures. Resumable: a rerun reuses finished runs and their scores.

    python benchmarks/architectures.py --config configs/default_model.toml \\
        --data synthetic:data/sampler --data synthetic:data/transfer \\
        --steps compact=5000,paper=600 --test data/test --val data/val --out runs/arch
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from handvox.atomic import atomic_path, write_text
from handvox.estimator.networks import count_flops
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.presets import dense_head, paper_estimator
from handvox.estimator.weights import build_networks
from handvox.eval.files import MethodResult, score
from handvox.eval.protocol import (
    DOMAIN_FRAMES,
    DOMAIN_SETS,
    failures_as_far,
    make_test_set,
    predict_dataset,
    score_domain_sets,
)
from handvox.eval.report import build_metrics, render_markdown, write_report
from handvox.io.datasets import DatasetSpec
from handvox.io.synthetic import SyntheticDataset
from handvox.joints import get_joint_set
from handvox.train.config import TrainConfig, load_config
from handvox.train.state import STATE_NAME, read_state
from handvox.train.trainer import train

NAMES = ("compact", "dense", "paper")
LABELS = {"compact": "handvox compact (default)", "dense": "compact encoder, dense head",
          "paper": "paper's pose net (Table 3b)"}  # fmt: skip


def arch_config(base: TrainConfig, name: str, steps: int) -> TrainConfig:
    """``base`` with the architecture ``name`` and a schedule spanning ``steps`` steps."""
    est = base.estimator
    if name == "paper":
        paper = paper_estimator(base.joint_set, refine=False)
        est = dataclasses.replace(paper, segment=base.estimator.segment)
    elif name == "dense":
        est = dataclasses.replace(est, pose=dense_head(est.pose))
    return dataclasses.replace(
        base,
        estimator=est,
        mode="pose",
        total_steps=steps,
        epochs=max(base.epochs, steps),
        warmup_steps=max(1, steps // 20),
    )


def train_arch(cfg: TrainConfig, run: Path) -> dict:
    """Train (or resume, or reuse) ``run``; returns steps, minutes and the final validation."""
    if not ((run / STATE_NAME).is_file() and read_state(run).step >= cfg.total_steps):
        train(cfg, run)
    st = read_state(run)
    return {"steps": st.step, "train_min": st.time_s / 60,
            "final": st.log[-1] if st.log else {}}  # fmt: skip


def size_of(cfg: TrainConfig) -> dict:
    """Parameters, float32 MB and GFLOP a pass of the pose net."""
    pose, _ = build_networks(cfg.estimator)
    n = sum(p.numel() for p in pose.parameters())
    s = cfg.estimator.volume.size
    return {"params": n, "mb": n * 4 / 1e6,
            "gflop": count_flops(pose, (1, 1, s, s, s)) / 1e9}  # fmt: skip


def evaluate(model: Path, ds: SyntheticDataset, cache: Path, label: str) -> MethodResult:
    """Score ``model`` on ``ds`` as trained (fp32, one pass), caching the predictions."""
    with open(model / "model.safetensors", "rb") as f:
        ident = json.dumps({"data": str(ds.root), "frames": len(ds),
                            "weights": hashlib.file_digest(f, "sha1").hexdigest()})  # fmt: skip
    pred = gt = None
    if cache.is_file():
        with np.load(cache) as z:
            if str(z["ident"]) == ident:
                pred, gt = z["pred"], z["gt"]
    if pred is None:
        est = HandPoseEstimator.from_folder(model, fast=False, recentre=0, test_rotations_deg=())
        pred, gt, _ = predict_dataset(est, ds, batch=8)
        with atomic_path(cache) as tmp:
            np.savez(tmp, pred=pred, gt=gt, ident=np.array(ident))
    return score(failures_as_far(pred, gt), gt, label, model, "xyz")


def domain_scores(model: Path, root: Path, frames: int, workers: int, cache: Path) -> dict:
    """``model`` on the cross-domain suite as trained (fp32, one pass), cached beside the run."""
    with open(model / "model.safetensors", "rb") as f:
        ident = {"root": str(root), "frames": frames,
                 "weights": hashlib.file_digest(f, "sha1").hexdigest()}  # fmt: skip
    if cache.is_file() and (saved := json.loads(cache.read_text()))["ident"] == ident:
        return saved["sets"]
    est = HandPoseEstimator.from_folder(model, fast=False, recentre=0, test_rotations_deg=())
    sets = score_domain_sets(est, root, frames, workers, progress=False)
    write_text(cache, json.dumps({"ident": ident, "sets": sets}, indent=1) + "\n")
    return sets


def domain_table(rows: list[dict]) -> str:
    """Mean joint error (mm) on each set of the cross-domain suite, and their mean."""
    names = [d.name for d in DOMAIN_SETS]
    out = ["| Network | " + " | ".join(names) + " | mean |", "|---|" + "---:|" * (len(names) + 1)]
    for r in rows:
        mm = [r["domains"][n]["mean_error_mm"] for n in names]
        cells = [f"{m:.2f}" for m in mm] + [f"**{np.mean(mm):.2f}**"]
        out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def plot_runs(rows: list[dict], out: Path) -> Path:
    """``out/networks.png``: each run's validation error against its steps and, with the
    cross-domain suite scored, each network's error on every set of it."""
    suite = all("domains" in r for r in rows)
    fig = Figure(figsize=(13 if suite else 6, 4.8))
    axes = fig.subplots(
        1, 2 if suite else 1, gridspec_kw={"width_ratios": [1, 2]} if suite else None
    )
    a = axes[0] if suite else axes
    for r in rows:
        log = [e for e in read_state(out / r["name"]).log if e.get("val_mm") is not None]
        a.plot([e["step"] for e in log], [e["val_mm"] for e in log], marker=".", label=r["label"])
    a.set(xlabel="optimiser step", ylabel="validation mean joint error (mm)",
          title="Validation during training")  # fmt: skip
    a.set_ylim(bottom=0)
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    if suite:
        b = axes[1]
        names = [d.name for d in DOMAIN_SETS]
        width = 0.8 / len(rows)
        for k, r in enumerate(rows):
            mm = [r["domains"][n]["mean_error_mm"] for n in names]
            x = np.arange(len(names)) + (k - (len(rows) - 1) / 2) * width
            b.bar(x, mm, width, label=f"{r['label']} (mean {np.mean(mm):.1f})")
        b.set_xticks(np.arange(len(names)), names, rotation=20, ha="right", fontsize=8)
        b.set(ylabel="mean joint error (mm)", title="The cross-domain suite")
        b.grid(axis="y", alpha=0.3)
        b.legend(fontsize=8)
    fig.tight_layout()
    path = out / "networks.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def hand_spread(cache: Path, joint_set: str) -> dict:
    """On the frames a network found a hand in: the predicted hand's size against the true
    one's (mean joint distance from the hand's own centroid; a holistic regressor's hands shrink
    towards a mean hand) and the mean error of the fingertips and of the wrist, mm."""
    with np.load(cache) as z:
        pred, gt = z["pred"], z["gt"]
    ok = np.isfinite(pred).all(axis=(1, 2))
    pred, gt = pred[ok], gt[ok]

    def size(j: np.ndarray) -> float:
        return float(np.linalg.norm(j - j.mean(1, keepdims=True), axis=-1).mean())

    names = get_joint_set(joint_set).names
    tips = [k for k, n in enumerate(names) if n.endswith("_tip")]
    err = np.linalg.norm(pred - gt, axis=-1)
    out = {"size_ratio": size(pred) / size(gt), "tips_mm": float(err[:, tips].mean())}
    if "wrist" in names:
        out["wrist_mm"] = float(err[:, names.index("wrist")].mean())
    return out


def table(rows: list[dict]) -> str:
    head = ["Network", "Parameters", "float32 MB", "GFLOP a pass", "Volume", "Steps",
            "Training (min)", "Validation set (mm)", "Test mean (mm)",
            "≤20 / 40 / 50 mm (%)", "Hand size, predicted / true", "Tips (mm)"]  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        p = r["test_pct"]
        out.append("| " + " | ".join([
            r["label"], f"{r['params'] / 1e6:.2f} M", f"{r['mb']:.1f}", f"{r['gflop']:.2f}",
            r["volume"], str(r["steps"]), f"{r['train_min']:.1f}", f"{r['val_mm']:.2f}",
            f"{r['test_mm']:.2f}", f"{p['20']:.1f} / {p['40']:.1f} / {p['50']:.1f}",
            f"{r['spread']['size_ratio']:.3f}", f"{r['spread']['tips_mm']:.1f}",
        ]) + " |")  # fmt: skip
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True,
                    help="TrainConfig file, TOML or JSON (the compact's)")  # fmt: skip
    ap.add_argument("--data", action="append", default=[], help="replace the config's data")
    ap.add_argument("--steps", default="compact=5000,paper=600", help="NAME=STEPS,...")
    ap.add_argument("--test", type=Path, required=True, help="test set (made when missing)")
    ap.add_argument("--val", type=Path, required=True, help="validation set (made when missing)")
    ap.add_argument("--frames", type=int, default=1000, help="test frames (validation: half)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--domain-frames", type=int, default=DOMAIN_FRAMES,
                    help="frames a set of the cross-domain suite (0: skip it)")  # fmt: skip
    ap.add_argument("--domains", type=Path, help="where the suite's sets go (OUT/domains)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the suite")
    args = ap.parse_args(argv)
    args.steps = {k: int(v) for k, v in (kv.split("=") for kv in args.steps.split(","))}
    if set(args.steps) - set(NAMES):
        ap.error(f"--steps: names are {NAMES}")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    base = load_config(args.config)
    if args.data:
        base = dataclasses.replace(base, data=tuple(DatasetSpec.parse(d) for d in args.data))
    test = make_test_set(args.test, args.frames, progress=False)
    val = make_test_set(args.val, args.frames // 2, progress=False, validation=True)
    rows, results = [], []
    for name, steps in args.steps.items():
        cfg = arch_config(base, name, steps)
        run = args.out / name
        print(f"architectures: {name}: {steps} steps into {run}", file=sys.stderr)
        trained = train_arch(cfg, run)
        model = run / "last"
        res = evaluate(model, test, run / "test_pred.npz", LABELS[name])
        res_val = evaluate(model, val, run / "val_pred.npz", LABELS[name])
        vol = cfg.estimator.volume
        rows.append({"name": name, "label": LABELS[name], **size_of(cfg),
                     "volume": f"{vol.size}^3 x {vol.voxel_mm:g} mm", **trained,
                     "val_mm": res_val.mean_error, "test_mm": res.mean_error,
                     "test_pct": {str(t): p for t, p in res.table().items()},
                     "spread": hand_spread(run / "test_pred.npz", base.joint_set)})  # fmt: skip
        if args.domain_frames:
            root = args.domains or args.out / "domains"
            rows[-1]["domains"] = domain_scores(model, root, args.domain_frames, args.workers,
                                                run / "domains.json")  # fmt: skip
        results.append(res)
    joint_set = get_joint_set(base.joint_set)
    metrics = build_metrics("synthetic", joint_set, test.camera, args.test, results)
    metrics["architectures"] = {"config": str(args.config), "rows": rows,
                                "data": [d.spec for d in base.data]}  # fmt: skip
    md = ["# Pose networks under one budget", "",
          f"Same data ({', '.join(d.spec for d in base.data)}), same training config "
          f"(`{args.config}`: batch {base.batch_size}, Adam {base.lr:g}, cosine schedule over "
          "each run's steps, bf16 autocast as configured, the same augmentation and "
          "segmentation); the budget is training time on one machine, set as steps. Scored as "
          "trained (fp32, one pass), on the protocol's test set (held-out shape and seed) and "
          "validation set (training shapes, seed 98).", "", table(rows), ""]  # fmt: skip
    if args.domain_frames:
        md += [f"On the cross-domain suite ({args.domain_frames} frames a set; mean joint error, "
               "mm; frames without a hand found count as failures):", "",
               domain_table(rows), ""]  # fmt: skip
    body = ["#" + ln if ln.startswith("#") else ln for ln in render_markdown(metrics).splitlines()]
    md += ["![networks](networks.png)", ""]
    write_report(args.out, metrics, "\n".join(md + body) + "\n", results, joint_set)
    plot_runs(rows, args.out)
    print(table(rows))
    if args.domain_frames:
        print(domain_table(rows))
    return metrics


if __name__ == "__main__":
    main()

"""Do the confidences rank estimates by their error? The dense head's heatmap spread (one cube,
calibrated by ``handvox calibrate``) against the test-time views' agreement (three cubes).

For each model setting (``--setting NAME=VIEWS``: VIEWS ``heat`` for one cube and the heatmaps,
or comma-separated test-time rotations in degrees for the views' agreement), on rendered
folders (``--sets``: test sets, scored once; the calibration and every choice were made on
validation frames): Spearman rank correlation of the frame confidence (``p(hand)`` times the
pose net's certainty) with the frame's mean joint error, and of each joint's confidence with its
error (negated: higher confidence, lower error), over the frames with a hand found; the mean
joint error per tenth of the joints, ranked by confidence. Prints a Markdown table; writes
OUT/joint-confidence.png and OUT/metrics.json.

    python benchmarks/joint_confidence.py --model M --sets demo-output/domains/* \
        --setting heat=heat --setting views=-20,20 --out runs/joint-confidence
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from handvox.atomic import atomic_path, write_text
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.weights import load_model
from handvox.io.synthetic import SyntheticDataset


def estimator(model: Path, views: str) -> HandPoseEstimator:
    est = load_model(model)
    if views == "heat":
        if not est.config.joint_spread_mm:
            raise SystemExit(f"{model}: not calibrated (handvox calibrate --model ...)")
        return HandPoseEstimator(est, test_rotations_deg=())
    angles = tuple(float(a) for a in views.split(","))
    # without the calibration the pipeline falls back on the views' agreement
    est.config = dataclasses.replace(est.config, joint_spread_mm=())
    return HandPoseEstimator(est, test_rotations_deg=angles)


def errors_and_confidences(est: HandPoseEstimator, root: Path, frames: int) -> dict:
    ds = SyntheticDataset(root, load_clean=False)
    n = min(frames, len(ds))
    err, jc, fc = [], [], []
    for s in range(0, n, 16):
        idx = range(s, min(n, s + 16))
        p = est(np.stack([ds.depth_mm(i, "raw") for i in idx]), ds.camera)
        truth = ds.joints_xyz[s : s + len(idx)]
        f = p.found
        err.append(np.linalg.norm(p.joints_xyz[f] - truth[f], axis=-1))
        jc.append(p.joint_confidence[f])
        fc.append(p.confidence[f])
    return {"err": np.concatenate(err), "joint": np.concatenate(jc), "frame": np.concatenate(fc)}


def ranks(r: dict) -> tuple[float, float]:
    frame = spearmanr(r["frame"], -r["err"].mean(1))[0]
    joint = spearmanr(r["joint"].ravel(), -r["err"].ravel())[0]
    return float(frame), float(joint)


def tenths(confidence: np.ndarray, error: np.ndarray) -> np.ndarray:
    """Mean ``error`` of each tenth of the items, ranked by ``confidence``, most confident
    first."""
    order = np.argsort(-confidence)
    return np.array([c.mean() for c in np.array_split(error[order], 10)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--sets", type=Path, nargs="+", required=True)
    ap.add_argument("--setting", action="append", required=True, help="NAME=heat|ANGLES")
    ap.add_argument("--frames", type=int, default=100, help="frames a set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sets = [s for s in args.sets if s.is_dir()]
    results: dict[str, dict[str, dict]] = {}
    for setting in args.setting:
        name, views = setting.split("=", 1)
        est = estimator(args.model, views)
        results[name] = {s.name: errors_and_confidences(est, s, args.frames) for s in sets}
        every = {k: np.concatenate([r[k] for r in results[name].values()])
                 for k in ("err", "joint", "frame")}  # fmt: skip
        results[name]["all"] = every

    names = [s.name for s in sets] + ["all"]
    print("| setting | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    metrics = {}
    for setting, per in results.items():
        cells = []
        for n in names:
            f, j = ranks(per[n])
            cells.append(f"{f:.2f} / {j:.2f}")
            metrics.setdefault(setting, {})[n] = {
                "spearman_frame": f, "spearman_joint": j, "frames": len(per[n]["err"]),
                "mean_error_mm": float(per[n]["err"].mean()),
            }  # fmt: skip
        print(f"| {setting} | " + " | ".join(cells) + " |")
    print("\n(Spearman frame / joint: confidence against the negated error)")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    for setting, per in results.items():
        every = per["all"]
        joints = tenths(every["joint"].ravel(), every["err"].ravel())
        axes[0].plot(np.arange(1, 11), joints, "o-", label=setting)
        frames = tenths(every["frame"], every["err"].mean(1))
        axes[1].plot(np.arange(1, 11), frames, "o-", label=setting)
    axes[0].set(
        xlabel="tenth of the joints, most confident first",
        ylabel="mean error (mm)",
        title="joints ranked by their confidence",
    )
    axes[1].set(
        xlabel="tenth of the frames, most confident first",
        ylabel="frame's mean joint error (mm)",
        title="frames ranked by their confidence",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out / "joint-confidence.png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    write_text(args.out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {args.out}/joint-confidence.png, metrics.json")


if __name__ == "__main__":
    main()

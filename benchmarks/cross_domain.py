"""A model on the cross-domain suite (handvox.eval.protocol.DOMAIN_SETS): one held-out set per
change of hand surface, sensor and scene, scored as the synthetic protocol scores (the hand
centre from segmentation; a frame without a hand found fails every threshold).

    python benchmarks/cross_domain.py --out runs/cross-domain [--model DIR] [--frames 300]

Writes OUT/<set>/ (the rendered sets; reused when present), OUT/metrics.json (per set: mean
joint error, share of frames with every joint within 20/40/50 mm, per-joint errors, frames
without a hand) and OUT/matrix.png (the table as a picture), and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from matplotlib.figure import Figure

from handvox.atomic import atomic_path, write_text
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.metrics import fraction_within, joint_errors
from handvox.eval.protocol import (
    DOMAIN_FRAMES,
    DOMAIN_SETS,
    domain_set,
    failures_as_far,
    make_domain_set,
    predict_dataset,
)

THRESHOLDS = (20, 40, 50)


def score_set(est: HandPoseEstimator, root: Path, name: str, frames: int, workers: int) -> dict:
    ds = make_domain_set(name, root / name, frames, workers, progress=False,
                         joint_set=est.config.joint_set)  # fmt: skip
    pred, gt, found = predict_dataset(est, ds, batch=16, progress=False)
    err = joint_errors(failures_as_far(pred, gt), gt)  # (N, J) mm
    within = fraction_within(err, list(THRESHOLDS))
    return {
        "description": domain_set(name).description,
        "frames": len(ds),
        "frames_without_hand": int((~found).sum()),
        "mean_error_mm": float(err.mean()),
        "percent_within_mm": {
            str(t): 100.0 * float(f) for t, f in zip(THRESHOLDS, within, strict=True)
        },  # fmt: skip
        "per_joint_mm": err.mean(0).round(2).tolist(),
    }


def draw_matrix(results: dict[str, dict], path: Path, title: str) -> None:
    """Mean error and share within 40 mm per set, as two bar rows."""
    names = list(results)
    mean = [results[n]["mean_error_mm"] for n in names]
    p40 = [results[n]["percent_within_mm"]["40"] for n in names]
    fig = Figure(figsize=(max(6.0, 1.2 * len(names)), 5.5))
    a, b = fig.subplots(2, 1, sharex=True)
    a.bar(names, mean, color="#4c72b0")
    a.set(ylabel="mean joint error (mm)", title=title)
    for i, v in enumerate(mean):
        a.text(i, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    b.bar(names, p40, color="#55a868")
    b.set(ylabel="frames with every joint ≤ 40 mm (%)", ylim=(0, 100))
    for i, v in enumerate(p40):
        b.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=8)
    b.tick_params(axis="x", labelrotation=25)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="sets, metrics.json and matrix.png")
    ap.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=DOMAIN_FRAMES, help="frames per set")
    ap.add_argument("--sets", help="comma-separated set names (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    est = HandPoseEstimator.from_folder(args.model) if args.model else HandPoseEstimator.default()
    names = args.sets.split(",") if args.sets else [d.name for d in DOMAIN_SETS]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        results[name] = score_set(est, args.out, name, args.frames, args.workers)
        r = results[name]
        print(f"{name}: {r['mean_error_mm']:.2f} mm, {r['percent_within_mm']['40']:.1f} % within "
              f"40 mm, {r['frames_without_hand']} without a hand", flush=True)  # fmt: skip
    model = str(args.model) if args.model else "the shipped model"
    write_text(args.out / "metrics.json", json.dumps({"model": model, "sets": results},
                                                     indent=2) + "\n")  # fmt: skip
    draw_matrix(results, args.out / "matrix.png", f"{model} on the cross-domain suite")
    print("\n| set | what | mean error (mm) | ≤20 mm | ≤40 mm | ≤50 mm | no hand |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        pct = r["percent_within_mm"]
        print(f"| {name} | {r['description']} | {r['mean_error_mm']:.2f} | {pct['20']:.1f} % | "
              f"{pct['40']:.1f} % | {pct['50']:.1f} % | {r['frames_without_hand']} |")  # fmt: skip


if __name__ == "__main__":
    main()

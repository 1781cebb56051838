"""A model on the cross-domain suite (handvox.eval.protocol.DOMAIN_SETS): one held-out set per
change of hand surface, sensor and scene, scored as the synthetic protocol scores (the hand
centre from segmentation; a frame without a hand found fails every threshold).

    python benchmarks/cross_domain.py --out runs/cross-domain [--model DIR] [--frames 300] \
        [--segment depth|learned]

Writes OUT/<set>/ (the rendered sets; reused when present), OUT/metrics.json and OUT/matrix.png,
and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from handvox.atomic import atomic_path, write_text
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.protocol import DOMAIN_FRAMES, score_domain_sets
from handvox.eval.report import plot_domain_matrix


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="sets, metrics.json and matrix.png")
    ap.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=DOMAIN_FRAMES, help="frames per set")
    ap.add_argument("--sets", help="comma-separated set names (default: all)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--segment",
        choices=["depth", "learned"],
        help="how the hand is found (SegmentConfig.method; default: the model's)",
    )
    args = ap.parse_args(argv)
    kw = {"segment_method": args.segment}
    if args.model:
        est = HandPoseEstimator.from_folder(args.model, **kw)
    else:
        est = HandPoseEstimator.default(**kw)
    names = args.sets.split(",") if args.sets else None
    args.out.mkdir(parents=True, exist_ok=True)
    results = score_domain_sets(est, args.out, args.frames, args.workers, False, names)
    model = str(args.model) if args.model else "the shipped model"
    model += f" ({est.config.segment.method} segmentation)"
    doc = {"model": model, "frames_per_set": args.frames, "sets": results}
    write_text(args.out / "metrics.json", json.dumps(doc, indent=2) + "\n")
    fig = plot_domain_matrix(results, f"{model} on the cross-domain suite")
    with atomic_path(args.out / "matrix.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    print("| set | what | mean error (mm) | ≤20 mm | ≤40 mm | ≤50 mm | no hand |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        pct = r["percent_within_mm"]
        print(f"| {name} | {r['description']} | {r['mean_error_mm']:.2f} | {pct['20']:.1f} % | "
              f"{pct['40']:.1f} % | {pct['50']:.1f} % | {r['frames_without_hand']} |")  # fmt: skip


if __name__ == "__main__":
    main()

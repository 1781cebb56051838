"""Two models' whole estimator (hand finding, cubes, check, pose net, every test-time view) timed
on the same frames, alternately, so that their ratio holds on a shared, drifting machine.

    python benchmarks/estimator_speed.py --a src/handvox/data/default_model \\
        --b runs/capsule-model --data demo-output/testset --frames 320 --rounds 5

Each round runs A then B (then B then A in the next, so that neither always goes first) over
``--frames`` frames of a rendered set in batches of ``--batch``, after one warm-up batch each;
prints ms a frame for each per round and the ratio A/B per round, and their medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from handvox.estimator.pipeline import HandPoseEstimator
from handvox.io.synthetic import SyntheticDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", type=Path, required=True, help="model folder A")
    ap.add_argument("--b", type=Path, required=True, help="model folder B (the yardstick)")
    ap.add_argument("--data", type=Path, required=True, help="rendered frames (handvox synth)")
    ap.add_argument("--frames", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = SyntheticDataset(args.data, load_clean=False)
    n = min(args.frames, len(ds))
    depth = np.stack([ds.depth_mm(i, "raw") for i in range(n)])
    models = {
        "A": HandPoseEstimator.from_folder(args.a),
        "B": HandPoseEstimator.from_folder(args.b),
    }
    for est in models.values():
        est(depth[: args.batch], ds.camera)  # warm-up: lazy set-up, caches

    def ms_a_frame(est: HandPoseEstimator) -> float:
        t0 = time.perf_counter()
        for s in range(0, n, args.batch):
            est(depth[s : s + args.batch], ds.camera)
        return 1000 * (time.perf_counter() - t0) / n

    print(f"{n} frames of {args.data}, batches of {args.batch}, {args.threads} threads")
    print(f"A: {args.a} ({models['A'].config.segment.method}, "
          f"{len(models['A'].test_views())} views, recentre {models['A'].recentre})")  # fmt: skip
    print(f"B: {args.b} ({models['B'].config.segment.method}, "
          f"{len(models['B'].test_views())} views, recentre {models['B'].recentre})")  # fmt: skip
    print("| round | A ms a frame | B ms a frame | A / B |")
    print("| --- | --- | --- | --- |")
    rows = []
    for r in range(args.rounds):
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        t = {k: ms_a_frame(models[k]) for k in order}
        rows.append((t["A"], t["B"], t["A"] / t["B"]))
        print(f"| {r + 1} | {t['A']:.1f} | {t['B']:.1f} | {t['A'] / t['B']:.2f} |", flush=True)
    med = [statistics.median(c) for c in zip(*rows, strict=True)]
    print(f"| median | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.2f} |")


if __name__ == "__main__":
    main()

"""How much a model's mean joint error on the held-out synthetic test set would move with another
draw of test frames: per-frame spread, standard error and a bootstrap 95 % interval.

    python benchmarks/test_set_noise.py --data demo-output/testset [--model DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.metrics import joint_errors
from handvox.eval.protocol import failures_as_far, make_test_set, predict_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="test set (made if absent)")
    ap.add_argument("--model", type=Path, help="model folder (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = make_test_set(args.data, args.frames, workers=1, progress=False)
    est = HandPoseEstimator.from_folder(args.model) if args.model else HandPoseEstimator.default()
    pred, gt, _ = predict_dataset(est, ds, progress=False)
    per_frame = joint_errors(failures_as_far(pred, gt), gt).mean(1)
    rng = np.random.default_rng(0)
    n = len(per_frame)
    boot = [per_frame[rng.integers(0, n, n)].mean() for _ in range(args.resamples)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    se = per_frame.std() / np.sqrt(n)
    print(f"{n} frames: mean {per_frame.mean():.2f} mm, per-frame sd {per_frame.std():.2f}, "
          f"standard error {se:.2f}, bootstrap 95 % {lo:.2f}-{hi:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Score a model on a held-out synthetic test set (canonical 21 joints) with handvox's report.

Protocol: the test set is rendered with a seed never used for training data; the hand centre
comes from segmentation of the noisy depth (no labels at input); a frame where no hand is found
counts as a failure (its errors are set to 1000 mm, so it stays below every curve threshold).

    handvox synth --out /tmp/synth_test --frames 500 --seed 99 --workers 2
    python benchmarks/eval_synthetic.py --model RUN/best --data /tmp/synth_test --out eval-synth
"""

from __future__ import annotations

import argparse
from pathlib import Path

from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.metrics import score
from handvox.eval.protocol import failures_as_far, predict_dataset
from handvox.eval.report import build_metrics, render_markdown, write_report
from handvox.io.synthetic import SyntheticDataset
from handvox.joints import get_joint_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a handvox synth folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--name", default=None, help="method name in the report")
    args = ap.parse_args()

    est = HandPoseEstimator.from_folder(args.model)
    joint_set = get_joint_set(est.config.joint_set)
    ds = SyntheticDataset(args.data, joint_set=joint_set.name, load_clean=False)
    pred, gt_xyz, found = predict_dataset(est, ds, batch=args.batch)
    missed = ~found
    pred_xyz = failures_as_far(pred, gt_xyz)
    result = score(pred_xyz, gt_xyz, args.name or args.model.parent.name, args.model, "xyz")
    metrics = build_metrics("synthetic", joint_set, ds.camera, args.data, [result])
    metrics["frames_without_hand"] = int(missed.sum())
    markdown = render_markdown(metrics)
    write_report(args.out, metrics, markdown, [result], joint_set)
    print(markdown)
    print(f"{int(missed.sum())} of {len(missed)} frames without a hand found (counted as failures)")


if __name__ == "__main__":
    main()

"""A model's error against where the hand points in the image: the direction from the wrist to
the middle finger's MCP joint, 0° with the fingers up, 90° to the right, ±180° down.

    python benchmarks/orientation_error.py --sets demo-output/testset mix-val/ego ... [--model M]
        [--upright DEG|none]

Per 45° bin of every frame of the rendered sets: the share of frames there and the model's mean
and median joint error (frames without a hand at the protocol's miss distance). A bin that is
rare and bad is a gap in the training views, not the network's ceiling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from handvox.estimator.pipeline import HandPoseEstimator, pointing_deg
from handvox.eval.metrics import failures_as_far, joint_errors
from handvox.eval.protocol import predict_dataset
from handvox.io.synthetic import SyntheticDataset
from handvox.joints import get_joint_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", type=Path, nargs="+", required=True, help="rendered folders")
    ap.add_argument("--model", type=Path, help="model folder (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--upright", default="model",
                    help="the upright pass's threshold, degrees, or 'none' (default: the "
                         "model's)")  # fmt: skip
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kw = {}
    if args.upright != "model":
        kw["upright_beyond_deg"] = None if args.upright == "none" else float(args.upright)
    est = (HandPoseEstimator.from_folder(args.model, **kw) if args.model
           else HandPoseEstimator.default(**kw))  # fmt: skip
    joint_set = get_joint_set(est.config.joint_set)
    angles, errors = [], []
    for root in args.sets:
        ds = SyntheticDataset(root, joint_set=est.config.joint_set, load_clean=False)
        pred, gt, _ = predict_dataset(est, ds, progress=False)
        errors.append(joint_errors(failures_as_far(pred, gt), gt).mean(axis=1))
        uv = np.stack([ds.camera.xyz_to_uvd(g)[:, :2] for g in gt])
        angles.append(pointing_deg(uv, joint_set))
    a, e = np.concatenate(angles), np.concatenate(errors)
    print(f"{len(a)} frames of {len(args.sets)} sets")
    print("| pointing (deg) | frames | share | mean error (mm) | median (mm) |")
    print("| --- | --- | --- | --- | --- |")
    for lo in range(-180, 180, 45):
        m = (a >= lo) & (a < lo + 45)
        if m.any():
            print(f"| {lo} to {lo + 45} | {m.sum()} | {100 * m.mean():.1f} % "
                  f"| {e[m].mean():.2f} | {np.median(e[m]):.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()

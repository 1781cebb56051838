"""What a depth camera's lens distortion does to the estimate, and what undoing it gives back.

    python benchmarks/lens_distortion.py --data VAL/ego \\
        --lens inverse_brown_conrady 0.0981 0.2033 0.0031 0.0026 -0.1124

Each rendered (pinhole) frame of ``--data`` is made into the frame a camera with ``--lens`` (a
:data:`~handvox.camera.LENS_MODELS` model and its coefficients in its SDK's order; default: an
SR300's depth lens as librealsense reports it, librealsense issue #10838) would give, by
:func:`~handvox.camera.distortion_index` (nearest pixel), and estimated three ways: as rendered,
distorted but read as pinhole (what ignoring the lens does), and distorted then undistorted as
handvox reads such a camera (:func:`~handvox.camera.undistortion_index`). Reported by how far
the hand's centre is off the optical axis (``x / z``): the median change of each frame's mean
joint error from the rendered frame's, over the frames found all three ways.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from handvox.camera import LensDistortion, distortion_index, remap, undistortion_index
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.weights import load_model
from handvox.io.synthetic import SyntheticDataset

SR300_DEPTH_LENS = ("inverse_brown_conrady", "0.0981389656662941", "0.203301951289177",
                    "0.00310043292120099", "0.00264186388812959", "-0.11238544434309")  # fmt: skip
BANDS = ((0.0, 0.2), (0.2, 0.4), (0.4, float("inf")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a rendered folder (handvox synth)")
    ap.add_argument("--lens", nargs="+", default=list(SR300_DEPTH_LENS),
                    help="MODEL COEFF... (default: an SR300's depth lens)")  # fmt: skip
    ap.add_argument("--model", help="model folder (default: the shipped model)")
    ap.add_argument("--frames", type=int, default=0, help="the first N frames (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lens = LensDistortion(args.lens[0], tuple(float(c) for c in args.lens[1:]))
    ds = SyntheticDataset(args.data, load_clean=False)
    est = HandPoseEstimator(load_model(args.model)) if args.model else HandPoseEstimator.default()
    cam = ds[0].camera
    to_lens, to_pinhole = distortion_index(cam, lens), undistortion_index(cam, lens)
    n = len(ds) if args.frames <= 0 else min(args.frames, len(ds))
    rows = []
    for i in range(n):
        rec = ds[i]
        rendered = rec.depth.astype(np.float32)
        seen = remap(rendered, to_lens)
        errors = []
        for depth in (rendered, seen, remap(seen, to_pinhole)):
            p = est(depth, cam)
            e = np.linalg.norm(p.joints_xyz[0] - rec.joints_xyz, axis=-1).mean()
            errors.append(e if p.found[0] else np.nan)
        u, v, _ = cam.xyz_to_uvd(rec.joints_xyz.mean(0))
        rows.append((np.hypot((u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy), *errors))
    a = np.array(rows)
    lost = np.isnan(a[:, 1:]).sum(0)
    a = a[~np.isnan(a[:, 1:]).any(1)]
    print(f"{args.data}: {n} frames, {lens.model} {lens.coeffs}; not found (rendered / distorted "
          f"/ undistorted): {' / '.join(str(k) for k in lost)}")  # fmt: skip
    print(
        "| hand centre off the axis (x/z) | frames | median error, rendered / distorted / "
        "undistorted (mm) | median change: distorted, read as pinhole | undistorted |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for lo, hi in BANDS:
        b = a[(a[:, 0] >= lo) & (a[:, 0] < hi)]
        if len(b) == 0:
            continue
        med = " / ".join(f"{x:.2f}" for x in np.median(b[:, 1:], 0))
        print(f"| {lo:g}-{hi:g} | {len(b)} | {med} | {np.median(b[:, 2] - b[:, 1]):+.2f} | "
              f"{np.median(b[:, 3] - b[:, 1]):+.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()

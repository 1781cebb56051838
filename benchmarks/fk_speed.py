"""Forward-kinematics throughput on CPU (handvox.hand.kinematics).

Times ``forward_kinematics`` on a batch of random poses (one hand shape for all), forward only
and forward + backward (gradient of all joints w.r.t. the pose, as inverse kinematics needs),
plus the NYU-14 markers on top. Reports the best of several repeats, in frames per second.

Run: ``.venv/bin/python benchmarks/fk_speed.py [--batch 1024] [--threads 1] [--dtype float32]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from handvox.hand.kinematics import forward_kinematics, markers, random_pose
from handvox.hand.shapes import base_shape


def best_time(fn, repeats: int, inner: int) -> float:
    """Best mean seconds per call over ``repeats`` runs of ``inner`` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--inner", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    bones = base_shape("average_adult", dtype)
    pose = random_pose(args.batch, gen, dtype)
    pose_grad = pose.clone().requires_grad_(True)

    def fwd() -> None:
        with torch.no_grad():
            forward_kinematics(pose, bones)

    def fwd_bwd() -> None:
        forward_kinematics(pose_grad, bones).joints.sum().backward()

    def markers_bwd() -> None:
        markers(forward_kinematics(pose_grad, bones), "nyu14").sum().backward()

    print(f"B={args.batch} {args.dtype} threads={args.threads} (torch {torch.__version__})")
    for name, fn in [("forward", fwd), ("forward+backward", fwd_bwd),
                     ("nyu14 markers fwd+bwd", markers_bwd)]:  # fmt: skip
        t = best_time(fn, args.repeats, args.inner)
        print(f"{name:>22}: {t * 1e3:7.2f} ms/batch  {args.batch / t:9.0f} frames/s")


if __name__ == "__main__":
    main()

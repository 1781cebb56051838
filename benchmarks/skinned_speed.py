"""Throughput of the LibHand skinned hand: clean 640x480 depth frames with their joints.

    .venv/bin/python benchmarks/skinned_speed.py [--frames 200] [--repeats 5] [--faces 10000]

Poses are natural poses in front of the NYU camera (:func:`handvox.hand.poses.sample_poses`,
600-1100 mm), each with its own random hand shape (:func:`handvox.hand.shapes.sample_shape`), so
every frame also stretches bones and scales girth. Prints the mesh's size, then frames/s of each
stage and of the whole render: ``render`` is :meth:`SkinnedHand.render` on the whole batch
(kinematics once for the batch, then skin and rasterise frame by frame), ``render one by one``
calls it per frame (kinematics per frame: torch's per-call overhead). Best and median of
``--repeats`` runs, because the machine may be shared. One thread throughout (torch and BLAS
pinned to one; the numba kernels are serial): frames/s per core. ``--faces`` sets the
decimation (70298: LibHand's full mesh).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from handvox.camera import Camera  # noqa: E402
from handvox.hand.kinematics import forward_kinematics  # noqa: E402
from handvox.hand.poses import sample_poses  # noqa: E402
from handvox.hand.shapes import sample_shape  # noqa: E402
from handvox.synth.mesh import rasterize_depth  # noqa: E402
from handvox.synth.skinned import libhand_hand  # noqa: E402


def rate(fn, frames: int, repeats: int) -> tuple[float, float]:
    """Best and median frames/s of ``fn()``, which makes ``frames`` frames."""
    fn()
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(frames / (time.perf_counter() - t0))
    return max(runs), statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--faces", type=int, default=10_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.frames
    t0 = time.perf_counter()
    hand = libhand_hand(args.faces)
    build = time.perf_counter() - t0
    cam = Camera.preset("nyu")
    g = torch.Generator().manual_seed(0)
    poses = sample_poses(g, n).double()
    bones = sample_shape(g, n, dtype=torch.float64)
    fk = forward_kinematics(poses, bones)
    mats = hand.skinning_matrices(fk, poses)
    verts = hand.skin(mats)
    print(f"LibHand mesh: {len(hand.mesh.vertices)} vertices, {len(hand.mesh.faces)} faces "
          f"(of {hand.source_faces}), {len(hand.mesh.joint_names)} frames; built in "
          f"{build:.2f} s")  # fmt: skip
    print(f"camera {cam.width}x{cam.height}, {n} natural poses and hand shapes, one thread")
    out = np.empty(verts.shape[1:])

    def kinematics() -> None:
        hand.skinning_matrices(forward_kinematics(poses, bones), poses)

    def lbs() -> None:
        for m in mats:
            hand.skin(m, out=out)

    def raster() -> None:
        for v in verts:
            rasterize_depth(v, hand.mesh.faces, cam)

    def render() -> None:
        hand.render(poses, cam, bones)

    def one_by_one() -> None:
        for i in range(n):
            hand.render(poses[i : i + 1], cam, bones[i])

    stages = (
        ("kinematics + matrices, batched", kinematics),
        ("LBS", lbs),
        ("rasterise", raster),
        ("render", render),
        ("render one by one", one_by_one),
    )
    for name, fn in stages:
        best, median = rate(fn, n, args.repeats)
        print(f"{name:>31}: {best:8.1f} frames/s best, {median:8.1f} median")


if __name__ == "__main__":
    main()

"""Mesh route throughput: LBS + z-buffer rasterisation of the capsule hand at 640x480.

    .venv/bin/python benchmarks/mesh_speed.py [--frames 200] [--repeats 5]

The default capsule-hand mesh (:func:`handvox.synth.mesh.mesh_from_capsules` on
:func:`handvox.synth.mesh.example_hand`) is posed by a different random flexion per frame and
rendered with the NYU camera. Prints vertex and face counts, then frames/s for skinning alone,
rasterisation alone and both; best and median of ``--repeats`` runs, because the machine may be
shared. Single-threaded throughout (the numba rasteriser is serial; BLAS is pinned to one
thread here because a multi-threaded BLAS on a tiny matmul only adds contention on a shared
machine): frames/s per core.
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

from handvox.camera import Camera  # noqa: E402
from handvox.synth import mesh as hm  # noqa: E402


def random_poses(mesh: hm.RiggedMesh, n: int, seed: int = 0) -> np.ndarray:
    """``(n, 21, 4, 4)`` poses: every finger joint flexed 0-70 degrees about its own x axis."""
    angles = np.deg2rad(np.random.default_rng(seed).uniform(0, 70, (n, 21)))
    angles[:, 0] = 0.0
    c, s = np.cos(angles), np.sin(angles)
    rot = np.zeros((n, 21, 3, 3))
    rot[..., 0, 0] = 1.0
    rot[..., 1, 1], rot[..., 1, 2], rot[..., 2, 1], rot[..., 2, 2] = c, -s, s, c
    return hm.pose_transforms(mesh.rest_transforms, mesh.parents, rot)


def rate(fn, frames: int, repeats: int) -> tuple[float, float]:
    fn(0)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(frames):
            fn(i)
        runs.append(frames / (time.perf_counter() - t0))
    return max(runs), statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cam = Camera.preset("nyu")
    joints, radii = hm.example_hand()
    mesh = hm.mesh_from_capsules(joints, radii)
    poses = random_poses(mesh, args.frames)
    verts = hm.skin(mesh, poses)
    print(f"capsule hand: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, 21 joints")
    print(f"camera {cam.width}x{cam.height}, one thread")

    def lbs(i: int) -> None:
        hm.skin(mesh, poses[i])

    def raster(i: int) -> None:
        hm.rasterize_depth(verts[i], mesh.faces, cam)

    def both(i: int) -> None:
        hm.rasterize_depth(hm.skin(mesh, poses[i]), mesh.faces, cam)

    for name, fn in (("LBS", lbs), ("rasterise", raster), ("LBS + rasterise", both)):
        best, median = rate(fn, args.frames, args.repeats)
        print(f"{name:>16}: {best:8.1f} frames/s best, {median:8.1f} median")
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        hm.skin(mesh, poses)
        runs.append(len(poses) / (time.perf_counter() - t0))
    print(f"{'LBS batched':>16}: {max(runs):8.1f} frames/s best (batch {len(poses)})")


if __name__ == "__main__":
    main()

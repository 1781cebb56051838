"""Frames per second of handvox.synth.raycast's exact depth renderer.

Renders a set of random hand poses (an open hand of :mod:`handvox.synth.primitives`, randomly
rotated, 400-600 mm from the camera) at 640x480 (NYU) and 320x240 (ICVL), forearm off and on, in
the calling thread (``threads=1``) and on two threads, after a warm-up (numba compiles or loads
its cache). Prints the number of primitives, frames/s (best and median over repeats) and the CPU
time per frame (robust to other processes sharing the machine).

Run: ``.venv/bin/python benchmarks/render_speed.py [--frames 400] [--repeats 5] [--png out.png]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image

from handvox.atomic import atomic_path
from handvox.camera import Camera
from handvox.synth.primitives import hand_primitives
from handvox.synth.raycast import render_depth


def open_hand() -> np.ndarray:
    """``(21, 3)`` canonical joints of a flat open hand, fingers up, wrist at the origin."""
    j = np.zeros((21, 3))
    j[1:5] = [[22, -22, 3], [42, -45, -2], [56, -68, -6], [66, -90, -9]]
    mcp = {1: (24, -88), 2: (4, -93), 3: (-15, -89), 4: (-32, -80)}
    lengths = {1: (42, 25, 22), 2: (46, 29, 23), 3: (43, 28, 22), 4: (34, 21, 20)}
    spread = {1: 0.12, 2: 0.03, 3: -0.06, 4: -0.16}
    for f in range(1, 5):
        d = np.array([np.sin(spread[f]), -np.cos(spread[f]), -0.05])
        p = np.array([*mcp[f], 0.0])
        j[1 + 4 * f] = p
        for k, length in enumerate(lengths[f]):
            p = p + d / np.linalg.norm(d) * length
            j[2 + 4 * f + k] = p
    return j


def random_poses(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = open_hand()
    base -= base[[0, 9]].mean(0)
    poses = []
    for _ in range(n):
        q = rng.normal(size=4)
        w, x, y, z = q / np.linalg.norm(q)
        rot = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        centre = [rng.uniform(-60, 60), rng.uniform(-40, 40), rng.uniform(400, 600)]
        poses.append(base @ rot.T + centre)
    return poses


def fps(scenes, cam: Camera, frames: int, repeats: int, **kw) -> tuple[float, float, float]:
    """(best, median) frames/s over ``repeats`` runs of ``frames`` renders, and CPU ms/frame."""
    for s in scenes[:2]:
        render_depth(s, cam, **kw)  # warm-up: numba compiles or loads its cache
    rates, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for i in range(frames):
            render_depth(scenes[i % len(scenes)], cam, **kw)
        rates.append(frames / (time.perf_counter() - t))
        cpu.append((time.process_time() - c) / frames * 1e3)
    return max(rates), float(np.median(rates)), min(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="renders per timed run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--poses", type=int, default=32)
    ap.add_argument("--png", help="save one rendered frame (forearm on, 640x480) here")
    args = ap.parse_args()

    poses = random_poses(args.poses)
    cams = {"640x480 (nyu)": Camera.preset("nyu"), "320x240 (icvl)": Camera.preset("icvl")}
    for forearm in (False, True):
        scenes = [hand_primitives(j, forearm=forearm) for j in poses]
        print(f"\nforearm={forearm}: {len(scenes[0])} primitives")
        for name, cam in cams.items():
            hits = np.mean([(render_depth(s, cam) > 0).sum() for s in scenes])
            print(f"  {name}: mean hand pixels {hits:.0f}")
            for threads in (1, 2):
                best, med, cpu = fps(scenes, cam, args.frames, args.repeats, threads=threads)
                label = f"threads={threads}"
                print(
                    f"    {label:20s} best {best:7.0f} fps  median {med:7.0f} fps  "
                    f"cpu {cpu:6.2f} ms/frame"
                )
    if args.png:
        d = render_depth(hand_primitives(poses[0], forearm=True), Camera.preset("nyu"))
        hit = d > 0
        lo, hi = d[hit].min(), d[hit].max()
        img = np.where(hit, 255 - (d - lo) / max(hi - lo, 1e-6) * 200, 0).astype(np.uint8)
        with atomic_path(args.png) as tmp:
            Image.fromarray(img).save(tmp)
        print(f"\nsaved {args.png}")


if __name__ == "__main__":
    main()

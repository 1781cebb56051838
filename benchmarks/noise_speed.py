"""Time ``add_sensor_noise`` on 640x480 NYU-camera frames (prints ms/frame).

Scenes: a hand-sized blob in front of nothing (what the synthetic renderer produces) and the
same blob in front of a wall (the whole frame valid, the worst case).

    .venv/bin/python benchmarks/noise_speed.py [--frames N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from handvox.camera import Camera
from handvox.synth.noise import NoiseConfig, add_sensor_noise


def hand_blob(camera: Camera, wall_mm: float | None) -> np.ndarray:
    """A palm and four finger-like ellipses at ~750 mm, about the image size of a NYU hand."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float32)
    z = np.zeros((camera.height, camera.width), np.float32)
    parts = [(215, 290, 45, 50)] + [(175 + 25 * i, 205 - 10 * (i % 2), 10, 45) for i in range(4)]
    for cu, cv, ru, rv in parts:
        r2 = ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2
        inside = r2 < 1
        zz = 750.0 - 15.0 * np.sqrt(np.clip(1 - r2, 0, 1))
        z = np.where(inside & ((z == 0) | (zz < z)), zz, z)
    if wall_mm is not None:
        z[z == 0] = wall_mm
    return z


def time_frames(
    clean: np.ndarray, camera: Camera, config: NoiseConfig, frames: int
) -> tuple[float, float]:
    """Wall-clock and CPU ms/frame (CPU time is the fairer figure on a shared machine)."""
    rng = np.random.default_rng(0)
    add_sensor_noise(clean, camera, rng, config)  # warm caches
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(frames):
        add_sensor_noise(clean, camera, rng, config)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return wall / frames * 1e3, cpu / frames * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args()
    camera = Camera.preset("nyu")
    for name, wall in [("hand only", None), ("hand + wall", 1050.0)]:
        clean = hand_blob(camera, wall)
        for preset in ("nyu", "none"):
            wall, cpu = time_frames(clean, camera, NoiseConfig.preset(preset), args.frames)
            n = int((clean > 0).sum())
            print(
                f"{name:12s} valid px {n:6d}  preset {preset:5s}"
                f"  {wall:6.2f} ms/frame wall  {cpu:6.2f} ms/frame CPU"
            )


if __name__ == "__main__":
    main()

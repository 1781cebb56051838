"""Projective TSDF throughput: volumes/s at batch 1 and 64, on CPU (2 threads) and CUDA if present.

    .venv/bin/python benchmarks/tsdf_speed.py [--threads 2] [--repeats 10] [--size 60]

Input: 640x480 NYU-sized depth frames (the real NYU test frame from ../shared when present,
else a synthetic sphere), one COM per frame jittered by a few cm. Prints best and median of
``--repeats`` timed runs after a warm-up, because the machine may be shared; with a new output
tensor each call (fresh memory: page faults, costly in VMs) and with one reused via ``out=``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from handvox.camera import Camera
from handvox.estimator.volume import VolumeConfig, projective_tsdf

SHARED_FRAME = Path(__file__).resolve().parents[2] / "shared/data/nyu/depth_1_0000001.png"


def depth_frame(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 depth frame (mm) and a COM on its hand."""
    if SHARED_FRAME.exists():
        from PIL import Image

        rgb = np.asarray(Image.open(SHARED_FRAME)).astype(np.uint16)
        return ((rgb[..., 1] << 8) | rgb[..., 2]).astype(np.float32), np.array([-133, 13, 762.0])
    u, v = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
    r2 = ((u - cam.cx) ** 2 + (v - cam.cy) ** 2) / 60.0**2
    depth = np.where(r2 < 1, 700 + 40 * r2, 2001).astype(np.float32)
    return depth, np.array([0, 0, 740.0])


def timed(fn, repeats: int, sync) -> list[float]:
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--size", type=int, default=60)
    ap.add_argument("--interpolation", default="nearest", choices=["nearest", "bilinear"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cam = Camera.preset("nyu")
    cfg = VolumeConfig(size=args.size, voxel_mm=300.0 / args.size, interpolation=args.interpolation)
    frame, com = depth_frame(cam)
    rng = np.random.default_rng(0)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"{cfg.size}^3 voxels of {cfg.voxel_mm:g} mm, {args.interpolation}, 640x480 depth")
    for dev in devices:
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        label = f"cpu ({torch.get_num_threads()} threads)" if dev == "cpu" else "cuda"
        for batch in (1, 64):
            depth = torch.from_numpy(np.repeat(frame[None], batch, axis=0)).to(dev)
            coms = torch.from_numpy(com + rng.normal(0, 20, (batch, 3))).float().to(dev)
            out = torch.empty((batch, 1, cfg.size, cfg.size, cfg.size), device=dev)
            for how, o in (("new output", None), ("reused output", out)):
                times = timed(
                    lambda d=depth, c=coms, o=o: projective_tsdf(d, c, cam, cfg, out=o),
                    args.repeats,
                    sync,
                )
                best, med = min(times), statistics.median(times)
                print(
                    f"{label:18s} batch {batch:3d}, {how:13s}: best {batch / best:7.0f} "
                    f"volumes/s, median {batch / med:7.0f} ({med * 1e3:.1f} ms a batch)"
                )


if __name__ == "__main__":
    main()

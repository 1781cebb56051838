"""Time writing synthetic 640x480 frames (raw + clean) in handvox's format and the alternatives.

Frames are made beforehand (generation is not timed): :func:`handvox.synth.toy.toy_frame` hands
with Kinect-like noise from :mod:`handvox.synth.noise`, in two scenes: the hand alone, and the hand
in front of a wall (every pixel valid, nothing to crop).
Timed per frame (CPU ms, median over chunks of 32): conversion to the stored form, encoding
and writing the files (to the page cache; nothing is fsynced). Also timed: decoding one frame
back by random access. handvox deflates with isal when it is installed (the same zlib streams,
~4x faster); ``--stdlib-zlib`` times Python's own zlib instead.

    .venv/bin/python benchmarks/synth_write_speed.py [--frames N] [--out DIR] [--stdlib-zlib]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from handvox.camera import Camera
from handvox.io import synthformat
from handvox.io.synthetic import SyntheticDataset
from handvox.io.synthformat import DEPTH_ENCODING
from handvox.synth.frame import SynthFrame, frame_rng
from handvox.synth.job import _meta, _schema, _write_chunk, _write_meta, encode_frame
from handvox.synth.noise import add_sensor_noise
from handvox.synth.toy import toy_frame

CHUNK = 32


class ChunkTimer:
    """CPU time (user + system, this process) per frame, chunk by chunk; the median chunk.

    CPU time, not wall time: it is the cost per core the pipeline budget is about, and it does
    not count the time other processes on a shared machine hold the cores."""

    def __init__(self) -> None:
        self.ms_per_frame: list[float] = []

    def __call__(self, fn, n: int) -> None:
        t0 = time.process_time()
        fn()
        self.ms_per_frame.append((time.process_time() - t0) / n * 1e3)

    @property
    def median(self) -> float:
        return float(np.median(self.ms_per_frame))


def make_frames(camera: Camera, n: int, wall_mm: float | None) -> list[SynthFrame]:
    frames = []
    for i in range(n):
        f = toy_frame(i, frame_rng(0, i), camera)
        if wall_mm is not None:
            f.clean = np.where(f.clean > 0, f.clean, np.float32(wall_mm))
        f.raw = add_sensor_noise(f.clean, camera, frame_rng(1, i))
        frames.append(f)
    return frames


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def time_handvox(frames, camera, root: Path, compression: str) -> tuple[float, float, float]:
    schema = _schema(frames[0], camera)
    _write_meta(root, _meta(camera, len(frames), 0, CHUNK, compression, {"name": "toy"}, schema))
    (root / "chunks").mkdir()
    timer = ChunkTimer()
    for c in range(0, len(frames), CHUNK):
        chunk = frames[c : c + CHUNK]

        def write(c=c, chunk=chunk):
            enc = [encode_frame(f, c + k, schema, camera, compression) for k, f in enumerate(chunk)]
            _write_chunk(root / "chunks", c // CHUNK, c, enc)

        timer(write, len(chunk))
    ds = SyntheticDataset(root)
    order = np.random.default_rng(0).permutation(len(ds))
    reads = ChunkTimer()
    for k in range(0, len(order), CHUNK):
        reads(lambda k=k: [ds[int(i)] for i in order[k : k + CHUNK]], len(order[k : k + CHUNK]))
    return timer.median, dir_bytes(root) / len(frames), reads.median


def _uint16(f: SynthFrame) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.rint(f.raw).astype(np.uint16),
        np.rint(f.clean / DEPTH_ENCODING["clean"][1]).astype(np.uint16),
    )


def write_npy_full(chunk, root: Path, c: int) -> None:
    pairs = [_uint16(f) for f in chunk]
    np.save(root / f"raw_{c}.npy", np.stack([p[0] for p in pairs]))
    np.save(root / f"clean_{c}.npy", np.stack([p[1] for p in pairs]))


def write_savez_compressed(chunk, root: Path, c: int) -> None:
    pairs = [_uint16(f) for f in chunk]
    raw, clean = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    np.savez_compressed(root / f"chunk_{c}.npz", raw=raw, clean=clean)


def write_png(chunk, root: Path, c: int) -> None:
    for i, f in enumerate(chunk):
        for name, a in zip(("raw", "clean"), _uint16(f), strict=True):
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG", compress_level=1)
            (root / f"{name}_{c + i:06d}.png").write_bytes(buf.getvalue())


def time_other(write, frames, root: Path) -> tuple[float, float]:
    timer = ChunkTimer()
    for c in range(0, len(frames), CHUNK):
        chunk = frames[c : c + CHUNK]
        timer(lambda c=c, chunk=chunk: write(chunk, root, c), len(chunk))
    return timer.median, dir_bytes(root) / len(frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None, help="scratch folder (default: a temp)")
    parser.add_argument("--stdlib-zlib", action="store_true", help="not isal, if installed")
    args = parser.parse_args()
    if args.stdlib_zlib:
        synthformat._deflater = zlib
    print(f"handvox deflates with {synthformat._deflater.__name__}")
    camera = Camera.preset("nyu")
    base = Path(tempfile.mkdtemp(prefix="synth_bench_", dir=args.out))
    try:
        for scene, wall in [("hand only", None), ("hand + wall", 1050.0)]:
            frames = make_frames(camera, args.frames, wall)
            valid = np.mean([(f.raw > 0).mean() for f in frames]) * 100
            print(f"\n{scene}: {len(frames)} frames 640x480, {valid:.1f} % of raw pixels valid")
            head = f"{'write CPU ms/frame':>18s} {'kB/frame':>9s} {'read CPU ms':>11s}"
            print(f"  {'format':38s} {head}")
            runs = {}
            for comp in ("zlib", "none"):
                d = base / f"{scene}-hv-{comp}"
                d.mkdir()
                runs[f"handvox crop + {comp}"] = time_handvox(frames, camera, d, comp)
            for name, write in [
                ("full frames uint16 .npy", write_npy_full),
                ("np.savez_compressed full frames", write_savez_compressed),
                ("PNG 16-bit Pillow level 1", write_png),
            ]:
                d = base / f"{scene}-{name.split()[0]}"
                d.mkdir()
                runs[name] = (*time_other(write, frames, d), float("nan"))
            for name, (w, size, r) in runs.items():
                print(f"  {name:38s} {w:18.2f} {size / 1e3:9.1f} {r:11.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

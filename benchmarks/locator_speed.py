"""The learned locator's cost and the tracking window's price (issue 15, item 6).

    python benchmarks/locator_speed.py --parts speed,window,same --sets VAL/base VAL/mesh ...

- ``speed``: on the real NYU frame, ms a call (median and best of 3 x 60, interleaved) of the
  locator's network eager and frozen (:func:`handvox.estimator.cpu.frozen_for_cpu`), and of the
  whole :func:`~handvox.estimator.locate.locate_hand` with the eager network, the frozen one, and
  the frozen one tracking (a window about the centre just found).
- ``window``: on rendered sets (every 4th frame), the centre found with a prior 30 mm off the
  frame's own whole-frame centre (a tracked hand one frame later), read on the whole frame and
  on the window, against the joints' mean: mean and median distance, frames over 20 mm.

- ``same``: on the same sets (every 5th frame), without a prior, whether ``locate_hand`` gives
  the same mask and centre as that of an earlier commit (``--against``, default e415d52: before
  the full-resolution step was cropped to the arm test's ball), loaded from git.

Run with nothing else on the machine for ``speed``; ``OMP_WAIT_POLICY`` as the command line
leaves it for inference (unset).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from handvox.camera import Camera
from handvox.estimator import locate
from handvox.estimator.segment import SegmentConfig
from handvox.io.depth import read_depth
from handvox.io.synthetic import SyntheticDataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
LEARNED = SegmentConfig(method="learned")


def _ms(fn, n: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def speed() -> None:
    depth = read_depth(SHARED / "data/nyu/depth_1_0000001.png")
    cam = Camera.preset("nyu")
    eager = locate.load_locator()
    frozen = locate._shipped(str(locate.DEFAULT_LOCATOR_DIR))
    com = locate.locate_hand(depth, cam, LEARNED).com_xyz
    x = torch.zeros(1, 2, 120, 160)
    runs = {
        "network, eager": lambda: eager(x),
        "network, frozen": lambda: frozen(x),
        "locate_hand, eager network": lambda: locate.locate_hand(depth, cam, LEARNED, eager),
        "locate_hand, frozen network": lambda: locate.locate_hand(depth, cam, LEARNED, frozen),
        "locate_hand, frozen, tracking": lambda: locate.locate_hand(
            depth, cam, LEARNED, frozen, near_xyz=com
        ),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for _ in range(3):
            for k, fn in runs.items():
                times[k] += _ms(fn, 60)
    print("| call | ms median | best |\n| --- | ---: | ---: |")
    for k, v in times.items():
        print(f"| {k} | {np.median(v):.2f} | {np.min(v):.2f} |")


def window(sets: list[Path]) -> None:
    print("| set | frames | whole frame: mean / median mm, > 20 mm | window: mean / median, > 20 |")
    print("| --- | ---: | --- | --- |")
    for root in sets:
        ds = SyntheticDataset(root, load_clean=False)
        err = {"whole": [], "window": []}
        for i in range(0, len(ds), 4):
            r = ds[i]
            depth = r.depth.astype(np.float32)
            first = locate.locate_hand(depth, r.camera, LEARNED)
            if not first.found:
                continue
            off = np.random.default_rng(i).normal(size=3)
            prior = first.com_xyz + 30.0 * off / np.linalg.norm(off)
            truth = r.joints_xyz.mean(0)
            for k, win in (("whole", False), ("window", True)):
                g = locate.locate_hand(depth, r.camera, LEARNED, near_xyz=prior, window=win)
                err[k].append(np.linalg.norm(g.com_xyz - truth) if g.found else np.inf)
        cells = []
        for k in ("whole", "window"):
            e = np.asarray(err[k])
            ok = e[np.isfinite(e)]
            cells.append(f"{ok.mean():.2f} / {np.median(e):.2f}, {(e > 20).sum()}")
        print(f"| {root.name} | {len(err['whole'])} | " + " | ".join(cells) + " |", flush=True)


def same(sets: list[Path], rev: str) -> None:
    source = subprocess.run(["git", "show", f"{rev}:src/handvox/estimator/locate.py"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "locate_then.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("locate_then", path)
        then = importlib.util.module_from_spec(spec)
        sys.modules["locate_then"] = then
        spec.loader.exec_module(then)
    then.DEFAULT_LOCATOR_DIR = locate.DEFAULT_LOCATOR_DIR  # its folder, relative to the package
    net = locate.load_locator()
    n = equal = 0
    for root in sets:
        ds = SyntheticDataset(root, load_clean=False)
        for i in range(0, len(ds), 5):
            r = ds[i]
            depth = r.depth.astype(np.float32)
            a = then.locate_hand(depth, r.camera, LEARNED, net)
            b = locate.locate_hand(depth, r.camera, LEARNED, net)
            n += 1
            alike = np.array_equal(a.mask, b.mask) and np.array_equal(a.com_xyz, b.com_xyz)
            equal += a.found == b.found and (not a.found or alike)
    print(f"the same mask and centre as {rev}'s locate_hand (one eager network): {equal} of {n}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="speed", help="speed, window, or both")
    ap.add_argument("--sets", type=Path, nargs="*", default=[], help="rendered sets (window)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--against", default="e415d52", help="the commit of part 'same'")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    if "speed" in parts:
        speed()
    if "window" in parts:
        window(args.sets)
    if "same" in parts:
        same(args.sets, args.against)


if __name__ == "__main__":
    main()

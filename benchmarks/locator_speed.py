"""The learned locator's cost and the tracking window's price (issue 15, item 6).

    python benchmarks/locator_speed.py --parts speed,window,same --sets VAL/base VAL/mesh ...

- ``speed``: on the real NYU frame, ms a call (median and best of 3 x 60, interleaved) of the
  locator's network eager and frozen (:func:`handvox.estimator.cpu.frozen_for_cpu`), and of the
  whole :func:`~handvox.estimator.locate.locate_hand` with the eager network, the frozen one, and
  the frozen one tracking (a window about the centre just found), and the frozen one reading
  the frame at four grid sampling phases (``SegmentConfig.locator_phases``).
- ``estimator``: the shipped estimator a frame (``HandPoseEstimator.default``), its hand found
  at one grid phase against four (``locator_phases``), interleaved, medians of 60 calls: the
  real NYU frame and SR305 20210326-231615/0 (the frame where the phases disagree).
- ``other``: the shipped estimator a frame without a second candidate and with the model's
  (``other_min_heat``), interleaved, medians of 60 calls: the real frames above and a rendered
  one whose second hand takes the locator's heat.
- ``steps``: on the real NYU frame, each step of one read timed alone (median of 500 calls):
  the input grid, the frozen network, decoding, the hand cells' dilation, the full-resolution
  mask and its points; and the whole ``locate_hand`` (more than their sum: caches, small calls).
- ``window``: on rendered sets (every 4th frame), the centre found with a prior 30 mm off the
  frame's own whole-frame centre (a tracked hand one frame later), read on the whole frame and
  on the window, against the joints' mean: mean and median distance, frames over 20 mm.

- ``accuracy``: each locator (the shipped one and every ``--locator NAME=DIR``) on every 4th
  frame of the sets, on the whole frame without a prior: the centre against the joints' mean.

- ``same``: on the same sets (every 5th frame), without a prior, whether ``locate_hand`` gives
  the same mask and centre as that of an earlier commit (``--against``, default e415d52: before
  the full-resolution step was cropped to the arm test's ball), loaded from git; from this
  commit on, "the same" centre means within 0.001 mm (the peak's window is summed alone).
- ``around``: ms a ``locate_hand`` call spends around the locator's network (its output
  computed once and replayed), this code against ``--against``'s, interleaved: the real NYU
  frame and 5 frames of each set.

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
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from handvox.camera import Camera
from handvox.estimator import locate
from handvox.estimator.segment import SegmentConfig
from handvox.io.depth import read_depth
from handvox.io.synthetic import SyntheticDataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
LEARNED = SegmentConfig(method="learned")
PHASES = SegmentConfig(method="learned", locator_phases=4)


def _ms(fn, n: int) -> list[float]:
    for _ in range(5):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000.0)
    return out


def speed(locators: dict[str, Path]) -> None:
    depth = read_depth(SHARED / "data/nyu/depth_1_0000001.png")
    cam = Camera.preset("nyu")
    runs = {}
    for name, folder in locators.items():
        eager = locate.load_locator(folder)
        frozen = locate._shipped(str(folder))
        com = locate.locate_hand(depth, cam, LEARNED, frozen).com_xyz
        s = locate.grid_stride(cam.width, eager.grid_width)
        x = locate.locator_input(torch.from_numpy(depth)[None], s, LEARNED.far_mm,
                                 LEARNED.min_depth_mm)  # fmt: skip
        runs |= {
            f"{name}: network, eager": lambda e=eager, x=x: e(x),
            f"{name}: network, frozen": lambda f=frozen, x=x: f(x),
            f"{name}: locate_hand, eager network": lambda e=eager: locate.locate_hand(
                depth, cam, LEARNED, e
            ),
            f"{name}: locate_hand, frozen network": lambda f=frozen: locate.locate_hand(
                depth, cam, LEARNED, f
            ),
            f"{name}: locate_hand, frozen, tracking": lambda f=frozen, c=com: locate.locate_hand(
                depth, cam, LEARNED, f, near_xyz=c
            ),
            f"{name}: locate_hand, frozen, four phases": lambda f=frozen: locate.locate_hand(
                depth, cam, PHASES, f
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


def _real_inputs() -> dict[str, tuple[np.ndarray, Camera]]:
    from handvox.cli.demo import read_sr305

    frames, sr305 = read_sr305(SHARED / "data/sr305")
    nyu = read_depth(SHARED / "data/nyu/depth_1_0000001.png")
    return {
        "the NYU frame": (nyu, Camera.preset("nyu")),
        "SR305 231615/0": (dict(frames)["20210326-231615/0"], sr305),
    }


def _paired(ests: dict, inputs: dict) -> None:
    """Medians of 60 interleaved calls of each estimator a frame, ms, and each one's ratio to the
    first's."""
    names = list(ests)
    head = " | ".join(f"{n}, ms" for n in names)
    ratios = " | ".join(f"{n} / {names[0]}" for n in names[1:])
    print(f"| frame | {head} | {ratios} |\n| --- |" + " ---: |" * (2 * len(names) - 1))
    for name, (depth, cam) in inputs.items():
        depth = np.asarray(depth, np.float32)
        times: dict[str, list[float]] = {n: [] for n in ests}
        for est in ests.values():
            _ms(lambda e=est, d=depth, c=cam: e(d, c), 0)  # warm-up
        for _ in range(60):
            for n, est in ests.items():
                t = time.perf_counter()
                est(depth, cam)
                times[n].append((time.perf_counter() - t) * 1000.0)
        med = [float(np.median(times[n])) for n in ests]
        cells = " | ".join(f"{m:.1f}" for m in med)
        rel = " | ".join(f"{m / med[0]:.2f}x" for m in med[1:])
        print(f"| {name} | {cells} | {rel} |")


def estimator_phases() -> None:
    from handvox.estimator.pipeline import HandPoseEstimator

    ests = {f"{n} phase(s)": HandPoseEstimator.default(locator_phases=n) for n in (1, 4)}
    _paired(ests, _real_inputs())


def estimator_other() -> None:
    """The shipped estimator a frame without and with a second candidate weighed
    (``other_min_heat`` 0; 0.03 taken below p_left 0.5, as first shipped; the model's): the real
    frames and a rendered one whose second hand takes the heat (seed 7, frame 40: the classifier
    and the check run there)."""
    from handvox.estimator.pipeline import HandPoseEstimator
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    nyu = Camera.preset("nyu")
    two = hand_frame_generator(HandSynthConfig.for_camera(nyu, second_hand_prob=1.0))(
        40, frame_rng(7, 40)
    )
    inputs = _real_inputs() | {"rendered, two hands": (two.raw, nyu)}
    shipped = HandPoseEstimator.default()
    seg = shipped.config.segment
    before = HandPoseEstimator.default()  # the first shipped choice
    first = replace(before.config.segment, other_min_heat=0.03, other_margin=None)
    before.config = replace(before.config, segment=first)
    ests = {"none": HandPoseEstimator.default(other_min_heat=0.0),
            "at 0.03, p_left below 0.5": before,
            f"at {seg.other_min_heat:g}, margin {seg.other_margin}": shipped}  # fmt: skip
    _paired(ests, inputs)


def _step_times(net, depth: np.ndarray, cam: Camera) -> list[float]:
    """Median ms of each step of one whole-frame read by ``net``, then of ``locate_hand``."""
    t = torch.from_numpy(depth)
    s = locate.grid_stride(cam.width, net.grid_width)
    x = locate.locator_input(t[None], s, LEARNED.far_mm, LEARNED.min_depth_mm)
    out = net(x)
    found = locate.decode(out, x)
    col, row, d = found.centre[0].double().numpy()
    com = cam.uvd_to_xyz(np.array([col * s, row * s, d]))
    cells = ndimage.binary_dilation(found.mask[0].numpy() > 0.5, locate._EIGHT)
    grid = (0, 0, s * locate.OUT_STRIDE)
    return [np.median(_ms(fn, 500)) for fn in (
        lambda: locate.locator_input(t[None], s, LEARNED.far_mm, LEARNED.min_depth_mm),
        lambda: net(x),
        lambda: locate.decode(out, x),
        lambda: ndimage.binary_dilation(found.mask[0].numpy() > 0.5, locate._EIGHT),
        lambda: locate._pixels_about(depth, cam, LEARNED, com, cells, grid),
        lambda: locate.locate_hand(depth, cam, LEARNED, net),
    )]  # fmt: skip


def steps(locators: dict[str, Path]) -> None:
    """Each step of a whole-frame read on the real NYU frame, timed alone."""
    depth = read_depth(SHARED / "data/nyu/depth_1_0000001.png")
    cam = Camera.preset("nyu")
    print("| locator | input grid | network | decode | dilation | mask and points | sum "
          "| whole locate_hand |\n| --- |" + " ---: |" * 7)  # fmt: skip
    for name, folder in locators.items():
        with torch.no_grad():
            ms = _step_times(locate._shipped(str(folder)), depth, cam)
        cols = " | ".join(f"{v:.2f}" for v in [*ms[:5], sum(ms[:5]), ms[5]])
        print(f"| {name} | {cols} |")


def accuracy(sets: list[Path], locators: dict[str, Path]) -> None:
    """Each locator's centre on every 4th frame of each set, the whole frame, no prior."""
    nets = {name: locate._shipped(str(folder)) for name, folder in locators.items()}
    head = " | ".join(f"{n}: mean / median mm, > 20 mm, missed" for n in nets)
    print(f"| set | frames | {head} |\n| --- | ---: |" + " --- |" * len(nets))
    every = {n: [] for n in nets}
    for root in sets:
        ds = SyntheticDataset(root, load_clean=False)
        err = {n: [] for n in nets}
        for i in range(0, len(ds), 4):
            r = ds[i]
            truth = r.joints_xyz.mean(0)
            for n, net in nets.items():
                g = locate.locate_hand(r.depth.astype(np.float32), r.camera, LEARNED, net)
                err[n].append(np.linalg.norm(g.com_xyz - truth) if g.found else np.inf)
        cells = []
        for n, e in err.items():
            every[n] += e
            e = np.asarray(e)
            ok = e[np.isfinite(e)]
            cells.append(f"{ok.mean():.2f} / {np.median(e):.2f}, {(e > 20).sum()}, "
                         f"{(~np.isfinite(e)).sum()}")  # fmt: skip
        print(f"| {root.name} | {len(e)} | " + " | ".join(cells) + " |", flush=True)
    cells = []
    for e in every.values():
        e = np.asarray(e)
        ok = e[np.isfinite(e)]
        cells.append(f"{ok.mean():.2f} / {np.median(e):.2f}, {(e > 20).sum()}, "
                     f"{(~np.isfinite(e)).sum()}")  # fmt: skip
    print(f"| all | {len(e)} | " + " | ".join(cells) + " |")


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


def _then(rev: str):
    """``handvox.estimator.locate`` as commit ``rev`` held it, loaded from git."""
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
    return then


class _Replay(torch.nn.Module):
    """The shipped locator's output for each input, computed once and then replayed: what is
    left of a locate_hand call is the work around the network."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.grid_width, self.seen = locate.load_locator(), locate.GRID_WIDTH, {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), hash(x.numpy().tobytes()))  # ~0.02 ms, the same for both
        if key not in self.seen:
            self.seen[key] = self.net(x)
        return self.seen[key]


def around(sets: list[Path], rev: str) -> None:
    """ms a locate_hand call spends around its network, this code against ``rev``'s: the real
    NYU frame and every 8th of the first 40 frames of each set, the network's output replayed,
    15 rounds, the two interleaved frame by frame."""
    then = _then(rev)
    frames = [(read_depth(SHARED / "data/nyu/depth_1_0000001.png"), Camera.preset("nyu"))]
    for root in sets:
        ds = SyntheticDataset(root, load_clean=False)
        frames += [(ds[i].depth.astype(np.float32), ds.camera) for i in range(0, 40, 8)]
    replay = _Replay()
    times = {rev: [], "now": []}
    with torch.no_grad():
        for _ in range(16):
            for depth, cam in frames:
                for name, mod in ((rev, then), ("now", locate)):
                    t = time.perf_counter()
                    mod.locate_hand(depth, cam, LEARNED, replay)
                    times[name].append((time.perf_counter() - t) * 1000.0)
    a, b = (np.asarray(v[len(frames) :]) for v in times.values())  # the first round: warm-up
    print(f"{len(frames)} frames x 15: around the network {rev} median {np.median(a):.2f} ms "
          f"(best {a.min():.2f}), now {np.median(b):.2f} (best {b.min():.2f}); now / {rev} "
          f"per call, median {np.median(b / a):.2f}")  # fmt: skip


def same(sets: list[Path], rev: str) -> None:
    then = _then(rev)
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
            # the centre to float rounding: decode sums over the peak's window alone now
            alike = np.array_equal(a.mask, b.mask) and np.abs(a.com_xyz - b.com_xyz).max() < 1e-3
            equal += a.found == b.found and (not a.found or alike)
    print(f"the same mask, and the centre within 0.001 mm, as {rev}'s locate_hand (one eager "
          f"network): {equal} of {n}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="speed",
                    help="speed, estimator, other, steps, accuracy, window, same, around "
                    "(commas)")  # fmt: skip
    ap.add_argument("--locator", action="append", default=[],
                    help="NAME=DIR, a locator to time (speed) and score (accuracy) beside the "
                    "shipped one (repeat)")  # fmt: skip
    ap.add_argument("--sets", type=Path, nargs="*", default=[], help="rendered sets (window)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--against", default="e415d52", help="the commit of parts same and around")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    parts = set(args.parts.split(","))
    locators = {"shipped": locate.DEFAULT_LOCATOR_DIR}
    for item in args.locator:
        name, _, folder = item.partition("=")
        locators[name] = Path(folder)
    if "speed" in parts:
        speed(locators)
    if "estimator" in parts:
        estimator_phases()
    if "other" in parts:
        estimator_other()
    if "steps" in parts:
        steps(locators)
    if "accuracy" in parts:
        accuracy(args.sets, locators)
    if "window" in parts:
        window(args.sets)
    if "same" in parts:
        same(args.sets, args.against)
    if "around" in parts:
        around(args.sets, args.against)


if __name__ == "__main__":
    main()

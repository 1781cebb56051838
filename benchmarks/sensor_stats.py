"""Each sensor family's hand statistics next to the real frames', and (``--speed``) its cost.

Statistics, the same code for real and rendered frames: the hand is ``segment_hand``'s mask on
the measured frame; its region is that mask closed (5x5) with holes filled, so dropouts on the
rim and inside count as the hand's. Per frame:

- ``z``: median depth of the hand's valid pixels (mm);
- ``inner`` / ``edge``: the noise (mm): std of the residual to the local line through a pixel's
  two neighbours, ``(d[k-1] - 2 d[k] + d[k+1]) / sqrt(6)`` along rows and columns (a white
  noise of std s gives s; slopes give nothing, so the hand's shape barely shows), over valid
  pixels >= 4 px inside the region's border / within 2 px of it, residuals over 5 mm (steps
  between fingers, 12 mm and more) left out;
- ``edge>10``: share of the edge pixels more than 10 mm from the 5x5 median of the region's
  valid pixels (flying pixels, outliers, fattening);
- ``rim inv``: share of the region's pixels within 2 px of its border that are invalid;
- ``holes``: invalid 4-connected components more than 2 px inside the border, per 10 000 region
  px, and their median size (px).

Real frames (``../shared/data``): NYU (Kinect v1, 1 frame), SR305 (coded light, 19 frames,
0.125 mm units and camera.json), HANDS 2017 (1 frame, RealSense-class; background removed by
its makers; intrinsics assumed those of the HANDS 2017 release, fx = fy = 475.07). Rendered:
``--frames`` hands of the hand generator per family at each real set's camera, hand distance,
scene (a body behind for NYU and SR305, nothing behind for HANDS 2017) and gesture (open hands,
a V sign for HANDS 2017, perturbed; only frames whose palm faces the camera within 45 degrees,
as the real ones do), each frame with the family's parameters drawn anew
(``HandSynthConfig(sensor=family)``); the same scenes unmeasured give the "noise-free" rows,
the floor the hand's own shape puts under each statistic. The table holds the medians over
frames.

    .venv/bin/python benchmarks/sensor_stats.py [--frames 24] [--seed 0] [--speed] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage

from handvox.camera import Camera
from handvox.estimator.segment import segment_hand
from handvox.hand.poses import ArticulationConfig
from handvox.io.depth import read_depth
from handvox.synth.coded_light import CodedLightConfig, add_coded_light_noise
from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.noise import NoiseConfig, add_sensor_noise
from handvox.synth.sensors import FAMILIES
from handvox.synth.stereo import StereoConfig, add_stereo_noise
from handvox.synth.tof import ToFConfig, add_tof_noise

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STATS = ("z", "inner", "edge", "edge>10", "rim inv", "holes/10k", "hole px")
# The HANDS 2017 release's intrinsics (its frames are 640x480 from an SR300-class camera).
HANDS17 = Camera(475.065948, 475.065857, 315.944855, 245.287079, 640, 480)


@dataclass
class RealSet:
    name: str
    camera: Camera
    frames: list[np.ndarray]
    depth_mm: tuple[float, float]  # the rendered hands' centre depth range
    body: bool
    gestures: tuple[str, ...]  # what the real hands show (open palms; a V sign)


def real_sets() -> list[RealSet]:
    """The real frames, depth in mm with 0 invalid."""
    nyu = read_depth(SHARED / "nyu/depth_1_0000001.png")
    nyu[nyu >= 2001] = 0
    spec = json.loads((SHARED / "sr305/camera.json").read_text())
    sr_cam = Camera(spec["fx"], spec["fy"], spec["cx"], spec["cy"], spec["width"], spec["height"])
    sr = [
        np.asarray(Image.open(p), np.float32) * np.float32(spec["depth_unit_mm"])
        for p in sorted((SHARED / "sr305").glob("*/*.png"))
    ]
    h17 = read_depth(SHARED / "hands17/image_D00000030.png")
    return [
        RealSet("NYU (Kinect v1)", Camera.preset("nyu"), [nyu], (720.0, 820.0), True, ("open",)),
        RealSet("SR305", sr_cam, sr, (500.0, 650.0), True, ("open",)),
        RealSet("HANDS17", HANDS17, [h17], (540.0, 640.0), False, ("peace",)),
    ]


def frame_stats(depth: np.ndarray, camera: Camera) -> dict[str, float] | None:
    """The statistics of one frame (``(H, W)`` mm, 0 invalid), or None if no hand is found."""
    seg = segment_hand(depth, camera)
    if not seg.found:
        return None
    region = ndimage.binary_fill_holes(ndimage.binary_closing(seg.mask, np.ones((5, 5))) | seg.mask)
    inside = ndimage.distance_transform_cdt(region, metric="chessboard")
    valid = depth > 0
    sel = region & valid
    pad = np.pad(np.where(sel, depth, np.nan), 2, constant_values=np.nan)
    windows = sliding_window_view(pad, (5, 5))[sel].reshape(-1, 25)
    res = np.full(depth.shape, np.nan)
    res[sel] = depth[sel] - np.nanmedian(windows, axis=1)
    inner, edge = sel & (inside >= 4), sel & (inside <= 2)
    # second differences along rows and columns where all three pixels are the hand's
    d2 = np.full((2, *depth.shape), np.nan)
    for k, axis in enumerate((0, 1)):
        a, b = np.roll(depth, 1, axis), np.roll(depth, -1, axis)
        ok = sel & np.roll(sel, 1, axis) & np.roll(sel, -1, axis)
        d2[k][ok] = (a - 2.0 * depth + b)[ok] / np.sqrt(6.0)

    def spread(mask: np.ndarray) -> float:
        r = d2[:, mask].ravel()
        r = r[np.abs(r) < 5.0]
        return float(np.std(r)) if r.size > 20 else float("nan")

    rim = region & (inside <= 2)
    lab, n = ndimage.label(region & ~valid & (inside > 2))
    sizes = np.bincount(lab.ravel())[1:]
    return {
        "z": float(np.median(depth[sel])),
        "inner": spread(inner),
        "edge": spread(edge),
        "edge>10": float(np.mean(np.abs(res[edge]) > 10.0)),
        "rim inv": float(np.mean(~valid[rim])),
        "holes/10k": n / region.sum() * 1e4,
        "hole px": float(np.median(sizes)) if n else 0.0,
    }


def summarise(stats: list[dict[str, float] | None]) -> tuple[dict[str, float], int]:
    ok = [s for s in stats if s is not None]
    return {k: float(np.nanmedian([s[k] for s in ok])) for k in STATS}, len(ok)


def row(name: str, s: dict[str, float], n: int, total: int) -> str:
    pct = {k: 100.0 * s[k] for k in ("edge>10", "rim inv")}
    cells = [f"{s['z']:.0f}", f"{s['inner']:.2f}", f"{s['edge']:.2f}", f"{pct['edge>10']:.1f}",
             f"{pct['rim inv']:.1f}", f"{s['holes/10k']:.1f}", f"{s['hole px']:.0f}"]  # fmt: skip
    return f"| {name} | {n}/{total} | " + " | ".join(cells) + " |"


def facing_frames(gen, count: int, seed: int, max_deg: float = 45.0) -> list:
    """The first ``count`` frames whose palm faces the camera within ``max_deg`` (the real
    hands do; edge-on views would dominate every statistic)."""
    out, i = [], 0
    while len(out) < count:
        f = gen(i, frame_rng(seed, i))
        j = f.joints_xyz["canonical21"].astype(np.float64)  # wrist 0, index MCP 5, little 17
        n = np.cross(j[5] - j[0], j[17] - j[0])
        centre = j[[0, 5, 17]].mean(0)
        cos = abs(n @ centre) / (np.linalg.norm(n) * np.linalg.norm(centre))
        if cos >= np.cos(np.radians(max_deg)):
            out.append(f)
        i += 1
    return out


def stats_table(frames: int, seed: int) -> None:
    print("| frames | found | z (mm) | inner std (mm) | edge std (mm) | edge >10 mm (%) "
          "| rim invalid (%) | holes /10k px | hole size (px) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k, real in enumerate(real_sets()):
        s, n = summarise([frame_stats(d, real.camera) for d in real.frames])
        print(row(f"**real {real.name}**", s, n, len(real.frames)))
        for family in FAMILIES:
            pose = ArticulationConfig(gesture=0.5, perturbed=0.5, synergy=0.0, transition=0.0,
                                      uniform=0.0, gestures=real.gestures)  # fmt: skip
            cfg = HandSynthConfig(camera=real.camera, depth_mm=real.depth_mm, articulation=pose,
                                  sensor=family, body_prob=1.0 if real.body else 0.0,
                                  head_prob=0.5, wall_prob=0.0)  # fmt: skip
            got = facing_frames(hand_frame_generator(cfg), frames, seed + 1000 * k)
            if family == FAMILIES[0]:  # the sensor draws after the scene: one set of scenes
                s, n = summarise([frame_stats(f.clean, real.camera) for f in got])
                print(row(f"noise-free render @ {real.name}", s, n, frames))
            s, n = summarise([frame_stats(f.raw, real.camera) for f in got])
            print(row(f"{family} @ {real.name}", s, n, frames))


def speed_table(repeats: int) -> None:
    """ms of CPU per 640x480 frame for each family on benchmarks/noise_speed.py's scenes."""
    # the scenes of the benchmark beside this one (a script, found on the script's path)
    from noise_speed import hand_blob

    models = {
        "structured_light (today)": (add_sensor_noise, NoiseConfig.nyu()),
        "time_of_flight": (add_tof_noise, ToFConfig()),
        "active_stereo": (add_stereo_noise, StereoConfig()),
        "coded_light": (add_coded_light_noise, CodedLightConfig()),
    }
    camera = Camera.preset("nyu")
    print("| scene | normals | " + " | ".join(models) + " |")
    print("| --- | --- |" + " ---: |" * len(models))
    for scene, wall in (("hand only", None), ("hand + wall", 1050.0)):
        clean = hand_blob(camera, wall)
        for given in (False, True):
            normals = _normals(clean, camera) if given else None
            best = dict.fromkeys(models, np.inf)
            for rep in range(repeats):  # interleaved, best of: the machine is shared
                for name, (fn, cfg) in models.items():
                    rng = np.random.default_rng(rep)
                    fn(clean, camera, rng, cfg, normals)
                    c0 = time.process_time()
                    for _ in range(10):
                        fn(clean, camera, rng, cfg, normals)
                    best[name] = min(best[name], (time.process_time() - c0) / 10 * 1e3)
            cells = " | ".join(f"{best[m]:.2f}" for m in models)
            print(f"| {scene} | {'renderer' if given else 'from depth'} | {cells} |")


def _normals(clean: np.ndarray, camera: Camera) -> np.ndarray:
    """Unit normals of the depth (central differences), as a renderer would hand over."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
    p = camera.uvd_to_xyz(np.stack([u, v, clean.astype(np.float64)], -1))
    n = np.cross(np.gradient(p, axis=1), np.gradient(p, axis=0))
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-9)
    n[clean <= 0] = 0
    return n.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=24, help="rendered frames per family and set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", action="store_true", help="also time each family's noise")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    if not SHARED.is_dir():
        raise SystemExit(f"{SHARED} is missing: the real frames live there")
    stats_table(args.frames, args.seed)
    if args.speed:
        print()
        speed_table(args.repeats)


if __name__ == "__main__":
    main()

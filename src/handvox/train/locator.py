"""Training of the learned hand locator (:mod:`handvox.estimator.locate`): its data and its loop.

Data: frames of :func:`handvox.synth.hand.hand_frame_generator` drawn from :data:`LOCATOR_SCENES`
(or another of :data:`SCENE_SETS`),
the scenes the depth-only rule fails in (objects in and near the hand, egocentric and desk views,
a second hand, a face beside the hand, every sensor family at its own resolution, both hand
surfaces) beside plain
third-person frames, with the training hand shapes only (the protocol's test shape stays
unseen) and seeds of their own (:data:`LOCATOR_SEED`). Only what the locator needs is kept: the
depth on the grid, the grid cells showing the hand or its forearm (from the part image) and the
centre (the mean of the 21 joints), so that tens of thousands of frames fit in memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from handvox.atomic import atomic_path
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.estimator.cpu import frozen_for_cpu
from handvox.estimator.locate import (
    GRID_WIDTH,
    LocatorNet,
    decode,
    encode_targets,
    grid_stride,
    load_locator,
    locator_input,
    locator_loss,
    save_locator,
    soft_targets,
)
from handvox.estimator.segment import SegmentConfig
from handvox.eval.protocol import TRAIN_SHAPES
from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import SCENE_PARTS, HandSynthConfig

# What counts as a reading, as at inference (SegmentConfig's defaults; the data are on the grid).
_READINGS = SegmentConfig()
# Seeds 3000 + k (k: the scene's index) are used by no other data set.
LOCATOR_SEED = 3000
_HAND_IDS = [SCENE_PARTS.index(p) for p in ("palm", "thumb", "index", "middle", "ring",
                                            "little", "forearm")]  # fmt: skip
_CONTENT = {"mesh_prob": 0.5, "object_prob": 0.4, "near_object_prob": 0.3,
            "second_hand_prob": 0.15}  # fmt: skip


@dataclass(frozen=True)
class LocatorScene:
    """One kind of training frame: its share of the frames, camera preset and
    :class:`~handvox.synth.hand_config.HandSynthConfig` settings."""

    share: float
    camera: str
    settings: dict[str, Any]


# Each sensor family at its own resolution (regridded to the camera) wherever the scene has a
# sensor: the locator must not learn one sensor's edges for "hand".
LOCATOR_SCENES: tuple[LocatorScene, ...] = (
    LocatorScene(0.15, "nyu", {}),  # what the depth-only rule was made for: keep it
    LocatorScene(0.20, "nyu", {**_CONTENT, "sensor": "all", "sensor_camera": True}),
    LocatorScene(0.10, "icvl", {**_CONTENT, "sensor": "all", "sensor_camera": True}),
    LocatorScene(0.30, "sr305", {**_CONTENT, "object_prob": 0.6, "view": "egocentric",
                                 "sensor": "all", "sensor_camera": True}),
    LocatorScene(0.15, "nyu", {**_CONTENT, "near_object_prob": 0.6, "view": "desk",
                               "sensor": "all", "sensor_camera": True}),
    # A person waving at a near-range sensor, the face beside the hand at its depth: the real
    # SR305 frames where a locator that never saw it took the face for the hand.
    LocatorScene(0.10, "sr305", {**_CONTENT, "body_prob": 1.0, "head_prob": 1.0,
                                 "hand_by_head_prob": 0.7, "sensor": "all",
                                 "sensor_camera": True}),
)  # fmt: skip

# The shipped scenes and people waving as people wave (fingers up, the arm hanging out of the
# image below), the face beside the hand: the real SR305 frame the shipped locator gets wrong.
# Tried as a fine-tune and from scratch (docs/benchmarks.md, "A locator that has seen people
# wave" and after); not shipped. Scene k keeps its seed (LOCATOR_SEED + k): frame i of each of
# the first six is the shipped data's frame i.
WAVE_SCENES: tuple[LocatorScene, ...] = (
    *LOCATOR_SCENES[:3],
    dataclasses.replace(LOCATOR_SCENES[3], share=0.25),
    LOCATOR_SCENES[4],
    dataclasses.replace(LOCATOR_SCENES[5], share=0.05),
    LocatorScene(0.10, "sr305", {**_CONTENT, "body_prob": 1.0, "head_prob": 1.0,
                                 "hand_by_head_prob": 0.7, "view": "wave", "sensor": "all",
                                 "sensor_camera": True}),
)  # fmt: skip
SCENE_SETS = {"shipped": LOCATOR_SCENES, "wave": WAVE_SCENES}


def scene_config(scene: LocatorScene) -> tuple[Camera, HandSynthConfig]:
    camera = Camera.preset(scene.camera)
    return camera, HandSynthConfig.for_camera(camera, shapes=TRAIN_SHAPES, **scene.settings)


def locator_sample(
    frame, camera: Camera, grid_width: int = GRID_WIDTH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frame -> (grid depth ``(h, w)`` uint16 mm, 0 = none; grid hand cells ``(h, w)`` bool;
    centre ``(3,)`` float32: grid column, row, depth mm), on the grid ``grid_width`` across."""
    s = grid_stride(camera.width, grid_width)
    raw = frame.raw[::s, ::s]
    depth = np.where(np.isfinite(raw) & (raw > 0), np.clip(np.rint(raw), 0, 65535), 0)
    hand = np.isin(frame.extra["part"][::s, ::s], _HAND_IDS)
    joints = frame.joints_xyz["canonical21"].astype(np.float64)
    u, v, d = camera.xyz_to_uvd(joints.mean(0))
    return depth.astype(np.uint16), hand, np.array([u / s, v / s, d], np.float32)


def _make(job: tuple[int, int, int, int, str]) -> tuple[tuple, dict[str, np.ndarray]]:
    k, start, stop, grid_width, scenes = job
    torch.set_num_threads(1)
    camera, config = scene_config(SCENE_SETS[scenes][k])
    make = hand_frame_generator(config)
    out = [locator_sample(make(i, frame_rng(LOCATOR_SEED + k, i)), camera, grid_width)
           for i in range(start, stop)]  # fmt: skip
    depth, hand, centre = (np.stack(a) for a in zip(*out, strict=True))
    return job, {"depth": depth, "hand": hand, "centre": centre,
                 "scene": np.full(len(depth), k, np.uint8)}  # fmt: skip


def _apportion(total: int, shares: list[float]) -> list[int]:
    """``total`` split by ``shares`` into whole counts that add up to it (largest remainders)."""
    exact = np.asarray(shares, float) / sum(shares) * total
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact, kind="stable")[: total - counts.sum()]] += 1
    return counts.tolist()


def make_locator_data(
    path: str | Path,
    frames: int,
    workers: int = 2,
    first: int = 0,
    block: int = 64,
    grid_width: int = GRID_WIDTH,
    scenes: str = "shipped",
) -> Path:
    """Render ``frames`` locator frames (the scenes of ``SCENE_SETS[scenes]`` by their shares,
    each scene's frames ``first ..``, on the grid ``grid_width`` across) into the npz ``path``
    (``depth``, ``hand``, ``centre``, ``scene``, in scene and frame order). Each block of
    ``block`` frames is written atomically to ``path.parts/`` as it is done, so that a rerun
    renders only the missing ones; the npz is written atomically from them at the end.
    Validation data: the same with a ``first`` past training's."""
    path = Path(path)
    jobs = []
    for k, count in enumerate(_apportion(frames, [s.share for s in SCENE_SETS[scenes]])):
        n = first + count
        jobs += [(k, a, min(a + block, n), grid_width, scenes) for a in range(first, n, block)]
    parts = path.with_name(path.name + ".parts")
    parts.mkdir(parents=True, exist_ok=True)

    def part(job: tuple) -> Path:
        return parts / "{}-{}-{}.npz".format(*job[:3])

    todo = [j for j in jobs if not part(j).is_file()]
    total = sum(job[2] - job[1] for job in jobs)
    done = total - sum(job[2] - job[1] for job in todo)
    with (
        get_context("spawn").Pool(workers) as pool,
        tqdm(total=total, initial=done, unit="frame", desc="locator data") as bar,
    ):
        for job, arrays in pool.imap_unordered(_make, todo):
            with atomic_path(part(job)) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, **arrays)
            bar.update(job[2] - job[1])
    loaded = []
    for job in jobs:
        with np.load(part(job)) as z:
            loaded.append({k: z[k] for k in ("depth", "hand", "centre", "scene")})
    out = {k: np.concatenate([p[k] for p in loaded]) for k in loaded[0]}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **out)
    shutil.rmtree(parts)
    return path


@dataclass(frozen=True)
class LocatorTrainConfig:
    """One locator run (the loop of :func:`train_locator`)."""

    steps: int = 6000
    batch_size: int = 32
    lr: float = 2e-3  # Adam on a batch-normalised net this small takes a high rate
    warmup_steps: int = 200
    weight_decay: float = 1e-4
    width: int = 16  # LocatorNet's first level's channels
    # Grid cells across the image: 160 resolves a finger at 640 px; fewer cells are cheaper to
    # read and coarser (docs/benchmarks.md, "Finding the hand", for what 80 cost).
    grid_width: int = GRID_WIDTH
    flip_prob: float = 0.5  # mirrored frames: left hands look like this
    val_every: int = 500
    seed: int = 0
    # A locator folder (save_locator) to start from instead of random weights: a fine-tune on
    # scenes added since it was trained; its width and grid must be the run's.
    init: str | None = None
    # The scenes of SCENE_SETS the data were rendered from (their index in a frame's "scene").
    scenes: str = "shipped"
    # Weight of a trained locator's outputs (teacher's; default init's) as a second target on
    # frames of the scenes it was trained on: a fine-tune learns new scenes without moving its
    # answers on the old ones, which the shipped pose net was trained on (learning without
    # forgetting); a smaller locator learns to answer as the shipped one (distillation). 0: off.
    keep: float = 0.0
    teacher: str | None = None


def _load(path: str | Path) -> dict[str, torch.Tensor]:
    with np.load(path) as z:
        return {k: torch.from_numpy(z[k]) for k in ("depth", "hand", "centre", "scene")}


def _batch(data: dict, idx: torch.Tensor, flip: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
    depth = data["depth"][idx].float()
    hand = data["hand"][idx]
    centre = data["centre"][idx].clone()
    if flip is not None and flip.any():
        depth[flip] = depth[flip].flip(-1)
        hand[flip] = hand[flip].flip(-1)
        centre[flip, 0] = depth.shape[-1] - 1 - centre[flip, 0]
    x = locator_input(depth, 1, _READINGS.far_mm, _READINGS.min_depth_mm)
    return x, encode_targets(centre, hand, (x.shape[-2] // 2, x.shape[-1] // 2))


def _cameras(grid_width: int, scenes: str = "shipped") -> list[tuple[Camera, int]]:
    return [(Camera.preset(s.camera), grid_stride(Camera.preset(s.camera).width, grid_width))
            for s in SCENE_SETS[scenes]]  # fmt: skip


def centre_errors(
    net: LocatorNet, data: dict, batch_size: int = 64, scenes: str = "shipped"
) -> np.ndarray:
    """Distances (mm) between the located and the true centres of ``data``'s frames (rendered
    from ``SCENE_SETS[scenes]``)."""
    cams = _cameras(net.grid_width, scenes)
    net.eval()
    errs = []
    with torch.no_grad():
        for a in range(0, len(data["depth"]), batch_size):
            idx = torch.arange(a, min(a + batch_size, len(data["depth"])))
            x, _ = _batch(data, idx, None)
            got = decode(net(x), x).centre.double().numpy()
            true = data["centre"][idx].double().numpy()
            for g, t, k in zip(got, true, data["scene"][idx].tolist(), strict=True):
                cam, s = cams[k]
                p = cam.uvd_to_xyz(
                    np.array([[g[0] * s, g[1] * s, g[2]], [t[0] * s, t[1] * s, t[2]]])
                )
                errs.append(float(np.linalg.norm(p[0] - p[1])))
    net.train()
    return np.array(errs)


def _same_scene(a: LocatorScene, b: dict) -> bool:
    # a scene of a set against one read back from a locator's config.json (lists for tuples)
    return a.camera == b["camera"] and json.loads(json.dumps(a.settings)) == b["settings"]


def kept_scenes(folder: str | Path, scenes: str) -> list[bool]:
    """For each scene of ``SCENE_SETS[scenes]``: whether the locator in ``folder`` was trained on
    it (camera and settings as its config.json records them; shares may differ)."""
    try:
        seen = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["scenes"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(folder, f"no record of the scenes it was trained on: {e}") from e
    return [any(_same_scene(sc, old) for old in seen) for sc in SCENE_SETS[scenes]]


def train_locator(
    train: str | Path, val: str | Path, out: str | Path, config: LocatorTrainConfig
) -> Path:
    """Train a :class:`~handvox.estimator.locate.LocatorNet` on the npz ``train`` (from
    :func:`make_locator_data`), validating on ``val``; ``out/state.pt`` (resumable, written
    atomically at each validation) and ``out/best/`` (the weights of the best validation centre
    error with this config, the scenes and the data: :func:`~handvox.estimator.locate.
    save_locator`)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config
    torch.manual_seed(cfg.seed)
    tr, va = _load(train), _load(val)
    if cfg.scenes not in SCENE_SETS:
        raise ValueError(f"scenes {cfg.scenes!r}: one of {', '.join(SCENE_SETS)}")
    cam, stride = _cameras(cfg.grid_width, cfg.scenes)[0]
    for name, data in ((train, tr), (val, va)):
        if data["depth"].shape[-1] != -(-cam.width // stride):
            raise ValueError(
                f"{name}: frames {data['depth'].shape[-1]} cells across, not on the grid "
                f"{cfg.grid_width} across that the run asks for (grid_width)"
            )
        if len(data["scene"]) and int(data["scene"].max()) >= len(SCENE_SETS[cfg.scenes]):
            raise ValueError(
                f"{name}: frames of scene {int(data['scene'].max())}, which the scene set "
                f"{cfg.scenes!r} has not (rendered from another set of scenes)"
            )
    net = LocatorNet(cfg.width, cfg.grid_width)
    if cfg.init is not None:
        start = load_locator(cfg.init)
        if (start.width, start.grid_width) != (cfg.width, cfg.grid_width):
            raise ValueError(
                f"{cfg.init}: a locator of width {start.width} on a grid {start.grid_width} "
                f"across, not the run's {cfg.width} and {cfg.grid_width} (width, grid_width)"
            )
        net.load_state_dict(start.state_dict())
    teacher, kept = None, None
    if cfg.keep > 0:
        source = cfg.teacher or cfg.init
        if source is None:
            raise ValueError("keep: whose outputs to keep? Give a teacher or an init")
        taught = load_locator(source)
        if taught.grid_width != cfg.grid_width:
            raise ValueError(f"keep: {source} reads a grid {taught.grid_width} across, not the "
                             f"run's {cfg.grid_width} (grid_width)")  # fmt: skip
        teacher = frozen_for_cpu(taught, _batch(tr, torch.arange(2), None)[0])
        kept = torch.tensor(kept_scenes(source, cfg.scenes))
        if not kept.any():
            raise ValueError(f"keep: {source} was trained on none of the {cfg.scenes!r} scenes")
    opt = torch.optim.AdamW(net.parameters(), cfg.lr, weight_decay=cfg.weight_decay)

    def rate(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (
            1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        )  # (a run no longer than its warm-up: its last step's rate, never read, without a 0/0)

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    step, best, log = 0, math.inf, []
    gen = torch.Generator().manual_seed(cfg.seed)
    state_path = out / "state.pt"
    if state_path.exists():
        st = torch.load(state_path, weights_only=False)
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        sched.load_state_dict(st["sched"])
        gen.set_state(st["gen"])
        step, best, log = st["step"], st["best"], st["log"]
    n = len(tr["depth"])
    net.train()
    sums: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, unit="step", desc="locator", file=sys.stderr)
    t0 = time.perf_counter()
    while step < cfg.steps:
        idx = torch.randint(n, (cfg.batch_size,), generator=gen)
        flip = torch.rand(cfg.batch_size, generator=gen) < cfg.flip_prob
        x, target = _batch(tr, idx, flip)
        pred = net(x)
        losses = locator_loss(pred, x, target)
        if teacher is not None:
            old = kept[tr["scene"][idx].long()]
            if old.any():
                with torch.no_grad():
                    t_out = teacher(x[old])
                    soft = soft_targets(t_out, x[old])
                    # the entropies of the teacher's heat and mask: subtracted, the logged term
                    # is the distance from its answers (those KLs and the depth's L1)
                    own = locator_loss(t_out, x[old], soft)
                    floor = own["heat"] + own["mask"]
                gap = sum(locator_loss(pred[old], x[old], soft).values()) - floor
                losses["keep"] = cfg.keep * gap
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        bar.update(1)
        if step % cfg.val_every == 0 or step == cfg.steps:
            err = centre_errors(net, va, scenes=cfg.scenes)
            row = {"step": step, **{k: v / cfg.val_every for k, v in sums.items()},
                   "val_mean_mm": float(err.mean()), "val_median_mm": float(np.median(err)),
                   "val_over_50mm": float((err > 50).mean()),
                   "time_s": time.perf_counter() - t0}  # fmt: skip
            log.append(row)
            sums = {}
            bar.write(" ".join(f"{k} {v:.4g}" for k, v in row.items()))
            if row["val_mean_mm"] < best:
                best = row["val_mean_mm"]
                info = {"step": step, "validation": row, "train_config": asdict(cfg),
                        "scene_set": cfg.scenes,
                        "scenes": [asdict(sc) for sc in SCENE_SETS[cfg.scenes]],
                        "data": {"train": str(train), "val": str(val)}}  # fmt: skip
                save_locator(net, out / "best", info)
            with atomic_path(state_path) as tmp:
                torch.save({"net": net.state_dict(), "opt": opt.state_dict(),
                            "sched": sched.state_dict(), "gen": gen.get_state(), "step": step,
                            "best": best, "log": log}, tmp)  # fmt: skip
    bar.close()
    return out / "best"

"""Training data of ``handvox train``: sources, frame scans, the split, epochs and samples.

Pipeline of one sample: read a frame of any dataset handvox reads
(:class:`handvox.io.datasets.DatasetSpec`) -> hand mask and COM from
:func:`handvox.estimator.segment.segment_hand` on the input depth (as at test time; labels never
place the cube) -> random rotation / scale / COM jitter (:mod:`handvox.train.augment`) -> TSDF of
the transformed cube -> target = joints relative to the cube centre in the cube's frame, divided
by ``PoseNetConfig.target_scale_mm`` (:class:`Samples`). Validation volumes are not augmented.

Before training every frame is scanned once (:func:`scan_source`; COM, whether a hand was
found, how far its joints reach; cached in the run's ``scan/``), except frames rendered as they
are read (``render:`` sources, whose reader has ``RENDERED``:
:class:`handvox.synth.stream.RenderedFrames`): the worker that renders one segments it, and
draws another for the slot when it shows no hand (or, with ``skip_outside_cube``, a joint
outside the cube). Frames are split into training
and validation (:func:`split_frames`; all of it: :func:`prepare_frames`) and each epoch's order
is a function of ``(seed, epoch)`` (:func:`epoch_plan`, :class:`EpochBatches`), which is what
makes a resumed run repeat an uninterrupted one.

What a run reads, kept apart from how it trains (:mod:`handvox.train.trainer`); this module
imports the run's configuration (:mod:`handvox.train.config`), its processes
(:mod:`handvox.train.distributed`) and progress bars (:mod:`handvox.train.logs`), never the loop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from handvox.atomic import atomic_path
from handvox.errors import HandvoxError
from handvox.estimator.locate import find_hand, locator_folder, locator_id
from handvox.estimator.segment import SEGMENT_VERSION
from handvox.estimator.volume import encode_joints, projective_tsdf
from handvox.estimator.weights import EstimatorConfig
from handvox.io.datasets import DatasetSpec
from handvox.io.frames import FrameDataset
from handvox.joints import get_joint_set
from handvox.train.augment import AugmentConfig, AugmentParams
from handvox.train.augment import sample_params as sample_augment
from handvox.train.config import TrainConfig
from handvox.train.distributed import Dist
from handvox.train.logs import progress_bar

# Scan status of a frame.
OK, NO_HAND, UNLABELLED = 0, 1, 2


# --- sources --------------------------------------------------------------------------------
# Sensor-like noise on an occluder's surface (AugmentConfig.occluder_prob): a clean analytic
# sphere among noisy pixels would be an easy tell.
OCCLUDER_NOISE_MM = 1.5


def open_training_data(spec: DatasetSpec, joint_set: str, load_clean: bool) -> FrameDataset:
    """The frames of ``spec`` that training (or validation) reads, in ``joint_set``: NYU's and
    ICVL's train split unless the spec names another (never the test split: TrainConfig
    refuses it)."""
    ds = spec.open(split="train", joint_set=joint_set, load_clean=load_clean, require_complete=True)
    if ds.joint_set.name != get_joint_set(joint_set).name:
        raise ValueError(f"data {spec.spec}: provides {ds.joint_set.name} joints, not {joint_set}")
    return ds


# --- frames: scan, split, epochs ------------------------------------------------------------
@dataclass
class Scan:
    """Per frame of one source: ``com`` ``(N, 3)`` float64 (NaN when not found), ``status``
    ``(N,)`` int8 (OK, NO_HAND, UNLABELLED) and ``reach`` ``(N,)``: largest per-axis distance
    of a joint from the COM, mm (the cube must reach that far); the hand masks as bit-packed
    bounding-box crops: ``mask_box`` ``(N, 4)`` int32 (row, col, height, width; height 0: no
    mask), ``mask_bits`` ``(M,)`` uint8 and ``mask_start`` ``(N + 1,)`` int64 offsets into it.

    Segmentation costs more than the rest of a sample (``handvox bench``; docs/benchmarks.md,
    "The pose path and its CPU remedies"); the masks are kept so that every epoch reuses them.
    """

    com: np.ndarray
    status: np.ndarray
    reach: np.ndarray
    mask_box: np.ndarray
    mask_bits: np.ndarray
    mask_start: np.ndarray

    def mask(self, i: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Frame ``i``'s ``(H, W)`` bool hand mask, or None without one."""
        r, c, h, w = (int(v) for v in self.mask_box[i])
        if h == 0:
            return None
        bits = self.mask_bits[self.mask_start[i] : self.mask_start[i + 1]]
        out = np.zeros(shape, bool)
        out[r : r + h, c : c + w] = np.unpackbits(bits, count=h * w).reshape(h, w).astype(bool)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _pack_mask(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W)`` bool -> box ``(4,)`` int32 and the crop's packed bits."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if not rows.size:
        return np.zeros(4, np.int32), np.zeros(0, np.uint8)
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = np.array([r0, c0, r1 - r0, c1 - c0], np.int32)
    return box, np.packbits(mask[r0:r1, c0:c1])


def _reach(joints_xyz: np.ndarray, com: np.ndarray) -> float:
    """How far the cube must reach from ``com`` to hold every joint: the largest per-axis
    distance, mm (a joint lies inside the cube when this is at most half its edge)."""
    return float(np.abs(joints_xyz - com).max())


class _ScanFrames(Dataset):
    def __init__(self, ds: FrameDataset, indices: np.ndarray, seg_cfg):
        self.ds, self.indices, self.seg_cfg = ds, indices, seg_cfg

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> tuple:
        i = int(self.indices[k])
        rec = self.ds[i]
        none = (np.zeros(4, np.int32), np.zeros(0, np.uint8))
        if rec.joints_xyz is None:
            return i, np.full(3, np.nan), UNLABELLED, np.inf, *none
        seg = find_hand(rec.depth, rec.camera, self.seg_cfg)
        if not seg.found:
            return i, np.full(3, np.nan), NO_HAND, np.inf, *none
        return i, seg.com_xyz, OK, _reach(rec.joints_xyz, seg.com_xyz), *_pack_mask(seg.mask)


def _segment_ident(cfg) -> dict:
    """What of the segmentation decides a scan: its config (less ``method`` at its default, so
    that scans made before it existed stay valid, and less ``other_min_heat`` and
    ``other_margin``, which change no centre) and, for the locator, its weights (not its
    folder's name)."""
    ident = dataclasses.asdict(cfg)
    folder = locator_folder(cfg)
    del ident["locator"]
    del ident["other_min_heat"]  # a second candidate changes neither centres nor masks
    del ident["other_margin"]
    if ident["method"] == "depth":
        del ident["method"]
    else:
        ident["locator"] = locator_id(folder)
    return ident


def _scan_key(src: DatasetSpec, ds: FrameDataset, est: EstimatorConfig, joint_set: str) -> str:
    ident = [
        "scan-v2",  # v2: with masks
        SEGMENT_VERSION,
        src.kind,
        str(Path(src.root).resolve()),
        src.options,
        len(ds),
        joint_set,
        ds.frame_ids[:1],
        ds.frame_ids[-1:],
        _segment_ident(est.segment),
    ]
    return hashlib.sha1(json.dumps(ident, default=str).encode()).hexdigest()[:16]


def scan_source(
    ds: FrameDataset, est: EstimatorConfig, workers: int, ctx: Dist, desc: str, progress: bool
) -> Scan:
    """Segment every frame (this rank's share, gathered over ranks)."""
    n = len(ds)
    mine = np.arange(ctx.rank, n, ctx.world)
    loader = DataLoader(
        _ScanFrames(ds, mine, est.segment),
        batch_size=None,
        num_workers=workers,
        collate_fn=_identity,
    )
    scanned = list(progress_bar(loader, show=progress and ctx.main, desc=desc, unit="frame"))
    rows = [r for part in ctx.gather(scanned) for r in part]
    com, status, reach = np.full((n, 3), np.nan), np.full(n, NO_HAND, np.int8), np.full(n, np.inf)
    boxes, bits = np.zeros((n, 4), np.int32), [np.zeros(0, np.uint8)] * n
    for i, c, st, r, box, packed in rows:
        com[i], status[i], reach[i], boxes[i], bits[i] = c, st, r, box, packed
    start = np.concatenate([[0], np.cumsum([len(b) for b in bits])]).astype(np.int64)
    return Scan(com, status, reach, boxes, np.concatenate(bits), start)


def _identity(x: Any) -> Any:
    return x


def split_frames(n: int, fraction: float, block: int, seed: int) -> np.ndarray:
    """``(n,)`` bool, True for validation frames: ``ceil(fraction * blocks)`` of the blocks of
    ``block`` consecutive frames, drawn with ``seed`` (deterministic, disjoint from the rest)."""
    blocks = math.ceil(n / block)
    k = min(blocks - 1, math.ceil(fraction * blocks)) if blocks > 1 else 0
    chosen = np.random.default_rng([seed, n, block]).permutation(blocks)[:k]
    is_val = np.zeros(blocks, bool)
    is_val[chosen] = True
    return np.repeat(is_val, block)[:n]


def epoch_plan(
    pools: list[np.ndarray], weights: list[float] | None, seed: int, epoch: int
) -> np.ndarray:
    """Frames (global indices) of epoch ``epoch``, in order: a function of (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 1])
    if weights is None:
        return rng.permutation(np.concatenate(pools))
    total = sum(len(p) for p in pools)
    w = np.asarray(weights, np.float64) / sum(weights)
    parts = []
    for pool, share in zip(pools, w, strict=True):
        k = round(total * share)
        reps = math.ceil(k / len(pool)) if len(pool) else 0
        parts.append(np.concatenate([rng.permutation(pool) for _ in range(reps)] or [[]])[:k])
    return rng.permutation(np.concatenate(parts).astype(np.int64))


class EpochBatches:
    """This rank's batches of sample keys ``(frame, epoch, position)`` of one epoch, from batch
    ``start`` on. Ranks take every ``world``-th sample of the epoch's plan, padded by wrapping
    (as DistributedSampler does) so every rank runs the same number of steps."""

    def __init__(self, plan, batch_size: int, rank: int, world: int):
        self.plan, self.batch_size, self.rank, self.world = plan, batch_size, rank, world
        self.epoch, self.start = 0, 0

    def per_rank(self, n: int) -> int:
        return math.ceil(n / self.world)

    def steps(self, epoch: int) -> int:
        return math.ceil(self.per_rank(len(self.plan(epoch))) / self.batch_size)

    def set_epoch(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        frames = self.plan(self.epoch)
        n = self.per_rank(len(frames)) * self.world
        pos = np.arange(n) % max(len(frames), 1)
        mine = pos[self.rank :: self.world]
        b = self.batch_size
        for s in range(self.start * b, len(mine), b):
            yield [(int(frames[p]), self.epoch, int(p)) for p in mine[s : s + b]]

    def __len__(self) -> int:
        return max(0, self.steps(self.epoch) - self.start)


# --- samples --------------------------------------------------------------------------------
# Frames a rendered slot may draw before the run stops: a recipe whose frames show no hand
# this often is broken, not unlucky.
RENDER_ATTEMPTS = 20


class Samples(Dataset):
    """Network inputs of frames of several sources, indexed by ``(frame, epoch, position)``
    keys (``epoch < 0``: no augmentation). A source without a scan (``None``: rendered as read)
    is segmented here, frame by frame.

    Returns a dict: ``volume`` ``(1, D, D, D)`` float32; ``target`` ``(J, 3)`` float32 (pose-net
    target in the cube's frame); ``joints`` ``(J, 3)`` float32 mm; ``com`` ``(3,)`` float64 (cube
    centre); ``angle``, ``scale`` float64; ``frame`` int; with ``clean``, ``clean``
    ``(1, D, D, D)``: the TSDF of the clean depth in the same cube.
    """

    def __init__(
        self,
        sources: list[FrameDataset],
        scans: list[Scan | None],
        est: EstimatorConfig,
        augment: AugmentConfig,
        seed: int,
        use_mask: bool,
        clean: bool,
        skip_outside_cube: bool = True,
    ):
        self.sources, self.scans, self.est, self.augment = sources, scans, est, augment
        self.seed, self.use_mask, self.clean = seed, use_mask, clean
        self.skip_outside_cube = skip_outside_cube
        coms = [np.full((len(ds), 3), np.nan) if sc is None else sc.com
                for ds, sc in zip(sources, scans, strict=True)]  # fmt: skip
        self.coms = np.concatenate(coms) if coms else np.zeros((0, 3))
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, frame: int) -> tuple[int, int]:
        s = int(np.searchsorted(self.offsets, frame, side="right") - 1)
        return s, frame - int(self.offsets[s])

    def _render(self, src: Any, i: int) -> tuple[Any, np.ndarray, np.ndarray]:
        """Slot ``i`` of a rendered source: its first frame that shows a hand (inside the cube,
        with ``skip_outside_cube``), with the COM and mask segmentation gives it."""
        half = self.est.volume.cube_mm / 2
        for attempt in range(RENDER_ATTEMPTS):
            rec = src.render(i, attempt)
            seg = find_hand(rec.depth, rec.camera, self.est.segment)
            if not seg.found:
                continue
            if self.skip_outside_cube and _reach(rec.joints_xyz, seg.com_xyz) > half:
                continue
            return rec, seg.com_xyz, seg.mask
        raise HandvoxError(
            f"{src.root} (rendered, seed {src.seed}): no hand found in {RENDER_ATTEMPTS} frames "
            f"drawn for frame {i}; check the recipe (handvox synth --preview)"
        )

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, Any]:
        frame, epoch, position = key
        s, i = self.locate(frame)
        vol_cfg, seg_cfg = self.est.volume, self.est.segment
        mask = None
        if self.scans[s] is None:
            rec, com, m = self._render(self.sources[s], i)
            if self.use_mask:
                mask = torch.from_numpy(m)[None]
        else:
            rec = self.sources[s][i]
            if self.use_mask:
                m = self.scans[s].mask(i, rec.depth.shape)
                mask = None if m is None else torch.from_numpy(m)[None]
            com = self.coms[frame]
        aug = AugmentParams()
        depth = rec.depth
        if epoch >= 0:
            rng = np.random.default_rng([self.seed, epoch, position])
            aug = sample_augment(rng, self.augment, len(rec.joints_xyz))
            if aug.label_centre:
                com = rec.joints_xyz.astype(np.float64).mean(0)
            if aug.occluder is not None:
                # Here, not at the top: only runs with occluders load the renderer (numba).
                from handvox.synth.primitives import Primitives
                from handvox.synth.raycast import occlude  # (the renderer, as above)

                joint, radius, offset = aug.occluder
                ball = Primitives.spheres(rec.joints_xyz[joint][None] + np.asarray(offset),
                                          np.array([radius]))  # fmt: skip
                depth, covered = occlude(depth, rec.camera, ball, OCCLUDER_NOISE_MM, rng)
                if mask is not None:  # the locator leaves a held object out of the hand
                    mask = mask & ~torch.from_numpy(covered)[None]
        centre = torch.from_numpy(com + np.asarray(aug.jitter))[None]
        angle = torch.tensor([aug.angle], dtype=torch.float64)
        scale = torch.tensor([aug.scale], dtype=torch.float64)
        view = {} if aug.identity else {"angle": angle, "scale": scale}

        def volume(depth: np.ndarray, m: torch.Tensor | None) -> torch.Tensor:
            return projective_tsdf(torch.from_numpy(depth)[None], centre, rec.camera, vol_cfg, m,
                                   **view)[0]  # fmt: skip

        joints = torch.from_numpy(rec.joints_xyz.astype(np.float64))[None]
        target = encode_joints(joints, centre, self.est.pose.target_scale_mm, angle, scale)[0]
        out = {
            "volume": volume(depth, mask),
            "target": target.float(),
            "joints": torch.from_numpy(rec.joints_xyz.astype(np.float32)),
            "com": centre[0],
            "angle": angle[0],
            "scale": scale[0],
            "frame": frame,
        }
        if self.clean:
            if rec.clean_depth is None:
                raise HandvoxError(f"frame {rec.frame_id} has no clean depth (needed by this mode)")
            # The clean image's own hand mask: the raw mask misses what the refinement must fill.
            cmask = mask
            if self.use_mask:
                cseg = find_hand(rec.clean_depth, rec.camera, seg_cfg)
                cmask = torch.from_numpy(cseg.mask)[None] if cseg.found else mask
            out["clean"] = volume(rec.clean_depth, cmask)
        return out


class KeyedSamples(Dataset):
    """A fixed list of sample keys (validation)."""

    def __init__(self, samples: Samples, keys: list[tuple[int, int, int]]):
        self.samples, self.keys = samples, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.samples[self.keys[i]]


# --- the run's frames -----------------------------------------------------------------------
def _open_sources(
    sources: tuple[DatasetSpec, ...], cfg: TrainConfig, clean: bool
) -> list[FrameDataset]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an incomplete synthetic dataset is an error here
        return [open_training_data(s, get_joint_set(cfg.joint_set).name, clean) for s in sources]


def scan_cache_dir() -> Path | None:
    """Where scans are shared between runs: ``$HANDVOX_SCAN_CACHE`` (empty or ``off``: no
    sharing), else ``$XDG_CACHE_HOME/handvox/scans`` (``~/.cache/handvox/scans``)."""
    env = os.environ.get("HANDVOX_SCAN_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "off") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "handvox" / "scans"


def _share(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` (a copy across file systems), atomically; a failure
    (read-only cache, full disk) only loses the sharing."""
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(dst) as tmp:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
    except OSError:
        pass


def _load_scans(
    srcs, datasets, est: EstimatorConfig, cfg: TrainConfig, out: Path, ctx: Dist
) -> list[Scan]:
    """Each source's scan: the run's own (``out/scan``), else one another run of the same data
    and segmentation made (:func:`scan_cache_dir`; the key holds both, :func:`_scan_key`), else
    scanned now and shared; None for a rendered source (segmented as it is read)."""
    scans: list[Scan | None] = []
    shared_dir = scan_cache_dir()
    for src, ds in zip(srcs, datasets, strict=True):
        if ds.RENDERED:
            scans.append(None)
            continue
        name = f"{_scan_key(src, ds, est, cfg.joint_set)}.npz"
        path = out / "scan" / name
        shared = None if shared_dir is None else shared_dir / name
        cached = None
        if ctx.main:
            if not path.is_file() and shared is not None and shared.is_file():
                _share(shared, path)  # the run keeps its own, for resuming without the cache
            if path.is_file():
                with np.load(path) as z:
                    cached = Scan(**{k: z[k] for k in z.files})
        cached = ctx.broadcast(cached)
        if cached is None:
            cached = scan_source(ds, est, cfg.num_workers, ctx, f"scan {src.kind}", cfg.progress)
            if ctx.main:
                with atomic_path(path) as tmp:
                    np.savez(tmp, **cached.arrays())
                if shared is not None:
                    _share(path, shared)
        scans.append(cached)
    return scans


@dataclass
class RunFrames:
    """Training and validation frames of all sources (global indices into ``samples``)."""

    samples: Samples
    train_pools: list[np.ndarray]
    val: np.ndarray
    skipped: dict[str, int]

    def split(self, specs: list[str]) -> dict[str, Any]:
        """``split.json``: per source, its training and validation frame indices."""
        out = []
        for k, spec in enumerate(specs):
            lo, hi = int(self.samples.offsets[k]), int(self.samples.offsets[k + 1])
            train = self.train_pools[k] if k < len(self.train_pools) else np.zeros(0, np.int64)
            val = self.val[(self.val >= lo) & (self.val < hi)]
            out.append({"data": spec, "train": (train - lo).tolist(), "val": (val - lo).tolist()})
        return {"sources": out}


def prepare_frames(cfg: TrainConfig, est: EstimatorConfig, out: Path, ctx: Dist) -> RunFrames:
    """The run's frames: sources opened, scanned (cached in ``out/scan/``), split, and frames
    without a hand (or, with ``skip_outside_cube``, with a joint outside the cube) left out.

    Raises:
        HandvoxError: no clean depth where the mode needs it, or no usable training or
            validation frame.
    """
    train_ds = _open_sources(cfg.data, cfg, cfg.needs_clean)
    val_ds = _open_sources(cfg.val_data, cfg, cfg.needs_clean)
    all_ds = train_ds + val_ds
    if cfg.needs_clean:
        for src, ds in zip(cfg.data + cfg.val_data, all_ds, strict=True):
            if len(ds) and ds[0].clean_depth is None:
                raise HandvoxError(
                    f"data {src.spec}: no clean depth, which mode "
                    f"{cfg.mode!r} needs (refine_weight {cfg.tsdf_weight:g})"
                )
    scans = _load_scans(cfg.data + cfg.val_data, all_ds, est, cfg, out, ctx)
    half = est.volume.cube_mm / 2
    # Training frames skipped, and validation frames left out: without a hand (no COM, so no
    # prediction) or, with skip_outside_cube, with a joint outside the cube (the segmentation
    # took something else for the hand: a failure of that step, not of the networks, which
    # would otherwise dominate the validation error and blur model selection).
    skipped = {"no_hand": 0, "unlabelled": 0, "outside_cube": 0, "val_no_hand": 0,
               "val_outside_cube": 0}  # fmt: skip
    pools, val, base = [], [], 0
    for k, (ds, scan) in enumerate(zip(all_ds, scans, strict=True)):
        n = len(ds)
        if cfg.val_data:
            is_val = np.full(n, k >= len(train_ds))
        else:
            is_val = split_frames(n, cfg.val_fraction, cfg.val_block, cfg.val_seed)
        if scan is None:  # rendered: every slot gets a usable frame (Samples._render)
            if k < len(train_ds):
                pools.append(base + np.flatnonzero(~is_val))
            val.append(base + np.flatnonzero(is_val))
            base += n
            continue
        usable = scan.status == OK
        skipped["no_hand"] += int(((scan.status == NO_HAND) & ~is_val).sum())
        skipped["unlabelled"] += int(((scan.status == UNLABELLED) & ~is_val).sum())
        skipped["val_no_hand"] += int(((scan.status == NO_HAND) & is_val).sum())
        train_ok, val_ok = usable & ~is_val, usable & is_val
        if cfg.skip_outside_cube:
            inside = scan.reach <= half
            skipped["outside_cube"] += int((train_ok & ~inside).sum())
            skipped["val_outside_cube"] += int((val_ok & ~inside).sum())
            train_ok &= inside
            val_ok &= inside
        if k < len(train_ds):
            pools.append(base + np.flatnonzero(train_ok))
        val.append(base + np.flatnonzero(val_ok))
        base += n
    val_idx = np.concatenate(val) if val else np.zeros(0, np.int64)
    if cfg.val_max_frames and len(val_idx) > cfg.val_max_frames:
        pick = np.linspace(0, len(val_idx) - 1, cfg.val_max_frames).round().astype(np.int64)
        val_idx = val_idx[pick]
    if not sum(len(p) for p in pools):
        raise HandvoxError("no usable training frame (see the skip counts)")
    if not len(val_idx):
        raise HandvoxError("no usable validation frame: raise val_fraction or give val_data")
    samples = Samples(all_ds, scans, est, cfg.augment, cfg.seed, cfg.use_mask, cfg.needs_clean,
                      cfg.skip_outside_cube)  # fmt: skip
    return RunFrames(samples, pools, val_idx, skipped)


@dataclass
class Loaders:
    """The run's data loaders: ``train`` draws ``batches`` (this rank's share of each epoch);
    ``val`` this rank's share of the validation frames, unaugmented."""

    train: DataLoader
    batches: EpochBatches
    val: DataLoader


def make_loaders(cfg: TrainConfig, frames: RunFrames, ctx: Dist, device: torch.device) -> Loaders:
    """The loaders of a run: epochs of ``frames``' training pools (mixed by the sources'
    weights, when any has one) in batches of ``cfg.batch_size``, and its validation frames."""
    weights = None
    if any(s.weight is not None for s in cfg.data):
        weights = [1.0 if s.weight is None else s.weight for s in cfg.data]
    batches = EpochBatches(
        lambda e: epoch_plan(frames.train_pools, weights, cfg.seed, e),
        cfg.batch_size,
        ctx.rank,
        ctx.world,
    )
    common: dict[str, Any] = dict(
        num_workers=cfg.num_workers,
        persistent_workers=cfg.num_workers > 0,
        pin_memory=device.type == "cuda",
    )
    train = DataLoader(frames.samples, batch_sampler=batches, **common)
    mine = [(int(i), -1, -1) for i in frames.val[ctx.rank :: ctx.world]]
    # No gradients in validation: larger batches are cheap.
    val = DataLoader(KeyedSamples(frames.samples, mine), batch_size=2 * cfg.batch_size, **common)
    return Loaders(train, batches, val)

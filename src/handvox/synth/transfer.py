"""Pose transfer, the paper's data augmentation: real labelled poses on new hands and views.

Deng et al. (Sec. 3.3, App. B) recover the joint angles of every labelled frame by inverse
kinematics, keep them in BVH files, change the bone lengths and render the hands from several
camera poses. Here:

1. :func:`load_source` reads labelled joints: a community label file (uvd, ``--dataset`` names
   the camera and joint set) or a dataset folder (:func:`handvox.io.datasets.open_dataset`).
2. :func:`recover_poses` learns the subject's hand (:func:`handvox.hand.ik.fit_subject`, or one per
   size cluster) and solves every frame's 30-DOF pose (:func:`handvox.hand.ik.solve_ik`);
   :func:`write_pose_bvh` keeps them as BVH.
3. :class:`TransferGenerator` makes frame ``i`` from source frame ``i // (K V)``, shape slot
   ``(i // V) % K`` and view ``i % V``: the source's articulation on hand shape ``k`` (a base
   shape with continuous variation, the same for every view of that source and slot), with a
   new root rotation and position from the pose sampler's placement in the camera's view
   (:func:`handvox.hand.poses.sample_global`), rendered and noised as
   :mod:`handvox.synth.hand` does.
4. :func:`run_transfer` writes it with :func:`handvox.synth.job.synthesize` (same format, sharding
   and resumption; :class:`handvox.io.synthetic.SyntheticDataset` reads it). The recovered poses
   are stored once in ``DIR/transfer_poses.npz``; every shard and resumed run uses that file.

Extra labels per frame: ``transfer`` = ``(source frame, shape slot, view)`` (int32) and
``ik_residual_mm``, the mean marker error of the source frame's IK (for filtering bad fits).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from handvox.atomic import temp_path
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.hand import ik
from handvox.hand.bvh import write_bvh
from handvox.hand.hand_bvh import hand_to_bvh
from handvox.hand.poses import articulation_to_pose, hand_extent, sample_global
from handvox.hand.shapes import SHAPE_NAMES, sample_shape
from handvox.io.datasets import open_dataset
from handvox.io.labels import read_labels
from handvox.joints import DATASET_JOINT_SETS
from handvox.synth.hand import HandSample, make_frame, pose_in_view
from handvox.synth.hand_config import HandSynthConfig, pose_sampler_config
from handvox.synth.job import SynthResult, synthesize
from handvox.synth.preview import write_preview
from handvox.synth.scene import add_noise, render_hand_scene

TRANSFER_VERSION = 1
POSES_NAME = "transfer_poses.npz"


# --- the labelled source ------------------------------------------------------------------------
@dataclass
class TransferSource:
    """Labelled joints to transfer.

    Attributes:
        joints_xyz: ``(N, J, 3)`` float64, camera frame (OpenCV), mm.
        joint_set: their joint set name (``nyu14``, ``icvl16``, ``msra21``).
        camera: the camera they were labelled in (new views are rendered with it).
        frame_ids: ``N`` source frame names.
        info: JSON description (path, dataset, frames, a checksum of the joints).
    """

    joints_xyz: np.ndarray
    joint_set: str
    camera: Camera
    frame_ids: list[str]
    info: dict = field(default_factory=dict)


def load_source(
    source: str | Path, dataset: str | None = None, frames_limit: int | None = None
) -> TransferSource:
    """Read labelled joints from a label file or a dataset folder.

    Args:
        source: a community label file (one frame a line, J x ``u v d``; handvox ``xyz`` files
            too) or a dataset root for :func:`handvox.io.datasets.open_dataset`.
        dataset: ``nyu``, ``icvl`` or ``msra`` (camera and joint set); for a label file, None
            guesses it from the joint count (14, 16, 21).
        frames_limit: use only the first ``frames_limit`` frames.
    Raises:
        DataError: missing or malformed source.
    """
    path = Path(source)
    if path.is_dir():
        if dataset is None:
            raise ValueError(f"{path} is a folder: name its dataset (nyu, icvl, msra)")
        ds = open_dataset(dataset, path)
        xyz, ids = np.asarray(ds.joints_xyz, np.float64), list(ds.frame_ids)
        joint_set, camera = ds.joint_set.name, ds.camera
    else:
        labels = read_labels(path)
        count = labels.joints.shape[1]
        by_count = {len(js): name for name, js in DATASET_JOINT_SETS.items()}
        name = dataset or by_count.get(count)
        if name not in DATASET_JOINT_SETS:
            raise DataError(path, f"{count} joints a line: name the dataset (nyu, icvl, msra)")
        joint_set = DATASET_JOINT_SETS[name].name
        if count != len(DATASET_JOINT_SETS[name]):
            raise DataError(path, f"{count} joints a line, {name} has "
                            f"{len(DATASET_JOINT_SETS[name])}")  # fmt: skip
        camera = Camera.preset(name)
        xyz = labels.joints if labels.kind == "xyz" else camera.uvd_to_xyz(labels.joints)
        ids = labels.names or [f"{path.name}:{i}" for i in range(len(xyz))]
        dataset = name
    if frames_limit is not None:
        if frames_limit < 1:
            raise ValueError(f"frames_limit must be >= 1, got {frames_limit}")
        xyz, ids = xyz[:frames_limit], ids[:frames_limit]
    if not np.isfinite(xyz).all() or (xyz[..., 2] <= 0).any():
        raise DataError(path, "joints hold NaN, infinite or non-positive depth values")
    digest = hashlib.sha1(np.ascontiguousarray(xyz, np.float64).tobytes()).hexdigest()
    info = {"path": str(path.resolve()), "dataset": dataset, "joint_set": joint_set,
            "frames": len(xyz), "sha1": digest}  # fmt: skip
    return TransferSource(xyz, joint_set, camera, ids, info)


# --- inverse kinematics -------------------------------------------------------------------------
@dataclass
class RecoveredPoses:
    """Poses of a source's frames found by inverse kinematics.

    Attributes:
        pose: ``(N, 30)`` float32, camera frame as labelled (:mod:`handvox.hand.kinematics`).
        residual: ``(N,)`` float32 mean marker error, mm.
        subject: ``(N,)`` int index into ``subjects``.
        subjects: the fitted hand models (:class:`handvox.hand.ik.SubjectModel`).
        frame_ids: ``N`` source frame names.
        info: the source's description.
    """

    pose: np.ndarray
    residual: np.ndarray
    subject: np.ndarray
    subjects: list[ik.SubjectModel]
    frame_ids: list[str]
    info: dict

    def save(self, path: Path) -> None:
        """Write to ``path`` unless it exists (first writer wins, atomically)."""
        tmp = temp_path(path)
        subjects = json.dumps([s.to_dict() for s in self.subjects])
        np.savez(tmp, pose=self.pose, residual=self.residual, subject=self.subject,
                 frame_ids=np.asarray(self.frame_ids, dtype=np.str_),
                 subjects=np.str_(subjects), info=np.str_(json.dumps(self.info)))  # fmt: skip
        try:
            os.link(tmp, path)  # fails if another process got there first: keep theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> RecoveredPoses:
        try:
            with np.load(path) as z:
                subjects = [ik.SubjectModel.from_dict(d) for d in json.loads(str(z["subjects"]))]
                ids = [str(s) for s in z["frame_ids"]]
                info = json.loads(str(z["info"]))
                return cls(z["pose"], z["residual"], z["subject"], subjects, ids, info)
        except (OSError, ValueError, KeyError) as e:
            raise DataError(path, f"unreadable ({type(e).__name__}: {e}); delete it") from e


def recover_poses(
    source: TransferSource,
    subjects: int = 1,
    method: str = "gradient",
    fit_options: dict | None = None,
) -> RecoveredPoses:
    """Learn the hand(s) of ``source`` and solve every frame's pose (the paper's IK step).

    Args:
        subjects: 1 fits one hand to all frames; more clusters the frames by hand size
            (:func:`handvox.hand.ik.fit_subjects`) and fits one hand each (the NYU test set holds
            three people).
        method: ``"gradient"`` (Levenberg-Marquardt) or ``"pso"`` (the paper's particle swarm).
        fit_options: keyword arguments of :func:`handvox.hand.ik.fit_subject` (e.g. ``frames``,
            ``rounds``, ``steps``).
    """
    xyz = torch.as_tensor(source.joints_xyz, dtype=torch.float32)
    opts = fit_options or {}
    if subjects == 1:
        models = [ik.fit_subject(xyz, source.joint_set, **opts)]
        labels = np.zeros(len(xyz), int)
    else:
        models, labels = ik.fit_subjects(xyz, source.joint_set, subjects, **opts)
    gen = torch.Generator().manual_seed(0)
    res = ik.solve_ik_subjects(xyz, models, labels, method=method, generator=gen)
    return RecoveredPoses(
        res.pose.numpy().astype(np.float32),
        res.residual.mean(-1).numpy().astype(np.float32),
        np.asarray(labels, np.int64),
        models,
        list(source.frame_ids),
        dict(source.info, subjects=subjects, ik=method),
    )


def write_pose_bvh(poses: RecoveredPoses, out: str | Path, chunk: int = 256) -> list[Path]:
    """The recovered poses as BVH files (:func:`handvox.hand.hand_bvh.hand_to_bvh`), one per
    ``chunk`` consecutive source frames and subject: ``s{subject}_{first:06d}-{last:06d}.bvh``,
    each with that subject's bones."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(poses.pose), chunk):
        idx = np.arange(start, min(start + chunk, len(poses.pose)))
        for s, model in enumerate(poses.subjects):
            sel = idx[poses.subject[idx] == s]
            if sel.size:
                path = out / f"s{s}_{sel[0]:06d}-{sel[-1]:06d}.bvh"
                write_bvh(path, hand_to_bvh(poses.pose[sel], model.bones))
                paths.append(path)
    return paths


# --- the frame generator ------------------------------------------------------------------------
@dataclass(frozen=True)
class TransferGenerator:
    """``make_frame(i, rng)``: source ``i // (K V)``'s articulation on shape slot
    ``(i // V) % K`` seen from view ``i % V`` (picklable, for ``--workers``).

    Attributes:
        articulation: ``(N, 24)`` float32 joint angles of the source frames.
        residual: ``(N,)`` float32 their IK errors (mm), stored with each frame.
        shapes, views: K and V.
        seed: fixes each (source, slot)'s hand shape, whatever the view.
        config: camera, view distribution, scene and noise (:class:`HandSynthConfig`; its
            ``shapes`` are the base shapes slots draw from, without repeats when K allows).
    """

    articulation: np.ndarray
    residual: np.ndarray
    shapes: int
    views: int
    seed: int
    config: HandSynthConfig

    def __len__(self) -> int:
        return len(self.articulation) * self.shapes * self.views

    def locate(self, index: int) -> tuple[int, int, int]:
        """Frame ``index`` -> (source frame, shape slot, view)."""
        src, rest = divmod(int(index), self.shapes * self.views)
        return src, rest // self.views, rest % self.views

    def hand_shape(self, src: int, slot: int):
        """Base-shape name and bones (batch 1) of source ``src``'s slot ``slot``: slots take
        the base shapes in a per-source random order, each with its own variation."""
        names = self.config.shapes or SHAPE_NAMES
        rng = np.random.default_rng([self.seed, src, 0x5A5E])
        order = rng.permutation(len(names))
        name = names[order[slot % len(names)]]
        seed = np.random.default_rng([self.seed, src, slot, 0x5A5E]).integers(2**63 - 1)
        gen = torch.Generator().manual_seed(int(seed))
        return name, sample_shape(gen, 1, name, self.config.shape_variation)

    def __call__(self, index: int, rng: np.random.Generator):
        src, slot, view = self.locate(index)
        name, bones = self.hand_shape(src, slot)
        art = torch.as_tensor(self.articulation[src : src + 1])
        centre, radius = hand_extent(art)
        view_cfg = pose_sampler_config(self.config).view
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))

        def draw(n: int):
            root = sample_global(gen, n, view_cfg, centre.expand(n, 3), radius.expand(n))
            return articulation_to_pose(art.expand(n, -1), root)

        pose, joints = pose_in_view(draw, bones, self.config, f"frame {index}")
        scene = render_hand_scene(joints["canonical21"], bones, rng, self.config, pose=pose)
        return make_frame(
            HandSample(name, bones, pose, joints),
            scene,
            add_noise(scene, rng, self.config, joints["canonical21"]),
            transfer=np.array([src, slot, view], np.int32),
            ik_residual_mm=np.float32(self.residual[src]),
        )  # fmt: skip


def run_transfer(
    source: str | Path,
    out: str | Path,
    shapes: int,
    views: int,
    *,
    dataset: str | None = None,
    seed: int = 0,
    shard: tuple[int, int] = (1, 1),
    frames_limit: int | None = None,
    subjects: int = 1,
    ik_method: str = "gradient",
    fit_options: dict | None = None,
    bvh: str | Path | None = None,
    config: HandSynthConfig | None = None,
    workers: int = 1,
    chunk_size: int = 256,
    compression: str = "zlib",
    preview: bool = False,
    progress: bool = True,
) -> SynthResult:
    """The whole augmentation: labels -> IK -> (BVH) -> ``K x V`` rendered frames per source
    frame, written to ``out`` as a synthetic dataset.

    The recovered poses are computed once and kept in ``out/transfer_poses.npz`` (a resumed or
    other-shard run reuses them, so all shards transfer the same poses).

    Args:
        source, dataset, frames_limit: see :func:`load_source`.
        shapes, views: K hand shapes x V views per source frame.
        subjects, ik_method, fit_options: see :func:`recover_poses`.
        bvh: also write the recovered poses as BVH files into this folder.
        config: camera rendered, scene and noise (default :meth:`HandSynthConfig.for_camera`
            of the source's camera).
        Others: as :func:`handvox.synth.job.synthesize`.
    """
    if shapes < 1 or views < 1:
        raise ValueError(f"shapes and views must be >= 1, got {shapes}, {views}")
    src = load_source(source, dataset, frames_limit)
    # New views are placed by the pose sampler, so any camera can render them.
    cfg = config or HandSynthConfig.for_camera(src.camera)
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    path = root / POSES_NAME
    if not path.exists():
        recover_poses(src, subjects, ik_method, fit_options).save(path)
    poses = RecoveredPoses.load(path)
    if (
        poses.info.get("sha1") != src.info["sha1"]
        or poses.info.get("ik") != ik_method
        or (poses.info.get("subjects") != subjects)
    ):
        raise DataError(path, "was recovered from other labels or IK settings; delete it or "
                        "choose another output folder")  # fmt: skip
    if bvh is not None:
        write_pose_bvh(poses, bvh, chunk_size)
    gen = TransferGenerator(poses.pose[:, 6:].copy(), poses.residual, shapes, views, seed, cfg)
    info = {"name": "transfer", "version": TRANSFER_VERSION, "source": src.info,
            "shapes": shapes, "views": views, "subjects": subjects, "ik": ik_method,
            "frame_layout": "i = (source * shapes + slot) * views + view",
            "config": cfg.to_dict()}  # fmt: skip
    result = synthesize(root, gen, cfg.camera, len(gen), seed, chunk_size=chunk_size,
                        shard=shard, workers=workers, compression=compression,
                        generator_info=info, progress=progress)  # fmt: skip
    if preview:
        write_preview(root)
    return result

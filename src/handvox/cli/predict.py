"""``handvox predict``: run the estimator over depth files, folders or a dataset; write results.

Inputs
    Files (NYU RGB-encoded PNG, 16-bit PNG, MSRA ``.bin``, ``.npy``; see
    :func:`handvox.io.depth.read_depth`), folders (their depth files, not recursive, sorted by
    name) and datasets opened with :func:`handvox.io.datasets.open_dataset` (``nyu:ROOT``).
    Files and folders use the ``camera`` given; dataset frames their dataset's camera.
    Frame ids: a file's name, ``FOLDER/NAME`` for a folder's files, the dataset's frame ids.

Outputs, in ``out/`` (frames in input order; each file written atomically)
    ``predictions.json``  ``{"model", "joint_set", "joint_names", "frames": [{"id", "source",
                          "camera", "found", "reason", "com_xyz", "com_uvd", "joints_xyz",
                          "joints_uvd", "overlay"}]}``; xyz in mm (OpenCV: y down), uvd in
                          px, px, mm; ``null`` where no hand was found.
    ``predictions.csv``   one row a frame: id, source, found, reason, com_x..com_d, then per
                          joint ``<name>_x, _y, _z, _u, _v, _d``; empty cells where not found.
    ``predictions.txt``   the community format (:func:`handvox.io.labels.write_labels`, uvd, no
                          header): one line a frame, J x (u v d). It cannot hold NaN or a flag,
                          so a frame without a hand is written as ``0 0 0`` for every joint: a
                          point at the camera centre that every scorer counts as a failure, and
                          that handvox's readers accept. predictions.json / .csv say which
                          frames those are.
    ``overlays/NNNNN_<id>.png``  with ``overlay``: the frame with the predicted skeleton
                          (:func:`handvox.viz.draw.render_frame`); frames without a hand are drawn
                          whole, titled with the reason.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handvox.atomic import write_text
from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.estimator.pipeline import HandPoseEstimator, Prediction
from handvox.io.datasets import DatasetSpec
from handvox.io.depth import read_depth
from handvox.joints import convert_joints, get_joint_set

DEPTH_SUFFIXES = (".png", ".npy", ".bin")
FORMATS = ("json", "csv", "txt")


@dataclass
class Frame:
    """A frame to predict: how to read it, and what to call it."""

    id: str
    source: str
    camera: Camera
    read: Callable[[], np.ndarray] = field(repr=False)


def _file_frame(path: Path, frame_id: str, camera: Camera) -> Frame:
    def read() -> np.ndarray:
        depth = read_depth(path)
        camera.check_depth(depth, path, "give the right --camera")
        return depth

    return Frame(frame_id, str(path), camera, read)


def collect_frames(
    inputs: list[str | Path],
    camera: Camera,
    dataset: str | None = None,
    limit: int | None = None,
) -> list[Frame]:
    """The frames of ``inputs`` (files, folders) then of ``dataset`` (``NAME:ROOT``).

    Raises:
        DataError: an input that does not exist, or a folder without depth files.
    """
    frames: list[Frame] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in DEPTH_SUFFIXES and not p.name.startswith(".")
            )
            if not files:
                raise DataError(path, f"no depth files ({', '.join(DEPTH_SUFFIXES)}) in folder")
            frames += [_file_frame(p, f"{path.name}/{p.name}", camera) for p in files]
        elif path.exists():
            frames.append(_file_frame(path, path.name, camera))
        else:
            raise DataError(path, "no such file or folder")
    if dataset is not None:
        try:
            spec = DatasetSpec.parse(dataset)
            if spec.weight is not None:
                raise ValueError(f"dataset {dataset}: @WEIGHT mixes training data; not for predict")
            ds = spec.open()  # NYU and ICVL default to their test split
        except ValueError as e:
            raise HandvoxError(str(e)) from None
        n = len(ds) if limit is None else min(limit, len(ds))
        for i in range(n):
            frames.append(_dataset_frame(ds, i, dataset))
    seen: dict[str, int] = {}
    for f in frames:  # ids must be unique: number repeats
        k = seen.get(f.id, 0)
        seen[f.id] = k + 1
        if k:
            f.id = f"{f.id}#{k}"
    return frames


def _dataset_frame(ds: Any, i: int, source: str) -> Frame:
    ids = getattr(ds, "frame_ids", None)
    frame_id = ids[i] if ids is not None else str(i)
    camera = getattr(ds, "camera", None)
    if camera is None:
        camera = ds[i].camera

    def read() -> np.ndarray:
        return ds[i].depth

    return Frame(str(frame_id), f"{source}#{i}", camera, read)


def _batches(frames: list[Frame], size: int) -> Iterator[list[int]]:
    """Runs of at most ``size`` consecutive frames sharing a camera."""
    run: list[int] = []
    for i, f in enumerate(frames):
        if run and (len(run) == size or frames[run[0]].camera != f.camera):
            yield run
            run = []
        run.append(i)
    if run:
        yield run


@dataclass
class FrameResult:
    """The prediction of one frame (or the error that kept it from one)."""

    frame: Frame
    found: bool
    reason: str
    com_xyz: np.ndarray  # (3,)
    com_uvd: np.ndarray
    joints_xyz: np.ndarray  # (J, 3)
    joints_uvd: np.ndarray
    depth: np.ndarray | None = field(default=None, repr=False)
    overlay: str | None = None


def _nan_result(frame: Frame, reason: str, joints: int) -> FrameResult:
    nan3 = np.full(3, np.nan)
    nanj = np.full((joints, 3), np.nan)
    return FrameResult(frame, False, reason, nan3, nan3, nanj, nanj)


@dataclass
class PredictSummary:
    """What :func:`predict_frames` did."""

    frames: int
    found: int
    errors: int
    files: list[Path]


def predict_frames(
    estimator: HandPoseEstimator,
    frames: list[Frame],
    out: str | Path,
    formats: tuple[str, ...] = FORMATS,
    overlay: bool = False,
    joint_set: str | None = None,
    batch_size: int = 8,
    skip_errors: bool = False,
    progress: bool = True,
    model_name: str = "",
) -> PredictSummary:
    """Predict every frame and write the ``formats`` (and overlays) into ``out``.

    Args:
        joint_set: write joints in this set (converted from the model's, see
            :func:`handvox.joints.convert_joints`); default the model's.
        skip_errors: a frame that cannot be read becomes ``found=False`` with the error as
            reason; otherwise the first such error stops the run (it names the file).
    Raises:
        DataError: an unreadable frame (without ``skip_errors``).
    """
    from tqdm import tqdm

    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise HandvoxError(f"unknown format(s) {sorted(unknown)}; choose from {FORMATS}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src_set = estimator.joint_set
    dst_set = src_set if joint_set is None else _joint_set(joint_set)
    if dst_set.name != src_set.name:
        try:
            convert_joints(np.zeros((len(src_set), 3)), src_set, dst_set)
        except ValueError as e:
            raise HandvoxError(str(e)) from None
    results: list[FrameResult] = []
    bar = tqdm(total=len(frames), unit="frame", disable=not progress, desc="predict")
    for idx in _batches(frames, batch_size):
        depths, ok = [], []
        batch_results: list[FrameResult | None] = [None] * len(idx)
        for k, i in enumerate(idx):
            try:
                depths.append(frames[i].read())
                ok.append(k)
            except DataError as e:
                if not skip_errors:
                    bar.close()
                    raise
                batch_results[k] = _nan_result(frames[i], f"unreadable: {e}", len(dst_set))
        if ok:
            cam = frames[idx[0]].camera
            pred = estimator(np.stack(depths), cam)
            xyz = pred.joints_xyz
            if dst_set.name != src_set.name:
                xyz = convert_joints(xyz, src_set, dst_set)
            uvd = cam.xyz_to_uvd(xyz)
            for j, k in enumerate(ok):
                batch_results[k] = _result(frames[idx[k]], pred, j, xyz[j], uvd[j])
                if overlay:
                    batch_results[k].depth = depths[j]
        for r in batch_results:
            assert r is not None
            if overlay:
                r.overlay = _write_overlay(out, len(results), r, dst_set.name)
                r.depth = None
            results.append(r)
        bar.update(len(idx))
    bar.close()
    written = []
    if "json" in formats:
        written.append(write_json(out / "predictions.json", results, dst_set.name, model_name))
    if "csv" in formats:
        written.append(write_csv(out / "predictions.csv", results, dst_set.name))
    if "txt" in formats:
        written.append(write_txt(out / "predictions.txt", results))
    found = sum(r.found for r in results)
    errors = sum(r.reason.startswith("unreadable:") for r in results)
    return PredictSummary(len(results), found, errors, written)


def _joint_set(name: str):
    try:
        return get_joint_set(name)
    except ValueError as e:
        raise HandvoxError(str(e)) from None


def _result(frame: Frame, pred: Prediction, j: int, xyz: np.ndarray, uvd: np.ndarray):
    return FrameResult(
        frame,
        bool(pred.found[j]),
        pred.reason[j],
        pred.com_xyz[j],
        pred.com_uvd[j],
        xyz,
        uvd,
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "frame"


def _write_overlay(out: Path, index: int, r: FrameResult, joint_set: str) -> str | None:
    from handvox.viz.draw import render_frame, save_png

    if r.depth is None:  # unreadable: nothing to draw
        return None
    name = f"overlays/{index:05d}_{_safe(Path(r.frame.id).stem)}.png"
    if r.found:
        rgb = render_frame(r.depth, r.frame.camera, joint_set, pred_uvd=r.joints_uvd,
                           title=r.frame.id)  # fmt: skip
    else:
        rgb = render_frame(r.depth, r.frame.camera, joint_set, crop=False,
                           title=f"{r.frame.id}: {r.reason}")  # fmt: skip
    save_png(out / name, rgb)
    return name


def _list(a: np.ndarray) -> list | None:
    """Rounded nested list, or None when anything is NaN (no hand)."""
    if not np.isfinite(a).all():
        return None
    return np.round(a, 3).tolist()


def write_json(path: Path, results: list[FrameResult], joint_set: str, model: str = "") -> Path:
    js = get_joint_set(joint_set)
    doc = {
        "model": model,
        "joint_set": js.name,
        "joint_names": list(js.names),
        "units": {"xyz": "mm, camera frame, x right, y down, z forward", "uvd": "px, px, mm"},
        "frames": [
            {
                "id": r.frame.id,
                "source": r.frame.source,
                "camera": r.frame.camera.to_dict(),
                "found": r.found,
                "reason": r.reason,
                "com_xyz": _list(r.com_xyz),
                "com_uvd": _list(r.com_uvd),
                "joints_xyz": _list(r.joints_xyz),
                "joints_uvd": _list(r.joints_uvd),
                "overlay": r.overlay,
            }
            for r in results
        ],
    }
    return write_text(path, json.dumps(doc, indent=1) + "\n")


def _cells(a: np.ndarray) -> list[str]:
    return ["" if not math.isfinite(v) else f"{v:.3f}" for v in a.reshape(-1)]


def write_csv(path: Path, results: list[FrameResult], joint_set: str) -> Path:
    js = get_joint_set(joint_set)
    head = ["id", "source", "found", "reason"]
    head += [f"com_{c}" for c in "xyzuvd"]
    head += [f"{n}_{c}" for n in js.names for c in "xyzuvd"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for r in results:
        joints = np.concatenate([r.joints_xyz, r.joints_uvd], axis=1)  # (J, 6): x y z u v d
        com = np.concatenate([r.com_xyz, r.com_uvd])
        w.writerow(
            [r.frame.id, r.frame.source, int(r.found), r.reason, *_cells(com), *_cells(joints)]
        )
    return write_text(path, buf.getvalue())


def write_txt(path: Path, results: list[FrameResult]) -> Path:
    from handvox.io.labels import write_labels

    uvd = np.stack([r.joints_uvd for r in results])
    # The community format has no NaN: frames without a hand are all zeros (see module doc).
    uvd = np.where(np.isfinite(uvd).all(axis=(1, 2), keepdims=True), uvd, 0.0)
    write_labels(path, uvd, kind="uvd")
    return path

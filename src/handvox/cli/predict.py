"""``handvox predict``: run the estimator over depth files, folders or a dataset; write results.

Inputs
    Files (NYU RGB-encoded PNG, 16-bit PNG, MSRA ``.bin``, ``.npy``; see
    :func:`handvox.io.depth.read_depth`), folders (their depth files, not recursive, in name
    order with numbers by value: :func:`handvox.io.stream.depth_files`) and datasets opened
    with :meth:`handvox.io.datasets.DatasetSpec.open` (``nyu:ROOT``).
    Files and folders use the ``camera`` given; dataset frames their dataset's camera.
    Frame ids: a file's name, ``FOLDER/NAME`` for a folder's files, the dataset's frame ids.

Outputs, in ``out/`` (frames in input order; each file written atomically)
    ``predictions.json``, ``predictions.csv``, ``predictions.txt``: the formats of
                          :mod:`handvox.io.predictions`, which writes and reads them (json and
                          csv say which frames have no hand; txt is the community's uvd format,
                          where such frames are all zeros).
    ``overlays/NNNNN_<id>.png``  with ``overlay``: the frame with the predicted skeleton
                          (:func:`handvox.viz.draw.render_frame`); frames without a hand are drawn
                          whole, titled with the reason.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from handvox.camera import Camera, as_camera
from handvox.errors import DataError, HandvoxError, SizeMismatch
from handvox.estimator.pipeline import HandPoseEstimator, Prediction
from handvox.io.datasets import DatasetSpec
from handvox.io.predictions import FORMATS, FramePrediction, Predictions, write_predictions
from handvox.io.sensor import SensorSpec, parse_depth_unit, sensor_for
from handvox.io.stream import depth_files
from handvox.joints import JointSet, convert_joints, get_joint_set


@dataclass
class Frame:
    """A frame to predict: how to read it, and what to call it."""

    id: str
    source: str
    camera: Camera
    read: Callable[[], np.ndarray] = field(repr=False)
    sensor: SensorSpec | None = None  # files and folders: their camera's and unit's origin


def _file_frame(path: Path, frame_id: str, sensor: SensorSpec) -> Frame:
    return Frame(frame_id, str(path), sensor.camera, lambda: sensor.read(path), sensor)


def collect_frames(
    inputs: list[str | Path],
    camera: Camera | str | None,
    dataset: str | None = None,
    limit: int | None = None,
    depth_unit: str | float | None = None,
) -> list[Frame]:
    """The frames of ``inputs`` (files, folders) then of ``dataset`` (``NAME:ROOT``).

    Args:
        camera: of the files and folders: a Camera, a preset name or ``fx,fy,cx,cy,w,h``; None:
            each input's ``camera.json`` (:func:`handvox.io.sensor.find_camera_file`).
        depth_unit: of the files' values (``mm``, ``m``, ``0.125mm``, ... or mm per unit);
            None: the ``camera.json``'s ``depth_unit_mm``, else mm. Dataset frames are read
            by their dataset's reader, in its own camera and unit.
    Raises:
        DataError: an input that does not exist, a folder without depth files, an input with
            no camera.
        HandvoxError: an invalid camera, depth unit or dataset spec.
    """
    origin = "--camera"
    if camera is not None:
        origin = f"--camera {camera}" if isinstance(camera, str) else "the camera given"
        camera = as_camera(camera)
    unit_mm = None
    if isinstance(depth_unit, str):
        try:
            unit_mm = parse_depth_unit(depth_unit)
        except ValueError as e:
            raise HandvoxError(f"--depth-unit: {e}") from None
    elif depth_unit is not None:
        unit_mm = float(depth_unit)
    frames: list[Frame] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = depth_files(path)  # numbers in names by value, as handvox live reads them
            sensor = sensor_for(path, camera, origin, unit_mm)
            frames += [_file_frame(p, f"{path.name}/{p.name}", sensor) for p in files]
        elif path.exists():
            frames.append(_file_frame(path, path.name, sensor_for(path, camera, origin, unit_mm)))
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
class PredictSummary:
    """What :func:`predict_frames` did."""

    frames: int
    found: int
    errors: int
    files: list[Path]
    other_sizes: int = 0  # frames whose image size is not their camera's (not estimated)


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
    hand: str = "right",
) -> PredictSummary:
    """Predict every frame and write the ``formats`` (and overlays) into ``out``.

    Args:
        formats: of :data:`handvox.io.predictions.FORMATS`.
        joint_set: write joints in this set (converted from the model's, see
            :func:`handvox.joints.convert_joints`); default the model's.
        skip_errors: a frame that cannot be read becomes ``found=False`` with the error as
            reason; otherwise the first such error stops the run (it names the file).
        hand: the hand the frames show (``right``, ``left`` or ``auto``: :meth:`HandPoseEstimator.
            __call__`); each prediction records it.
    Raises:
        DataError: an unreadable frame (without ``skip_errors``).
        HandvoxError: an unknown format or joint set, or one the model's joints do not map to.
    """
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
    results: list[FramePrediction] = []
    bar = tqdm(total=len(frames), unit="frame", disable=not progress, desc="predict")
    first_mismatch: SizeMismatch | None = None
    for idx in _batches(frames, batch_size):
        batch: list[FramePrediction | None] = [None] * len(idx)
        depths: list[np.ndarray | None] = [None] * len(idx)
        for k, i in enumerate(idx):
            try:
                depths[k] = frames[i].read()
            except DataError as e:
                # A frame of another size than its camera is that file's result (a folder of
                # mixed sizes goes on); other unreadable files end the run unless skipped.
                if not skip_errors and not isinstance(e, SizeMismatch):
                    bar.close()
                    raise
                if isinstance(e, SizeMismatch) and first_mismatch is None:
                    first_mismatch = e
                f = frames[i]
                what = "other size" if isinstance(e, SizeMismatch) else "unreadable"
                batch[k] = FramePrediction.missing(
                    f.id, f.source, f.camera, f"{what}: {e}", len(dst_set)
                )
        ok = [k for k, d in enumerate(depths) if d is not None]
        if ok:
            cam = frames[idx[0]].camera
            pred = estimator(np.stack([depths[k] for k in ok]), cam, hand=hand)
            xyz, conf = pred.joints_xyz, pred.joint_confidence
            if dst_set.name != src_set.name:
                xyz = convert_joints(xyz, src_set, dst_set)
                # a joint of the other set: the confidences of those it is made of, alike
                conf = convert_joints(np.repeat(conf[..., None], 3, -1), src_set, dst_set)[..., 0]
            uvd = cam.xyz_to_uvd(xyz)
            for j, k in enumerate(ok):
                batch[k] = _frame_prediction(frames[idx[k]], pred, j, xyz[j], uvd[j], conf[j])
        for k, r in enumerate(batch):
            assert r is not None
            if overlay and depths[k] is not None:  # an unreadable frame: nothing to draw
                r.overlay = _write_overlay(out, len(results), r, depths[k], dst_set)
            results.append(r)
        bar.update(len(idx))
    bar.close()
    if first_mismatch is not None and all(r.reason.startswith("other size:") for r in results):
        raise first_mismatch  # no frame fits the camera: the camera is wrong, not the files
    preds = Predictions(dst_set.name, results, model_name)
    written = write_predictions(out, preds, formats)
    found = sum(r.found for r in results)
    errors = sum(r.reason.startswith("unreadable:") for r in results)
    sizes = sum(r.reason.startswith("other size:") for r in results)
    return PredictSummary(len(results), found, errors, written, sizes)


def _joint_set(name: str) -> JointSet:
    try:
        return get_joint_set(name)
    except ValueError as e:
        raise HandvoxError(str(e)) from None


def _frame_prediction(
    frame: Frame, pred: Prediction, j: int, xyz: np.ndarray, uvd: np.ndarray, conf: np.ndarray
) -> FramePrediction:
    return FramePrediction(
        frame.id,
        frame.source,
        frame.camera,
        bool(pred.found[j]),
        pred.reason[j],
        pred.com_xyz[j],
        pred.com_uvd[j],
        xyz,
        uvd,
        hand=pred.hands[j],
        confidence=float(pred.confidence[j]),
        joint_confidence=conf,
        p_hand=float(pred.p_hand[j]),
        p_left=float(pred.p_left[j]),
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:80] or "frame"


def _write_overlay(
    out: Path, index: int, r: FramePrediction, depth: np.ndarray, joint_set: JointSet
) -> str:
    # Drawing loads matplotlib (about a second); only runs with overlays pay for it.
    from handvox.viz.draw import render_frame, save_png

    name = f"overlays/{index:05d}_{_safe(Path(r.id).stem)}.png"
    if r.found:
        rgb = render_frame(depth, r.camera, joint_set, pred_uvd=r.joints_uvd, title=r.id)
    else:
        rgb = render_frame(depth, r.camera, joint_set, crop=False, title=f"{r.id}: {r.reason}")
    save_png(out / name, rgb)
    return name


def _parse_numbers(text: str | None, flag: str, example: str) -> tuple[float, ...] | None:
    """A test-time option: None (the model's), 'none' (), or comma-separated numbers."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return tuple(float(a) for a in text.split(",") if a.strip())
    except ValueError:
        raise HandvoxError(
            f"{flag}: expected numbers like {example} or 'none', got {text!r}"
        ) from None


def describe_passes(est: HandPoseEstimator) -> str:
    """The line saying how many cubes a frame takes and whether hands pointing down get a second
    pass (settings that change the answer, so said)."""
    up = est.config.upright_beyond_deg
    turn = "off" if up is None else f"beyond {up:g}°"
    seg = est.config.segment
    phases = (f"; the hand found by the learned locator at {seg.locator_phases} grid phase(s) "
              "(--locator-phases)") if seg.method == "learned" else ""  # fmt: skip
    if seg.method == "learned" and seg.other_min_heat > 0 and est.handedness is not None:
        which = ("calls it the hand asked for and the first not" if seg.other_margin is None
                 else "calls the first the other hand and finds the second less so by "
                 f"{seg.other_margin:g}")  # fmt: skip
        phases += (f"; a second candidate holding {100 * seg.other_min_heat:g} %+ of its heat is "
                   f"kept instead where the left-or-right classifier {which} "
                   "(--other-min-heat)")  # fmt: skip
    return (f"views: {len(est.test_views())} a frame (--rotations, --scales); re-centring "
            f"passes: {est.recentre} (--recentre); a second pass on hands pointing down: {turn} "
            f"(--upright){phases}")  # fmt: skip


def describe_hand(est: HandPoseEstimator, hand: str) -> str | None:
    """With ``--hand auto``, the line saying what decides and how well it was measured."""
    if hand != "auto" or est.handedness is None:
        return None  # (auto without a classifier is refused at the first frame, saying so)
    return (f"hand auto: a left-or-right classifier decides each frame (right on "
            f"{100 * est.handedness.accuracy:.1f} % of held-out synthetic frames, fewer real ones: "
            "model card, 'Left or right'; give --hand when you know which)")  # fmt: skip


def _load_estimator(
    model: Path | None,
    device: str,
    exact: bool,
    rotations: str | None = None,
    scales: str | None = None,
    segment: str | None = None,
    hand_check: bool = True,
    upright: str | None = None,
    recentre: int | None = None,
    locator_phases: int | None = None,
    other_min_heat: float | None = None,
):
    kw = {
        "segment_method": segment,
        "locator_phases": locator_phases,
        "other_min_heat": other_min_heat,
        "hand_check": hand_check,
        "device": device,
        "fast": not exact,
        "test_rotations_deg": _parse_numbers(rotations, "--rotations", "-20,20"),
        "test_scales": _parse_numbers(scales, "--scales", "0.9,1.1"),
    }
    if upright is not None:
        turn = _parse_numbers(upright, "--upright", "75")
        if len(turn) > 1:
            raise HandvoxError(f"--upright: one angle in degrees or 'none', got {upright!r}")
        kw["upright_beyond_deg"] = turn[0] if turn else None
    if recentre is not None:
        if recentre < 0:
            raise HandvoxError(f"--recentre: a number of passes, 0 or more, got {recentre}")
        kw["recentre"] = recentre
    if model is None:
        return HandPoseEstimator.default(**kw)
    return HandPoseEstimator.from_folder(model, **kw)


def run(args: argparse.Namespace) -> int:
    """``handvox predict``: exit code 0, or 1 when no frame produced a result."""
    if not args.inputs and args.dataset is None:
        raise HandvoxError("give depth files or folders, or --dataset NAME:ROOT")
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    args.hand_given = args.hand is not None
    args.hand = args.hand or "right"
    # Frames first: a bad input is reported before the model is loaded.
    frames = collect_frames(args.inputs, args.camera, args.dataset, args.limit, args.depth_unit)
    if not args.quiet:
        for line in describe_sensors(frames):
            print(line)
        how = "--hand" if args.hand_given else "the default; --hand left or --hand auto"
        print(f"hand: {args.hand} ({how})")
    try:
        est = _load_estimator(args.model, args.device, args.exact, args.rotations, args.scales,
                              args.segment, not args.no_hand_check, args.upright,
                              args.recentre, args.locator_phases,
                              args.other_min_heat)  # fmt: skip
    except ValueError as e:  # a rotation of 0, a scale of 1, an upright angle of 180, NaN
        raise HandvoxError(f"--rotations/--scales/--upright/--other-min-heat: {e}") from None
    if not args.quiet:
        if est.check is not None:
            print(f"hand check: on (a frame whose p_hand is below {est.check.config.threshold:g} "
                  "is 'not a hand'; --no-hand-check estimates every frame)")  # fmt: skip
        else:
            print("hand check: off")
        print(describe_passes(est))
        if line := describe_hand(est, args.hand):
            print(line)
    summary = predict_frames(
        est,
        frames,
        args.out,
        formats=formats,
        overlay=args.overlay,
        joint_set=args.joint_set,
        batch_size=args.batch,
        skip_errors=args.skip_errors,
        progress=not args.quiet,
        model_name=str(args.model) if args.model else "default",
        hand=args.hand,
    )
    print(
        f"{summary.frames} frames, hand found in {summary.found}"
        + (f", {summary.errors} unreadable" if summary.errors else "")
        + (
            f", {summary.other_sizes} of another size than their camera (not estimated)"
            if summary.other_sizes
            else ""
        )
        + "; wrote "
        + ", ".join(str(p) for p in summary.files)
        + (f" and {args.out / 'overlays'}/" if args.overlay else "")
    )
    if summary.found == 0:
        print("handvox predict: no frame produced a result (see the reasons in the outputs)",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def describe_sensors(frames: list[Frame]) -> list[str]:
    """One line per camera and unit the file inputs use, with its origin and frame count."""
    counts: dict[SensorSpec, int] = {}
    for f in frames:
        if f.sensor is not None:
            counts[f.sensor] = counts.get(f.sensor, 0) + 1
    return [f"{n} frame(s): {spec.describe()}" for spec, n in counts.items()]

"""``handvox live``: the estimator on a stream (a camera, a recording, a file sequence), frame by
frame, with the joints smoothed over time.

Per frame: read (:mod:`handvox.io.stream`), estimate (:class:`~handvox.estimator.pipeline.
HandPoseEstimator`, batch 1), smooth (:class:`~handvox.estimator.temporal.OneEuroFilter`), then
write one JSON line (:func:`frame_record`), record, draw. The loop is one thread: a camera's frames
that arrive while a frame is estimated are dropped by the camera's SDK, a recording's and a file
sequence's wait.

Outputs
    ``--jsonl FILE`` (``-``: standard output, the default with ``--headless``): a line a frame,
        ``{"frame", "id", "t", "found", "reason", "hand", "confidence", "smoothed", "joints",
        "latency_ms"}``; ``joints``: ``J`` x ``[x, y, z]`` mm in the camera frame (OpenCV axes),
        null without a hand; ``t``: seconds from the first frame (the device's clock); latency:
        from the frame read to its line.
    ``--record DIR``: the stream as a file sequence ``DIR/depth/NNNNNN.png`` (16-bit, in the
        source's depth unit) with ``DIR/camera.json`` (camera and unit) and the lines in
        ``DIR/predictions.jsonl``; ``handvox live --source DIR/depth --fps F`` plays it again.
        The frames are stored as read: a lens's distortion undone (``lens_undone`` in
        ``camera.json`` says which; the file's camera is the pinhole one).
    ``--bvh FILE``: at the end, the sequence solved to joint angles (:func:`handvox.hand.mocap.
        solve_sequence`) as a BVH animation, one frame per input frame.
    The window (``--viewer opencv``, the default without ``--headless``) or rerun's viewer
    (``--viewer rerun``): the depth, the skeleton and frames/s.
A summary (frames, hand found, frames/s, latency median and 95th percentile) goes to standard
error at the end, or when the run is interrupted (Ctrl-C), after which the outputs are completed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import IO

import numpy as np

from handvox.atomic import write_text
from handvox.camera import as_camera
from handvox.errors import HandvoxError
from handvox.estimator.temporal import LOCATOR_EVERY, OneEuroConfig, track
from handvox.io.depth import write_png16
from handvox.io.sensor import parse_depth_unit
from handvox.io.stream import DepthStream, StreamFrame, open_stream


def frame_record(
    frame: StreamFrame, pred, joints: np.ndarray | None, smoothed: bool, latency_ms: float
) -> dict:
    """The JSON line of one frame (module docstring); ``pred`` is the frame's Prediction
    (batch 1), ``joints`` the ``(J, 3)`` joints to report (smoothed or not; None: no hand)."""
    found = bool(pred.found[0])
    conf = float(pred.confidence[0])
    return {
        "frame": frame.index,
        "id": frame.source_id,
        "t": None if frame.timestamp_s is None else round(frame.timestamp_s, 6),
        "found": found,
        "reason": pred.reason[0],
        "hand": pred.hands[0],
        "confidence": None if not np.isfinite(conf) else round(conf, 4),
        "smoothed": smoothed,
        "joints": None if joints is None else np.round(joints, 2).tolist(),
        "latency_ms": round(latency_ms, 2),
    }


class Recorder:
    """Writes the stream as a file sequence that :func:`~handvox.io.stream.open_stream` reads
    back (module docstring); each frame's file atomically, the lines as they come."""

    def __init__(self, folder: Path, stream: DepthStream):
        self.folder = folder
        if (folder / "camera.json").exists() or any((folder / "depth").glob("*.png")):
            # frames of an earlier, longer recording would stay behind the new one's
            raise HandvoxError(f"--record {folder}: holds a recording already; give a new folder "
                               "or delete it")  # fmt: skip
        (folder / "depth").mkdir(parents=True, exist_ok=True)
        cam, unit, lens = stream.camera, stream.sensor.unit_mm, stream.sensor.lens
        about = {
            "fx": cam.fx,
            "fy": cam.fy,
            "cx": cam.cx,
            "cy": cam.cy,
            "width": cam.width,
            "height": cam.height,
            "depth_unit_mm": unit,
            "source": stream.spec,
        }
        if lens is not None:  # not "distortion": the frames stored are undistorted already
            about["lens_undone"] = lens.to_dict()
        write_text(folder / "camera.json", json.dumps(about, indent=1) + "\n")
        self.unit = unit
        self.lines = open(folder / "predictions.jsonl", "w", encoding="utf-8")

    def add(self, frame: StreamFrame, line: str) -> None:
        write_png16(self.folder / "depth" / f"{frame.index:06d}.png", frame.depth / self.unit)
        self.lines.write(line + "\n")

    def close(self) -> None:
        self.lines.close()


def _viewer(kind: str, stream: DepthStream, joint_set: str):
    if kind == "opencv":
        # only a run with a window loads OpenCV (an optional extra)
        from handvox.viz.live import OpenCVViewer

        return OpenCVViewer(stream.camera, joint_set)
    if kind == "rerun":
        # likewise rerun
        from handvox.viz.live import RerunViewer

        return RerunViewer(stream.camera, joint_set)
    return None


def _summary(latencies: list[float], found: int, elapsed: float) -> str:
    n = len(latencies)
    if n == 0:
        return "0 frames"
    lat = np.asarray(latencies)
    return (
        f"{n} frames, hand found in {found}; {n / elapsed:.1f} frames/s; latency median "
        f"{np.median(lat):.1f} ms, 95th percentile {np.percentile(lat, 95):.1f} ms"
    )


def run(args: argparse.Namespace) -> int:
    """``handvox live``: 0, or 1 when no frame had a hand."""
    # Imported here, not at the top: the estimator loads torch, which --help does not need.
    from handvox.cli.predict import _load_estimator, describe_hand, describe_passes

    if args.fps is not None and args.fps <= 0:
        raise HandvoxError("--fps must be positive")
    if args.bvh is not None and args.hand in ("left", "auto"):
        # The IK fits handvox's right hand: a left hand's joints (or a sequence that changes
        # hand) would be solved to a wrong pose, silently.
        raise HandvoxError(
            f"--bvh animates a right hand; with --hand {args.hand} the joints are (or may be) "
            "a left hand's: leave --bvh out and keep the JSON lines"
        )
    unit = None
    if args.depth_unit is not None:
        try:
            unit = parse_depth_unit(args.depth_unit)
        except ValueError as e:
            raise HandvoxError(f"--depth-unit: {e}") from None
    camera = None
    if args.camera is not None:
        try:
            camera = as_camera(args.camera)
        except ValueError as e:
            raise HandvoxError(f"--camera: {e}") from None
    viewer_kind = "none" if args.headless else args.viewer
    filter_cfg = None
    if not args.no_smooth:
        try:
            filter_cfg = OneEuroConfig(min_cutoff_hz=args.min_cutoff, beta=args.beta)
        except ValueError as e:
            raise HandvoxError(str(e)) from None
    every = LOCATOR_EVERY if args.locator_every is None else args.locator_every
    if every < 1:
        raise HandvoxError(f"--locator-every: a number of frames, 1 or more, got {every}")
    stream = open_stream(args.source, camera, f"--camera {args.camera}", unit, args.fps)
    with stream:
        print(f"source {args.source}: {stream.sensor.describe()}", file=sys.stderr)
        how = "--hand" if args.hand is not None else "the default; --hand left or --hand auto"
        args.hand = args.hand or "right"
        print(f"hand: {args.hand} ({how})", file=sys.stderr)
        try:
            est = _load_estimator(args.model, args.device, args.exact, args.rotations, None,
                                  args.segment, not args.no_hand_check, args.upright,
                                  args.recentre, args.locator_phases,
                                  args.other_min_heat)  # fmt: skip
        except ValueError as e:  # a rotation of 0, an upright angle of 180, NaN
            raise HandvoxError(f"--rotations/--upright/--other-min-heat: {e}") from None
        print(describe_passes(est), file=sys.stderr)
        if line := describe_hand(est, args.hand):
            print(line, file=sys.stderr)
        if est.config.segment.method == "learned":
            print(f"hand finding: the locator's network reads every {every} frame(s) while a "
                  "hand is tracked (--locator-every)", file=sys.stderr)  # fmt: skip
        joint_set = est.joint_set.name
        viewer = _viewer(viewer_kind, stream, joint_set)
        jsonl_path = args.jsonl if args.jsonl is not None else ("-" if args.headless else None)
        out: IO[str] | None = None
        if jsonl_path == "-":
            out = sys.stdout
        elif jsonl_path is not None:
            Path(jsonl_path).parent.mkdir(parents=True, exist_ok=True)
            out = open(jsonl_path, "w", encoding="utf-8")
        recorder = Recorder(args.record, stream) if args.record is not None else None
        latencies: list[float] = []
        sequence: list[np.ndarray] = []
        times: list[float] = []
        found = 0
        start = time.perf_counter()
        try:
            for tracked in track(stream, est, hand=args.hand, smoothing=filter_cfg,
                                 locator_every=every):  # fmt: skip
                frame, pred, joints = tracked.frame, tracked.prediction, tracked.joints
                latency = tracked.latency_ms
                record = frame_record(frame, pred, joints, filter_cfg is not None, latency)
                line = json.dumps(record)
                if out is not None:
                    out.write(line + "\n")
                    out.flush()
                if recorder is not None:
                    recorder.add(frame, line)
                if viewer is not None and not viewer.show(frame, joints, latencies):
                    break  # the person closed the window
                latencies.append(latency)
                found += joints is not None
                sequence.append(
                    np.full((len(pred.joints_xyz[0]), 3), np.nan) if joints is None else joints
                )
                times.append(frame.timestamp_s if frame.timestamp_s is not None else np.nan)
                if args.frames is not None and len(latencies) >= args.frames:
                    break
        except KeyboardInterrupt:
            print("handvox live: interrupted; finishing the outputs", file=sys.stderr)
        finally:
            elapsed = time.perf_counter() - start
            if out is not None and out is not sys.stdout:
                out.close()
            if recorder is not None:
                recorder.close()
            if viewer is not None:
                viewer.close()
        print(f"handvox live: {_summary(latencies, found, elapsed)}", file=sys.stderr)
    if args.bvh is not None and found:
        write_sequence_bvh(args.bvh, np.stack(sequence), np.asarray(times), joint_set, args.fps)
        print(f"handvox live: wrote {args.bvh}", file=sys.stderr)
    return 0 if found else 1


def write_sequence_bvh(
    path: Path, joints: np.ndarray, times_s: np.ndarray, joint_set: str, fps: float | None
) -> None:
    """The sequence's BVH (:func:`handvox.hand.mocap.solve_sequence`) at ``fps``, else at the
    median frame interval of its time stamps."""
    from handvox.hand.bvh import write_bvh  # only runs that write a BVH load the IK
    from handvox.hand.mocap import solve_sequence  # (and with it the kinematic hand)

    if fps is None:
        steps = np.diff(times_s)
        steps = steps[np.isfinite(steps) & (steps > 0)]
        if steps.size == 0:
            raise HandvoxError("--bvh: the stream has no time stamps; give --fps")
        fps = 1.0 / float(np.median(steps))
    write_bvh(path, solve_sequence(joints, joint_set, fps).bvh)

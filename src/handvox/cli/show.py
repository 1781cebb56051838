"""``handvox show``: draw a depth file with line ``frame`` of label files on it, as a PNG.

Reads the depth and the label files, picks the joint set, and crops around the joints, or, with
no labels, around the hand found by segmentation (:func:`hand_box`); :mod:`handvox.viz.draw`
does the drawing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from handvox.camera import Camera, as_camera
from handvox.errors import DataError, HandvoxError
from handvox.estimator.locate import find_hand
from handvox.estimator.segment import SegmentConfig
from handvox.io.labels import read_labels
from handvox.io.predictions import read_json
from handvox.io.sensor import parse_depth_unit, sensor_for
from handvox.joints import JointSet, get_joint_set
from handvox.viz.draw import Box, joints_to_uvd, render_frame, save_png, square_box

_SET_BY_COUNT = {14: "nyu14", 16: "icvl16", 36: "nyu36"}


def hand_box(
    depth: np.ndarray,
    camera: Camera | str,
    margin: float = 0.15,
    cube_mm: float = 300.0,
    config: SegmentConfig | None = None,
) -> Box:
    """A square crop around the hand found from depth alone, clamped to the image.

    The hand is found by :func:`handvox.estimator.segment.segment_hand` (``config``, default
    settings when None); the box holds both the projection of a ``cube_mm`` cube centred on its
    centre of mass and its mask plus ``margin`` x the mask's extent. When no hand is found, the
    whole image.

    Args:
        depth: ``(H, W)`` mm.
    Returns:
        ``(u0, v0, u1, v1)``.
    Raises:
        DataError: depth not of the camera's size.
    """
    cam = as_camera(camera)
    depth = np.asarray(depth, dtype=np.float32)
    height, width = depth.shape
    seg = find_hand(depth, cam, config or SegmentConfig())
    if not seg.found:
        return 0, 0, width, height
    # The mask stops at the wrist cut and may miss thin fingers; the cube around the COM holds a
    # whole hand of any pose; both together never cut off what the mask does hold.
    cu, cv, cd = seg.com_uvd
    half = 0.5 * cube_mm * 0.5 * (cam.fx + cam.fy) / cd
    vs, us = np.nonzero(seg.mask)
    pad = max(margin * max(np.ptp(us), np.ptp(vs)), 4.0)
    lo = np.minimum([cu - half, cv - half], [us.min() - pad, vs.min() - pad])
    hi = np.maximum([cu + half, cv + half], [us.max() + pad, vs.max() + pad])
    center = 0.5 * (lo + hi)
    return square_box(center[0], center[1], float((hi - lo).max()), width, height)


def _infer_joint_set(num_joints: int, cam_name: str, path: Path) -> JointSet:
    if num_joints == 21:
        # MSRA and canonical both have 21 joints; the camera is the only hint.
        return get_joint_set("msra21" if cam_name == "msra" else "canonical21")
    if num_joints in _SET_BY_COUNT:
        return get_joint_set(_SET_BY_COUNT[num_joints])
    raise DataError(
        path, f"{num_joints} joints a line: cannot tell the joint set, give --joint-set"
    )


def _frame_joints(path: Path, frame: int, cam: Camera) -> np.ndarray:
    """Line ``frame`` of a label file (uvd, or xyz by its header), or frame ``frame`` of a
    ``predictions.json``, as ``(J, 3)`` uvd."""
    if path.suffix.lower() == ".json":
        frames = read_json(path).frames
        n = len(frames)
        if 0 <= frame < n and not frames[frame].found:
            raise DataError(path, f"frame {frame} has no hand: {frames[frame].reason}")
        joints, kind = (frames[frame].joints_xyz if 0 <= frame < n else None), "xyz"
    else:
        labels = read_labels(path)
        n = len(labels.joints)
        joints = labels.joints[frame] if 0 <= frame < n else None
        kind = "xyz" if labels.kind == "xyz" else "uvd"
    if joints is None:
        raise DataError(path, f"frame {frame} out of range: the file has {n} frames (0..{n - 1})")
    return joints_to_uvd(joints, cam, kind)


def show_file(
    depth: Path,
    camera: str | Camera | None,
    out: Path,
    gt: Path | None = None,
    pred: Path | None = None,
    frame: int = 0,
    joint_set: str | None = None,
    crop: bool = True,
    size_px: int = 512,
    depth_unit: str | None = None,
) -> None:
    """Draw a depth file with line ``frame`` of the label files on it and save a PNG.

    Args:
        camera: preset name or ``fx,fy,cx,cy,w,h`` (or a Camera); also projects xyz label files.
            None: the ``camera.json`` beside the file (:func:`handvox.io.sensor.sensor_for`).
        depth_unit: of the file's values (``mm``, ``m``, ``0.125mm``, ...); None: the
            ``camera.json``'s, else mm.
        joint_set: default: by joint count (14 nyu14, 16 icvl16, 36 nyu36, 21 msra21 with the
            msra camera else canonical21).
        crop: around the joints drawn; without label files, around the hand found from depth
            (:func:`hand_box`). Else the whole frame.
    Raises:
        DataError: unreadable depth or labels, depth size not the camera's, ``frame`` beyond a
            label file, joint count not the joint set's (or not inferable).
        HandvoxError: unknown camera or joint set name.
    """
    cam_name = camera.lower() if isinstance(camera, str) else ""
    try:
        unit = None if depth_unit is None else parse_depth_unit(depth_unit)
        js = get_joint_set(joint_set) if joint_set else None
    except ValueError as e:
        raise HandvoxError(str(e)) from None
    given = None if camera is None else as_camera(camera)
    sensor = sensor_for(depth, given, f"--camera {camera}", unit)
    cam = sensor.camera
    depth_mm = sensor.read(depth)
    found = {p: _frame_joints(Path(p), frame, cam) for p in (gt, pred) if p is not None}
    for p, joints in found.items():
        if js is None:
            js = _infer_joint_set(len(joints), cam_name, Path(p))
        elif len(joints) != len(js):
            raise DataError(
                p, f"{len(joints)} joints a line, but joint set {js.name} has {len(js)}"
            )
    if js is None:
        js = get_joint_set(cam_name if cam_name in ("nyu", "icvl", "msra") else "canonical21")
    box = hand_box(depth_mm, cam) if crop and not found else None
    rgb = render_frame(
        depth_mm,
        cam,
        js,
        gt_uvd=found.get(gt) if gt is not None else None,
        pred_uvd=found.get(pred) if pred is not None else None,
        crop=crop,
        size_px=size_px,
        box=box,
    )
    save_png(out, rgb)


def run(args: argparse.Namespace) -> None:
    """``handvox show``."""
    show_file(
        depth=args.depth,
        camera=args.camera,
        out=args.out,
        gt=args.gt,
        pred=args.pred,
        frame=args.frame,
        joint_set=args.joint_set,
        crop=not args.no_crop,
        depth_unit=args.depth_unit,
    )
    print(f"wrote {args.out}")

"""Contact sheets of synthetic data: what a person looks at before training on it. A dataset's
first frames (:func:`write_preview`), and the LibHand skinned hand beside the capsule hand in the
20 gestures (:func:`skinned_sheet`)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.geometry import matrix_to_axis_angle
from handvox.hand.kinematics import HandBones, forward_kinematics
from handvox.hand.poses import DEFAULT_CENTRE_MM, GESTURE_NAMES, gesture_articulations
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.primitives import hand_primitives
from handvox.synth.raycast import render_depth
from handvox.synth.scene import joint_radii, thickness_scale
from handvox.synth.skinned import libhand_hand
from handvox.viz.draw import hand_crop_box, joints_to_uvd, render_frame, save_png, tile_images


def write_preview(root: str | Path, out: str | Path | None = None, count: int = 16) -> Path:
    """A contact sheet of the first ``count`` frames present: raw depth with the canonical
    skeleton, 4 tiles a row. Default ``out``: ``root/preview.png``."""

    with warnings.catch_warnings():  # a shard's preview shows its own chunks; none is amiss
        warnings.simplefilter("ignore")
        ds = SyntheticDataset(root, load_clean=False)
    if len(ds) == 0:
        raise DataError(root, "no complete chunk to preview")
    tile, cols = 256, 4
    tiles = []
    for i in range(min(count, len(ds))):
        rec = ds[i]
        img = render_frame(rec.depth, rec.camera, rec.joint_set, gt_uvd=rec.joints_uvd,
                           size_px=tile, title=rec.frame_id)  # fmt: skip
        pad = np.zeros((tile, tile, 3), np.uint8)
        pad[: img.shape[0], : img.shape[1]] = img[:tile, :tile]
        tiles.append(pad)
    rows = math.ceil(len(tiles) / cols)
    tiles += [np.zeros_like(tiles[0])] * (rows * cols - len(tiles))
    sheet = np.concatenate(
        [np.concatenate(tiles[r * cols : (r + 1) * cols], axis=1) for r in range(rows)], axis=0
    )
    path = Path(out) if out is not None else Path(root) / "preview.png"
    save_png(path, sheet)
    return path


def skinned_sheet_poses(
    yaw_deg: float = 25.0, pitch_deg: float = -20.0, depth_mm: float = 450.0
) -> torch.Tensor:
    """``(20, 30)`` float64 poses (root translation in mm, root axis-angle, articulation) of the
    gestures of :data:`handvox.hand.poses.GESTURE_NAMES`, in that order: palm to the camera,
    turned by ``yaw_deg`` about the hand's long axis and ``pitch_deg`` (degrees), the hand's
    centre ``depth_mm`` mm ahead of the camera on its optical axis."""
    art = gesture_articulations(dtype=torch.float64)
    rot = Rotation.from_euler("XY", [pitch_deg, yaw_deg], degrees=True).as_matrix()
    t = np.array([0.0, 0.0, depth_mm]) - rot @ np.array(DEFAULT_CENTRE_MM)
    root = torch.cat([torch.tensor(t), matrix_to_axis_angle(torch.tensor(rot)[None])[0]])
    return torch.cat([root.expand(len(art), 6), art], 1)


SKINNED_SHEET_COLS = 8  # four gestures a row, mesh and capsules each


def skinned_sheet(
    bones: HandBones | None = None,
    yaw_deg: float = 25.0,
    pitch_deg: float = -20.0,
    depth_mm: float = 450.0,
    size_px: int = 256,
    skeleton: bool = True,
) -> np.ndarray:
    """The skinned-hand contact sheet: the LibHand skinned mesh hand beside the capsule hand in
    the 20 gestures (:func:`skinned_sheet_poses`), with the same bones and root.

    Per gesture, two panels seen by the NYU camera (640x480), both cropped to the same box around
    the mesh hand and its joints: the mesh of :func:`handvox.synth.skinned.libhand_hand` posed by
    linear blend skinning and rasterised (left, "(mesh)"), and the analytic primitives of
    :func:`handvox.synth.primitives.hand_primitives` ray cast (right, "(capsules)"; no forearm,
    radii and palm thickness as :func:`handvox.synth.scene.render_hand_scene` sets them).
    Depth is drawn grey on black (no depth), with the ground-truth canonical-21 joints of
    forward kinematics unless ``skeleton`` is False.

    Args:
        bones: a batch-1 hand (e.g. :func:`handvox.hand.shapes.base_shape`; the mesh then
            stretches and thickens to it); None: the mesh's own fitted bones.
        yaw_deg, pitch_deg, depth_mm: the view, as in :func:`skinned_sheet_poses`.
        size_px: a panel's longer side in pixels (crops are square unless clamped at the
            image's edge).
        skeleton: draw the ground-truth joints.
    Returns:
        ``(5 * (size_px + 4) + 4, 8 * (size_px + 4) + 4, 3)`` uint8 RGB (for square panels):
        5 rows of 4 gestures, each a (mesh, capsules) pair, in the order of
        :data:`handvox.hand.poses.GESTURE_NAMES`, on white with 4 px gaps
        (:func:`handvox.viz.draw.tile_images`).
    """
    cam = Camera.preset("nyu")
    hand = libhand_hand()
    bones = hand.bones if bones is None else bones.to(torch.float64)
    poses = skinned_sheet_poses(yaw_deg, pitch_deg, depth_mm)
    mesh = hand.render(poses, cam, bones)
    radii = joint_radii(bones)
    # the palm's thickness as render_hand_scene sets it for these bones
    palm_mm = 28.0 * thickness_scale(bones)
    joints = forward_kinematics(poses, bones).joints.numpy()
    tiles = []
    for name, d_mesh, j in zip(GESTURE_NAMES, mesh.depth, joints, strict=True):
        d_caps = render_depth(hand_primitives(j, radii, palm_thickness=palm_mm), cam, threads=1)
        uvd = joints_to_uvd(j, cam, "xyz")
        box = hand_crop_box(d_mesh, cam, uvd)
        for d, kind in ((d_mesh, "mesh"), (d_caps, "capsules")):
            tiles.append(
                render_frame(d, cam, "canonical21", uvd if skeleton else None, box=box,
                             size_px=size_px, title=f"{name} ({kind})")
            )  # fmt: skip
    return tile_images(tiles, cols=SKINNED_SHEET_COLS)

"""Contact sheet: the LibHand skinned mesh hand beside the capsule hand, in the 20 gestures.

    .venv/bin/python benchmarks/skinned_sheet.py --out sheet.png [--bones libhand]
        [--yaw 25] [--pitch -20] [--depth 450] [--size 256] [--no-skeleton]

Each gesture of :data:`handvox.hand.poses.GESTURES` is posed with the same bones and root and
drawn twice with the NYU camera: the mesh of :func:`handvox.synth.skinned.libhand_hand` rasterised
(left) and the analytic primitives of :func:`handvox.synth.primitives.hand_primitives` ray cast
(right, no forearm; radii as the synthetic-data generator sets them), both with the ground-truth
joints of forward kinematics. ``--bones`` is ``libhand`` (the mesh's own fitted bones) or a base
shape of :mod:`handvox.hand.shapes` (the mesh then stretches and thickens to it).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handvox.camera import Camera
from handvox.geometry import matrix_to_axis_angle
from handvox.hand.kinematics import HandBones, forward_kinematics
from handvox.hand.poses import DEFAULT_CENTRE_MM, GESTURE_NAMES, gesture_articulations
from handvox.hand.shapes import SHAPE_NAMES, base_shape
from handvox.synth.primitives import hand_primitives
from handvox.synth.raycast import render_depth
from handvox.synth.scene import joint_radii, thickness_scale
from handvox.synth.skinned import libhand_hand
from handvox.viz.draw import hand_crop_box, joints_to_uvd, render_frame, save_png, tile_images


def sheet_poses(yaw: float, pitch: float, depth: float) -> torch.Tensor:
    """``(20, 30)`` float64 the gestures, palm to the camera turned by ``yaw`` (about the hand's
    long axis) and ``pitch`` (degrees), the hand's centre ``depth`` mm ahead of the camera."""
    art = gesture_articulations(dtype=torch.float64)
    rot = Rotation.from_euler("XY", [pitch, yaw], degrees=True).as_matrix()
    t = np.array([0.0, 0.0, depth]) - rot @ np.array(DEFAULT_CENTRE_MM)
    root = torch.cat([torch.tensor(t), matrix_to_axis_angle(torch.tensor(rot)[None])[0]])
    return torch.cat([root.expand(len(art), 6), art], 1)


def contact_sheet(
    bones: HandBones | None = None,
    yaw: float = 25.0,
    pitch: float = -20.0,
    depth: float = 450.0,
    size_px: int = 256,
    skeleton: bool = True,
) -> np.ndarray:
    """``(H, W, 3)`` uint8: per gesture the mesh hand and the capsule hand, four gestures a
    row."""
    cam = Camera.preset("nyu")
    hand = libhand_hand()
    bones = hand.bones if bones is None else bones.to(torch.float64)
    poses = sheet_poses(yaw, pitch, depth)
    mesh = hand.render(poses, cam, bones)
    radii = joint_radii(bones)
    joints = forward_kinematics(poses, bones).joints.numpy()
    tiles = []
    for name, d_mesh, j in zip(GESTURE_NAMES, mesh.depth, joints, strict=True):
        prims = hand_primitives(j, radii, palm_thickness=28.0 * thickness_scale(bones))
        d_caps = render_depth(prims, cam, threads=1)
        uvd = joints_to_uvd(j, cam, "xyz")
        box = hand_crop_box(d_mesh, cam, uvd)
        for d, kind in ((d_mesh, "mesh"), (d_caps, "capsules")):
            tiles.append(
                render_frame(d, cam, "canonical21", uvd if skeleton else None, box=box,
                             size_px=size_px, title=f"{name} ({kind})")
            )  # fmt: skip
    return tile_images(tiles, cols=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--bones", default="libhand", choices=("libhand", *SHAPE_NAMES))
    ap.add_argument("--yaw", type=float, default=25.0)
    ap.add_argument("--pitch", type=float, default=-20.0)
    ap.add_argument("--depth", type=float, default=450.0)
    ap.add_argument("--size", type=int, default=256, help="pixels per panel")
    ap.add_argument("--no-skeleton", action="store_true")
    args = ap.parse_args()
    bones = None if args.bones == "libhand" else base_shape(args.bones, torch.float64)
    sheet = contact_sheet(bones, args.yaw, args.pitch, args.depth, args.size, not args.no_skeleton)
    save_png(args.out, sheet)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()

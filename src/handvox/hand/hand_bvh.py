"""Posed hands of :mod:`handvox.hand.kinematics` as BVH files, and back.

The paper keeps the poses found by inverse kinematics as BVH and makes new hand shapes by editing
the OFFSETs; this module is the adapter between the 30-DOF hand and :mod:`handvox.hand.bvh`.

Skeleton (20 joints, depth-first): ROOT ``wrist`` (6 channels: position, then rotation), then
per chain ``thumb_cmc thumb_mcp thumb_ip`` or ``{finger}_cmc {finger}_mcp {finger}_pip
{finger}_dip``, an End Site at every fingertip. The finger ``_cmc`` joints are the metacarpal
bases, pivots of palm cupping (``*_cmc_flex``); they are not canonical-21 joints. Every
non-root joint has 3 rotation channels ``Xrotation Zrotation Yrotation``.

Units are millimetres (BVH has no unit field); positions are in the camera frame (OpenCV: x
right, y down, z forward), as the pose's root.

Rest pose (all channels zero) = the kinematics' zero pose with a zero root: every joint frame is
then aligned with the hand frame (x radial, y proximal, z dorsal) and each OFFSET is the bone
vector from the parent joint in the hand frame, as BVH tools expect. A joint's channels hold its
rotation relative to its parent in that rest-aligned frame, so X is nearly flexion and Z nearly
abduction for the fingers but not exactly (each finger's axes follow its metacarpal, a few
degrees off the hand's axes). :func:`bvh_to_pose` recovers the 30 DOF by projecting each local
rotation on the kinematics' joint axes: exact for files written by :func:`hand_to_bvh` (and
after :meth:`BVH.scale_bones`), a projection (swing-twist) for rotations edited elsewhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from handvox.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from handvox.hand.bvh import BVH, BVHJoint, bvh_positions, encode_motion, global_transforms
from handvox.hand.kinematics import (
    NUM_DOF,
    FKResult,
    HandBones,
    dof_index,
    forward_kinematics,
    zero_pose,
)
from handvox.hand.shapes import base_shape
from handvox.joints import CANONICAL21, FINGERS

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
JOINT_CHANNELS = ("Xrotation", "Zrotation", "Yrotation")


def _chain_names(finger: str) -> tuple[str, ...]:
    if finger == "thumb":
        return ("thumb_cmc", "thumb_mcp", "thumb_ip")
    return tuple(f"{finger}_{s}" for s in ("cmc", "mcp", "pip", "dip"))


BVH_NAMES: tuple[str, ...] = ("wrist",) + sum((_chain_names(f) for f in FINGERS), ())
BVH_PARENTS: tuple[int, ...] = tuple(
    -1 if n == "wrist" else 0 if n.endswith("_cmc") else i - 1 for i, n in enumerate(BVH_NAMES)
)
TIP_PARENTS: tuple[str, ...] = tuple(_chain_names(f)[-1] for f in FINGERS)


def _frames(fk: FKResult) -> tuple[Tensor, Tensor]:
    """Orientation ``(B, 20, 3, 3)`` and origin ``(B, 20, 3)`` of each BVH joint's bone: the
    frame the bone to its children is fixed in."""
    rot, pos = [fk.rotations[:, 0]], [fk.joints[:, 0]]
    for c, finger in enumerate(FINGERS):
        first = 1 + 4 * c
        if finger != "thumb":  # the metacarpal, turning about its CMC
            rot.append(fk.metacarpal_rotations[:, c])
            pos.append(fk.metacarpal_origins[:, c])
        for j in range(first, first + 3):
            rot.append(fk.rotations[:, j])
            pos.append(fk.joints[:, j])
    return torch.stack(rot, 1), torch.stack(pos, 1)


def _single(bones: HandBones) -> HandBones:
    if bones.batch_size != 1:
        raise ValueError(f"bones must hold one hand (batch 1), got batch {bones.batch_size}")
    return bones.to(dtype=torch.float64, device="cpu")


def _rest(bones: HandBones) -> FKResult:
    return forward_kinematics(zero_pose(1, torch.float64), bones)


def bvh_offsets(bones: HandBones) -> tuple[np.ndarray, np.ndarray]:
    """OFFSETs ``(20, 3)`` and fingertip End Sites ``(5, 3)`` of a hand (mm, hand frame)."""
    rest = _rest(_single(bones))
    _, pos = _frames(rest)
    pos = pos[0].numpy()
    offsets = np.zeros_like(pos)
    for i, p in enumerate(BVH_PARENTS):
        if p >= 0:
            offsets[i] = pos[i] - pos[p]
    tips = rest.joints[0, [4 + 4 * c for c in range(5)]].numpy()
    ends = tips - pos[[BVH_NAMES.index(n) for n in TIP_PARENTS]]
    return offsets, ends


def skeleton(bones: HandBones) -> list[BVHJoint]:
    """The BVH joints of one hand (see the module docstring)."""
    offsets, ends = bvh_offsets(bones)
    end_of = dict(zip(TIP_PARENTS, ends, strict=True))
    return [
        BVHJoint(n, p, offsets[i], ROOT_CHANNELS if p < 0 else JOINT_CHANNELS, end_of.get(n))
        for i, (n, p) in enumerate(zip(BVH_NAMES, BVH_PARENTS, strict=True))
    ]


def hand_to_bvh(pose: Tensor | np.ndarray, bones: HandBones, frame_time: float = 1.0 / 30.0) -> BVH:
    """A motion of one hand as BVH.

    Args:
        pose: ``(F, 30)`` or ``(30,)`` poses (:mod:`handvox.hand.kinematics` layout, rad and mm).
        bones: one hand's :class:`HandBones` (batch 1).
        frame_time: seconds per frame.
    Returns:
        :class:`BVH` with the skeleton of :func:`skeleton` and ``F`` frames.
    """
    bones = _single(bones)
    pose = torch.as_tensor(pose).detach().to(dtype=torch.float64, device="cpu")
    if pose.dim() not in (1, 2) or pose.shape[-1] != NUM_DOF:
        raise ValueError(f"pose must be (F, {NUM_DOF}) or ({NUM_DOF},), got {tuple(pose.shape)}")
    if not pose.isfinite().all():
        raise ValueError("pose holds NaN or infinite values")
    pose = pose.reshape(-1, NUM_DOF)
    rot, _ = _frames(forward_kinematics(pose, bones))
    rest, _ = _frames(_rest(bones))
    world = rot @ rest.transpose(-1, -2)  # rest-aligned joint frames in the camera frame
    parents = torch.tensor([max(p, 0) for p in BVH_PARENTS])
    local = world[:, parents].transpose(-1, -2) @ world
    local[:, 0] = world[:, 0]
    translations = np.zeros((pose.shape[0], len(BVH_NAMES), 3))
    translations[:, 0] = pose[:, :3].numpy()
    joints = skeleton(bones)
    return BVH(joints, frame_time, encode_motion(joints, local.numpy(), translations))


def bvh_to_hand(bvh: BVH) -> np.ndarray:
    """``(F, 21, 3)`` canonical-21 joints (mm, camera frame) of a hand BVH, found by name."""
    pos = bvh_positions(bvh, end_sites=True)
    ends = {bvh.joints[i].name: k for k, i in enumerate(bvh.end_site_joints())}
    idx = []
    for name in CANONICAL21.names:
        if name.endswith("_tip"):
            parent = TIP_PARENTS[FINGERS.index(name.split("_")[0])]
            if parent not in ends:
                raise ValueError(f"BVH has no End Site under {parent} for {name}")
            idx.append(len(bvh.joints) + ends[parent])
        else:
            idx.append(bvh.joint_index(name))
    return pos[:, idx]


def bones_from_bvh(bvh: BVH, radius: Tensor | None = None) -> HandBones:
    """The :class:`HandBones` (batch 1, float64) a hand BVH's OFFSETs describe.

    BVH stores no thickness: ``radius`` ``(1, 5, 4)`` defaults to the average adult's scaled by
    palm length.
    """
    off = {j.name: j.offset for j in bvh.joints}
    end = {j.name: j.end_site for j in bvh.joints if j.end_site is not None}
    base, length, cmc = [], [], []
    for finger in FINGERS:
        names = _chain_names(finger)
        tip = np.linalg.norm(end[names[-1]])
        if finger == "thumb":
            base.append(off[names[0]])
            length.append([np.linalg.norm(off[names[1]]), np.linalg.norm(off[names[2]]), tip])
        else:
            cmc.append(off[names[0]])
            base.append(off[names[0]] + off[names[1]])
            length.append([np.linalg.norm(off[names[2]]), np.linalg.norm(off[names[3]]), tip])

    def t(a) -> Tensor:
        return torch.tensor(np.asarray(a), dtype=torch.float64)[None]

    if radius is None:
        avg = base_shape("average_adult", torch.float64)
        radius = avg.radius * (float(np.linalg.norm(base[2])) / float(avg.palm_length()))
    return HandBones(base=t(base), length=t(length), radius=radius.to(torch.float64), cmc=t(cmc))


def retarget(bvh: BVH, bones: HandBones) -> BVH:
    """The same motion on another hand by editing OFFSETs and End Sites (as the paper does).

    Every channel (joint rotation and root position) is kept; bone lengths become ``bones``'.
    The 30-DOF pose is kept exactly when only lengths change (e.g. :meth:`BVH.scale_bones`);
    where the new hand's metacarpals point elsewhere (another palm shape) each finger's joint
    axes turn with them, so the 30-DOF pose :func:`bvh_to_pose` reads differs by about that
    angle (about a degree between the base shapes of :mod:`handvox.hand.shapes`). For an exact
    30-DOF retarget write ``hand_to_bvh(bvh_to_pose(bvh), bones)`` instead.
    """
    offsets, ends = bvh_offsets(bones)
    by_name = {n: i for i, n in enumerate(BVH_NAMES)}
    order = [by_name[j.name] for j in bvh.joints]
    tips = [TIP_PARENTS.index(bvh.joints[i].name) for i in bvh.end_site_joints()]
    return bvh.with_offsets(offsets[order], ends[tips])


# --- BVH -> 30 DOF ------------------------------------------------------------------------------
def _twist(rot: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Angle ``(...,)`` of the rotation ``(..., 3, 3)`` about ``axis`` ``(..., 3)`` (swing-twist
    decomposition; exact for a rotation about that axis)."""
    # The quaternion (cos(a/2), sin(a/2) n) of the rotation by a about n, from its axis-angle.
    rotvec = matrix_to_axis_angle(torch.from_numpy(rot)).numpy()
    angle = np.linalg.norm(rotvec, axis=-1)
    along = 0.5 * np.sinc(angle / (2.0 * np.pi)) * np.einsum("...i,...i->...", rotvec, axis)
    ang = 2.0 * np.arctan2(along, np.cos(0.5 * angle))
    return (ang + np.pi) % (2.0 * np.pi) - np.pi


def _two_axes(rot: np.ndarray, a1: np.ndarray, a2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Angles with ``rot = R(a1, t1) @ R(a2, t2)``: ``t1`` turns ``a2`` onto ``rot @ a2`` about
    ``a1``, ``t2`` is the rest's twist about ``a2``."""
    v = rot @ a2
    u = a2 - (a2 @ a1) * a1
    w = v - (v @ a1)[..., None] * a1
    t1 = np.arctan2(np.cross(u, w) @ a1, w @ u)
    r1 = axis_angle_to_matrix(torch.from_numpy(t1[..., None] * a1)).numpy()
    return t1, _twist(np.swapaxes(r1, -1, -2) @ rot, np.broadcast_to(a2, rot.shape[:-1]))


def _axes(bones: HandBones) -> np.ndarray:
    """``(5, 2, 3)`` each chain's first flexion and abduction axis in its metacarpal frame,
    measured on the kinematics (a single DOF turned by 0.5 rad)."""
    out = np.zeros((5, 2, 3))
    for k, kind in enumerate(("flex", "abd")):
        pose = zero_pose(5, torch.float64)
        for c, finger in enumerate(FINGERS):
            name = {"flex": "cmc_flex" if c == 0 else "mcp_flex",
                    "abd": "cmc_abd" if c == 0 else "mcp_abd"}[kind]  # fmt: skip
            pose[c, dof_index(f"{finger}_{name}")] = 0.5
        fk = forward_kinematics(pose, bones)
        for c in range(5):
            local = fk.metacarpal_rotations[c, c].T @ fk.rotations[c, 1 + 4 * c]
            out[c, k] = matrix_to_axis_angle(local).numpy() / 0.5
    return out


def bvh_to_pose(bvh: BVH, bones: HandBones | None = None) -> np.ndarray:
    """The 30-DOF poses ``(F, 30)`` (rad, mm) of a hand BVH.

    BVH joints rotate freely (3 DOF each); the kinematic hand has 1 or 2 per joint. Each DOF is
    read as the twist of the bone's rotation (relative to its parent's kinematic frame) about
    the DOF's axis, two-axis joints by an exact two-axis decomposition; for a file written by
    :func:`hand_to_bvh` this recovers the pose (up to rounding). Not clamped to limits.

    Args:
        bvh: a hand BVH with the joint names of :func:`skeleton`.
        bones: the hand (batch 1) whose rest frames the rotations refer to; default
            :func:`bones_from_bvh`.
    """
    bones = bones_from_bvh(bvh) if bones is None else _single(bones)
    world_r, world_t = global_transforms(bvh)
    idx = [bvh.joint_index(n) for n in BVH_NAMES]
    world_r, world_t = world_r[:, idx], world_t[:, idx]
    rest_rot, _ = _frames(_rest(bones))
    frames = world_r @ rest_rot.numpy()  # (F, 20, 3, 3) kinematic bone frames, camera frame
    mc_rest = _rest(bones).metacarpal_rotations[0].numpy()  # (5, 3, 3) hand frame
    axes = _axes(bones)
    x = np.array([1.0, 0.0, 0.0])
    pose = np.zeros((bvh.num_frames, NUM_DOF))
    pose[:, :3] = world_t[:, 0]
    pose[:, 3:6] = matrix_to_axis_angle(torch.from_numpy(world_r[:, 0])).numpy()
    for c, finger in enumerate(FINGERS):
        i = BVH_NAMES.index(_chain_names(finger)[0])
        parent = world_r[:, 0] @ mc_rest[c]  # the frame the chain's first joint turns in
        if finger == "thumb":
            first, arch = frames[:, i], 0.0
        else:  # frames[:, i] is the metacarpal; the MCP is the next joint
            arch = _twist(np.swapaxes(parent, -1, -2) @ frames[:, i], x)
            first, i = frames[:, i + 1], i + 1
        t1, t2 = _two_axes(np.swapaxes(parent, -1, -2) @ first, axes[c, 0], axes[c, 1])
        f2 = _twist(np.swapaxes(frames[:, i], -1, -2) @ frames[:, i + 1], x)
        f3 = _twist(np.swapaxes(frames[:, i + 1], -1, -2) @ frames[:, i + 2], x)
        if finger == "thumb":
            names, values = ("cmc_flex", "cmc_abd", "mcp_flex", "ip_flex"), (t1, t2, f2, f3)
        else:
            names = ("cmc_flex", "mcp_flex", "mcp_abd", "pip_flex", "dip_flex")
            values = (arch, t1 - arch, t2, f2, f3)
        for name, v in zip(names, values, strict=True):
            pose[:, dof_index(f"{finger}_{name}")] = v
    return pose

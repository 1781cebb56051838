"""Motion capture out: a sequence of estimated joints as a BVH animation of the 30-DOF hand.

The pose-transfer pipeline's two inverse-kinematics steps (:mod:`handvox.hand.ik`), run on a
sequence of predictions instead of dataset labels: the hand's bone lengths fitted once per
sequence (:func:`~handvox.hand.ik.fit_subject` over its frames with a hand), then every frame's
30 joint angles solved on those bones (:func:`~handvox.hand.ik.solve_ik`, each frame started from
the previous one's solution), written with :func:`handvox.hand.hand_bvh.hand_to_bvh`: one BVH frame
per input frame, millimetres, camera frame (OpenCV axes), as every BVH handvox writes.

A frame without a hand holds the last frame's pose (the first frames, until a hand is seen, the
first hand's), so the animation keeps the input's timing; :class:`Mocap` says which frames are
held.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handvox.errors import DataError
from handvox.hand import ik
from handvox.hand.bvh import BVH
from handvox.hand.hand_bvh import hand_to_bvh
from handvox.hand.kinematics import HandBones


@dataclass
class Mocap:
    """A solved sequence.

    Attributes:
        bvh: the animation, one frame per input frame.
        pose: ``(T, 30)`` float32 poses (:mod:`handvox.hand.kinematics` layout).
        bones: the sequence's fitted hand (batch 1).
        residual_mm: ``(T,)`` mean distance between the solved hand's markers and the input
            joints; NaN on held frames.
        held: ``(T,)`` bool: frames without a hand, holding a neighbour's pose.
    """

    bvh: BVH
    pose: np.ndarray
    bones: HandBones
    residual_mm: np.ndarray
    held: np.ndarray


def solve_sequence(
    joints: np.ndarray,
    joint_set: str,
    fps: float,
    fit_frames: int = 300,
    fit_rounds: int = 3,
) -> Mocap:
    """:class:`Mocap` of ``(T, J, 3)`` joints (mm, camera frame; NaN rows: no hand) of
    ``joint_set`` at ``fps`` frames a second.

    Args:
        fit_frames, fit_rounds: of the bone fit (:func:`~handvox.hand.ik.fit_subject`): frames
            evenly spaced through the sequence's frames with a hand, and its rounds.
    Raises:
        DataError: no frame with a hand, a frame with only some joints.
    """
    xyz = np.asarray(joints, np.float64)
    if xyz.ndim != 3 or xyz.shape[-1] != 3:
        raise DataError(None, f"joints: expected (T, J, 3), got {xyz.shape}")
    finite = np.isfinite(xyz).all(axis=(1, 2))
    partial = ~finite & np.isfinite(xyz).any(axis=(1, 2))
    if partial.any():
        raise DataError(None, f"joints: frame {int(np.argmax(partial))} has only some joints")
    seen = np.flatnonzero(finite)
    if seen.size == 0:
        raise DataError(None, "joints: no frame has a hand; nothing to solve")
    obs = torch.as_tensor(xyz[seen], dtype=torch.float32)
    subject = ik.fit_subject(obs, joint_set, frames=fit_frames, rounds=fit_rounds)
    pose = np.zeros((len(xyz), 30), np.float32)
    residual = np.full(len(xyz), np.nan, np.float32)
    prev = None
    for k, i in enumerate(seen):
        # One frame at a time from the last solution: a sequence's poses change little between
        # frames, and the rigid start flips a fist's roll more easily than the last pose does.
        res = ik.solve_ik(obs[k : k + 1], subject, init=prev)
        prev = res.pose
        pose[i] = res.pose[0].numpy()
        residual[i] = float(res.residual[0].mean())
    held = ~finite
    last = seen[0]
    for i in range(len(xyz)):
        if finite[i]:
            last = i
        else:
            pose[i] = pose[last]
    bvh = hand_to_bvh(pose, subject.bones, frame_time=1.0 / fps)
    return Mocap(bvh, pose, subject.bones, residual, held)

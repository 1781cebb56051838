"""The one record type every dataset reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera
from handvox.joints import JointSet


@dataclass
class HandRecord:
    """One depth frame with its camera and (optionally) labelled joints.

    Attributes:
        depth: ``(H, W)`` float32 depth in mm as the file encodes it; 0 marks missing pixels, and
            datasets that mark background with a far value (NYU: 2001 mm) keep it.
        camera: intrinsics of ``depth``.
        joints_xyz: ``(J, 3)`` float32 mm, OpenCV frame (y down), or None when unlabelled.
        joints_uvd: ``(J, 3)`` float32 (u px, v px, d mm), or None when unlabelled.
        joint_set: the set ``joints_*`` are in.
        frame_id: a string that identifies the frame within its dataset (e.g. ``test/1/0000001``).
        clean_depth: ``(H, W)`` float32 noise-free depth paired with ``depth`` where the dataset
            has one (NYU ``synthdepth``, handvox's synthetic data), else None.
    """

    depth: np.ndarray
    camera: Camera
    joints_xyz: np.ndarray | None
    joints_uvd: np.ndarray | None
    joint_set: JointSet
    frame_id: str
    clean_depth: np.ndarray | None = None

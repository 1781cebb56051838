"""Labels for the IK tests: random poses seen from the camera, and the joint-limit check."""

from __future__ import annotations

import torch
from scipy.spatial.transform import Rotation

from handvox.hand.kinematics import pose_limits, random_pose

F64 = torch.float64


def random_poses(n: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    """Random articulation within limits, hands 350-550 mm away in any orientation."""
    pose = random_pose(n, gen, torch.float64)
    pose[:, :3] = torch.tensor([0.0, 0.0, 450.0], dtype=F64) + 40 * torch.randn(
        n, 3, generator=gen, dtype=F64
    )
    pose[:, 3:6] = torch.tensor(Rotation.random(n, int(gen.initial_seed())).as_rotvec())
    return pose.to(dtype)


def within_limits(pose: torch.Tensor) -> bool:
    lo, hi = pose_limits(dtype=pose.dtype)
    return bool(((pose >= lo - 1e-5) & (pose <= hi + 1e-5)).all())

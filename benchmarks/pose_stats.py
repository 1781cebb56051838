"""Distribution checks of the natural pose sampler: finger-curl correlations and how often a
sampled hand (average adult shape) lies wholly inside the NYU image. 10k poses, seed 0.

    python benchmarks/pose_stats.py
"""

import numpy as np
import torch

from handvox.camera import Camera
from handvox.hand.kinematics import DOF_NAMES, forward_kinematics
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import base_shape


def main() -> None:
    torch.set_num_threads(1)
    poses = sample_poses(torch.Generator().manual_seed(0), 10000)
    index = {n: k for k, n in enumerate(DOF_NAMES)}

    def corr(a: str, b: str) -> float:
        return float(np.corrcoef(poses[:, index[a]].numpy(), poses[:, index[b]].numpy())[0, 1])

    print(f"MCP flexion correlation ring-little {corr('ring_mcp_flex', 'little_mcp_flex'):.2f}")
    print(f"MCP flexion correlation middle-ring {corr('middle_mcp_flex', 'ring_mcp_flex'):.2f}")
    cam = Camera.preset("nyu")
    uv = cam.project(forward_kinematics(poses, base_shape("average_adult")).joints)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= cam.width - 1)
    inside &= (uv[..., 1] >= 0) & (uv[..., 1] <= cam.height - 1)
    print(f"all joints inside the NYU image: {100 * inside.all(-1).double().mean():.2f} %")


if __name__ == "__main__":
    main()

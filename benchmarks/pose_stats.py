"""Distribution checks of the natural pose sampler: finger-curl correlations and how often a
sampled hand (average adult shape) lies wholly inside the NYU image. 10k poses, seed 0."""

import numpy as np
import torch

from handvox.camera import Camera
from handvox.kinematics import DOF_NAMES, forward_kinematics
from handvox.poses import sample_poses
from handvox.shapes import base_shape

torch.set_num_threads(1)
g = torch.Generator().manual_seed(0)
p = sample_poses(g, 10000)
i = {n: k for k, n in enumerate(DOF_NAMES)}
c = lambda a, b: np.corrcoef(p[:, i[a]].numpy(), p[:, i[b]].numpy())[0, 1]
print(
    "corr ring-little MCP",
    round(c("ring_mcp_flex", "little_mcp_flex"), 2),
    "middle-ring",
    round(c("middle_mcp_flex", "ring_mcp_flex"), 2),
)
bones = base_shape("average_adult")
j = forward_kinematics(p, bones).joints
cam = Camera.preset("nyu")
uv = cam.project(j)
ins = ((uv[..., 0] >= 0) & (uv[..., 0] <= 639) & (uv[..., 1] >= 0) & (uv[..., 1] <= 479)).all(-1)
print("all joints in NYU image:", round(100 * ins.double().mean().item(), 2), "%")

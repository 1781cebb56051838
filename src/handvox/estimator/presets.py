"""Named estimators: the paper's (Table 3 networks at 60^3 x 5 mm) and a CPU-sized one."""

from __future__ import annotations

from handvox.estimator.networks import PoseNetConfig, RefineNetConfig
from handvox.estimator.volume import VolumeConfig
from handvox.estimator.weights import EstimatorConfig
from handvox.joints import get_joint_set


def paper_estimator(joint_set: str, refine: bool) -> EstimatorConfig:
    """The paper's estimator (60^3 voxels of 5 mm, Table 3 networks) for ``joint_set``."""
    j = len(get_joint_set(joint_set))
    return EstimatorConfig(
        joint_set=joint_set,
        pose=PoseNetConfig(num_joints=j),
        refine=RefineNetConfig() if refine else None,
    )


def small_estimator(joint_set: str, refine: bool, size: int = 32) -> EstimatorConfig:
    """A CPU-sized estimator: the same 300 mm cube in ``size``^3 voxels (32: 9.375 mm), the
    paper's convolutions, FC layers of 1024 and a refinement net of half the channels."""
    j = len(get_joint_set(joint_set))
    return EstimatorConfig(
        joint_set=joint_set,
        volume=VolumeConfig(size=size, voxel_mm=300.0 / size),
        pose=PoseNetConfig(input_size=size, fc=(1024, 1024), num_joints=j),
        refine=RefineNetConfig(encoder=((16, 16), (32, 32)), bottleneck=(64, 64),
                               decoder=((32, 32), (16, 8))) if refine else None,
    )  # fmt: skip

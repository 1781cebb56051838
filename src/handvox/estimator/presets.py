"""Named estimators: the paper's (Table 3 networks at 60^3 x 5 mm), a CPU-sized one, the
compact pose net of the shipped model, and the compact encoder with the dense head."""

from __future__ import annotations

import dataclasses

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


def compact_estimator(joint_set: str = "canonical21") -> EstimatorConfig:
    """handvox's compact pose net, the shipped model's (docs/model-card.md): the paper's design
    at a size a CPU trains in an hour: the 300 mm cube in 32^3 voxels, four levels of 3^3
    convolutions with batch normalisation (16 | 32, 32 | 64, 64 | 128), FC 1024-1024 with
    dropout 0.3; 2.59 M parameters (canonical 21 joints)."""
    est = small_estimator(joint_set, refine=False, size=32)
    pose = dataclasses.replace(est.pose, channels=((16,), (32, 32), (64, 64), (128,)), kernel=3,
                               batch_norm=True, dropout=0.3)  # fmt: skip
    return dataclasses.replace(est, pose=pose)


def dense_head(pose: PoseNetConfig, decoder: tuple[int, ...] = (64, 32)) -> PoseNetConfig:
    """``pose``'s encoder with the dense head (:mod:`handvox.estimator.networks`, (c)) in place of
    its FC layers; ``decoder`` channels coarse to fine (default: the compact encoder's at 8^3
    and 16^3, so its feature maps add without a projection)."""
    return dataclasses.replace(pose, head="dense", fc=(), decoder=decoder)


def dense_estimator(joint_set: str = "canonical21") -> EstimatorConfig:
    """The compact estimator with the dense head: 16^3 heatmaps over the 300 mm cube, a
    soft-argmax per joint; 0.58 M parameters (canonical 21 joints)."""
    est = compact_estimator(joint_set)
    return dataclasses.replace(est, pose=dense_head(est.pose))

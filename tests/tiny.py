"""Tiny estimators for tests: the networks' plumbing, never their accuracy, is under test with
these (16^3 volume, a few channels; untrained unless a test trains them)."""

from __future__ import annotations

from pathlib import Path

import torch

from handvox.estimator.networks import PoseNetConfig, RefineNetConfig
from handvox.estimator.volume import VolumeConfig
from handvox.estimator.weights import EstimatorConfig, build_networks, save_model
from handvox.joints import get_joint_set

TINY_REFINE = RefineNetConfig(encoder=((4, 4), (8, 8)), bottleneck=(8, 8), decoder=((8, 8), (4, 4)))


def tiny_config(
    joint_set: str = "nyu14",
    refine: bool = False,
    size: int = 16,
    fc: tuple[int, ...] = (32, 32),
    dropout: float = 0.0,
    **estimator,
) -> EstimatorConfig:
    """A tiny estimator of ``joint_set``: the 300 mm cube in ``size``^3 voxels, two conv levels
    of 4 channels, FC ``fc``; with ``refine`` a refinement net of 4-8 channels. ``estimator``:
    more EstimatorConfig fields (test_rotations_deg, recentre, ...)."""
    return EstimatorConfig(
        joint_set=joint_set,
        volume=VolumeConfig(size=size, voxel_mm=300.0 / size),
        pose=PoseNetConfig(input_size=size, channels=(4, 4), fc=fc, dropout=dropout,
                           num_joints=len(get_joint_set(joint_set))),
        refine=TINY_REFINE if refine else None,
        **estimator,
    )  # fmt: skip


def save_tiny_model(folder: Path, config: EstimatorConfig | None = None, seed: int = 0) -> Path:
    """A model folder with ``config`` (default :func:`tiny_config`) and seeded random weights."""
    config = config or tiny_config()
    torch.manual_seed(seed)
    save_model(folder, config, *build_networks(config))
    return folder

"""Training's online augmentation, the random draw only: rotation about the viewing axis, cube
scale, COM jitter and an occluder in front of the hand for each sample (:func:`sample_params`).
What a draw does to a sample (the cube it samples, the target it encodes) is
:mod:`handvox.estimator.volume`'s, the same code that builds test-time views, and
:func:`handvox.synth.raycast.occlude`'s; keeping the draw apart keeps inference free of training
code."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation drawn for every training sample.

    Attributes:
        rotation_deg: angle about the viewing axis, uniform in ``[-rotation_deg, rotation_deg]``.
        scale: cube scale factor, uniform in ``[scale[0], scale[1]]`` (> 1: the hand looks
            smaller to the network).
        com_jitter_mm: standard deviation of a Gaussian offset added to the COM on each axis
            (clipped at 3 sigma), mimicking the error of the COM found at test time.
        label_centre_prob: chance that a sample's cube is centred on the mean of its
            labelled joints (plus the jitter) instead of the segmentation's COM: what the
            estimator's re-centring pass (``EstimatorConfig.recentre``) feeds the network, the
            mean of the joints it predicted first. Labels place training cubes only.
        occluder_prob: chance that a sample gets a sphere pasted into its depth in front of
            one of its joints (:func:`handvox.synth.raycast.occlude`; its pixels leave the hand
            mask, as the locator leaves a held object out): fingers hidden by something no
            training frame held, so that a model learns to see past objects it never saw.
        enabled: False turns all of it off (the volume is then the plain TSDF).
    """

    rotation_deg: float = 40.0
    scale: tuple[float, float] = (0.9, 1.1)
    com_jitter_mm: float = 8.0
    label_centre_prob: float = 0.0
    occluder_prob: float = 0.0
    enabled: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if (
            not (0 < lo <= hi)
            or self.rotation_deg < 0
            or self.com_jitter_mm < 0
            or not 0 <= self.label_centre_prob <= 1
            or not 0 <= self.occluder_prob <= 1
        ):
            raise ValueError(f"invalid augmentation ranges: {self}")


# The occluder's radius (mm): a finger's width to a fist-sized ball, as the graspable objects of
# handvox.synth.objects run.
OCCLUDER_RADIUS_MM = (12.0, 40.0)
# Its centre about the joint it hides: sideways (x, y) with this spread, and nearer the camera
# by up to its radius plus this (so that it stands in front of the joint, not inside the hand).
OCCLUDER_SIDE_MM = 10.0
OCCLUDER_FRONT_MM = 10.0


@dataclass(frozen=True)
class AugmentParams:
    """One sample's draw: ``angle`` (rad), ``scale``, ``jitter`` ``(3,)`` mm, whether the cube
    is centred on the labelled joints (``label_centre``), and an occluder or none
    (``occluder``: the joint it hides, its radius, its offset ``(3,)`` from that joint, mm)."""

    angle: float = 0.0
    scale: float = 1.0
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    label_centre: bool = False
    occluder: tuple[int, float, tuple[float, float, float]] | None = None

    @property
    def identity(self) -> bool:
        return self.angle == 0.0 and self.scale == 1.0 and not any(self.jitter)


def sample_params(
    rng: np.random.Generator, cfg: AugmentConfig, num_joints: int = 21
) -> AugmentParams:
    """Draw one sample's augmentation (the identity when ``cfg.enabled`` is False) for a hand
    of ``num_joints`` joints."""
    if not cfg.enabled:
        return AugmentParams()
    angle = float(np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)))
    scale = float(rng.uniform(*cfg.scale))
    jitter = np.clip(rng.standard_normal(3), -3, 3) * cfg.com_jitter_mm
    # Drawn last, and only when asked for, so that runs without it keep their streams.
    label = bool(cfg.label_centre_prob > 0 and rng.uniform() < cfg.label_centre_prob)
    occluder = None
    if cfg.occluder_prob > 0 and rng.uniform() < cfg.occluder_prob:  # likewise
        joint = int(rng.integers(num_joints))
        radius = float(rng.uniform(*OCCLUDER_RADIUS_MM))
        side = rng.standard_normal(2) * OCCLUDER_SIDE_MM
        front = -rng.uniform(0.0, radius + OCCLUDER_FRONT_MM)
        occluder = (joint, radius, (float(side[0]), float(side[1]), float(front)))
    return AugmentParams(angle, scale, tuple(float(v) for v in jitter), label, occluder)

"""Training's augmentation draw: ranges, the identity, and draws that repeat with their seed."""

from __future__ import annotations

import numpy as np
import pytest

from handvox.train.augment import AugmentConfig, sample_params


def test_sample_params_ranges():
    cfg = AugmentConfig(rotation_deg=30, scale=(0.9, 1.2), com_jitter_mm=5)
    draws = [sample_params(np.random.default_rng([3, i]), cfg) for i in range(400)]
    angles = np.array([d.angle for d in draws])
    scales = np.array([d.scale for d in draws])
    jit = np.array([d.jitter for d in draws])
    assert np.abs(angles).max() <= np.deg2rad(30) and np.abs(angles).max() > np.deg2rad(25)
    assert scales.min() >= 0.9 and scales.max() <= 1.2 and np.ptp(scales) > 0.25
    assert np.abs(jit).max() <= 15 and 4 < jit.std() < 6
    assert sample_params(np.random.default_rng(0), AugmentConfig(enabled=False)).identity
    # The same seed gives the same draw (what makes resumed runs repeat their augmentation).
    assert sample_params(np.random.default_rng([3, 7]), cfg) == draws[7]
    with pytest.raises(ValueError):
        AugmentConfig(scale=(1.2, 0.9))

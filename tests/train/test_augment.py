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


def test_occluders_drawn_only_when_asked_and_in_their_ranges():
    """occluder_prob 0 draws no occluder and leaves the other draws' stream as it was;
    occluder_prob 0.5 gives one to about half the samples, each in front of a joint of the hand,
    within its ranges."""
    from handvox.train.augment import OCCLUDER_FRONT_MM, OCCLUDER_RADIUS_MM

    plain = AugmentConfig()
    half = AugmentConfig(occluder_prob=0.5)
    draws = [sample_params(np.random.default_rng([5, i]), half, 21) for i in range(400)]
    for i, d in enumerate(draws[:50]):
        p = sample_params(np.random.default_rng([5, i]), plain, 21)
        assert p.occluder is None and (p.angle, p.scale, p.jitter) == (d.angle, d.scale, d.jitter)
    occ = [d.occluder for d in draws if d.occluder is not None]
    assert 160 < len(occ) < 240
    joints = {j for j, _, _ in occ}
    radii = np.array([r for _, r, _ in occ])
    fronts = np.array([o[2] for _, _, o in occ])
    assert joints == set(range(21))
    assert OCCLUDER_RADIUS_MM[0] <= radii.min() and radii.max() <= OCCLUDER_RADIUS_MM[1]
    assert (fronts <= 0).all() and (-fronts <= radii + OCCLUDER_FRONT_MM).all()
    with pytest.raises(ValueError):
        AugmentConfig(occluder_prob=1.5)

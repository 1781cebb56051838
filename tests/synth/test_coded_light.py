"""Coded light (SR300/SR305) noise: analytic scenes with the NYU camera, each effect alone."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from handvox.synth.coded_light import CodedLightConfig, add_coded_light_noise
from tests.synth.test_noise import CAM, _edge_distance, box_face, finish, plane, tilted

QUIET = dict(sigma_500_mm=0.0, shadow=False, lateral_scale=0.0, edge_dropout_prob=(),
             edge_outlier_prob=0.0, holes_per_10k_px=0.0, grazing_dropout=False,
             depth_unit_mm=0.0)  # fmt: skip


def coded(clean, seed=0, **kw) -> np.ndarray:
    cfg = CodedLightConfig(**{**QUIET, **kw})
    return add_coded_light_noise(clean, CAM, np.random.default_rng(seed), cfg)


def wall(z: float) -> np.ndarray:
    return finish(plane([0, 0, -1], [0, 0, z]))


def box_on_wall(z_box: float = 500.0, z_wall: float = 800.0) -> np.ndarray:
    return finish(wall(z_wall), box_face(z_box, 200, 440, 120, 360))


def test_quiet_model_is_the_clean_depth():
    clean = box_on_wall()
    np.testing.assert_allclose(coded(clean), clean, rtol=1e-6)


@pytest.mark.parametrize("corr", [0.0, 0.9])
def test_noise_grows_with_the_square_of_depth(corr):
    stds = {}
    for z in (300.0, 600.0, 1200.0):
        clean = wall(z)
        stds[z] = float(np.std(coded(clean, sigma_500_mm=0.3, correlated_fraction=corr) - clean))
    # the correlated field has fewer independent samples: a looser check
    rel = 0.03 if corr == 0 else 0.12
    for z, s in stds.items():
        assert s == pytest.approx(0.3 * (z / 500.0) ** 2, rel=rel)


def test_eighth_millimetre_steps_and_the_range():
    depth, _ = tilted(30, 700)
    clean = finish(depth)
    raw = coded(clean, sigma_500_mm=0.2, depth_unit_mm=0.125)
    ok = raw > 0
    np.testing.assert_allclose(raw[ok] * 8, np.rint(raw[ok] * 8), atol=1e-4)
    assert len(np.unique(raw[ok] % 1.0)) == 8  # every eighth is used
    assert (coded(wall(180.0)) == 0).all() and (coded(wall(1600.0)) == 0).all()
    assert (coded(wall(250.0)) > 0).all() and (coded(wall(1400.0)) > 0).all()


@pytest.mark.parametrize("side", [-1, 1])
def test_projector_occlusion_side(side):
    z_near, z_far = 500.0, 800.0
    clean = finish(wall(z_far), box_face(z_near, 250, 350, 200, 280))
    raw = coded(clean, shadow=True, baseline_mm=25.0, projector_side=side)
    width = CAM.fx * 25.0 * (1 / z_near - 1 / z_far)
    hole = raw[200:280] == 0
    assert np.all(np.abs(hole.sum(1) - width) <= 1)
    right, left = hole[:, 350:].any(), hole[:, :250].any()
    assert (right, left) == ((True, False) if side < 0 else (False, True))


def test_ragged_rims_only_drop_pixels_near_edges():
    clean = finish(box_face(500.0, 200, 440, 120, 360))
    raw = coded(clean, lateral_scale=1.5, lateral_band_px=2)
    dropped = (raw == 0) & (clean > 0)
    dist = _edge_distance(clean, 15.0)
    assert dropped.any() and not dropped[dist > 2].any()
    ok = raw > 0
    np.testing.assert_array_equal(raw[ok], clean[ok])  # depth kept: only validity is jittered
    first = (raw[130:350, 190:260] > 0).argmax(1)  # the left edge's column varies row to row
    assert first.std() > 0.3


def test_edge_dropouts_and_outliers_stay_on_edges():
    clean = box_on_wall()
    dist = _edge_distance(clean, 15.0)
    raw = coded(clean, edge_dropout_prob=(0.5, 0.2), edge_dropout_block_px=1)
    lost = raw == 0
    assert not lost[dist >= 2].any()
    assert np.mean(lost[dist == 0]) == pytest.approx(0.5, abs=0.06)
    assert np.mean(lost[dist == 1]) == pytest.approx(0.2, abs=0.06)
    raw = coded(clean, edge_outlier_prob=0.2, edge_outlier_mm=(5.0, 40.0))
    off = clean - raw
    moved = np.abs(off) > 1e-3
    assert moved.any() and not moved[dist > 0].any()
    assert (off[moved] >= 5.0 - 1e-3).all() and (off[moved] <= 40.0 + 1e-3).all()  # nearer
    assert np.mean(moved[dist == 0]) == pytest.approx(0.2, abs=0.05)


def test_holes_are_small_blobs():
    clean = wall(600.0)
    counts = []
    for seed in range(4):
        lab, n = ndimage.label(coded(clean, seed=seed, holes_per_10k_px=1.0) == 0)
        counts.append(n)
        assert np.bincount(lab.ravel())[1:].max() <= 9 * 9
    assert np.mean(counts) == pytest.approx(clean.size / 1e4, rel=0.35)


def test_deterministic_and_background_invalid():
    clean = box_on_wall()
    clean[:, :100] = 0
    cfg = CodedLightConfig()
    a, b, c = (add_coded_light_noise(clean, CAM, np.random.default_rng(s), cfg) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.3
    assert (a[:, :100] == 0).all() and a.dtype == np.float32


def test_bad_config():
    with pytest.raises(ValueError, match="projector_side"):
        CodedLightConfig(projector_side=0)
    with pytest.raises(ValueError, match="block"):
        CodedLightConfig(lateral_block_px=0)

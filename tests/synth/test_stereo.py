"""Active stereo noise: analytic scenes with the NYU camera, each effect alone."""

from __future__ import annotations

import numpy as np
import pytest

from handvox.synth.stereo import StereoConfig, add_stereo_noise
from tests.synth.test_noise import CAM, _edge_distance, box_face, finish, plane, tilted

B, F = 50.0, 600.0  # baseline (mm) and the sensor's focal length (px) of these tests
QUIET = dict(baseline_mm=B, focal_px=F, subpixel_rms_px=0.0, subpixel_step_px=1e-9,
             occlusion=False, fattening_px=0.0, speckle_per_10k_px=0.0, grazing_dropout=False,
             depth_unit_mm=0.0)  # fmt: skip


def stereo(clean, seed=0, **kw) -> np.ndarray:
    cfg = StereoConfig(**{**QUIET, **kw})
    return add_stereo_noise(clean, CAM, np.random.default_rng(seed), cfg)


def wall(z: float) -> np.ndarray:
    return finish(plane([0, 0, -1], [0, 0, z]))


def test_quiet_model_is_the_clean_depth_right_of_the_band():
    clean = wall(1000.0)
    raw = stereo(clean)
    band = int(np.ceil(CAM.fx * B / 1000.0))  # the left imager sees these, the right does not
    np.testing.assert_allclose(raw[:, band + 1 :], clean[:, band + 1 :], rtol=1e-5)
    assert (raw[:, : band - 1] == 0).all()


def test_error_grows_quadratically_with_distance():
    # depth RMS error = z^2 * subpixel / (f b) ([BKM]); the field and the white share each have
    # unit variance
    stds = {}
    for z in (500.0, 1000.0, 2000.0):
        clean = wall(z)
        raw = stereo(clean, subpixel_rms_px=0.08)
        ok = (raw > 0) & (clean > 0)
        stds[z] = float(np.std((raw - clean)[ok]))
        assert stds[z] == pytest.approx(z * z * 0.08 / (F * B), rel=0.1)
    assert stds[1000.0] / stds[500.0] == pytest.approx(4.0, rel=0.15)
    assert stds[2000.0] / stds[1000.0] == pytest.approx(4.0, rel=0.15)


def test_disparity_quantisation_steps():
    depth, _ = tilted(20, 1000)  # a slope: many disparities
    clean = finish(depth)
    raw = stereo(clean, subpixel_step_px=1 / 32)
    levels = np.unique(raw[raw > 0]).astype(np.float64)
    disp = F * B / levels * 32  # whole 32nds of a pixel
    np.testing.assert_allclose(disp, np.rint(disp), atol=1e-3)
    near = levels[(levels > 950) & (levels < 1050)]
    assert np.median(np.diff(near)) == pytest.approx(1000.0**2 / (F * B) / 32, rel=0.05)


def test_depth_unit_rounds_last():
    raw = stereo(wall(900.0), subpixel_rms_px=0.1, subpixel_step_px=1 / 32, depth_unit_mm=1.0)
    ok = raw > 0
    assert ok.mean() > 0.9 and np.array_equal(raw[ok], np.rint(raw[ok]))


def test_occlusion_holes_fall_left_of_near_objects():
    z_near, z_far = 600.0, 1000.0
    u0, u1, v0, v1 = 250, 350, 200, 280
    clean = finish(wall(z_far), box_face(z_near, u0, u1, v0, v1))
    raw = stereo(clean, occlusion=True)
    width = CAM.fx * B * (1 / z_near - 1 / z_far)
    hole = raw == 0
    band = int(np.ceil(CAM.fx * B / z_far))
    hole[:, : band + 1] = False  # the image's left band, tested above
    assert (raw[v0:v1, u0:u1] == z_near).all()
    widths = hole[v0:v1].sum(1)
    assert np.all(np.abs(widths - width) <= 1)
    assert not hole[v0:v1, u1:].any()  # nothing on the right
    assert hole[v0:v1, u0 - 1].all()  # and it hugs the left edge
    assert not hole[:v0].any() and not hole[v1:].any()


def test_fattening_spreads_the_near_surface_a_little_only():
    u0, u1, v0, v1 = 250, 350, 200, 280
    clean = finish(wall(1000.0), box_face(600.0, u0, u1, v0, v1))
    raw = stereo(clean, fattening_px=2.0)
    fat = (raw == 600) & (clean == 1000)
    dist = _edge_distance(clean, 20.0)
    assert fat.sum() > 200
    assert not fat[dist > 2].any()
    assert (raw[clean == 600] == 600).all()  # the box itself keeps its depth
    # and onto nothing beside it
    alone = stereo(finish(box_face(600.0, u0, u1, v0, v1)), fattening_px=2.0)
    grown = alone > 0
    assert grown.sum() > (u1 - u0) * (v1 - v0) and not grown[: v0 - 2].any()


def test_speckle_blobs_are_holes_or_false_matches():
    clean = wall(1000.0)
    quiet = stereo(clean, subpixel_step_px=1 / 32)
    raw = stereo(clean, subpixel_step_px=1 / 32, speckle_per_10k_px=2.0,
                 speckle_outlier_fraction=0.5, speckle_disparity_px=(0.5, 2.0))  # fmt: skip
    diff = (raw != quiet) & (quiet > 0)
    holes, wrong = diff & (raw == 0), diff & (raw > 0)
    assert holes.any() and wrong.any()
    # a wrong match is off by 0.5-2 px of disparity out of 30: at 1000 mm, 16-71 mm
    off = np.abs(raw[wrong] - quiet[wrong])
    assert off.min() > 16.4 - 1.0 and off.max() < 71.5 + 2.0
    n = diff.sum() / 2.0 / (np.pi * 2.0**2)  # ~ blobs of ~2 px radius
    assert n == pytest.approx(2.0 * clean.size / 1e4, rel=0.5)


def test_range_ends():
    near = F * B / 126.0  # 238 mm: the disparity search range's end
    assert StereoConfig(baseline_mm=B, focal_px=F).min_depth_mm == pytest.approx(near)
    assert (stereo(wall(near - 10.0)) == 0).all()
    assert (stereo(wall(near + 20.0))[:, 200:] > 0).all()
    assert (stereo(wall(7000.0), max_depth_mm=6000.0) == 0).all()


def test_grazing_dropout():
    depth, _ = tilted(80, 1000)
    depth[:, :310], depth[:, 330:] = np.inf, np.inf
    clean = finish(depth)
    raw = stereo(clean, grazing_dropout=True, grazing_start_deg=75.0, grazing_full_deg=85.0)
    inner = clean > 0
    inner[:, [310, 329]] = False
    assert np.mean(raw[inner] == 0) == pytest.approx(0.5, abs=0.08)


def test_deterministic_and_background_invalid():
    clean = finish(wall(1000.0), box_face(600.0, 250, 350, 200, 280))
    clean[:100] = 0
    a, b, c = (add_stereo_noise(clean, CAM, np.random.default_rng(s)) for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.1
    assert a.dtype == np.float32 and (a[:97] == 0).all()  # fattening reaches 2 px at most
    assert (add_stereo_noise(np.zeros((480, 640)), CAM, np.random.default_rng(0)) == 0).all()


def test_bad_config():
    with pytest.raises(ValueError, match="baseline_mm"):
        StereoConfig(baseline_mm=0.0)
    with pytest.raises(ValueError, match="correlated_fraction"):
        StereoConfig(correlated_fraction=2.0)

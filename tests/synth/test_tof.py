"""Time-of-flight noise: analytic scenes with the NYU camera, each effect alone."""

from __future__ import annotations

import numpy as np
import pytest

from handvox.synth.tof import ToFConfig, add_tof_noise
from tests.synth.test_noise import CAM, _edge_distance, box_face, finish, plane, rays, tilted

QUIET = dict(sigma_ref_mm=0.0, multipath_gain=0.0, flying_pixels=False, depth_unit_mm=0.0,
             min_amplitude=1e-6)  # fmt: skip


def tof(clean, seed=0, normals=None, **kw) -> np.ndarray:
    cfg = ToFConfig(**{**QUIET, **kw})
    return add_tof_noise(clean, CAM, np.random.default_rng(seed), cfg, normals=normals)


def fall(cam=CAM) -> np.ndarray:
    """cos^4 of each pixel's field angle."""
    r = rays(cam)
    return (1.0 / (r * r).sum(-1)) ** 2


def box_on_wall() -> np.ndarray:
    return finish(plane([0, 0, -1], [0, 0, 1000]), box_face(700, 200, 440, 120, 360))


def test_quiet_model_is_the_clean_depth():
    clean = box_on_wall()
    np.testing.assert_allclose(tof(clean), clean, rtol=1e-6)


def test_flying_pixels_only_at_edges_and_between_the_two_depths():
    clean = box_on_wall()
    raw = tof(clean, flying_pixels=True, flying_keep=1.0)
    moved = np.abs(raw - clean) > 0.01
    dist = _edge_distance(clean, 20.0)
    assert moved.sum() > 500  # the box's whole outline
    assert not moved[dist > 0].any()  # only pixels beside the jump itself
    mid = raw[moved]
    assert (mid > 700).all() and (mid < 1000).all()
    # pulled towards the brighter (nearer) surface: the box's pixels keep more than half of
    # their footprint, and its return is (1000/700)^2 stronger than the wall's
    box_side = moved & (clean == 700)
    assert np.median(raw[box_side]) < 700 + 0.25 * 300


def test_edge_filter_drops_the_share_not_kept():
    clean = box_on_wall()
    mixed = (_edge_distance(clean, 20.0) == 0) & (clean > 0)
    raw = tof(clean, flying_pixels=True, flying_keep=0.3)
    lost = np.mean(raw[mixed] == 0)
    assert lost == pytest.approx(0.7, abs=0.06)
    assert not (raw[~mixed] == 0).any()


def test_rim_against_nothing_keeps_its_depth_with_a_weaker_signal():
    clean = finish(box_face(700, 200, 440, 120, 360))
    raw = tof(clean, flying_pixels=True, flying_keep=0.0)
    assert set(np.unique(raw)) <= {0.0, 700.0}  # nothing to mix with: no flying pixels
    # a weak return fails the signal cut on the rim only: half the footprint at most
    dim = tof(clean, flying_pixels=True, albedo=1.0, min_amplitude=1.5)
    rim = _edge_distance(clean, 20.0) == 0
    inner = (clean > 0) & ~rim
    assert (dim[inner] == 700).all()  # (1000/700)^2 ~ 2.04 > 1.5
    assert (dim[rim & (clean > 0)] == 0).mean() > 0.5


def test_noise_follows_the_amplitude():
    # sigma = sigma_ref sqrt((a + b) / (1 + b)) / a, a = albedo cos (1000 / z)^2 cos^4(field)
    cfg = dict(sigma_ref_mm=1.5, ambient_ratio=0.3, albedo=0.8)
    stds, models = [], []
    for z in (800.0, 1600.0):
        clean = finish(plane([0, 0, -1], [0, 0, z]))
        raw = tof(clean, **cfg)
        r = rays()
        cos_incidence = 1.0 / np.linalg.norm(r, axis=-1)  # the plane faces the optical axis
        a = 0.8 * cos_incidence * (1000.0 / z) ** 2 * fall()
        sig = 1.5 * np.sqrt((a + 0.3) / 1.3) / a
        stds.append(np.std(raw - clean))
        models.append(np.sqrt(np.mean(sig**2)))
        assert np.abs(np.mean(raw - clean)) < 0.05  # unbiased
    np.testing.assert_allclose(stds, models, rtol=0.03)
    assert stds[1] > 2.0 * stds[0]  # a falls 4x; sqrt(a + b) / a between 2x and 4x


def test_noise_grows_towards_the_corners():
    clean = finish(plane([0, 0, -1], [0, 0, 1000]))
    d = tof(clean, sigma_ref_mm=1.0) - clean
    centre, corner = d[200:280, 280:360], d[:80, :80]
    assert np.std(corner) > 1.3 * np.std(centre)  # cos^4 of ~32 deg: 0.52 of the amplitude


@pytest.mark.parametrize(("deg", "lost"), [(30.0, 0.0), (60.0, 0.0), (84.0, 1.0)])
def test_low_signal_at_grazing_angles_is_invalid(deg, lost):
    depth, _ = tilted(deg, 1000)
    depth[:, :310] = np.inf  # rays within 1 degree of the optical axis
    depth[:, 330:] = np.inf
    clean = finish(depth)
    raw = tof(clean, albedo=1.0, min_amplitude=0.2)  # cos(incidence) * (1000/z)^2 < 0.2
    inner = clean > 0
    inner[:, [310, 329]] = False  # normals need both neighbours
    assert np.mean(raw[inner] == 0) == pytest.approx(lost, abs=0.02)


def _v(apex_z: float, sign: float) -> np.ndarray:
    """Two planes at 45 deg about the y axis meeting in a vertical crease at the image centre
    at depth apex_z: sign -1, a valley (z = apex - |x|: concave, the crease farthest); +1, a
    ridge (z = apex + |x|)."""
    rx = np.abs(rays()[..., 0] / rays()[..., 2])
    d = apex_z / (1.0 - sign * rx)
    d[:, :200], d[:, 440:] = np.inf, np.inf
    return finish(d)


def test_multipath_biases_concave_regions_only_and_boundedly():
    gain, radius = 0.1, 30.0
    valley, ridge = _v(1000.0, -1.0), _v(900.0, 1.0)
    crease = np.s_[100:380, 315:325]
    bias_v = tof(valley, multipath_gain=gain, multipath_radius_mm=radius) - valley
    bias_r = tof(ridge, multipath_gain=gain, multipath_radius_mm=radius) - ridge
    assert bias_v[crease].mean() > 0.5  # too far in the valley
    assert (bias_v[valley > 0] >= -1e-3).all() and bias_v.max() <= gain * radius + 1e-3
    assert np.abs(bias_r[crease]).max() < 1e-3  # nothing on the ridge


@pytest.mark.parametrize("unit", [1.0, 0.25])
def test_depth_unit_steps_and_range(unit):
    clean = box_on_wall()
    clean[:50] = 6000.0  # beyond the range
    raw = tof(clean, sigma_ref_mm=1.0, depth_unit_mm=unit, flying_pixels=True)
    ok = raw > 0
    np.testing.assert_allclose(raw[ok] / unit, np.rint(raw[ok] / unit), atol=1e-6)
    assert (raw[:48] == 0).all() and raw.dtype == np.float32 and raw.shape == clean.shape


def test_deterministic_and_background_invalid():
    clean = box_on_wall()
    clean[:, :100] = 0
    clean[:20] = np.nan
    cfg = ToFConfig()
    a, b, c = (add_tof_noise(clean, CAM, np.random.default_rng(s), cfg) for s in (3, 3, 4))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.3
    assert (a[:, :100] == 0).all() and (a[:20] == 0).all() and not np.isnan(a).any()
    flagged = add_tof_noise(clean, CAM, np.random.default_rng(3), cfg, invalid_value=-1)
    assert (flagged[:20] == -1).all()
    empty = add_tof_noise(np.zeros((480, 640), np.float32), CAM, np.random.default_rng(0))
    assert (empty == 0).all()


def test_bad_config():
    with pytest.raises(ValueError, match="flying_keep"):
        ToFConfig(flying_keep=1.5)
    with pytest.raises(ValueError, match="albedo"):
        ToFConfig(albedo=0.0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        add_tof_noise(np.zeros((2, 3, 4)), CAM, np.random.default_rng(0))

"""Sensor noise model: analytic scenes ray-cast with the NYU camera, and the real NYU frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from handvox.camera import Camera
from handvox.synth.noise import (
    NoiseConfig,
    _crop_kernel,
    _edge_distance_kernel,
    _normal4,
    _nth_unset,
    _unset_per_row,
    _valid_box,
    add_sensor_noise,
    crop_scene,
    random_blobs,
)
from tests.synth.oracles import axial_sigma, lateral_sigma, smooth_field, surface_normals

CAM = Camera.preset("nyu")
BF = 75.0 * 580.0  # NoiseConfig's baseline x sensor focal length, mm px


def rays(cam: Camera = CAM) -> np.ndarray:
    """``(H, W, 3)`` rays through each pixel with z = 1, so a hit at ray * t has depth t."""
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    return np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)


def plane(normal, point) -> np.ndarray:
    n = np.asarray(normal, float)
    t = (n @ np.asarray(point, float)) / (rays() @ n)
    return np.where(t > 0, t, np.inf)


def tilted(deg: float, z0: float) -> tuple[np.ndarray, np.ndarray]:
    """Plane through (0, 0, z0) turned ``deg`` about the y axis; (depth, unit normal to camera)."""
    a = math.radians(deg)
    n = np.array([math.sin(a), 0.0, -math.cos(a)])
    return plane(n, [0, 0, z0]), n


def sphere(centre, radius: float) -> np.ndarray:
    r, c = rays(), np.asarray(centre, float)
    a, b = (r * r).sum(-1), r @ c
    disc = b * b - a * (c @ c - radius**2)
    return np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)


def box_face(z: float, u0: int, u1: int, v0: int, v1: int) -> np.ndarray:
    """A fronto-parallel rectangle at depth z covering pixel columns u0:u1 and rows v0:v1."""
    d = np.full((CAM.height, CAM.width), np.inf)
    d[v0:v1, u0:u1] = z
    return d


def finish(*depths: np.ndarray) -> np.ndarray:
    d = np.minimum.reduce(depths)
    return np.where(np.isfinite(d), d, 0).astype(np.float32)


def scene() -> np.ndarray:
    """Wall at 1000 mm, a sphere, a tilted plane and a box step in front of it."""
    wall = plane([0, 0, -1], [0, 0, 1000])
    ball = sphere([-200, -60, 700], 70)
    slab, _ = tilted(-45, 950)  # 800 mm at its left edge, nearer to the right
    slab[:, :420] = np.inf
    slab[:150] = np.inf
    step = box_face(600, 250, 350, 300, 380)
    return finish(wall, ball, slab, step)


def only(**on) -> NoiseConfig:
    """Every component off except those named (and any field overrides)."""
    return NoiseConfig(**{**NoiseConfig.none().__dict__, **on})


def noisy(clean, config, seed=0, **kw) -> np.ndarray:
    return add_sensor_noise(clean, CAM, np.random.default_rng(seed), config, **kw)


def residual_std(clean, raw, mask=None) -> float:
    ok = (clean > 0) & (raw > 0)
    if mask is not None:
        ok &= mask
    return float(np.std((raw - clean)[ok]))


# --- normals from the depth (the oracle, then the kernel against it) -----------------------


def test_normals_of_tilted_plane_and_background():
    depth, n_true = tilted(35, 900)
    depth[:, :100] = np.inf  # background strip
    n = surface_normals(finish(depth), CAM)
    assert n.shape == (480, 640, 3) and n.dtype == np.float32
    inner = n[10:-10, 110:-10].reshape(-1, 3)
    np.testing.assert_allclose(inner, np.broadcast_to(n_true, inner.shape), atol=2e-3)
    assert np.all(n[:, :100] == 0)


def test_normals_of_sphere_face_the_camera():
    c, rad = np.array([50.0, 30.0, 800.0]), 120.0
    depth = finish(sphere(c, rad))
    n = surface_normals(depth, CAM)
    ok = ndimage.binary_erosion(depth > 0, iterations=3)
    v, u = np.nonzero(ok)
    p = CAM.uvd_to_xyz(np.stack([u, v, depth[v, u]], -1).astype(np.float64))
    expected = (p - c) / rad
    cosang = (n[v, u] * expected).sum(-1)
    assert np.percentile(cosang, 5) > math.cos(math.radians(3))
    assert np.all((n[v, u] * p).sum(-1) < 0)  # towards the camera


def test_given_normals_give_the_same_output():
    clean = scene()
    a = noisy(clean, NoiseConfig(), seed=3)
    b = noisy(clean, NoiseConfig(), seed=3, normals=surface_normals(clean, CAM))
    assert np.mean(a != b) < 1e-3


# --- axial noise and quantisation ----------------------------------------------------------


@pytest.mark.parametrize("quantise", [False, True])
def test_axial_std_at_1m_matches_nguyen(quantise):
    clean = finish(plane([0, 0, -1], [0, 0, 1000]))
    raw = noisy(clean, only(axial=True, quantise=quantise))
    model = float(axial_sigma(np.float32(1000), np.float32(0)))
    assert model == pytest.approx(1.2 + 1.9 * 0.6**2)
    # the correlated noise field still gives ~1000 independent samples: 6 % is ample, and
    # catches quantisation adding its own variance on top of the measured sigma
    assert residual_std(clean, raw) == pytest.approx(model, rel=0.06)


def test_axial_noise_grows_with_depth():
    s = {}
    for z in (600, 1200):
        clean = finish(plane([0, 0, -1], [0, 0, z]))
        s[z] = residual_std(clean, noisy(clean, only(axial=True)))
    model = axial_sigma(np.float32(1200), 0.0) / axial_sigma(np.float32(600), 0.0)
    assert s[1200] / s[600] == pytest.approx(model, rel=0.2)
    assert s[1200] > 1.5 * s[600]


def test_axial_noise_grows_with_angle():
    flat = finish(plane([0, 0, -1], [0, 0, 1000]))
    steep, n = tilted(70, 1000)
    steep[:, :260] = np.inf  # keep the part seen at about 70 degrees
    steep[:, 380:] = np.inf
    steep = finish(steep)
    s_flat = residual_std(flat, noisy(flat, only(axial=True)))
    s_steep = residual_std(steep, noisy(steep, only(axial=True)))
    v, u = np.nonzero(steep > 0)
    ray = rays()[v, u]
    theta = np.arccos(np.abs(ray @ n) / np.linalg.norm(ray, axis=-1))
    model = float(np.sqrt(np.mean(axial_sigma(steep[v, u], theta) ** 2)))
    assert s_steep == pytest.approx(model, rel=0.2)
    assert s_steep > 1.4 * s_flat


def test_disparity_quantisation_step_at_1m():
    depth, _ = tilted(20, 1000)  # a slope, so many levels around 1 m
    clean = finish(depth)
    raw = noisy(clean, only(quantise=True))
    levels = np.unique(raw[raw > 0]).astype(np.float64)
    disp = BF / levels * 8  # integer eighths of a pixel
    np.testing.assert_allclose(disp, np.rint(disp), atol=1e-3)
    near = levels[(levels > 950) & (levels < 1050)]
    steps = np.diff(near)
    expected = 1000.0**2 / BF / 8
    assert np.median(steps) == pytest.approx(expected, rel=0.05)
    assert np.all(steps < 1.2 * expected)


def test_round_mm_gives_integers():
    raw = noisy(scene(), NoiseConfig())
    assert np.all(raw == np.rint(raw))


# --- shadow --------------------------------------------------------------------------------


@pytest.mark.parametrize("side", [-1, 1])
def test_projector_shadow_side_and_width(side):
    z_near, z_far = 600.0, 1000.0
    u0, u1, v0, v1 = 250, 350, 200, 280
    clean = finish(plane([0, 0, -1], [0, 0, z_far]), box_face(z_near, u0, u1, v0, v1))
    raw = noisy(clean, only(shadow=True, projector_side=side))
    width = CAM.fx * 75.0 * (1 / z_near - 1 / z_far)
    shadow = raw == 0
    assert np.all(raw[v0:v1, u0:u1] == z_near)
    assert not shadow[:v0].any() and not shadow[v1:].any()
    widths = shadow[v0:v1].sum(1)
    assert np.all(np.abs(widths - width) <= 1)
    lit, dark = (slice(0, u0), slice(u1, None)) if side < 0 else (slice(u1, None), slice(0, u0))
    assert not shadow[v0:v1, lit].any()
    assert np.all(shadow[v0:v1, dark].sum(1) == widths)
    # the shadow hugs the object's edge on that side
    edge = u1 if side < 0 else u0 - 1
    assert shadow[v0:v1, edge].all()


def test_default_shadow_is_right_of_near_objects_as_in_nyu():
    assert NoiseConfig().projector_side == -1


# --- dropouts, holes, lateral noise ----------------------------------------------------------


def _edge_distance(clean: np.ndarray, jump: float) -> np.ndarray:
    """Chessboard distance of every pixel to the nearest pixel beside a depth jump."""
    e = np.zeros(clean.shape, bool)
    jh = np.abs(np.diff(clean, axis=1)) > jump
    jv = np.abs(np.diff(clean, axis=0)) > jump
    e[:, 1:] |= jh
    e[:, :-1] |= jh
    e[1:] |= jv
    e[:-1] |= jv
    return ndimage.distance_transform_cdt(~e, metric="chessboard")


def test_edge_dropouts_concentrate_at_discontinuities():
    clean = finish(plane([0, 0, -1], [0, 0, 1000]), box_face(700, 200, 440, 120, 360))
    dist = _edge_distance(clean, 15.0)
    cfg = only(edge_dropout=True, edge_dropout_prob=(0.5, 0.2), edge_dropout_block_px=1)
    dropped = noisy(clean, cfg) == 0
    assert not dropped[dist >= 2].any()
    assert np.mean(dropped[dist == 0]) == pytest.approx(0.5, abs=0.06)
    assert np.mean(dropped[dist == 1]) == pytest.approx(0.2, abs=0.06)
    # with the default blocks the band stays within a block of the edge
    dropped = noisy(clean, only(edge_dropout=True)) == 0
    assert dropped.any() and not dropped[dist >= 2 + 2].any()


def test_grazing_dropout_rises_with_angle():
    def dropped_fraction(deg):
        depth, _ = tilted(deg, 1000)
        depth[:, :310] = np.inf  # rays within 1 degree of the optical axis
        depth[:, 330:] = np.inf
        clean = finish(depth)
        raw = noisy(clean, only(grazing_dropout=True))
        inner = ndimage.binary_erosion(clean > 0, iterations=2)
        return np.mean(raw[inner] == 0)

    assert dropped_fraction(40) == 0
    assert 0.2 < dropped_fraction(75) < 0.5  # linear from 70 to 85 degrees: about 1/3
    assert dropped_fraction(87) == 1


def test_holes_are_small_blobs_at_the_configured_rate():
    clean = finish(plane([0, 0, -1], [0, 0, 1000]))
    counts = []
    for seed in range(4):
        holes = noisy(clean, only(holes=True), seed=seed) == 0
        lab, n = ndimage.label(holes)
        counts.append(n)
        sizes = np.bincount(lab.ravel())[1:]
        assert sizes.max() <= 7 * 7
    expected = NoiseConfig().holes_per_10k_px * clean.size / 1e4
    assert np.mean(counts) == pytest.approx(expected, rel=0.35)


def test_lateral_noise_makes_edges_ragged_but_leaves_interiors():
    clean = finish(plane([0, 0, -1], [0, 0, 1000]), box_face(700, 200, 440, 120, 360))
    raw = noisy(clean, only(lateral=True))
    changed = raw != clean
    dist = _edge_distance(clean, 15.0)
    assert changed.any()
    assert not changed[dist > NoiseConfig().lateral_band_px].any()
    # the box's left edge column now varies from row to row
    near = raw[130:350] == 700
    first = near.argmax(1)
    assert np.std(first) > 0.3 and np.all(np.abs(first - 200) <= 4)


def test_lateral_noise_frays_shadow_and_background_borders():
    clean = finish(plane([0, 0, -1], [0, 0, 1000]), box_face(600, 250, 350, 200, 280))
    clean[:, :150] = 0
    raw = noisy(clean, only(lateral=True, shadow=True), invalid_value=-7.0)
    assert np.all((raw == -7) | (raw > 0))  # sampling background or shadow gives invalid
    widths = (raw[200:280, 350:420] == -7).sum(1)
    assert widths.std() > 0.3  # the shadow's far border is ragged too
    first = (raw[:, 140:200] > 0).argmax(1)
    assert first.std() > 0.3


# --- encoding, background, determinism ------------------------------------------------------


@pytest.mark.parametrize("invalid", [0.0, 2001.0, -7.0])
def test_invalid_pixels_take_exactly_invalid_value(invalid):
    clean = scene()
    clean[:40] = 0  # some background
    raw = noisy(clean, NoiseConfig(), invalid_value=invalid)
    bad = raw == invalid
    assert np.all(raw[clean == 0] == invalid)
    assert bad.sum() > (clean == 0).sum()  # shadows, holes, dropouts
    good = raw[~bad]
    assert np.all(np.isfinite(good)) and good.min() >= 400 and good.max() <= 4000


def test_nyu_preset_encodes_invalid_and_far_as_2001():
    clean = scene()
    clean[:, :60] = 2500  # farther than NYU keeps
    clean[:40] = 0
    raw = noisy(clean, NoiseConfig.nyu())
    assert np.all(raw[:, :55] == 2001) and np.all(raw[:40] == 2001)  # edges jitter a bit
    assert not np.any(raw == 0)
    assert np.all(raw[raw != 2001] <= 2000)


def test_background_stays_background_and_no_nan():
    clean = scene()
    clean[:100, :200] = 0
    clean[100:140, :200] = np.nan  # renderers may mark background with nan or inf
    clean[140:160, :200] = np.inf
    for seed in range(3):
        raw = noisy(clean, NoiseConfig(), seed=seed)
        assert raw.shape == clean.shape and raw.dtype == np.float32
        assert not np.isnan(raw).any()
        assert np.all(raw[~(np.isfinite(clean) & (clean > 0))] == 0)


def test_empty_frame():
    raw = noisy(np.zeros((480, 640), np.float32), NoiseConfig.nyu())
    assert np.all(raw == 2001)


def test_deterministic_for_a_seed():
    clean = scene()
    a, b, c = (noisy(clean, NoiseConfig(), seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(a, b)
    assert np.mean(a != c) > 0.1


def test_none_preset_is_identity_on_valid_pixels():
    clean = scene()
    np.testing.assert_array_equal(noisy(clean, NoiseConfig.none()), clean)


def test_presets_and_bad_input():
    assert NoiseConfig.preset("NYU") == NoiseConfig.nyu()
    assert NoiseConfig.preset("kinect").invalid_value == 0
    with pytest.raises(ValueError, match="unknown noise preset"):
        NoiseConfig.preset("kinect2")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        noisy(np.zeros((2, 3, 4), np.float32), NoiseConfig())
    with pytest.raises(ValueError, match="normals"):
        noisy(scene(), NoiseConfig(), normals=np.zeros((480, 640), np.float32))
    with pytest.raises(ValueError, match="projector_side"):
        NoiseConfig(projector_side=0)
    with pytest.raises(ValueError, match="block"):
        NoiseConfig(lateral_block_px=0)


def test_nguyen_formulas():
    # the oracles' formulas, which the axial and lateral tests above measure the kernels against
    th = np.radians([0.0, 60.0, 70.0])
    s = axial_sigma(np.full(3, 1000.0), th)
    assert s[0] == pytest.approx(1.884) and s[1] == pytest.approx(1.884)
    assert s[2] == pytest.approx(1.884 + 0.1 * (th[2] / (math.pi / 2 - th[2])) ** 2)
    assert lateral_sigma(np.float64(0)) == pytest.approx(0.8)
    assert lateral_sigma(np.radians(45.0)) == pytest.approx(0.835)
    # at 90 degrees the formulas explode; they are capped at 89
    assert np.isfinite(axial_sigma(np.float32(1000), np.float32(math.pi / 2)))
    assert np.isfinite(lateral_sigma(np.float32(math.pi / 2)))


# --- the real NYU frame -------------------------------------------------------------------


def _real_nyu(shared) -> np.ndarray:
    rgb = np.asarray(Image.open(shared / "data/nyu/depth_1_0000001.png")).astype(np.int32)
    return ((rgb[..., 1] << 8) | rgb[..., 2]).astype(np.float32)


def _flatness(depth: np.ndarray) -> float:
    """Share of horizontal neighbours on the hand (700-850 mm) with exactly equal depth."""
    c = depth[150:340, 130:300]
    m = (c > 700) & (c < 850)
    d = np.abs(np.diff(c, axis=1))
    ok = m[:, 1:] & m[:, :-1] & (d < 10)
    return float(np.mean(d[ok] == 0))


def test_noise_on_smoothed_real_frame_looks_like_the_real_frame(shared):
    """Smooth the real hand into a clean surface, add noise, compare surface texture to real."""
    real = _real_nyu(shared)
    valid = real < 2001
    clean = np.zeros_like(real)
    for lo, hi in ((0, 900), (900, 2001)):  # hand and body apart, so smoothing keeps the step
        m = valid & (real >= lo) & (real < hi)
        w = ndimage.gaussian_filter(m.astype(np.float32), 3)
        s = ndimage.gaussian_filter(np.where(m, real, 0), 3) / np.maximum(w, 1e-6)
        clean[m] = s[m]
    raw = noisy(clean, NoiseConfig.nyu())
    assert np.all(raw[~valid] == 2001)
    assert _flatness(clean) < 0.2 < 0.6 < _flatness(real)
    assert _flatness(raw) == pytest.approx(_flatness(real), abs=0.08)


# --- kernels against plain numpy ----------------------------------------------------------


def test_edge_distance_kernel_is_a_capped_chessboard_distance():
    z = scene()
    z[:60, :200] = 0  # background, at the image border too
    z[300:310, 500:640] = 0
    valid = z > 0
    e = np.zeros(z.shape, bool)  # valid pixels next to an invalid or far 4-neighbour
    for axis in (0, 1):
        pair = np.abs(np.diff(z, axis=axis)) > 15.0
        pair |= ~(np.delete(valid, 0, axis) & np.delete(valid, -1, axis))
        lo, hi = [slice(None)] * 2, [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        e[tuple(lo)] |= pair
        e[tuple(hi)] |= pair
    e &= valid
    ref = ndimage.distance_transform_cdt(~e, metric="chessboard")
    for cap in (1, 3, 6):
        dist = np.zeros(z.shape, np.int8)
        _edge_distance_kernel(z, valid, np.float32(15.0), cap, dist)
        np.testing.assert_array_equal(dist, np.minimum(ref, cap))


def test_banded_field_matches_the_dense_sum_and_has_unit_variance():
    h, w, scale = 90, 130, 10.0
    field = smooth_field(np.random.default_rng(4), h, w, scale)
    # the same bumps summed densely: (Wy G Wx^T) / (|Wy row| |Wx row|)
    rng, step, sig = np.random.default_rng(4), scale * 0.75, scale * 0.6
    wts = []
    for n in (h, w):
        nodes = np.arange(-2.0 * sig, n + 2.0 * sig, step) + rng.random() * step
        d2 = ((np.arange(n)[:, None] - nodes[None, :]) / sig) ** 2
        wts.append(np.where(d2 < 9.0, np.exp(-0.5 * d2), 0.0))
    g = rng.standard_normal((wts[0].shape[1], wts[1].shape[1]), dtype=np.float32)
    dense = wts[0] @ g @ wts[1].T
    dense /= np.linalg.norm(wts[0], axis=1)[:, None] * np.linalg.norm(wts[1], axis=1)[None, :]
    np.testing.assert_allclose(field, dense, atol=2e-5)
    big = np.stack([smooth_field(np.random.default_rng(s), 120, 160, scale) for s in range(20)])
    assert big.std() == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(big[:, :, :-3].ravel(), big[:, :, 3:].ravel())[0, 1] > 0.8  # smooth


def test_hole_centres_are_the_drawn_valid_pixels():
    mask = np.random.default_rng(0).random((37, 53)) < 0.7
    mask[5] = True  # a row without any candidate
    cum = np.zeros(38, np.int64)
    _unset_per_row(mask, cum)
    free = np.flatnonzero(~mask)
    assert cum[-1] == free.size
    ks = np.array([0, 1, free.size // 2, free.size - 1, 7, 7])
    np.testing.assert_array_equal(_nth_unset(mask, cum, ks), free[ks])


def test_valid_box_and_crop_match_numpy():
    clean = scene()
    clean[:, :100] = np.nan
    clean[:20] = np.inf
    clean[400:, 600:] = -3.0
    clean[450, 610] = 300.0  # nearer than the range kept
    lo, hi = np.float32(360.0), np.float32(2200.0)
    ok = np.isfinite(clean) & (clean > 0) & (clean >= lo) & (clean <= hi)
    rows, cols = np.flatnonzero(ok.any(1)), np.flatnonzero(ok.any(0))
    found, v0, v1, u0, u1 = _valid_box(clean, lo, hi)
    assert found and (v0, v1, u0, u1) == (rows[0], rows[-1] + 1, cols[0], cols[-1] + 1)
    z = np.empty((v1 - v0, u1 - u0), np.float32)
    valid = np.empty(z.shape, bool)
    _crop_kernel(clean, v0, u0, lo, hi, z, valid)
    np.testing.assert_array_equal(valid, ok[v0:v1, u0:u1])
    np.testing.assert_array_equal(z, np.where(ok, clean, 0)[v0:v1, u0:u1])
    assert not _valid_box(np.full((4, 5), np.nan, np.float32), lo, hi)[0]


def test_default_and_general_measurement_paths_agree():
    # 1/8 px takes the kernel's spelt-out default loop; a step a hair off a power of two takes
    # the general one. Same model: the frames differ only where a rounding tie flips.
    clean = scene()
    a = noisy(clean, NoiseConfig(), seed=2)
    b = noisy(clean, NoiseConfig(disparity_step_px=0.125 * (1 + 1e-12)), seed=2)
    assert np.mean(a != b) < 1e-4


# --- helpers the other sensor families share --------------------------------------------------


def test_normal4_is_about_standard_normal_and_bounded():
    x = np.array([_normal4(np.uint64(12345), k) for k in range(200_000)])
    assert abs(x.mean()) < 0.01 and x.std() == pytest.approx(1.0, abs=0.01)
    assert np.abs(x).max() <= 2 * math.sqrt(3) + 1e-9
    assert np.mean(np.abs(x) < 1) == pytest.approx(0.6827, abs=0.02)  # close to a normal's
    assert _normal4(np.uint64(1), 7) == _normal4(np.uint64(1), 7) != _normal4(np.uint64(2), 7)


def test_crop_scene_crops_to_the_measurable_box():
    clean = scene()
    clean[:, :100] = 0
    clean[300:, 500:] = 5000.0  # out of the range asked for
    crop = crop_scene(clean, CAM, 400.0, 4000.0, 3, None, 0.1)
    ok = (clean >= 400) & (clean <= 4000)
    rows, cols = np.flatnonzero(ok.any(1)), np.flatnonzero(ok.any(0))
    assert (crop.y0, crop.x0) == (max(rows[0] - 3, 0), cols[0] - 3)
    h, w = crop.z.shape
    assert (crop.y0 + h, crop.x0 + w) == (min(rows[-1] + 4, 480), min(cols[-1] + 4, 640))
    box = np.s_[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w]
    np.testing.assert_array_equal(crop.valid, ok[box])
    np.testing.assert_array_equal(crop.z, np.where(ok, clean, 0)[box])
    assert crop.cos.dtype == np.float32 and (crop.cos[crop.valid] >= 0.1).all()
    n = surface_normals(clean, CAM)
    with_n = crop_scene(clean, CAM, 400.0, 4000.0, 3, n, 0.1)
    inner = ndimage.binary_erosion(crop.valid, iterations=2)
    np.testing.assert_allclose(with_n.cos[inner], crop.cos[inner], atol=0.02)
    assert crop_scene(np.zeros((4, 5)), CAM, 1.0, 2.0, 1, None, 0.0) is None
    with pytest.raises(ValueError, match="normals"):
        crop_scene(clean, CAM, 1.0, 2.0, 1, np.zeros((2, 2, 3)), 0.0)


def test_random_blobs_rate_size_and_where():
    free = np.ones((300, 400), bool)
    free[:, :200] = False
    counts = []
    for seed in range(6):
        blobs = random_blobs(np.random.default_rng(seed), free, 2.0, (1.0, 3.0))
        counts.append(len(blobs))
        for rows, cols in blobs:
            assert len(rows) <= (2 * 4 + 1) ** 2
            cy, cx = np.median(rows), np.median(cols)
            assert cx >= 200 - 4 and 0 <= rows.min() and rows.max() < 300
            assert np.hypot(rows - cy, cols - cx).max() <= 2 * 3 * 1.3 + 1
    assert np.mean(counts) == pytest.approx(2.0 * free.sum() / 1e4, rel=0.3)
    assert random_blobs(np.random.default_rng(0), np.zeros((5, 5), bool), 5.0, (1, 2)) == []

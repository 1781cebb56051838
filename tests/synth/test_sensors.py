"""Sensor families: the per-frame draw (family, device, camera, unit, parameters), measuring
with a draw at its own camera or another, regridding between cameras."""

from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.synth.coded_light import CodedLightConfig
from handvox.synth.noise import NoiseConfig
from handvox.synth.sensors import (
    DEPTH_UNITS_MM,
    DEVICES,
    FAMILIES,
    RANGES,
    as_families,
    max_range_mm,
    nearest_mm,
    regrid,
    sample_sensor,
    simulate,
    simulate_at_sensor,
)
from handvox.synth.stereo import StereoConfig
from handvox.synth.tof import ToFConfig

CONFIGS = {"structured_light": NoiseConfig, "time_of_flight": ToFConfig,
           "active_stereo": StereoConfig, "coded_light": CodedLightConfig}  # fmt: skip


def scene(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """A wall at 900 mm and a sphere of radius 60 mm at 600 mm on the axis, at ``cam``:
    (depth, unit normals)."""
    v, u = np.mgrid[0 : cam.height, 0 : cam.width].astype(np.float64)
    r = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], -1)
    c = np.array([0.0, 0.0, 600.0])
    a, b = (r * r).sum(-1), r @ c
    disc = b * b - a * (c @ c - 60.0**2)
    t = np.where(disc > 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    hit = np.isfinite(t)
    t = np.where(hit, t, 900.0)
    depth = t.astype(np.float32)
    n = np.where(hit[..., None], r * t[..., None] - c, [0.0, 0.0, -60.0]) / 60.0
    return depth, n.astype(np.float32)


def test_ranges_are_sourced_and_name_real_fields():
    for family, spans in RANGES.items():
        assert family in FAMILIES
        names = {f.name for f in fields(CONFIGS[family])} | {"edge_dropout_scale"}
        for name, span in spans.items():
            assert name in names, (family, name)
            assert span.lo <= span.hi and len(span.source) > 5, (family, name)


def test_devices_cover_the_families_resolutions_and_units():
    assert {d.family for d in DEVICES} == set(FAMILIES)
    sizes = {m for d in DEVICES for m in d.modes}
    for w, h in sizes:
        assert 320 <= w <= 1280 and 240 <= h <= 720
    assert min(sizes) == (320, 240) and max(sizes) == (1280, 720)
    assert {u for d in DEVICES for u in d.depth_units_mm} == set(DEPTH_UNITS_MM)
    assert max_range_mm(("coded_light",)) == 1500.0
    assert max_range_mm(FAMILIES) >= 6000.0


def test_draws_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(400):
        d = sample_sensor(rng)
        seen.add((d.family, d.device))
        dev = next(x for x in DEVICES if x.name == d.device)
        assert d.family == dev.family and isinstance(d.config, CONFIGS[d.family])
        assert (d.camera.width, d.camera.height) in dev.modes
        hfov = math.degrees(2 * math.atan(d.camera.width / 2 / d.camera.fx))
        assert dev.hfov_deg[0] - 1e-6 <= hfov <= dev.hfov_deg[1] + 1e-6
        assert abs(d.camera.fy / d.camera.fx - 1) <= 0.005 + 1e-9
        assert abs(d.camera.cx / d.camera.width - 0.5) <= 0.02 + 1e-9
        assert abs(d.camera.cy / d.camera.height - 0.5) <= 0.02 + 1e-9
        assert d.depth_unit_mm in dev.depth_units_mm
        for name, span in RANGES[d.family].items():
            if name == "edge_dropout_scale":
                base = type(d.config)().edge_dropout_prob
                value = d.config.edge_dropout_prob[0] / base[0]
            else:
                value = getattr(d.config, name)
            assert span.lo - 1e-9 <= value <= span.hi + 1e-9, (d.family, name)
        if d.family == "active_stereo":
            assert d.config.focal_px == d.camera.fx and d.config.baseline_mm == dev.baseline_mm
        if d.family in ("time_of_flight", "active_stereo", "coded_light"):
            assert d.config.depth_unit_mm == d.depth_unit_mm
    assert seen == {(d.family, d.name) for d in DEVICES}  # every device drawn


def test_draw_picks_among_the_families_asked_for_and_is_deterministic():
    rng = np.random.default_rng(1)
    fams = [sample_sensor(rng, ("time_of_flight", "coded_light")).family for _ in range(200)]
    assert set(fams) == {"time_of_flight", "coded_light"}
    assert 0.35 < fams.count("coded_light") / 200 < 0.65
    a, b = (sample_sensor(np.random.default_rng(5), "all") for _ in range(2))
    assert a == b
    assert sample_sensor(np.random.default_rng(5), device="d415").device == "d415"
    cam = sample_sensor(np.random.default_rng(5), device="d435", mode=(424, 240)).camera
    assert (cam.width, cam.height) == (424, 240)


def test_nearest_depth_is_the_range_or_the_disparity_search_end():
    dev = {d.name: d for d in DEVICES}
    assert nearest_mm(dev["kinect_v2"], (512, 424)) == 500.0
    assert nearest_mm(dev["sr305"], (640, 480)) == 200.0
    # D415: f b / 126 px, f from the mode's width and a 65 deg field of view
    assert nearest_mm(dev["d415"], (1280, 720)) == pytest.approx(1005 * 55 / 126, rel=0.01)
    assert nearest_mm(dev["d415"], (424, 240)) == pytest.approx(333 * 55 / 126, rel=0.01)


def test_draws_for_a_hand_reach_it():
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(300):
        d = sample_sensor(rng, "all", reach_mm=(260.0, 420.0))
        dev = next(x for x in DEVICES if x.name == d.device)
        assert nearest_mm(dev, (d.camera.width, d.camera.height)) <= 260.0
        seen.add(d.family)
    # Kinect v1 / v2 and Azure Kinect start at 400-500 mm: structured light cannot reach
    assert seen == {"time_of_flight", "active_stereo", "coded_light"}
    far = {sample_sensor(rng, "all", reach_mm=(1600.0, 1800.0)).device for _ in range(100)}
    assert "sr305" not in far  # its range ends at 1.5 m
    # nothing reaches 50 mm: any sensor, as without a reach
    assert sample_sensor(np.random.default_rng(3), "all", reach_mm=(50.0, 90.0)).family


def test_family_names_are_checked():
    assert as_families("all") == FAMILIES
    assert as_families("coded_light") == ("coded_light",)
    assert as_families(["active_stereo"]) == ("active_stereo",)
    with pytest.raises(ValueError, match="unknown sensor family"):
        as_families("kinect")
    with pytest.raises(ValueError, match="unknown sensor family"):
        as_families(())
    with pytest.raises(ValueError, match="unknown device"):
        sample_sensor(np.random.default_rng(0), device="d455")


@pytest.mark.parametrize("device", [d.name for d in DEVICES])
def test_every_device_measures_at_each_of_its_resolutions(device):
    dev = next(d for d in DEVICES if d.name == device)
    for k, mode in enumerate(dev.modes):
        draw = sample_sensor(np.random.default_rng(k), device=device, mode=mode)
        clean, normals = scene(draw.camera)
        raw = simulate(draw, clean, np.random.default_rng(100 + k), normals)
        assert raw.shape == (mode[1], mode[0]) and raw.dtype == np.float32
        ok = raw != 0
        assert ok.mean() > 0.5  # most of the wall and ball are measured
        q = raw[ok] / draw.depth_unit_mm  # float32 mm: q up to ~10^4, exact to ~10^-3
        np.testing.assert_allclose(q, np.rint(q), atol=2e-3)
        ball = clean < 700
        assert np.abs(np.median(raw[ball & ok] - clean[ball & ok])) < 3.0
        again = simulate(draw, clean, np.random.default_rng(100 + k), normals)
        np.testing.assert_array_equal(raw, again)  # a function of the draw and the generator


def test_simulate_needs_the_clean_frame_at_its_camera():
    draw = sample_sensor(np.random.default_rng(0), device="d415", mode=(1280, 720))
    with pytest.raises(Exception, match="1280x720"):
        simulate(draw, np.zeros((480, 640), np.float32), np.random.default_rng(0))


def test_regrid_maps_rays_and_fills_outside():
    nyu = Camera.preset("nyu")
    wide = Camera(280.0, 280.0, 161.0, 119.0, 320, 240)  # sees all nyu sees
    img = np.arange(240 * 320, dtype=np.float32).reshape(240, 320)
    np.testing.assert_array_equal(regrid(img, wide, wide), img)
    out = regrid(img, wide, nyu, fill=-1.0)
    assert out.shape == (480, 640)
    # a point on the ray of nyu's pixel (u, v) lies on wide's nearest pixel to the same ray
    for u, v in ((0, 0), (320, 240), (639, 479), (100, 400)):
        x, y = (u - nyu.cx) / nyu.fx, (v - nyu.cy) / nyu.fy
        su, sv = round(x * wide.fx + wide.cx), round(y * wide.fy + wide.cy)
        assert out[v, u] == img[sv, su]
    narrow = Camera(600.0, 600.0, 160.0, 120.0, 320, 240)  # sees less than nyu
    out = regrid(img, narrow, nyu, fill=-1.0)
    assert out[0, 0] == -1 and out[240, 320] >= 0
    normals = np.zeros((240, 320, 3), np.float32)
    assert regrid(normals, wide, nyu).shape == (480, 640, 3)


def test_measuring_at_the_sensor_comes_back_at_the_dataset_camera():
    nyu = Camera.preset("nyu")
    clean, normals = scene(nyu)
    for k, device in enumerate(("kinect_v2", "d435", "sr305", "kinect_v1")):
        rng = np.random.default_rng(k)
        draw = sample_sensor(rng, device=device)
        raw = simulate_at_sensor(draw, clean, nyu, rng, normals)
        assert raw.shape == clean.shape and raw.dtype == np.float32
        ok = raw > 0
        assert ok.mean() > 0.5
        ball = (clean < 700) & ok
        assert np.abs(np.median(raw[ball] - clean[ball])) < 3.0
        again = simulate_at_sensor(draw, clean, nyu, np.random.default_rng(k + 10), normals)
        np.testing.assert_array_equal(
            again, simulate_at_sensor(draw, clean, nyu, np.random.default_rng(k + 10), normals)
        )
    # a coarse sensor's pixels come back as blocks of the dataset's
    draw = sample_sensor(np.random.default_rng(0), device="azure_kinect_nfov", mode=(320, 288))
    raw = simulate_at_sensor(draw, clean, nyu, np.random.default_rng(0), normals)
    row = raw[240, 200:440]
    assert np.mean(row[1:] == row[:-1]) > 0.3

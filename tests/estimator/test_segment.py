"""Hand segmentation and centre of mass from depth alone (handvox.estimator.segment)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from handvox.camera import Camera, flip_y
from handvox.errors import DataError
from handvox.estimator.segment import (
    Segmentation,
    SegmentConfig,
    _fill_small_holes,
    segment_batch,
    segment_hand,
)
from handvox.io.depth import read_depth

NYU = Camera.preset("nyu")
# The analytic scenes' truth is the visible hand's mean (they have no joints): no shifts.
SURFACE = SegmentConfig(finger_shift_mm=0.0, ray_shift_mm=0.0)
DEFAULT = SegmentConfig()


def _load_scenes_module():
    # The benchmark's analytic scene model, so the test and the benchmark score the same scenes.
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "com_accuracy.py"
    spec = importlib.util.spec_from_file_location("_bench_com_accuracy", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass needs to find its module
    spec.loader.exec_module(module)
    return module


synthetic_scene = _load_scenes_module().synthetic_scene


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(1234)
    return [synthetic_scene(rng, NYU) for _ in range(50)]


def _assert_missing(seg: Segmentation, reason: str) -> None:
    assert not seg.found
    assert seg.com_xyz is None and seg.com_uvd is None
    assert not seg.mask.any()
    assert seg.reason.startswith("no hand found: ")
    assert reason in seg.reason


def test_synthetic_scenes_com_error(scenes):
    errors = []
    for scene in scenes:
        seg = segment_hand(scene.depth, NYU, SURFACE)
        assert seg.found, seg.reason
        errors.append(np.linalg.norm(seg.com_xyz - scene.hand_centre))
        np.testing.assert_allclose(seg.com_uvd, NYU.xyz_to_uvd(seg.com_xyz))
    errors = np.array(errors)
    assert errors.mean() <= 10.0, errors  # measured 4.6
    assert errors.max() <= 50.0, errors  # measured 19.8


def test_mask_is_the_hand_not_the_forearm_or_body(scenes):
    scene = scenes[0]
    seg = segment_hand(scene.depth, NYU, SURFACE)
    d = scene.depth[seg.mask]
    d = d[d > 0]
    # The mask lies around the hand centre, not on the body 250-400 mm behind it.
    assert np.abs(np.median(d) - scene.hand_centre[2]) < 60
    assert 0.3 * scene.hand_pixels < seg.mask.sum() < 2.0 * scene.hand_pixels


def test_without_forearm_body_or_artefacts():
    rng = np.random.default_rng(7)
    for kwargs in ({"forearm": False}, {"body": False}, {"artefacts": False}):
        for _ in range(4):
            scene = synthetic_scene(rng, NYU, **kwargs)
            seg = segment_hand(scene.depth, NYU, SURFACE)
            assert seg.found
            assert np.linalg.norm(seg.com_xyz - scene.hand_centre) < 30, kwargs


def test_low_resolution_camera():
    icvl = Camera.preset("icvl")  # 320x240: labelling runs at stride 2
    rng = np.random.default_rng(3)
    for _ in range(5):
        scene = synthetic_scene(rng, icvl)
        seg = segment_hand(scene.depth, icvl, SURFACE)
        assert seg.found and seg.mask.shape == (240, 320)
        assert np.linalg.norm(seg.com_xyz - scene.hand_centre) < 30


def test_near_speckle_and_small_object_do_not_win(scenes):
    scene = scenes[1]
    depth = scene.depth.copy()
    depth[10:12, 10:12] = 250.0  # a few flying pixels
    depth[400:415, 580:595] = 300.0  # a small near object: ~60 mm^2, far below a hand
    seg = segment_hand(depth, NYU, SURFACE)
    assert seg.found
    assert np.linalg.norm(seg.com_xyz - scene.hand_centre) < 20
    assert not seg.mask[400:415, 580:595].any()


def test_nan_and_inf_are_no_reading(scenes):
    scene = scenes[2]
    depth = scene.depth.copy()
    depth[::7, ::5] = np.nan
    depth[3::11, ::13] = np.inf
    seg = segment_hand(depth, NYU, SURFACE)
    assert seg.found
    assert np.linalg.norm(seg.com_xyz - scene.hand_centre) < 20


def test_small_holes_in_the_hand_are_filled(scenes):
    scene = scenes[3]
    seg = segment_hand(scene.depth, NYU, SURFACE)
    u, v = np.round(seg.com_uvd[:2]).astype(int)
    depth = scene.depth.copy()
    depth[v - 3 : v + 3, u - 3 : u + 3] = 0  # a sensor dropout on the palm
    holed = segment_hand(depth, NYU, SURFACE)
    assert holed.mask[v - 3 : v + 3, u - 3 : u + 3].all()


def test_hole_filling_is_scipys_fill_holes_and_label_by_size():
    # the flood fills must find what scipy's binary_fill_holes and label (4-connected) find
    def scipy_fill(mask, max_px):
        holes = ndimage.binary_fill_holes(mask) & ~mask
        labels, n = ndimage.label(holes)
        small = np.bincount(labels.ravel(), minlength=n + 1) <= max_px
        small[0] = False
        return mask | small[labels]

    rng = np.random.default_rng(0)
    filled = 0
    for _ in range(400):
        h, w = rng.integers(1, 40, 2)
        mask = np.zeros((h + 6, w + 6), bool)
        mask[3 : 3 + h, 3 : 3 + w] = rng.random((h, w)) < rng.uniform(0.3, 0.95)
        max_px = int(rng.integers(0, 30))
        got = _fill_small_holes(mask, max_px)
        want = scipy_fill(mask, max_px) if max_px > 0 else mask
        np.testing.assert_array_equal(got, want)
        filled += int(got.sum() > mask.sum())
    assert filled > 100  # holes were filled, not only left alone


def test_no_refinement_still_finds_the_hand(scenes):
    seg = segment_hand(scenes[4].depth, NYU, replace(SURFACE, refine_iters=0))
    assert seg.found
    assert np.linalg.norm(seg.com_xyz - scenes[4].hand_centre) < 60


@pytest.mark.parametrize(
    ("fill", "reason"),
    [
        (0.0, "no valid depth pixels"),
        (2001.0, "no valid depth pixels"),  # NYU's background code
        (np.nan, "no valid depth pixels"),
        (3000.0, "no valid depth pixels"),  # beyond far_mm: no reading
        (1700.0, "no depth nearer than 1500 mm"),  # only a wall, too far for a hand
    ],
)
def test_no_hand(fill, reason):
    _assert_missing(segment_hand(np.full((480, 640), fill, np.float32), NYU), reason)


def test_only_small_objects():
    depth = np.full((480, 640), 2001.0, np.float32)
    depth[100:108, 100:108] = 600.0
    depth[300:312, 400:408] = 700.0
    seg = segment_hand(depth, NYU)
    _assert_missing(seg, "nearest object too small (")
    assert "~96 px" in seg.reason  # the bigger of the two


def test_empty_image():
    seg = segment_hand(np.zeros((0, 0), np.float32), Camera(1, 1, 0, 0, 0, 0))
    _assert_missing(seg, "no valid depth pixels")


def test_max_depth_is_configurable():
    depth = np.full((480, 640), 2001.0, np.float32)
    depth[200:300, 250:330] = 1800.0  # 8000 px at 1.8 m: a hand-sized object, but too far
    _assert_missing(segment_hand(depth, NYU), "no depth nearer than 1500 mm")
    config = SegmentConfig(max_depth_mm=1900, far_mm=2000)
    seg = segment_hand(depth, NYU, config)
    assert seg.found
    # A smooth box has no hand end: its centre may sit at either end, then move ~25 mm.
    assert 250 <= seg.com_uvd[0] < 330 and 200 <= seg.com_uvd[1] < 300
    assert 1800 <= seg.com_uvd[2] <= 1800 + config.ray_shift_mm + config.finger_shift_mm


@pytest.mark.parametrize(
    "depth",
    [
        np.zeros((480, 640, 1), np.float32),
        np.zeros(640, np.float32),
        np.zeros((480, 640), np.uint16),
        np.zeros((240, 320), np.float32),  # not the camera's size
        [[0.0]],
    ],
)
def test_bad_input_raises(depth):
    with pytest.raises(DataError):
        segment_hand(depth, NYU)


def test_batch(scenes):
    depths = np.stack([scenes[5].depth, np.zeros((480, 640), np.float32)])
    segs = segment_batch(depths, NYU)
    assert [s.found for s in segs] == [True, False]
    np.testing.assert_allclose(segs[0].com_xyz, segment_hand(scenes[5].depth, NYU).com_xyz)
    with pytest.raises(DataError):
        segment_batch(scenes[5].depth, NYU)


def test_real_nyu_frame(shared):
    nyu = shared / "data" / "nyu"
    depth = read_depth(nyu / "depth_1_0000001.png")
    seg = segment_hand(depth, NYU)
    assert seg.found, seg.reason
    with open(nyu / "nyu_test_groundtruth_label.txt") as f:
        uvd = np.array(f.readline().split(), float).reshape(14, 3)
    joints = NYU.uvd_to_xyz(uvd)
    # Measured 23.3 mm; 10.5 mm unshifted: NYU's 14 joints (5 on the palm and thumb base) centre
    # nearer the wrist than the 21 the shifts were fitted for, and on this hand the surface's mean
    # already lies at their mean.
    assert np.linalg.norm(seg.com_xyz - joints.mean(0)) < 40
    assert np.linalg.norm(segment_hand(depth, NYU, SURFACE).com_xyz - joints.mean(0)) < 20
    # The mask is the hand: fingertips and knuckles fall on it; the body does not.
    on_mask = seg.mask[np.round(uvd[:, 1]).astype(int), np.round(uvd[:, 0]).astype(int)]
    assert on_mask[:11].all()  # all finger and thumb joints (the two wrist joints may not be)
    assert seg.mask[:, 300:].sum() == 0  # the body and head are right of column 300
    with open(nyu / "center_test_refined.txt") as f:
        reference = flip_y(np.array(f.readline().split(), float))
    # A published method's centre, for comparison only (measured 37.6 mm apart, 18.7 unshifted).
    assert np.linalg.norm(seg.com_xyz - reference) < 60


def test_real_hands17_frame(shared):
    depth = read_depth(shared / "data" / "hands17" / "image_D00000030.png")
    camera = Camera(475.0, 475.0, depth.shape[1] / 2, depth.shape[0] / 2, *depth.shape[::-1])
    seg = segment_hand(depth, camera)
    assert seg.found, seg.reason
    # The hand is at the top of the arm (rows ~110-230); the arm runs down to row ~450, with
    # clutter 100 mm behind it that a sensor's mixed pixels join to it.
    assert seg.com_uvd[1] < 240
    assert 500 < seg.com_xyz[2] < 700
    assert seg.mask[300:].sum() == 0


@pytest.fixture(scope="module")
def hand_frames():
    """handvox.synth.hand frames (seed 0, not the held-out 99) with their default COMs."""
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    make = hand_frame_generator(HandSynthConfig.for_camera(NYU))
    frames = [make(i, frame_rng(0, i)) for i in range(60)]
    return frames, [segment_hand(f.raw, NYU) for f in frames]


def _errors(frames, segs, pick=lambda frame: True) -> np.ndarray:
    """COM to 21-joint-mean distances (mm) of the picked frames."""
    out = []
    for frame, seg in zip(frames, segs, strict=True):
        if pick(frame):
            assert seg.found, seg.reason
            out.append(np.linalg.norm(seg.com_xyz - frame.joints_xyz["canonical21"].mean(0)))
    return np.array(out)


def _part(frame, name: str) -> np.ndarray:
    from handvox.synth.hand_config import HAND_PARTS

    part = frame.extra["part"]
    if name == "hand":
        return (part >= HAND_PARTS.index("palm")) & (part <= HAND_PARTS.index("little"))
    return part == HAND_PARTS.index(name)


def _arm_nearer(frame) -> bool:
    """The forearm's near end is > 30 mm nearer than the hand's (labels pick the test cases)."""
    hand, arm = _part(frame, "hand") & (frame.raw > 0), _part(frame, "forearm") & (frame.raw > 0)
    if arm.sum() < 50:
        return False
    return np.percentile(frame.raw[arm], 2) < np.percentile(frame.raw[hand], 2) - 30


def _arm_leaves_image(frame) -> bool:
    arm = _part(frame, "forearm") & (frame.raw > 0)
    return arm[0].sum() + arm[-1].sum() + arm[:, 0].sum() + arm[:, -1].sum() >= 20


def test_hand_generator_com_near_the_joints(hand_frames):
    frames, segs = hand_frames
    errors = _errors(frames, segs)
    # Measured: mean 15.0, max 32.9 mm (the nearest point's centre: 45.3, max 277).
    assert errors.mean() <= 20, np.round(errors)
    assert errors.max() <= 50, np.round(errors)
    inside = [
        (np.abs(f.joints_xyz["canonical21"] - s.com_xyz) <= 150).all()
        for f, s in zip(frames, segs, strict=True)
    ]
    assert np.mean(inside) >= 0.95  # the trainer's 300 mm cube holds every joint (measured 1.0)


def test_hand_generator_forearm_nearer_than_the_hand(hand_frames):
    # An arm pointing at the camera puts its elbow nearest: the nearest point's centre lay on the
    # forearm (these 19 frames: mean 71.5, max 277 mm).
    errors = _errors(*hand_frames, _arm_nearer)
    assert len(errors) >= 10
    assert errors.mean() <= 25, np.round(errors)  # measured 14.1
    assert errors.max() <= 50, np.round(errors)  # measured 27.4


def test_hand_generator_forearm_leaving_the_image(hand_frames):
    errors = _errors(*hand_frames, _arm_leaves_image)
    assert len(errors) >= 10
    assert errors.mean() <= 25, np.round(errors)  # measured 15.2 (before: 71.5, max 277)
    assert errors.max() <= 50, np.round(errors)  # measured 30.0


def test_shifts_move_the_com_from_the_surface_towards_the_fingers(hand_frames):
    frames, segs = hand_frames
    closer, off_surface = [], []
    for frame, seg in zip(frames[:20], segs[:20], strict=True):
        surface = segment_hand(frame.raw, NYU, SURFACE)
        hand = _part(frame, "hand") & (frame.raw > 0)
        v, u = np.nonzero(hand)
        visible = NYU.uvd_to_xyz(np.stack([u, v, frame.raw[v, u]], -1).astype(float)).mean(0)
        off_surface.append(np.linalg.norm(surface.com_xyz - visible))
        tips = frame.joints_xyz["canonical21"][[4, 8, 12, 16, 20]].mean(0)
        closer.append(np.linalg.norm(seg.com_xyz - tips) < np.linalg.norm(surface.com_xyz - tips))
        shift = np.linalg.norm(seg.com_xyz - surface.com_xyz)
        assert shift <= DEFAULT.finger_shift_mm + DEFAULT.ray_shift_mm + 0.5
    assert np.mean(off_surface) <= 20  # unshifted, the COM is the visible hand's (measured 13.3)
    assert np.mean(closer) >= 0.85  # measured 0.95


def test_clean_depth(hand_frames):
    # The trainer also segments the noise-free rendering (0 = nothing rendered).
    frames, _ = hand_frames
    errors = []
    for frame in frames[:20]:
        seg = segment_hand(frame.clean, NYU)
        assert seg.found, seg.reason
        errors.append(np.linalg.norm(seg.com_xyz - frame.joints_xyz["canonical21"].mean(0)))
    assert np.mean(errors) <= 20, np.round(errors)  # measured 13.6

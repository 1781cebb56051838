"""handvox.viz.draw: crop boxes around joints, rendering, tiles and PNG output, on the real NYU
test frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from handvox.camera import Camera
from handvox.io.depth import read_depth
from handvox.joints import GROUP_COLORS, NYU14
from handvox.viz.draw import (
    hand_crop_box,
    joints_to_uvd,
    render_frame,
    render_px,
    save_png,
    square_box,
    tile_images,
)

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def nyu(shared: Path):
    """The real NYU test frame 0: depth (mm), ground truth and V2V-PoseNet uvd."""
    gt = np.loadtxt(shared / "data/nyu/nyu_test_groundtruth_label.txt", max_rows=1)
    pred = np.loadtxt(shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt", max_rows=1)
    return {
        "depth": read_depth(shared / "data/nyu/depth_1_0000001.png"),
        "gt": gt.reshape(14, 3),
        "pred": pred.reshape(14, 3),
    }


def _contains(box, uv) -> bool:
    u0, v0, u1, v1 = box
    return bool(np.all((uv[:, 0] >= u0) & (uv[:, 0] < u1) & (uv[:, 1] >= v0) & (uv[:, 1] < v1)))


def _joint_colours_ok(rgb: np.ndarray, box, uvd: np.ndarray, tol: int = 40) -> np.ndarray:
    """Per joint: is the rendered pixel at the joint its finger's colour?"""
    xy = np.round(render_px(uvd, box, rgb.shape)).astype(int)
    ok = []
    for (x, y), group in zip(xy, NYU14.groups, strict=True):
        want = np.array(to_rgb(GROUP_COLORS[group])) * 255
        ok.append(np.abs(rgb[y, x].astype(float) - want).max() <= tol)
    return np.array(ok)


def test_crop_around_the_joints_shows_them_in_their_colours(nyu):
    rgb = render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=nyu["gt"])
    assert rgb.shape == (512, 512, 3) and rgb.dtype == np.uint8
    box = hand_crop_box(nyu["depth"], NYU, nyu["gt"])
    assert _contains(box, nyu["gt"])
    side = box[2] - box[0]
    assert side == box[3] - box[1] and side < 0.6 * 480, f"crop {box} not tight around the hand"
    # Every joint dot lands where the crop box says, in its finger's colour.
    ok = _joint_colours_ok(rgb, box, nyu["gt"])
    assert ok.all(), f"joints without their colour: {np.array(NYU14.names)[~ok]}"
    # The hand (near, light grey) fills much of the crop; the black background some of it.
    grey = (np.ptp(rgb.astype(int), axis=2) < 8) & (rgb[..., 0] > 150)
    assert 0.2 < grey.mean() < 0.8


def test_render_frame_skeleton_drawn_only_near_joints(nyu):
    depth, gt = nyu["depth"], nyu["gt"]
    box = hand_crop_box(depth, NYU, gt)
    plain = render_frame(depth, "nyu", "nyu14", box=box, size_px=256)
    drawn = render_frame(depth, "nyu", "nyu14", gt_uvd=gt, box=box, size_px=256)
    assert plain.shape == drawn.shape == (256, 256, 3) and drawn.dtype == np.uint8
    changed = np.abs(plain.astype(int) - drawn.astype(int)).max(axis=2) > 30
    xy = render_px(gt, box, drawn.shape)
    for x, y in np.round(xy).astype(int):
        assert changed[y - 2 : y + 3, x - 2 : x + 3].any()
    # Corners are far from the skeleton: untouched.
    for sl in (np.s_[:20, :20], np.s_[:20, -20:], np.s_[-20:, -20:]):
        assert not changed[sl].any()


def test_render_frame_gt_and_prediction(nyu):
    depth = nyu["depth"]
    both = render_frame(depth, "nyu", "nyu14", gt_uvd=nyu["gt"], pred_uvd=nyu["pred"])
    gt_only = render_frame(depth, "nyu", "nyu14", gt_uvd=nyu["gt"])
    assert both.shape == gt_only.shape == (512, 512, 3)
    diff = np.abs(both.astype(int) - gt_only.astype(int)).max(axis=2) > 30
    assert diff.mean() > 0.01  # prediction skeleton and legend were drawn
    # The legend sits bottom right on the dark background.
    assert diff[-60:, -160:].any()


def test_render_full_frame_keeps_aspect(nyu):
    rgb = render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=nyu["gt"], crop=False, size_px=320)
    assert rgb.shape == (240, 320, 3)
    ok = _joint_colours_ok(rgb, (0, 0, 640, 480), nyu["gt"], tol=60)
    assert ok.mean() > 0.5  # joints are tiny here; most still show their colour


def test_render_ignores_missing_joints(nyu):
    pred = nyu["pred"].copy()
    pred[0] = np.nan
    box = hand_crop_box(nyu["depth"], NYU, np.concatenate([nyu["gt"], pred]))
    assert box == hand_crop_box(nyu["depth"], NYU, nyu["gt"])
    rgb = render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=nyu["gt"], pred_uvd=pred, size_px=128)
    assert rgb.shape == (128, 128, 3) and rgb.std() > 30


def test_without_joints_the_whole_frame(nyu):
    # Finding the hand from depth alone is not drawing's job (handvox.cli.show does it).
    assert hand_crop_box(nyu["depth"], NYU) == (0, 0, 640, 480)
    assert hand_crop_box(nyu["depth"], NYU, np.full((14, 3), np.nan)) == (0, 0, 640, 480)
    rgb = render_frame(nyu["depth"], NYU, "nyu14", size_px=64)
    assert rgb.shape == (48, 64, 3)
    with pytest.raises(ValueError, match="do not fit nyu14"):
        render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=np.zeros((16, 3)))


def test_boxes_are_squares_inside_the_image():
    depth = np.full((240, 320), 500.0, dtype=np.float32)
    pts = np.array([[2.0, 3.0, 500.0], [40.0, 60.0, 500.0]])
    u0, v0, u1, v1 = hand_crop_box(depth, "icvl", pts)
    assert u0 == 0 and v0 == 0 and u1 - u0 == v1 - v0 and _contains((u0, v0, u1, v1), pts)
    assert square_box(310.0, 100.0, 40.0, 320, 240) == (280, 80, 320, 120)  # shifted, not shrunk
    assert square_box(10.0, 10.0, 2.0, 320, 240) == (6, 6, 14, 14)  # at least 8 px
    assert square_box(160.0, 120.0, 300.0, 320, 240) == (10, 0, 310, 240)  # taller than the image


def test_joints_to_uvd_projects_xyz():
    uvd = np.array([[100.0, 50.0, 700.0], [400.0, 300.0, 900.0]])
    xyz = NYU.uvd_to_xyz(uvd)
    np.testing.assert_allclose(joints_to_uvd(xyz, "nyu", "xyz"), uvd)
    np.testing.assert_allclose(joints_to_uvd(uvd, NYU), uvd)
    with pytest.raises(ValueError):
        joints_to_uvd(uvd, NYU, "uv")


def test_tile_images_centres_smaller_images_on_white():
    a = np.zeros((4, 6, 3), np.uint8)
    b = np.full((2, 2, 3), 7, np.uint8)
    grid = tile_images([a, b, a], cols=2, pad=1)
    assert grid.shape == (2 * (4 + 1) + 1, 2 * (6 + 1) + 1, 3)
    assert (grid[1:5, 1:7] == 0).all()  # a, top left
    assert (grid[2:4, 10:12] == 7).all() and grid[1, 10].tolist() == [255] * 3  # b, centred
    assert (grid[6:10, 8:] == 255).all()  # the empty last cell
    with pytest.raises(ValueError):
        tile_images([], cols=2)


def test_save_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "img.png"
    save_png(path, rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    assert [p.name for p in path.parent.iterdir()] == ["img.png"]

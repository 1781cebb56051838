"""handvox.viz.draw: crop boxes around joints, rendering, tiles, contact sheets and PNG output, on
the real NYU test frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from handvox.camera import Camera
from handvox.io.depth import read_depth
from handvox.joints import GROUP_COLORS, NYU14
from handvox.viz.draw import (
    SheetFrame,
    contact_sheet,
    draw_frame,
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


def _hand_frame(cu: float, cv: float, rng: np.random.Generator):
    """A 640x480 frame with a 500 mm disc at (cu, cv) and 21 joints scattered over it (uvd)."""
    v, u = np.mgrid[:480, :640]
    depth = np.where((u - cu) ** 2 + (v - cv) ** 2 < 60**2, 500.0, 0.0).astype(np.float32)
    uvd = np.column_stack([rng.uniform(-50, 50, (21, 2)) + [cu, cv], np.full(21, 505.0)])
    return depth, uvd


def test_contact_sheet_one_panel_a_frame_named_under_it(tmp_path):
    rng = np.random.default_rng(0)
    frames = []
    for k, (cu, cv) in enumerate([(100, 100), (320, 240), (500, 380), (200, 300), (560, 80)]):
        depth, uvd = _hand_frame(cu, cv, rng)
        frames.append(SheetFrame(f"seq/{k}", depth, NYU, uvd))
    frames[3] = SheetFrame("seq/3", frames[3].depth, NYU, None, note="no hand found")
    label = NYU.xyz_to_uvd(NYU.uvd_to_xyz(frames[1].pred_uvd)[:14])  # any 14 points
    frames[1] = SheetFrame("seq/1", frames[1].depth, NYU, frames[1].pred_uvd, label, "nyu14")
    fig = contact_sheet(frames, "canonical21", cols=2, title="five frames")
    assert isinstance(fig, Figure) and len(fig.axes) == len(frames)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["seq/0", "seq/1", "seq/2", "seq/3\nno hand found", "seq/4"]
    # a grid of 2 columns, in reading order: 3 rows, left then right
    x0 = [round(ax.get_position(original=True).x0, 3) for ax in fig.axes]
    y0 = [round(ax.get_position(original=True).y0, 3) for ax in fig.axes]
    assert x0[0] == x0[2] == x0[4] < x0[1] == x0[3]
    assert y0[0] == y0[1] > y0[2] == y0[3] > y0[4]
    # each panel is cropped around its skeleton; the frame without a hand shown whole
    for ax, f in zip(fig.axes, frames, strict=True):
        (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
        if f.pred_uvd is None:
            assert (left, right, top, bottom) == (-0.5, 639.5, -0.5, 479.5)
        else:
            assert right - left == bottom - top < 300
            assert (left <= f.pred_uvd[:, 0]).all() and (f.pred_uvd[:, 0] <= right).all()
    # one legend: both skeleton styles (a frame has a label) and the finger colours
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert names[:2] == ["label", "prediction"] and "thumb" in names
    fig.savefig(tmp_path / "sheet.png", format="png", dpi=50)
    assert Image.open(tmp_path / "sheet.png").size[0] > 100


def test_contact_sheet_without_labels_and_fewer_frames_than_columns():
    depth, uvd = _hand_frame(320, 240, np.random.default_rng(1))
    fig = contact_sheet([SheetFrame("only", depth, NYU, uvd)], cols=5, title=None)
    assert len(fig.axes) == 1 and fig.axes[0].get_title() == "only"
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "prediction"
    with pytest.raises(ValueError, match="no frames"):
        contact_sheet([])


def test_draw_frame_labels_of_another_joint_set(nyu):
    """NYU's 14 label joints beside a 21-joint prediction, each checked against its own set."""
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pred21 = np.concatenate([nyu["gt"], nyu["gt"][:7]])
    box = draw_frame(ax, nyu["depth"], NYU, "canonical21", gt_uvd=nyu["gt"], pred_uvd=pred21,
                     gt_joint_set="nyu14", legend=False)  # fmt: skip
    assert _contains(box, nyu["gt"]) and ax.get_legend() is None
    with pytest.raises(ValueError, match="do not fit canonical21"):
        draw_frame(ax, nyu["depth"], NYU, "canonical21", gt_uvd=nyu["gt"], pred_uvd=nyu["gt"],
                   gt_joint_set="nyu14")  # fmt: skip

"""Pictures: crop box, rendering, PNG output and the ``show`` command, on the real NYU frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.errors import DataError
from handvox.io.depth import read_depth
from handvox.io.labels import write_labels
from handvox.joints import GROUP_COLORS, NYU14
from handvox.viz.draw import (
    hand_crop_box,
    joints_to_uvd,
    render_frame,
    render_px,
    save_png,
    show_file,
)

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def nyu(shared: Path):
    """The real NYU test frame 0: paths, depth (mm), ground truth and V2V-PoseNet uvd."""
    depth_path = shared / "data/nyu/depth_1_0000001.png"
    gt_path = shared / "data/nyu/nyu_test_groundtruth_label.txt"
    pred_path = shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt"
    gt = np.loadtxt(gt_path, max_rows=1).reshape(14, 3)
    pred = np.loadtxt(pred_path, max_rows=1).reshape(14, 3)
    return {
        "depth_path": depth_path,
        "gt_path": gt_path,
        "pred_path": pred_path,
        "depth": read_depth(depth_path),
        "gt": gt,
        "pred": pred,
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


def test_show_cli_real_nyu_frame(nyu, tmp_path):
    out = tmp_path / "show.png"
    rc = main(["show", str(nyu["depth_path"]), "--gt", str(nyu["gt_path"]), "--out", str(out)])
    assert rc == 0 and out.is_file()
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == (512, 512, 3)
    assert rgb.astype(float).std() > 30, "image is (nearly) blank"

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


def test_hand_crop_box_from_depth_alone_holds_every_joint(nyu):
    box = hand_crop_box(nyu["depth"], "nyu")  # ground truth only checks the result
    assert _contains(box, nyu["gt"]), f"{box} misses joints"
    side = box[2] - box[0]
    assert side == box[3] - box[1] and side < 300
    # Centred on the hand: within 50 px of the joints' centroid.
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    assert np.linalg.norm(centre - nyu["gt"][:, :2].mean(0)) < 50
    # A larger cube gives a larger box around the same hand.
    big = hand_crop_box(nyu["depth"], "nyu", cube_mm=450.0)
    assert big[2] - big[0] > side and _contains(big, nyu["gt"])


def test_hand_crop_box_from_depth_alone_hands17_frame(shared):
    cam = Camera.from_string("475,475,320,240,640,480")
    depth = read_depth(shared / "data/hands17/image_D00000030.png")
    u0, v0, u1, v1 = hand_crop_box(depth, cam)
    assert u1 - u0 == v1 - v0 < 300
    # An outstretched arm with a V sign, fingers up: arm and hand both lie within 30 mm of the
    # nearest reading, from the fingertips (row ~127) down to the image's lower part (row ~451).
    valid = (depth > 0) & (depth < 2000)
    near = valid & (depth < np.percentile(depth[valid], 1.0) + 30.0)
    vs, us = np.nonzero(near)
    assert vs.min() < 140 and vs.max() > 440
    hand = vs < 250  # fingers and palm (seen on the rendered frame)
    assert _contains((u0, v0, u1, v1), np.stack([us[hand], vs[hand]], -1)), "hand cut off"
    assert v1 < 400, "box follows the arm down"


def test_hand_crop_box_takes_the_hand_not_the_arm():
    """A synthetic arm from the bottom border, all in the near band, ending in a hand blob."""
    cam = Camera.preset("nyu")
    depth = np.full((480, 640), 2001.0, dtype=np.float32)
    depth[100:480, 150:450] = 1100.0  # body
    depth[250:480, 280:330] = 650.0  # forearm, entering from the bottom border
    depth[120:260, 250:360] = 640.0  # hand (palm and fingers)
    depth[0:5, 0:5] = 0.0  # invalid pixels are ignored
    u0, v0, u1, v1 = hand_crop_box(depth, cam)
    assert u0 <= 250 and u1 >= 360 and v0 <= 120 and v1 >= 260, "hand cut off"
    assert u1 - u0 == v1 - v0 < 300
    # Centred on the hand, so most of the forearm (rows 260-480) stays outside.
    assert 120 <= (v0 + v1) / 2 <= 260 and v1 < 420
    # Nothing valid: the whole image.
    assert hand_crop_box(np.zeros((240, 320), np.float32), "icvl") == (0, 0, 320, 240)
    assert hand_crop_box(np.full((240, 320), 2001.0, np.float32), "icvl") == (0, 0, 320, 240)


def test_hand_crop_box_clamped_to_image():
    depth = np.full((240, 320), 500.0, dtype=np.float32)
    pts = np.array([[2.0, 3.0, 500.0], [40.0, 60.0, 500.0]])
    u0, v0, u1, v1 = hand_crop_box(depth, "icvl", pts)
    assert u0 == 0 and v0 == 0 and u1 - u0 == v1 - v0 and _contains((u0, v0, u1, v1), pts)


def test_joints_to_uvd_projects_xyz():
    uvd = np.array([[100.0, 50.0, 700.0], [400.0, 300.0, 900.0]])
    xyz = NYU.uvd_to_xyz(uvd)
    np.testing.assert_allclose(joints_to_uvd(xyz, "nyu", "xyz"), uvd)
    np.testing.assert_allclose(joints_to_uvd(uvd, NYU), uvd)
    with pytest.raises(ValueError):
        joints_to_uvd(uvd, NYU, "uv")


def test_show_file_xyz_prediction_matches_uvd(nyu, tmp_path):
    xyz_file, uvd_file = tmp_path / "pred_xyz.txt", tmp_path / "pred_uvd.txt"
    write_labels(xyz_file, NYU.uvd_to_xyz(nyu["pred"])[None], kind="xyz", joint_set="nyu14")
    write_labels(uvd_file, nyu["pred"][None], kind="uvd")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    show_file(nyu["depth_path"], "nyu", a, gt=nyu["gt_path"], pred=xyz_file)
    show_file(nyu["depth_path"], "nyu", b, gt=nyu["gt_path"], pred=uvd_file)
    ia, ib = (np.asarray(Image.open(p).convert("RGB")).astype(int) for p in (a, b))
    assert (np.abs(ia - ib).max(axis=2) > 30).mean() < 0.001


def test_show_errors_name_the_file(nyu, tmp_path, capsys):
    out = tmp_path / "x.png"
    with pytest.raises(
        DataError, match=r"nyu_test_groundtruth_label\.txt.*frame 8252 out of range"
    ):
        show_file(nyu["depth_path"], "nyu", out, gt=nyu["gt_path"], frame=8252)
    with pytest.raises(DataError, match="out of range"):
        show_file(nyu["depth_path"], "nyu", out, gt=nyu["gt_path"], frame=-1)
    with pytest.raises(DataError, match=r"nyu_test_groundtruth_label\.txt.*icvl16"):
        show_file(nyu["depth_path"], "nyu", out, gt=nyu["gt_path"], joint_set="icvl16")
    with pytest.raises(DataError, match=r"depth_1_0000001\.png.*320x240"):
        show_file(nyu["depth_path"], "icvl", out, gt=nyu["gt_path"])
    odd = tmp_path / "five.txt"
    write_labels(odd, np.ones((1, 5, 3)))
    with pytest.raises(DataError, match=r"five\.txt.*joint set"):
        show_file(nyu["depth_path"], "nyu", out, gt=odd)
    short = tmp_path / "icvl_like.txt"
    write_labels(short, np.ones((1, 16, 3)))
    with pytest.raises(DataError, match=r"icvl_like\.txt.*16 joints"):
        show_file(nyu["depth_path"], "nyu", out, gt=nyu["gt_path"], pred=short)
    argv = ["show", str(nyu["depth_path"]), "--gt", str(nyu["gt_path"]), "--frame", "99999"]
    assert main([*argv, "--out", str(out)]) == 2
    assert "nyu_test_groundtruth_label.txt" in capsys.readouterr().err
    assert not out.exists()


def test_show_generated_msra_frame_without_labels(tmp_path):
    depth = np.zeros((240, 320), dtype=np.float32)
    depth[60:200, 120:200] = 400.0
    np.save(tmp_path / "d.npy", depth)
    out = tmp_path / "d.png"
    show_file(tmp_path / "d.npy", "msra", out)
    rgb = np.asarray(Image.open(out).convert("RGB"))
    assert rgb.shape == (512, 512, 3) and rgb.std() > 30


def test_save_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "sub" / "img.png"
    save_png(path, rgb)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), rgb)
    assert [p.name for p in path.parent.iterdir()] == ["img.png"]


def test_render_ignores_missing_joints(nyu):
    pred = nyu["pred"].copy()
    pred[0] = np.nan
    box = hand_crop_box(nyu["depth"], NYU, np.concatenate([nyu["gt"], pred]))
    assert box == hand_crop_box(nyu["depth"], NYU, nyu["gt"])
    rgb = render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=nyu["gt"], pred_uvd=pred, size_px=128)
    assert rgb.shape == (128, 128, 3) and rgb.std() > 30


def test_show_unknown_names(nyu, tmp_path):
    out = str(tmp_path / "x.png")
    assert main(["show", str(nyu["depth_path"]), "--joint-set", "nope", "--out", out]) == 2
    assert main(["show", str(nyu["depth_path"]), "--camera", "nope", "--out", out]) == 2

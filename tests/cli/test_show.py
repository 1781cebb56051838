"""``handvox show`` (handvox.cli.show): label files on a depth file, the crop around a hand found
from depth alone, errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.cli.show import hand_box, show_file
from handvox.errors import DataError
from handvox.io.depth import read_depth
from handvox.io.labels import write_labels
from handvox.viz.draw import hand_crop_box, render_frame

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def nyu(shared: Path):
    """The real NYU test frame 0: paths, depth (mm), ground truth and V2V-PoseNet uvd."""
    depth_path = shared / "data/nyu/depth_1_0000001.png"
    gt_path = shared / "data/nyu/nyu_test_groundtruth_label.txt"
    pred_path = shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt"
    return {
        "depth_path": depth_path,
        "gt_path": gt_path,
        "depth": read_depth(depth_path),
        "gt": np.loadtxt(gt_path, max_rows=1).reshape(14, 3),
        "pred": np.loadtxt(pred_path, max_rows=1).reshape(14, 3),
    }


def _contains(box, uv) -> bool:
    u0, v0, u1, v1 = box
    return bool(np.all((uv[:, 0] >= u0) & (uv[:, 0] < u1) & (uv[:, 1] >= v0) & (uv[:, 1] < v1)))


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- the crop around a hand found from depth alone ----------------------------------------------
def test_hand_box_holds_every_joint_of_the_real_nyu_frame(nyu):
    box = hand_box(nyu["depth"], "nyu")  # ground truth only checks the result
    assert _contains(box, nyu["gt"]), f"{box} misses joints"
    side = box[2] - box[0]
    assert side == box[3] - box[1] and side < 300
    # Centred on the hand: within 50 px of the joints' centroid.
    centre = np.array([box[0] + box[2], box[1] + box[3]]) / 2
    assert np.linalg.norm(centre - nyu["gt"][:, :2].mean(0)) < 50
    # A larger cube gives a larger box around the same hand.
    big = hand_box(nyu["depth"], "nyu", cube_mm=450.0)
    assert big[2] - big[0] > side and _contains(big, nyu["gt"])


def test_hand_box_hands17_frame(shared):
    cam = Camera.from_string("475,475,320,240,640,480")
    depth = read_depth(shared / "data/hands17/image_D00000030.png")
    u0, v0, u1, v1 = hand_box(depth, cam)
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


def test_hand_box_takes_the_hand_not_the_arm():
    """A synthetic arm from the bottom border, all in the near band, ending in a hand blob."""
    depth = np.full((480, 640), 2001.0, dtype=np.float32)
    depth[100:480, 150:450] = 1100.0  # body
    depth[250:480, 280:330] = 650.0  # forearm, entering from the bottom border
    depth[120:260, 250:360] = 640.0  # hand (palm and fingers)
    depth[0:5, 0:5] = 0.0  # invalid pixels are ignored
    u0, v0, u1, v1 = hand_box(depth, NYU)
    assert u0 <= 250 and u1 >= 360 and v0 <= 120 and v1 >= 260, "hand cut off"
    assert u1 - u0 == v1 - v0 < 300
    # Centred on the hand, so most of the forearm (rows 260-480) stays outside.
    assert 120 <= (v0 + v1) / 2 <= 260 and v1 < 420
    # Nothing valid: the whole image.
    assert hand_box(np.zeros((240, 320), np.float32), "icvl") == (0, 0, 320, 240)
    assert hand_box(np.full((240, 320), 2001.0, np.float32), "icvl") == (0, 0, 320, 240)


# --- the command --------------------------------------------------------------------------------
@pytest.mark.integration
def test_show_cli_real_nyu_frame(nyu, tmp_path):
    out = tmp_path / "show.png"
    rc = main(["show", str(nyu["depth_path"]), "--camera", "nyu", "--gt", str(nyu["gt_path"]),
               "--out", str(out)])  # fmt: skip
    assert rc == 0 and out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["show.png"], "temporary file left behind"
    # The picture is the library's rendering of the first label line, cropped around it.
    want = render_frame(nyu["depth"], NYU, "nyu14", gt_uvd=nyu["gt"])
    np.testing.assert_array_equal(_png(out), want)


def test_without_labels_the_crop_is_around_the_hand_found(nyu, tmp_path):
    out = tmp_path / "hand.png"
    show_file(nyu["depth_path"], "nyu", out)
    want = render_frame(nyu["depth"], NYU, "nyu14", box=hand_box(nyu["depth"], NYU))
    np.testing.assert_array_equal(_png(out), want)
    show_file(nyu["depth_path"], "nyu", out, crop=False, size_px=64)
    assert _png(out).shape == (48, 64, 3)


def test_show_file_xyz_prediction_matches_uvd(nyu, tmp_path):
    xyz_file, uvd_file = tmp_path / "pred_xyz.txt", tmp_path / "pred_uvd.txt"
    write_labels(xyz_file, NYU.uvd_to_xyz(nyu["pred"])[None], kind="xyz", joint_set="nyu14")
    write_labels(uvd_file, nyu["pred"][None], kind="uvd")
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    show_file(nyu["depth_path"], "nyu", a, gt=nyu["gt_path"], pred=xyz_file)
    show_file(nyu["depth_path"], "nyu", b, gt=nyu["gt_path"], pred=uvd_file)
    ia, ib = _png(a).astype(int), _png(b).astype(int)
    assert (np.abs(ia - ib).max(axis=2) > 30).mean() < 0.001
    box = hand_crop_box(nyu["depth"], NYU, np.concatenate([nyu["gt"], nyu["pred"]]))
    assert _contains(box, nyu["pred"])


def test_show_errors_name_the_file(nyu, tmp_path):
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
    assert not out.exists()


@pytest.mark.integration
def test_show_cli_errors_exit_2(nyu, tmp_path, capsys):
    out = str(tmp_path / "x.png")
    argv = ["show", str(nyu["depth_path"]), "--camera", "nyu", "--gt", str(nyu["gt_path"]),
            "--frame", "99999"]  # fmt: skip
    assert main([*argv, "--out", out]) == 2
    assert "nyu_test_groundtruth_label.txt" in capsys.readouterr().err
    assert main(["show", str(nyu["depth_path"]), "--camera", "nyu", "--joint-set", "nope",
                 "--out", out]) == 2  # fmt: skip
    assert main(["show", str(nyu["depth_path"]), "--camera", "nope", "--out", out]) == 2
    # no camera and no camera.json beside the frame: an error that says how to give one
    assert main(["show", str(nyu["depth_path"]), "--out", out]) == 2
    assert "no camera: give --camera" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_show_generated_msra_frame_without_labels(tmp_path):
    depth = np.zeros((240, 320), dtype=np.float32)
    depth[60:200, 120:200] = 400.0
    np.save(tmp_path / "d.npy", depth)
    out = tmp_path / "d.png"
    show_file(tmp_path / "d.npy", "msra", out)
    rgb = _png(out)
    assert rgb.shape == (512, 512, 3) and rgb.std() > 30

import numpy as np
import pytest
import torch

from handvox.camera import Camera, flip_y, uvd_to_xyz, xyz_to_uvd
from handvox.io.labels import read_labels


@pytest.mark.parametrize("preset", ["nyu", "icvl", "msra"])
def test_round_trip_numpy_and_torch(preset):
    cam = Camera.preset(preset)
    rng = np.random.default_rng(0)
    uvd = np.stack(
        [
            rng.uniform(0, cam.width, (4, 21)),
            rng.uniform(0, cam.height, (4, 21)),
            rng.uniform(200, 1500, (4, 21)),
        ],
        axis=-1,
    )
    back = cam.xyz_to_uvd(cam.uvd_to_xyz(uvd))
    np.testing.assert_allclose(back, uvd, rtol=0, atol=1e-9)
    t = torch.from_numpy(uvd)
    back_t = cam.xyz_to_uvd(cam.uvd_to_xyz(t))
    assert isinstance(back_t, torch.Tensor) and back_t.shape == (4, 21, 3)
    np.testing.assert_allclose(back_t.numpy(), uvd, atol=1e-9)
    # numpy and torch give the same numbers
    np.testing.assert_allclose(cam.uvd_to_xyz(t).numpy(), cam.uvd_to_xyz(uvd), atol=1e-12)


def test_principal_point_is_optical_axis():
    cam = Camera.preset("nyu")
    xyz = cam.uvd_to_xyz(np.array([cam.cx, cam.cy, 700.0]))
    np.testing.assert_allclose(xyz, [0, 0, 700])
    # y down: a pixel below the centre has positive y
    assert cam.uvd_to_xyz(np.array([cam.cx, cam.cy + 10, 700.0]))[1] > 0


def test_project_matches_xyz_to_uvd():
    cam = Camera.preset("icvl")
    xyz = torch.tensor([[10.0, -20.0, 300.0], [-5.0, 7.0, 250.0]])
    uv = cam.project(xyz)
    assert uv.shape == (2, 2)
    expected = torch.stack(
        [xyz[:, 0] * cam.fx / xyz[:, 2] + cam.cx, xyz[:, 1] * cam.fy / xyz[:, 2] + cam.cy], -1
    )
    torch.testing.assert_close(uv, expected)


def test_nyu_presets_values():
    cam = Camera.preset("nyu")
    assert (cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height) == (
        588.03, 587.07, 320.0, 240.0, 640, 480,
    )  # fmt: skip
    assert Camera.from_string("588.03,587.07,320,240,640,480") == cam
    with pytest.raises(ValueError, match="unknown camera preset"):
        Camera.preset("kinect9")
    assert Camera.from_dict(cam.to_dict()) == cam


def test_nyu_label_line1_to_xyz_and_back(shared):
    labels = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints
    assert labels.shape == (8252, 14, 3)
    uvd = labels[0]
    cam = Camera.preset("nyu")
    xyz = cam.uvd_to_xyz(uvd)
    np.testing.assert_allclose(cam.xyz_to_uvd(xyz), uvd, atol=1e-9)
    # the scorer's y-up xyz of the same line (its formula, written out independently)
    x_up = (uvd[:, 0] - 320) * uvd[:, 2] / 588.03
    y_up = (240 - uvd[:, 1]) * uvd[:, 2] / 587.07
    np.testing.assert_allclose(flip_y(xyz), np.stack([x_up, y_up, uvd[:, 2]], -1), atol=1e-9)
    # the hand sits left of and above the image centre in this frame: x < 0, y (down) < 0
    assert xyz[:, 0].mean() < 0 and xyz[:, 1].mean() < 0
    # an adult hand: joints within ~15 cm of each other
    assert np.linalg.norm(xyz - xyz.mean(0), axis=1).max() < 150


def test_y_down_and_y_up_give_identical_errors(shared):
    gt = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints[:500]
    pred = read_labels(shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt").joints[:500]
    cam = Camera.preset("nyu")
    down = np.linalg.norm(cam.uvd_to_xyz(pred) - cam.uvd_to_xyz(gt), axis=-1)
    fx, fy, cx, cy = cam.intrinsics
    up = np.linalg.norm(
        uvd_to_xyz(pred, fx, -fy, cx, cy) - uvd_to_xyz(gt, fx, -fy, cx, cy), axis=-1
    )
    np.testing.assert_allclose(down, up, rtol=0, atol=1e-9)
    assert down.mean() > 1.0  # a real, non-zero error was compared


def test_flip_y_is_involution():
    xyz = np.random.default_rng(1).normal(size=(3, 5, 3))
    np.testing.assert_array_equal(flip_y(flip_y(xyz)), xyz)
    assert np.all(flip_y(xyz)[..., 1] == -xyz[..., 1])


def test_xyz_to_uvd_function_batched_torch_grad():
    xyz = torch.tensor([[[1.0, 2.0, 500.0]]], requires_grad=True)
    uvd = xyz_to_uvd(xyz, 500.0, 500.0, 100.0, 100.0)
    uvd.sum().backward()
    assert xyz.grad is not None and torch.isfinite(xyz.grad).all()

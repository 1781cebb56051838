import numpy as np
import pytest
import torch

from handvox.camera import (
    Camera,
    LensDistortion,
    distort,
    distortion_index,
    flip_y,
    remap,
    undistort,
    undistortion_index,
    uvd_to_xyz,
    xyz_to_uvd,
)
from handvox.io.labels import read_labels
from tests.oracles import sphere_depth_librealsense

# An SR300's depth stream as librealsense reports it (librealsense issue #10838): fx 472.95 at
# 640x480, inverse Brown-Conrady k1, k2, p1, p2, k3.
SR300_COEFFS = (0.0981389656662941, 0.203301951289177, 0.00310043292120099,
                0.00264186388812959, -0.11238544434309)  # fmt: skip
SR300_LENS = LensDistortion("inverse_brown_conrady", SR300_COEFFS)
SR300_HALF = Camera(236.475, 236.475, 155.1, 122.6, 320, 240)  # its 640x480 intrinsics halved


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


@pytest.mark.parametrize(
    "model", ["inverse_brown_conrady", "modified_brown_conrady", "brown_conrady"]
)
def test_distort_is_librealsense_projection_and_undistort_its_inverse(model):
    rs = pytest.importorskip("pyrealsense2")
    cam, lens = SR300_HALF, LensDistortion(model, SR300_COEFFS)
    intr = rs.intrinsics()
    intr.width, intr.height = cam.width, cam.height
    intr.fx, intr.fy, intr.ppx, intr.ppy = cam.fx, cam.fy, cam.cx, cam.cy
    intr.model, intr.coeffs = getattr(rs.distortion, model), list(SR300_COEFFS)
    xy = np.random.default_rng(0).uniform(-0.6, 0.6, (300, 2))
    want = np.array([rs.rs2_project_point_to_pixel(intr, [x, y, 1.0]) for x, y in xy])
    got = distort(xy, lens) * [cam.fx, cam.fy] + [cam.cx, cam.cy]
    np.testing.assert_allclose(got, want, atol=1e-3)  # px; librealsense computes in float32
    back = undistort(distort(xy, lens), lens)
    np.testing.assert_allclose(back, xy, atol=1e-7)
    t = undistort(torch.from_numpy(distort(xy, lens)), lens)
    np.testing.assert_allclose(t.numpy(), back, atol=1e-12)
    if model != "modified_brown_conrady":  # librealsense does not deproject that one
        rays = [rs.rs2_deproject_pixel_to_point(intr, list(p), 1.0)[:2] for p in want]
        np.testing.assert_allclose(back, rays, atol=1e-5)


def test_rational_lens_and_refusals():
    xy = np.array([[0.3, -0.2], [0.0, 0.0], [-0.5, 0.4]])
    bc = distort(xy, LensDistortion("brown_conrady", SR300_COEFFS))
    rational = LensDistortion("rational", (*SR300_COEFFS, 0.0, 0.0, 0.0))
    np.testing.assert_allclose(distort(xy, rational), bc, atol=1e-15)
    # k4: the radial factor divided by 1 + k4 r^2 (OpenCV's rational model)
    x, y = xy[0]
    r2 = x * x + y * y
    only_k4 = distort(xy[:1], LensDistortion("rational", (0.0,) * 5 + (0.5, 0.0, 0.0)))
    np.testing.assert_allclose(only_k4[0], xy[0] / (1 + 0.5 * r2), atol=1e-15)
    assert LensDistortion("brown_conrady", (0.0,) * 5).is_none
    with pytest.raises(ValueError, match="handvox undoes"):
        LensDistortion("ftheta", (0.1, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="takes 8"):
        LensDistortion("rational", SR300_COEFFS)
    # a ray the lens cannot have imaged (beyond the polynomial's fold) is NaN, not a guess
    assert np.isnan(undistort(np.array([[40.0, 0.0]]), SR300_LENS)).all()


def test_undistorted_depth_puts_a_sphere_where_it_is():
    # A ball near the image's corner seen through an SR300's lens (each pixel's ray from
    # librealsense itself), remapped onto the pinhole image: back-projected with the pinhole
    # intrinsics, its points lie on the ball; read as if pinhole, they do not.
    cam, centre, radius = SR300_HALF, np.array([-150.0, -100.0, 350.0]), 60.0
    raw = sphere_depth_librealsense(cam, "inverse_brown_conrady", SR300_COEFFS, centre, radius)
    pinhole = sphere_depth_librealsense(cam, "none", [0.0] * 5, centre, radius)
    fixed = remap(raw, undistortion_index(cam, SR300_LENS))

    def on_ball(depth):
        v, u = np.nonzero(depth > 0)
        p = cam.uvd_to_xyz(np.stack([u, v, depth[v, u]], -1).astype(np.float64))
        off = np.abs(np.linalg.norm(p - centre, axis=1) - radius)
        return np.median(off), np.percentile(off, 95), p.mean(0)

    med, p95, mean = on_ball(fixed)
    med_raw, p95_raw, mean_raw = on_ball(raw)
    _, _, mean_pinhole = on_ball(pinhole)
    assert med < 0.3 and p95 < 1.0  # mm: the nearest pixel's rounding
    assert med_raw > 1.0 and p95_raw > 5.0
    assert np.linalg.norm(mean - mean_pinhole) < 1.5
    assert np.linalg.norm(mean_raw - mean_pinhole) > 5.0
    # and back: the pinhole render distorted by distortion_index is the camera's own frame
    again = remap(pinhole, distortion_index(cam, SR300_LENS))
    both = (again > 0) & (raw > 0)
    assert both.sum() > 0.97 * (raw > 0).sum()
    assert np.median(np.abs(again[both] - raw[both])) < 0.5


@pytest.mark.slow
def test_the_lens_benchmark_reports_each_band(tmp_path, capsys):
    """benchmarks/lens_distortion.py end to end on a few rendered SR305 frames with the
    shipped model: a row per band of hand positions that holds frames, three errors each."""
    import importlib.util
    import sys
    from pathlib import Path

    from handvox.eval.protocol import TRAIN_SHAPES
    from handvox.synth.generators import make_generator
    from handvox.synth.hand_config import HandSynthConfig
    from handvox.synth.job import synthesize

    camera = Camera.preset("sr305")
    gen, info = make_generator(
        "hand", camera, HandSynthConfig.for_camera(camera, shapes=TRAIN_SHAPES)
    )
    synthesize(tmp_path / "f", gen, camera, 4, seed=5, chunk_size=4, generator_info=info,
               progress=False)  # fmt: skip
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "lens_distortion.py"
    spec = importlib.util.spec_from_file_location("lens_distortion", script)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    old, sys.argv = (
        sys.argv,
        ["lens_distortion.py", "--data", str(tmp_path / "f"), "--threads", "1"],
    )
    try:
        bench.main()
    finally:
        sys.argv = old
    out = capsys.readouterr().out
    assert "4 frames, inverse_brown_conrady" in out
    rows = [r for r in out.splitlines() if r.startswith("| 0")]
    assert rows and sum(int(r.split("|")[2]) for r in rows) <= 4
    for r in rows:
        medians = [float(x) for x in r.split("|")[3].split("/")]
        assert len(medians) == 3 and all(0 < m < 300 for m in medians)

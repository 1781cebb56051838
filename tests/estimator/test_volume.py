"""The cube (handvox.estimator.volume): analytic scenes where voxel values are known exactly, the
NumPy oracle for plain and rotated/scaled cubes, the joint codec, a real NYU frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from handvox.camera import Camera, flip_y
from handvox.estimator.segment import segment_hand
from handvox.estimator.volume import (
    VolumeConfig,
    decode_joints,
    encode_joints,
    projective_tsdf,
    voxel_centers,
)
from handvox.synth.frame import frame_rng
from handvox.synth.generators import make_generator
from tests.oracles import cube_points, tsdf_reference_numpy

NYU = Camera.preset("nyu")
NYU_FAR = 2001.0


def pixel_grid(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(cam.width, dtype=np.float64), np.arange(cam.height), indexing="xy")


def sphere_depth(centre: np.ndarray, radius: float, cam: Camera, background: float) -> np.ndarray:
    """``(H, W)`` depth of the near side of a sphere, ray-traced per pixel centre."""
    u, v = pixel_grid(cam)
    ray = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    b = ray @ centre
    a = (ray**2).sum(-1)
    disc = b**2 - a * (centre @ centre - radius**2)
    with np.errstate(invalid="ignore"):
        t = (b - np.sqrt(disc)) / a  # z, since the ray's z component is 1
    return np.where(disc >= 0, t, background).astype(np.float32)


def tsdf1(depth: np.ndarray, com, cfg=None, mask=None, cam=NYU) -> np.ndarray:
    """Torch TSDF of one image as a ``(D, D, D)`` array."""
    m = None if mask is None else torch.from_numpy(mask)[None]
    com_t = torch.as_tensor(np.asarray(com, dtype=np.float64))[None]
    return projective_tsdf(torch.from_numpy(depth)[None], com_t, cam, cfg, mask=m)[0, 0].numpy()


def test_fronto_parallel_plane_exact():
    z0 = 800.0
    depth = np.full((NYU.height, NYU.width), z0, np.float32)
    vol = tsdf1(depth, [0.0, 0.0, z0])
    assert vol.shape == (60, 60, 60) and vol.dtype == np.float32
    k = np.arange(60)
    # voxel z = 800 + (k - 29.5) 5, so tsdf = (800 - z) / 50 = -(k - 29.5) / 10
    expected = np.clip(-(k - 29.5) / 10, -1, 1)
    np.testing.assert_allclose(vol, np.broadcast_to(expected[:, None, None], vol.shape), atol=1e-6)
    assert vol[29, 0, 0] == pytest.approx(0.05) and vol[30, 59, 59] == pytest.approx(-0.05)
    assert vol[20, 5, 7] == pytest.approx(0.95) and (vol[:20] == 1).all() and (vol[40:] == -1).all()


def test_plane_other_geometry_32_voxels_of_8mm():
    cfg = VolumeConfig(size=32, voxel_mm=8.0, truncation_mm=40.0)
    depth = np.full((NYU.height, NYU.width), 700.0, np.float32)
    com = [10.0, -20.0, 690.0]
    vol = tsdf1(depth, com, cfg)
    assert vol.shape == (32, 32, 32)
    z = 690 + (np.arange(32) - 15.5) * 8
    expected = np.clip((700 - z) / 40, -1, 1)
    np.testing.assert_allclose(vol, np.broadcast_to(expected[:, None, None], vol.shape), atol=1e-6)


@pytest.mark.parametrize("background", [NYU_FAR, 0.0])
def test_sphere_values_on_known_rays(background):
    centre = np.array([0.0, 0.0, 800.0])
    depth = sphere_depth(centre, 60.0, NYU, background)
    # Shift the COM half a voxel so voxel (i=29, j=29) lies on the optical axis: its pixel is the
    # principal point (320, 240) exactly, where the sphere's depth is 800 - 60 = 740.
    com = centre + [2.5, 2.5, 0.0]
    vol = tsdf1(depth, com)
    assert depth[240, 320] == pytest.approx(740.0)
    z = 800 + (np.arange(60) - 29.5) * 5
    np.testing.assert_allclose(vol[:, 29, 29], np.clip((740 - z) / 50, -1, 1), atol=1e-5)
    assert vol[12, 29, 29] == pytest.approx(0.55)  # (740 - 712.5) / 50
    assert vol[29, 29, 29] == -1.0  # 57.5 mm behind the surface: occluded
    # A ray that misses the sphere (x = +147.5 mm) crosses only free space, both for the far
    # value and for invalid (0) pixels with the default conventions.
    assert (vol[:, :, 59] == 1.0).all()
    hidden = VolumeConfig(invalid_value=0.0)
    column = tsdf1(depth, com, hidden)[:, 29, 59]
    assert (column == (1.0 if background == NYU_FAR else 0.0)).all()


def test_background_threshold_and_empty_value():
    depth = np.full((NYU.height, NYU.width), NYU_FAR, np.float32)
    com = [2.5, 2.5, 1900.0]  # a cube reaching the far plane
    z = 1900 + (np.arange(60) - 29.5) * 5
    plain = tsdf1(depth, com)  # by default the far value is a surface like any other
    np.testing.assert_allclose(plain[:, 29, 29], np.clip((2001 - z) / 50, -1, 1), atol=1e-5)
    assert (tsdf1(depth, [2.5, 2.5, 800.0]) == 1).all()  # ... which near cubes see as free space
    cfg = VolumeConfig(max_depth_mm=2000.0, empty_value=0.25)
    assert (tsdf1(depth, com, cfg) == 0.25).all()


def test_mask_makes_unmasked_pixels_background():
    depth = sphere_depth(np.array([0.0, 0.0, 800.0]), 60.0, NYU, NYU_FAR)
    com = [2.5, 2.5, 800.0]
    full = tsdf1(depth, com)
    assert (tsdf1(depth, com, mask=depth < 2000) == full).all()  # far pixels were free anyway
    right = np.zeros_like(depth, dtype=bool)
    right[:, 320:] = True
    half = tsdf1(depth, com, VolumeConfig(empty_value=0.5), mask=right)
    u = cube_points(com, 60, 5.0)
    u = NYU.fx * u[..., 0] / u[..., 2] + NYU.cx
    left = np.floor(u + 0.5) < 320
    assert left.any() and (~left).any()
    assert (half[left] == 0.5).all()
    np.testing.assert_array_equal(half[~left], full[~left])


def test_outside_image_is_invalid():
    depth = np.full((NYU.height, NYU.width), 600.0, np.float32)
    com = np.array([380.0, 0.0, 600.0])  # u = 320 + 588 * 380 / 600 = 692 > 640: off the right
    vol = tsdf1(depth, com, VolumeConfig(invalid_value=0.0))
    pts = cube_points(com, 60, 5.0)
    u = np.floor(NYU.fx * pts[..., 0] / pts[..., 2] + NYU.cx + 0.5)
    off = u >= NYU.width
    assert off.any() and (~off).any()
    assert (vol[off] == 0.0).all()
    expected = np.clip((600 - pts[..., 2]) / 50, -1, 1)
    np.testing.assert_allclose(vol[~off], expected[~off], atol=1e-6)


def test_behind_camera_is_invalid():
    depth = np.full((NYU.height, NYU.width), 100.0, np.float32)
    vol = tsdf1(depth, [0.0, 0.0, 0.0], VolumeConfig(invalid_value=-0.5))
    assert (vol[:30] == -0.5).all()  # voxel z < 0
    assert vol[30:].min() >= -1 and (vol[30:] != -0.5).any()


def test_bilinear_reads_interpolated_depth():
    u, v = pixel_grid(NYU)
    depth = (700.0 + 0.25 * u + 0.125 * v).astype(np.float32)  # exactly bilinear in (u, v)
    com = np.array([3.0, -7.0, 760.0])
    cfg = VolumeConfig(interpolation="bilinear")
    vol = tsdf1(depth, com, cfg)
    pts = cube_points(com, 60, 5.0)
    pu = NYU.fx * pts[..., 0] / pts[..., 2] + NYU.cx
    pv = NYU.fy * pts[..., 1] / pts[..., 2] + NYU.cy
    expected = np.clip((700 + 0.25 * pu + 0.125 * pv - pts[..., 2]) / 50, -1, 1)
    np.testing.assert_allclose(vol, expected, atol=2e-5)
    nearest = tsdf1(depth, com)
    assert np.abs(nearest - expected).max() > 1e-3  # nearest really differs


def noisy_sphere() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    depth = sphere_depth(np.array([-20.0, 15.0, 750.0]), 70.0, NYU, NYU_FAR)
    depth += rng.normal(0, 2, depth.shape).astype(np.float32)
    depth[rng.random(depth.shape) < 0.05] = 0.0  # sensor holes
    depth[200:210, 300:330] = np.nan
    com = np.array([-20.0, 15.0, 750.0], np.float32) + rng.normal(0, 3, 3).astype(np.float32)
    return depth, com.astype(np.float64)


CONFIGS = [
    VolumeConfig(),
    VolumeConfig(size=32, voxel_mm=8.0),
    VolumeConfig(empty_value=0.5, invalid_value=0.0, max_depth_mm=2000.0),
    VolumeConfig(interpolation="bilinear"),
    VolumeConfig(size=32, voxel_mm=8.0, interpolation="bilinear", invalid_value=-0.25),
]


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.size}-{c.interpolation}-{c.invalid_value}"
)
@pytest.mark.parametrize("masked", [False, True])
def test_matches_numpy_reference(cfg, masked):
    depth, com = noisy_sphere()
    mask = (depth > 0) & (depth < 760) if masked else None
    ref = tsdf_reference_numpy(depth, com, NYU, cfg, mask=mask)
    got = tsdf1(depth, com, cfg, mask=mask)
    assert got.shape == ref.shape == (cfg.size,) * 3
    assert np.abs(got - ref).max() < 1e-5
    assert (ref == 1).any() and (ref == -1).any() and ((ref > -1) & (ref < 1)).any()


def test_batch_equals_single_and_dtypes():
    depth, com = noisy_sphere()
    depth = np.nan_to_num(depth)
    coms = np.stack([com, com + [30, -10, 20], com + [-40, 5, -30]])
    depths = np.stack([depth, np.roll(depth, 15, axis=1), depth])
    batch = projective_tsdf(torch.from_numpy(depths), torch.from_numpy(coms), NYU.intrinsics)
    assert batch.shape == (3, 1, 60, 60, 60) and batch.dtype == torch.float32
    for i in range(3):
        np.testing.assert_array_equal(batch[i, 0].numpy(), tsdf1(depths[i], coms[i]))
    as_uint16 = torch.from_numpy(np.round(depths).astype(np.int32)).to(torch.uint16)
    rounded = torch.from_numpy(np.round(depths).astype(np.float32))
    np.testing.assert_array_equal(
        projective_tsdf(as_uint16, torch.from_numpy(coms), NYU).numpy(),
        projective_tsdf(rounded, torch.from_numpy(coms), NYU).numpy(),
    )


def test_bad_shapes_raise():
    depth = torch.zeros(2, 48, 64)
    with pytest.raises(ValueError, match="com"):
        projective_tsdf(depth, torch.zeros(3, 3), NYU)
    with pytest.raises(ValueError, match="depth"):
        projective_tsdf(depth[0], torch.zeros(1, 3), NYU)
    with pytest.raises(ValueError, match="mask"):
        projective_tsdf(depth, torch.zeros(2, 3), NYU, mask=torch.ones(2, 48, 63, dtype=torch.bool))
    with pytest.raises(ValueError):
        VolumeConfig(interpolation="cubic")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    depth, com = noisy_sphere()
    for cfg in CONFIGS:
        d = torch.from_numpy(depth)[None]
        c = torch.from_numpy(com)[None]
        cpu = projective_tsdf(d, c, NYU, cfg)
        gpu = projective_tsdf(d.cuda(), c.cuda(), NYU, cfg)
        assert gpu.device.type == "cuda"
        assert (gpu.cpu() - cpu).abs().max() < 1e-5


def test_voxel_centers_layout():
    com = torch.tensor([[10.0, -20.0, 700.0], [0.0, 0.0, 500.0]], dtype=torch.float64)
    pts = voxel_centers(com)
    assert pts.shape == (2, 60, 60, 60, 3) and pts.dtype == torch.float64
    torch.testing.assert_close(pts.mean(dim=(1, 2, 3)), com)
    np.testing.assert_allclose(pts[0, 4, 2, 7] - com[0], (np.array([7, 2, 4]) - 29.5) * 5)
    # Angle 0 and scale 1 are the plain cube exactly; a rotated one matches the oracle.
    zero, one = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    assert torch.equal(voxel_centers(com, angle=zero, scale=one), pts)
    rot = voxel_centers(com, VolumeConfig(size=8, voxel_mm=10.0), t64(0.4, -1.0), t64(1.1, 0.9))
    np.testing.assert_allclose(rot[1], cube_points(com[1], 8, 10.0, -1.0, 0.9), atol=1e-9)


def read_nyu_depth(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path)).astype(np.uint16)
    return ((rgb[..., 1] << 8) | rgb[..., 2]).astype(np.float32)


def test_real_nyu_frame(shared):
    nyu = shared / "data" / "nyu"
    depth = read_nyu_depth(nyu / "depth_1_0000001.png")
    uvd = np.loadtxt(nyu / "nyu_test_groundtruth_label.txt", max_rows=1).reshape(14, 3)
    xyz = NYU.uvd_to_xyz(uvd)  # our y-down frame: the label's v is a row index
    com = flip_y(np.loadtxt(nyu / "center_test_refined.txt", max_rows=1))
    vol = tsdf1(depth, com)
    ref = tsdf_reference_numpy(depth, com, NYU, VolumeConfig())
    assert np.abs(vol - ref).max() < 1e-5
    unit = 5.0  # a voxel: the codec's offsets are then voxel coordinates less the centre's
    rel = encode_joints(torch.from_numpy(xyz)[None], torch.from_numpy(com)[None], unit)[0]
    ijk = np.rint(rel.numpy() + 29.5).astype(int)
    assert ((ijk >= 0) & (ijk < 60)).all()  # the 300 mm cube holds the hand
    at_joints = vol[ijk[:, 2], ijk[:, 1], ijk[:, 0]]
    # Joints lie just under the observed skin: behind the surface, within the truncation band.
    assert (at_joints < 0.1).all() and (at_joints > -1).sum() >= 12
    # Looking through a joint from the camera: free space at the cube's front face, then the hand.
    i, j, _ = ijk[13]
    assert vol[0, j, i] == 1.0 and vol[-1, j, i] == -1.0


# --- rotated and scaled cubes, the codec (training's augmentation, test-time views) -----------
def t64(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.fixture(scope="module")
def toy_frames():
    gen, _ = make_generator("toy", NYU)
    return [gen(i, frame_rng(5, i)) for i in range(6)]


@pytest.mark.parametrize(
    "cfg",
    [
        VolumeConfig(),
        VolumeConfig(size=32, voxel_mm=9.375, interpolation="bilinear"),
        VolumeConfig(size=24, voxel_mm=12.5, empty_value=1.0, invalid_value=0.0, max_depth_mm=700),
    ],
)
def test_angle_zero_scale_one_is_the_plain_cube_bitwise(toy_frames, cfg):
    for f in toy_frames[:3]:
        seg = segment_hand(f.raw, NYU)
        depth = torch.from_numpy(f.raw)[None]
        com = torch.from_numpy(seg.com_xyz)[None]
        for mask in (None, torch.from_numpy(seg.mask)[None]):
            ref = projective_tsdf(depth, com, NYU, cfg, mask)
            got = projective_tsdf(depth, com, NYU, cfg, mask, angle=t64(0.0), scale=t64(1.0))
            assert torch.equal(got, ref)


@pytest.mark.parametrize("cfg", CONFIGS[1:], ids=lambda c: f"{c.size}-{c.interpolation}")
def test_rotated_scaled_cube_matches_numpy_oracle(cfg):
    depth, com = noisy_sphere()
    mask = (depth > 0) & (depth < 760)
    for angle, scale in [(0.6, 1.0), (-2.5, 1.15), (0.0, 0.85)]:
        ref = tsdf_reference_numpy(depth, com, NYU, cfg, mask, angle, scale)
        got = projective_tsdf(torch.from_numpy(depth)[None], torch.from_numpy(com)[None], NYU,
                              cfg, torch.from_numpy(mask)[None], angle=t64(angle),
                              scale=t64(scale))[0, 0].numpy()  # fmt: skip
        assert np.abs(got - ref).max() < 1e-5
        assert (ref == 1).any() and ((ref > -1) & (ref < 1)).any()


def test_plane_under_rotation_and_scale_is_analytic():
    # A fronto-parallel plane: every voxel's TSDF depends on its z alone, whatever the angle;
    # the scale stretches z offsets and the truncation alike.
    z0, cfg = 700.0, VolumeConfig(size=20, voxel_mm=10.0)
    depth = torch.full((1, NYU.height, NYU.width), z0, dtype=torch.float32)
    com = t64(5.0, -3.0, 690.0)[None]
    for angle, scale in [(0.7, 1.0), (-2.0, 1.2), (0.3, 0.8)]:
        vol = projective_tsdf(depth, com, NYU, cfg, angle=t64(angle), scale=t64(scale))[0, 0]
        off = (np.arange(20) - 9.5) * 10.0
        expected = np.clip((z0 - (690.0 + scale * off)) / (50.0 * scale), -1, 1)
        np.testing.assert_allclose(vol.numpy(), np.broadcast_to(expected[:, None, None], vol.shape),
                                   atol=1e-5)  # fmt: skip


def test_codec_round_trip_and_direction():
    rng = np.random.default_rng(1)
    xyz = torch.from_numpy(rng.normal(0, 50, (4, 21, 3)) + [0, 0, 600])
    com = torch.from_numpy(rng.normal(0, 10, (4, 3)) + [0, 0, 600])
    angle = torch.from_numpy(rng.uniform(-3, 3, 4))
    scale = torch.from_numpy(rng.uniform(0.8, 1.2, 4))
    for view in ({}, {"angle": angle}, {"angle": angle, "scale": scale}):
        back = decode_joints(encode_joints(xyz, com, 150.0, **view), com, 150.0, **view)
        torch.testing.assert_close(back, xyz, rtol=0, atol=1e-9)
    # A point 50 mm right of the centre, cube turned by +90 degrees (x towards y): the point
    # lies on the cube's -y axis, and the cube's voxel there is centred on the point.
    p = t64(50.0, 0.0, 600.0).view(1, 1, 3)
    c = t64(0.0, 0.0, 600.0)[None]
    g = encode_joints(p, c, 1.0, t64(np.pi / 2), t64(1.0))
    torch.testing.assert_close(g, t64(0.0, -50.0, 0.0).view(1, 1, 3), atol=1e-12, rtol=0)
    cfg = VolumeConfig(size=11, voxel_mm=10.0)  # odd size: a voxel centre on each axis
    pts = voxel_centers(c, cfg, t64(np.pi / 2), t64(1.0))
    torch.testing.assert_close(pts[0, 5, 0, 5], p[0, 0], atol=1e-9, rtol=0)  # [z, y=-50, x=0]


def _tsdf_at(vol: torch.Tensor, ijk: torch.Tensor, size: int) -> np.ndarray:
    """Trilinear TSDF at continuous voxel coordinates ``(J, 3)`` (x, y, z order)."""
    g = (ijk / (size - 1) * 2 - 1).float().view(1, 1, 1, -1, 3)
    return torch.nn.functional.grid_sample(vol, g, align_corners=True).view(-1).numpy()


def test_encoded_labels_stay_on_the_hand_in_a_rotated_cube(toy_frames):
    """Joints lie inside the toy hand's capsules, so in the TSDF of the clean depth they sit at
    or behind the visible surface (TSDF <= ~0). After a random rotation, scale and COM jitter the
    encoded labels must still do so; labels left unrotated, or rotated the wrong way, land
    in free space (+1) far more often."""
    cfg = VolumeConfig(size=48, voxel_mm=6.25)
    rng = np.random.default_rng(0)
    inside = {"right": [], "unrotated": [], "wrong way": []}
    for f in toy_frames:
        seg = segment_hand(f.clean, NYU)
        depth, mask = torch.from_numpy(f.clean)[None], torch.from_numpy(seg.mask)[None]
        joints = torch.from_numpy(f.joints_xyz["canonical21"].astype(np.float64))[None]
        angle = t64(rng.choice([-1, 1]) * rng.uniform(0.5, 1.2))
        scale = t64(rng.uniform(0.85, 1.15))
        com = torch.from_numpy(seg.com_xyz + rng.normal(0, 8, 3))[None]
        vol = projective_tsdf(depth, com, NYU, cfg, mask, angle=angle, scale=scale)
        for name, a in (("right", angle), ("unrotated", angle * 0), ("wrong way", -angle)):
            ijk = encode_joints(joints, com, cfg.voxel_mm, a, scale)[0] + (cfg.size - 1) / 2
            inside[name].append(_tsdf_at(vol, ijk, cfg.size) <= 0.1)
    frac = {k: float(np.mean(v)) for k, v in inside.items()}
    assert frac["right"] >= 0.95, frac
    assert frac["unrotated"] < frac["right"] - 0.3 and frac["wrong way"] < frac["right"] - 0.3

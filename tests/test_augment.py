"""Online 3D augmentation: the identity reproduces projective_tsdf bit for bit, analytic scenes,
and labels that stay on the hand after rotation, scaling and COM jitter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handvox.augment import (
    AugmentConfig,
    augmented_tsdf,
    grid_points,
    grid_to_joints,
    joints_to_grid,
    sample_params,
    tsdf_at_points,
)
from handvox.camera import Camera
from handvox.segment import segment_hand
from handvox.synth import frame_rng, make_generator
from handvox.tsdf import VolumeConfig, projective_tsdf, voxel_centers

NYU = Camera.preset("nyu")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy_frames():
    gen, _ = make_generator("toy", NYU)
    return [gen(i, frame_rng(5, i)) for i in range(6)]


def t64(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    "cfg",
    [
        VolumeConfig(),
        VolumeConfig(size=32, voxel_mm=9.375, interpolation="bilinear"),
        VolumeConfig(size=24, voxel_mm=12.5, empty_value=1.0, invalid_value=0.0, max_depth_mm=700),
    ],
)
def test_identity_is_projective_tsdf_bitwise(toy_frames, cfg):
    for f in toy_frames[:3]:
        seg = segment_hand(f.raw, NYU)
        depth = torch.from_numpy(f.raw)[None]
        com = torch.from_numpy(seg.com_xyz)[None]
        for mask in (None, torch.from_numpy(seg.mask)[None]):
            ref = projective_tsdf(depth, com, NYU, cfg, mask)
            got = augmented_tsdf(depth, com, NYU, cfg, t64(0.0), t64(1.0), mask)
            assert torch.equal(got, ref)
            pts = tsdf_at_points(depth, voxel_centers(com, cfg), NYU, cfg, mask)
            assert torch.equal(pts[:, None], ref)
    # Also the grid itself: angle 0, scale 1 gives voxel_centers exactly.
    com = t64(10.0, -20.0, 600.0)[None]
    assert torch.equal(grid_points(com, t64(0.0), t64(1.0), cfg), voxel_centers(com, cfg))


def test_plane_under_rotation_and_scale_is_analytic():
    # A fronto-parallel plane: every voxel's TSDF depends on its z alone, whatever the angle;
    # the scale stretches z offsets and the truncation alike.
    z0, cfg = 700.0, VolumeConfig(size=20, voxel_mm=10.0)
    depth = torch.full((1, NYU.height, NYU.width), z0, dtype=torch.float32)
    com = t64(5.0, -3.0, 690.0)[None]
    for angle, scale in [(0.7, 1.0), (-2.0, 1.2), (0.3, 0.8)]:
        vol = augmented_tsdf(depth, com, NYU, cfg, t64(angle), t64(scale))[0, 0]
        off = (np.arange(20) - 9.5) * 10.0
        expected = np.clip((z0 - (690.0 + scale * off)) / (50.0 * scale), -1, 1)
        np.testing.assert_allclose(vol.numpy(), np.broadcast_to(expected[:, None, None], vol.shape),
                                   atol=1e-5)  # fmt: skip


def test_grid_transform_round_trip_and_direction():
    rng = np.random.default_rng(1)
    xyz = torch.from_numpy(rng.normal(0, 50, (4, 21, 3)) + [0, 0, 600])
    com = torch.from_numpy(rng.normal(0, 10, (4, 3)) + [0, 0, 600])
    angle, scale = (
        torch.from_numpy(rng.uniform(-3, 3, 4)),
        torch.from_numpy(rng.uniform(0.8, 1.2, 4)),
    )
    back = grid_to_joints(joints_to_grid(xyz, com, angle, scale), com, angle, scale)
    torch.testing.assert_close(back, xyz, rtol=0, atol=1e-9)
    # A point 50 mm right of the centre, cube turned by +90 degrees (x towards y): the point
    # lies on the cube's -y axis, and the cube's voxel there is centred on the point.
    p = t64(50.0, 0.0, 600.0).view(1, 1, 3)
    c = t64(0.0, 0.0, 600.0)[None]
    g = joints_to_grid(p, c, t64(np.pi / 2), t64(1.0))
    torch.testing.assert_close(g, t64(0.0, -50.0, 0.0).view(1, 1, 3), atol=1e-12, rtol=0)
    cfg = VolumeConfig(size=11, voxel_mm=10.0)  # odd size: a voxel centre on each axis
    pts = grid_points(c, t64(np.pi / 2), t64(1.0), cfg)
    torch.testing.assert_close(pts[0, 5, 0, 5], p[0, 0], atol=1e-9, rtol=0)  # [z, y=-50, x=0]


def _tsdf_at(vol: torch.Tensor, ijk: torch.Tensor, size: int) -> np.ndarray:
    """Trilinear TSDF at continuous voxel coordinates ``(J, 3)`` (x, y, z order)."""
    g = (ijk / (size - 1) * 2 - 1).float().view(1, 1, 1, -1, 3)
    return torch.nn.functional.grid_sample(vol, g, align_corners=True).view(-1).numpy()


def test_augmented_labels_stay_on_the_hand(toy_frames):
    """Joints lie inside the toy hand's capsules, so in the TSDF of the clean depth they sit at
    or behind the visible surface (TSDF <= ~0). After a random rotation, scale and COM jitter the
    transformed labels must still do so; labels left unrotated, or rotated the wrong way, land
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
        vol = augmented_tsdf(depth, com, NYU, cfg, angle, scale, mask)
        for name, a in (("right", angle), ("unrotated", angle * 0), ("wrong way", -angle)):
            ijk = joints_to_grid(joints, com, a, scale)[0] / cfg.voxel_mm + (cfg.size - 1) / 2
            inside[name].append(_tsdf_at(vol, ijk, cfg.size) <= 0.1)
    frac = {k: float(np.mean(v)) for k, v in inside.items()}
    assert frac["right"] >= 0.95, frac
    assert frac["unrotated"] < frac["right"] - 0.3 and frac["wrong way"] < frac["right"] - 0.3


def test_sample_params_ranges():
    cfg = AugmentConfig(rotation_deg=30, scale=(0.9, 1.2), com_jitter_mm=5)
    draws = [sample_params(np.random.default_rng([3, i]), cfg) for i in range(400)]
    angles = np.array([d.angle for d in draws])
    scales = np.array([d.scale for d in draws])
    jit = np.array([d.jitter for d in draws])
    assert np.abs(angles).max() <= np.deg2rad(30) and np.abs(angles).max() > np.deg2rad(25)
    assert scales.min() >= 0.9 and scales.max() <= 1.2 and np.ptp(scales) > 0.25
    assert np.abs(jit).max() <= 15 and 4 < jit.std() < 6
    assert sample_params(np.random.default_rng(0), AugmentConfig(enabled=False)).identity
    # The same seed gives the same draw (what makes resumed runs repeat their augmentation).
    assert sample_params(np.random.default_rng([3, 7]), cfg) == draws[7]
    with pytest.raises(ValueError):
        AugmentConfig(scale=(1.2, 0.9))

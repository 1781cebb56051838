"""Rotation conversions (handvox.geometry) against SciPy's, at the awkward angles too."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from handvox.geometry import (
    axis_angle_to_matrix,
    euler_zxy_deg,
    matrix_to_axis_angle,
    rotation_z,
    segment_distance,
    skew,
)

F64 = torch.float64


def test_axis_angle_matches_scipy():
    r = torch.randn(100, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    want = Rotation.from_rotvec(r.numpy()).as_matrix()
    assert np.allclose(axis_angle_to_matrix(r).numpy(), want, atol=1e-12)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(3, dtype=F64)), torch.eye(3, dtype=F64))
    tiny = torch.tensor([1e-6, -2e-6, 3e-7], dtype=F64)
    assert np.allclose(
        axis_angle_to_matrix(tiny).numpy(),
        Rotation.from_rotvec(tiny.numpy()).as_matrix(),
        atol=1e-15,
    )


def test_matrix_to_axis_angle_matches_scipy():
    rot = Rotation.random(500, 0)
    rv = rot.as_rotvec()
    # include the awkward angles: none, tiny, and close to pi
    rv[:3] = [[0, 0, 0], [1e-9, 0, 0], [0, math.pi - 1e-7, 0]]
    mats = torch.tensor(Rotation.from_rotvec(rv).as_matrix())
    got = matrix_to_axis_angle(mats)
    assert torch.allclose(axis_angle_to_matrix(got), mats, atol=1e-9)
    assert float(got.norm(dim=-1).max()) <= math.pi + 1e-9


def test_rotation_z_turns_x_towards_y():
    r = rotation_z(torch.tensor([math.pi / 2, 0.3], dtype=F64))
    x, y = torch.eye(3, dtype=F64)[:2]
    torch.testing.assert_close(r[0] @ x, y, atol=1e-12, rtol=0)
    want = Rotation.from_euler("z", 0.3).as_matrix()
    np.testing.assert_allclose(r[1].numpy(), want, atol=1e-12)


def test_skew_is_the_cross_product_and_euler_zxy_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2, 5, 3, generator=g, dtype=F64)
    torch.testing.assert_close((skew(a) @ b[..., None])[..., 0], torch.linalg.cross(a, b))
    want = Rotation.from_euler("ZXY", [30.0, -20.0, 45.0], degrees=True).as_matrix()
    np.testing.assert_allclose(euler_zxy_deg(30.0, -20.0, 45.0).numpy(), want, atol=1e-12)


def test_segment_distance_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    p1, q1, p2, q2 = (torch.randn(200, 3, generator=gen, dtype=F64) for _ in range(4))
    q2[:30] = p2[:30] + 0.7 * (q1[:30] - p1[:30])  # parallel
    q1[30:50] = p1[30:50]  # a point
    q2[50:70] = p2[50:70]  # the other a point (a sphere's axis): missed until 2026-12-06
    q1[70:80], q2[70:80] = p1[70:80], p2[70:80]  # both
    t = torch.linspace(0, 1, 401, dtype=F64)[:, None]
    dense = torch.cdist(p1[:, None] + t * (q1 - p1)[:, None], p2[:, None] + t * (q2 - p2)[:, None])
    np.testing.assert_allclose(segment_distance(p1, q1, p2, q2), dense.amin((1, 2)), atol=1e-2)

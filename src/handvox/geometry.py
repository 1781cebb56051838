"""Rotations, all conversions in one place, and distances between segments: batched torch
functions, any device and float dtype.

Conventions: right-handed; a matrix rotates column vectors (``p' = R @ p``); axis-angle is the
axis times the angle in radians; angles about the camera's z axis follow the OpenCV frame
(x right, y down), so a positive angle turns +x towards +y, clockwise on the image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def rotation_z(angle: Tensor) -> Tensor:
    """``(B,)`` angles (rad) -> ``(B, 3, 3)`` rotations about the z axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).view(-1, 3, 3)


def skew(v: Tensor) -> Tensor:
    """``(..., 3)`` -> ``(..., 3, 3)`` cross-product matrices (``skew(a) @ b == a x b``)."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return torch.stack([z, -w, y, w, z, -x, -y, x, z], -1).view(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(rotvec: Tensor) -> Tensor:
    """Rodrigues' formula, safe (value and gradient) at zero angle.

    Args:
        rotvec: ``(..., 3)`` axis * angle (rad).
    Returns:
        ``(..., 3, 3)`` rotation matrices.
    """
    th2 = (rotvec * rotvec).sum(-1)
    small = th2 < 1e-8
    th2_safe = torch.where(small, torch.ones_like(th2), th2)
    th = th2_safe.sqrt()
    # Taylor branches keep both the value and its gradient finite at theta -> 0.
    a = torch.where(small, 1.0 - th2 / 6.0, torch.sin(th) / th)
    b = torch.where(small, 0.5 - th2 / 24.0, (1.0 - torch.cos(th)) / th2_safe)
    a, b = a[..., None, None], b[..., None, None]
    outer = rotvec[..., :, None] * rotvec[..., None, :]
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    # K @ K = r r^T - |r|^2 I, so no matrix product is needed.
    return eye + a * skew(rotvec) + b * (outer - th2[..., None, None] * eye)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` to axis-angle ``(..., 3)`` (angle in ``[0, pi]``).

    Through the quaternion, picking for each matrix the best-conditioned of Shepperd's four
    formulas, so it is accurate at any angle including 0 and pi.
    """
    m = rot
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2],
                         m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22,
                         m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                         1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                         m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1),
        ],
        -2,
    )  # fmt: skip
    best = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                        1 - m00 - m11 + m22], -1).argmax(-1)  # fmt: skip
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)
    w, v = q[..., 0], q[..., 1:]
    vn = v.norm(dim=-1)
    angle = 2 * torch.atan2(vn, w)
    # sin(angle/2) / (angle/2) -> 1 as the angle goes to 0.
    factor = torch.where(vn > 1e-7, angle / vn.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return v * factor[..., None]


def euler_zxy_deg(z: float, x: float, y: float) -> Tensor:
    """``Rz(z) @ Rx(x) @ Ry(y)`` (degrees, intrinsic z-x-y) as a float64 ``(3, 3)``."""
    cz, sz, cx, sx, cy, sy = (f(math.radians(v)) for v in (z, x, y) for f in (math.cos, math.sin))
    rz = torch.tensor([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rx = torch.tensor([[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]], dtype=torch.float64)
    return rz @ rx @ ry


def segment_distance(p1: Tensor, q1: Tensor, p2: Tensor, q2: Tensor) -> Tensor:
    """Distance ``(...)`` between segments ``p1q1`` and ``p2q2`` (``(..., 3)`` each); closest
    points by clamped line parameters (Ericson, "Real-Time Collision Detection", 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e = (d1 * d1).sum(-1), (d2 * d2).sum(-1)
    b, c, f = (d1 * d2).sum(-1), (d1 * r).sum(-1), (d2 * r).sum(-1)
    denom = (a * e - b * b).clamp_min(1e-12)  # parallel segments: any s works, 0 is taken
    s = ((b * f - c * e) / denom).clamp(0.0, 1.0)
    t = (b * s + f) / e.clamp_min(1e-12)
    # t outside [0, 1]: clamp it and recompute s for that end of the second segment
    t_c = t.clamp(0.0, 1.0)
    s = torch.where(t == t_c, s, ((b * t_c - c) / a.clamp_min(1e-12)).clamp(0.0, 1.0))
    # A segment that is a point (a sphere's axis): the general formula's s would stay 0 there,
    # so the closest point of the other segment is taken by projection instead.
    eps = 1e-12
    point2, point1 = e <= eps, a <= eps
    s = torch.where(point2 & ~point1, (-c / a.clamp_min(eps)).clamp(0.0, 1.0), s)
    t_c = torch.where(point2, torch.zeros_like(t_c), t_c)
    s = torch.where(point1, torch.zeros_like(s), s)
    t_c = torch.where(point1 & ~point2, (f / e.clamp_min(eps)).clamp(0.0, 1.0), t_c)
    gap = (p1 + s[..., None] * d1) - (p2 + t_c[..., None] * d2)
    return gap.norm(dim=-1)

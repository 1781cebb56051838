"""Online 3D augmentation for training: rotation about the viewing axis, scale, COM jitter.

Choice of method: the voxel grid is transformed, not the depth image. A training volume is the
projective TSDF sampled at the centres of a cube that is rotated by ``angle`` about the axis
through the (jittered) COM parallel to the camera's z axis and scaled by ``scale`` about it::

    centre of voxel o  =  com + scale * Rz(angle) @ o      (o: the voxel's offset in the
                                                            unrotated cube of VolumeConfig, mm)
    target of joint j  =  Rz(angle)^T @ (j - com) / scale  (same frame, hence exact)

and the truncation is ``scale * truncation_mm``, so that in the grid's own units the volume is
the TSDF of the scene rotated by ``-angle`` and shrunk by ``1 / scale`` about the COM. Labels and
volume are thus consistent exactly (no resampling of depth or of volumes, no interpolation
beyond what :func:`handvox.tsdf.projective_tsdf` itself does), and the cost is one projection
and one gather per voxel, as for the plain TSDF. Rotating the depth image about the COM's pixel
instead would be a rigid rotation only for a COM on the optical axis, and resamples depth.

What is not simulated: the scene is still seen along the original rays (the occlusion pattern
and the depth noise are those of the original view), as with any in-plane augmentation.

``Rz(a) = [[cos a, -sin a, 0], [sin a, cos a, 0], [0, 0, 1]]`` in the OpenCV camera frame
(x right, y down), so a positive angle turns +x towards +y (clockwise on the image). With
``angle = 0`` and ``scale = 1`` :func:`augmented_tsdf` equals :func:`handvox.tsdf.projective_tsdf`
bit for bit (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handvox.tsdf import Intrinsics, VolumeConfig, _intrinsics, _offsets


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation drawn for every training sample.

    Attributes:
        rotation_deg: angle about the viewing axis, uniform in ``[-rotation_deg, rotation_deg]``.
        scale: cube scale factor, uniform in ``[scale[0], scale[1]]`` (> 1: the hand looks
            smaller to the network).
        com_jitter_mm: standard deviation of a Gaussian offset added to the COM on each axis
            (clipped at 3 sigma), mimicking the error of the COM found at test time.
        label_centre_prob: chance that a sample's cube is centred on the mean of its
            labelled joints (plus the jitter) instead of the segmentation's COM: what the
            estimator's re-centring pass (``EstimatorConfig.recentre``) feeds the network, the
            mean of the joints it predicted first. Labels place training cubes only.
        enabled: False turns all of it off (the volume is then the plain TSDF).
    """

    rotation_deg: float = 40.0
    scale: tuple[float, float] = (0.9, 1.1)
    com_jitter_mm: float = 8.0
    label_centre_prob: float = 0.0
    enabled: bool = True

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if (
            not (0 < lo <= hi)
            or self.rotation_deg < 0
            or self.com_jitter_mm < 0
            or not 0 <= self.label_centre_prob <= 1
        ):
            raise ValueError(f"invalid augmentation ranges: {self}")


@dataclass(frozen=True)
class AugmentParams:
    """One sample's draw: ``angle`` (rad), ``scale``, ``jitter`` ``(3,)`` mm, and whether the
    cube is centred on the labelled joints (``label_centre``)."""

    angle: float = 0.0
    scale: float = 1.0
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)
    label_centre: bool = False

    @property
    def identity(self) -> bool:
        return self.angle == 0.0 and self.scale == 1.0 and not any(self.jitter)


def sample_params(rng: np.random.Generator, cfg: AugmentConfig) -> AugmentParams:
    """Draw one sample's augmentation (the identity when ``cfg.enabled`` is False)."""
    if not cfg.enabled:
        return AugmentParams()
    angle = float(np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)))
    scale = float(rng.uniform(*cfg.scale))
    jitter = np.clip(rng.standard_normal(3), -3, 3) * cfg.com_jitter_mm
    # Drawn last, and only when asked for, so that runs without it keep their streams.
    label = bool(cfg.label_centre_prob > 0 and rng.uniform() < cfg.label_centre_prob)
    return AugmentParams(angle, scale, tuple(float(v) for v in jitter), label)


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    """``(B,)`` angles (rad) -> ``(B, 3, 3)`` rotations about the camera's z axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], -1).view(-1, 3, 3)


def joints_to_grid(
    xyz: torch.Tensor, com: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Camera-frame joints ``(B, J, 3)`` mm -> offsets in the augmented cube's frame ``(B, J, 3)``
    (mm of the unscaled cube), for cube centre ``com`` ``(B, 3)``, ``angle`` and ``scale``
    ``(B,)``. Divide by ``target_scale_mm`` for the pose net's target."""
    rot = rotation_z(angle.to(xyz.dtype))
    return (xyz - com[:, None, :]) @ rot / scale.to(xyz.dtype)[:, None, None]


def grid_to_joints(
    offsets: torch.Tensor, com: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """Inverse of :func:`joints_to_grid`: ``(B, J, 3)`` cube-frame offsets -> camera-frame mm."""
    rot = rotation_z(angle.to(offsets.dtype))
    return (offsets * scale.to(offsets.dtype)[:, None, None]) @ rot.transpose(1, 2) + com[:, None]


def grid_points(
    com: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, cfg: VolumeConfig
) -> torch.Tensor:
    """Camera-frame centres of the augmented cube's voxels, float64 ``(B, D, D, D, 3)`` indexed
    ``[b, z, y, x]`` like the volume (see :func:`handvox.tsdf.voxel_centers`)."""
    x, y, z = _grid_axes(com, angle, scale, cfg)
    d = cfg.size
    zz = z[:, :, None, None].expand(-1, d, d, d)
    return torch.stack([x[:, None].expand_as(zz), y[:, None].expand_as(zz), zz], dim=-1)


def _grid_axes(
    com: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, cfg: VolumeConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x and y ``(B, Dy, Dx)`` and z ``(B, Dz)`` of the augmented cube's voxel centres, float64:
    a rotation about z leaves z alone, so x and y depend on the voxel's (y, x) only."""
    off = torch.as_tensor(_offsets(cfg.size, cfg.voxel_mm), dtype=torch.float64, device=com.device)
    oy, ox = off.view(-1, 1), off.view(1, -1)
    c = torch.cos(angle.to(torch.float64)).view(-1, 1, 1)
    s = torch.sin(angle.to(torch.float64)).view(-1, 1, 1)
    k = scale.to(torch.float64).view(-1, 1, 1)
    com = com.to(torch.float64)
    # Written out rather than as a matrix product, so that angle 0 and scale 1 reproduce the
    # plain grid's coordinates exactly (1 * o - 0 * o' == o in floating point).
    x = com[:, 0].view(-1, 1, 1) + k * (c * ox - s * oy)
    y = com[:, 1].view(-1, 1, 1) + k * (s * ox + c * oy)
    z = com[:, 2].view(-1, 1) + k.view(-1, 1) * off
    return x, y, z


def tsdf_at_points(
    depth: torch.Tensor,
    points: torch.Tensor,
    camera: Intrinsics,
    cfg: VolumeConfig,
    mask: torch.Tensor | None = None,
    truncation_mm: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projective TSDF at arbitrary camera-frame points, with the conventions of
    :func:`handvox.tsdf.projective_tsdf` (nearest or bilinear pixel, background, invalid pixels).

    Args:
        depth: ``(B, H, W)`` mm. points: ``(B, ..., 3)`` float64 xyz mm.
        mask: optional ``(B, H, W)`` bool, True on hand pixels.
        truncation_mm: optional ``(B,)`` per-sample truncation (default ``cfg.truncation_mm``).
    Returns:
        ``(B, ...)`` float32 in [-1, 1] (the points' shape without the last axis).
    """
    fx, fy, cx, cy = _intrinsics(camera)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return _sample(depth, fx * x / z + cx, fy * y / z + cy, z, cfg, mask, truncation_mm)


def _sample(
    depth: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    cfg: VolumeConfig,
    mask: torch.Tensor | None,
    truncation_mm: torch.Tensor | None,
) -> torch.Tensor:
    """TSDF for pixel coordinates ``u``, ``v`` and voxel depth ``z`` (float64, broadcastable to
    one ``(B, ...)`` shape); returns that shape, float32."""
    b, h, w = depth.shape
    shape = torch.broadcast_shapes(u.shape, v.shape, z.shape)
    u, v, z = (t.expand(shape).reshape(b, -1) for t in (u, v, z))
    z_ok = z > 0

    def pixel(coord: torch.Tensor, n: int) -> torch.Tensor:
        """Integer pixel, or -1 off the image (or behind the camera)."""
        i = torch.nan_to_num(coord, nan=-1.0, posinf=-1.0, neginf=-1.0).clamp_(-1, n).long()
        return torch.where((i < n) & z_ok, i, -1)

    near_c, near_r = pixel(torch.floor(u + 0.5), w), pixel(torch.floor(v + 0.5), h)
    cols, rows = [near_c], [near_r]
    if cfg.interpolation == "bilinear":
        u0, v0 = torch.floor(u), torch.floor(v)
        cols += [pixel(u0, w), pixel(u0 + 1, w)]
        rows += [pixel(v0, h), pixel(v0 + 1, h)]
    # Only the pixels some voxel reads are encoded: crop the image to them.
    r0, r1 = _span(rows)
    c0, c1 = _span(cols)
    crop = depth[:, r0:r1, c0:c1].to(torch.float32)
    ch, cw = crop.shape[1:]
    d = crop.reshape(b, -1)
    surface = d > 0  # False for NaN too
    background = torch.zeros_like(surface)
    if cfg.max_depth_mm != float("inf"):
        background = surface & (d >= cfg.max_depth_mm)
    if mask is not None:
        background = background | ~mask[:, r0:r1, c0:c1].reshape(b, -1).to(torch.bool)
    # Sentinels: +inf for background (any sdf becomes +inf), NaN for invalid pixels and for the
    # extra slot at index ch * cw that off-image voxels read.
    img = torch.where(surface & ~background, d, torch.nan)
    img = torch.where(background, torch.inf, img)
    img = torch.cat([img, img.new_full((b, 1), torch.nan)], dim=1)

    def look_up(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        ok = (row >= 0) & (col >= 0)
        return torch.gather(img, 1, torch.where(ok, (row - r0) * cw + (col - c0), ch * cw))

    obs = look_up(near_r, near_c)
    if cfg.interpolation == "bilinear":
        au, av = (u - u0).to(torch.float32), (v - v0).to(torch.float32)
        top = torch.lerp(look_up(rows[1], cols[1]), look_up(rows[1], cols[2]), au)
        bottom = torch.lerp(look_up(rows[2], cols[1]), look_up(rows[2], cols[2]), au)
        interp = torch.lerp(top, bottom, av)
        # A sentinel corner makes interp inf or NaN (even at weight 0): fall back to nearest.
        obs = torch.where(torch.isfinite(interp), interp, obs)
    # Multiplying by the reciprocal, as projective_tsdf does, keeps the two bitwise equal.
    if truncation_mm is None:
        inv = 1.0 / cfg.truncation_mm
    else:
        inv = (1.0 / truncation_mm.to(torch.float64)).to(torch.float32)[:, None]
    sdf = (obs - z.to(torch.float32)) * inv
    sdf = torch.nan_to_num(sdf, nan=cfg.invalid_value, posinf=cfg.empty_value, neginf=-1.0)
    return sdf.clamp_(-1.0, 1.0).view(shape)


def _span(indices: list[torch.Tensor]) -> tuple[int, int]:
    """Half-open range covering the non-negative entries of ``indices`` (empty: (0, 0))."""
    lo = min(int(torch.where(i >= 0, i, 1 << 30).min()) for i in indices)
    hi = max(int(i.max()) for i in indices) + 1
    return (lo, hi) if hi > lo else (0, 0)


def augmented_tsdf(
    depth: torch.Tensor,
    com: torch.Tensor,
    camera: Intrinsics,
    cfg: VolumeConfig,
    angle: torch.Tensor,
    scale: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """TSDF volumes of the rotated and scaled cubes (module docstring).

    Args:
        depth: ``(B, H, W)`` mm. com: ``(B, 3)`` cube centres (jitter already added), mm.
        angle, scale: ``(B,)``. mask: optional ``(B, H, W)`` bool hand mask.
    Returns:
        ``(B, 1, D, D, D)`` float32, indexed ``[b, 0, z, y, x]`` in the cube's own axes.
    """
    fx, fy, cx, cy = _intrinsics(camera)
    x, y, z = _grid_axes(com, angle, scale, cfg)
    zc = z[:, :, None, None]
    u = fx * x[:, None] / zc + cx  # (B, Dz, Dy, Dx)
    v = fy * y[:, None] / zc + cy
    trunc = cfg.truncation_mm * scale.to(torch.float64)
    return _sample(depth, u, v, zc, cfg, mask, trunc)[:, None]

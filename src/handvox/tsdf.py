"""Projective TSDF volume around the hand's centre of mass (paper Sec. 3.1, "3D volumetric
representation").

Geometry of the volume
    An axis-aligned cube in the camera frame (OpenCV: x right, y down, z forward; mm), centred on
    the COM, of ``size**3`` voxels of ``voxel_mm`` (paper: 60**3 voxels of 5 mm = a 300 mm cube).
    Voxel ``(i, j, k)`` has its centre at ``com + ((i, j, k) - (size - 1) / 2) * voxel_mm`` in
    (x, y, z), so the COM sits at the cube's centre (between voxels for an even size). Volumes are
    indexed ``[..., k, j, i]`` = ``[z, y, x]``, i.e. torch's ``(N, C, D, H, W)`` with D along the
    camera's z axis (away from the camera), H along y (down) and W along x (right).

Projective TSDF
    Each voxel centre is projected into the depth image with the camera intrinsics and the depth of
    the NEAREST pixel is read (``u = fx x / z + cx``, pixel column ``floor(u + 0.5)``; the same for
    rows; ``interpolation="bilinear"`` is an option, see :class:`VolumeConfig`). Then
    ``sdf = observed_depth - voxel_z`` (positive between the camera and the surface, negative
    behind it) and ``tsdf = clamp(sdf / truncation_mm, -1, 1)``. Hence:

    * free space seen in front of the surface: ``+1``;
    * the band of ``truncation_mm`` either side of the surface: the signed distance along the ray;
    * occluded space further than ``truncation_mm`` behind the surface: ``-1`` (the common
      convention of projective TSDFs, e.g. Song & Xiao; Ge et al.'s 3D CNN).

Pixels that show no surface
    * background: depth ``>= max_depth_mm`` (e.g. NYU's far value 2001 with ``max_depth_mm=2000``)
      or outside the optional hand ``mask``: the ray crosses the cube without hitting the hand, so
      every voxel on it is free space and gets ``empty_value`` (default ``+1``). With the default
      ``max_depth_mm=inf`` far values need no special case: a depth beyond the cube's back face
      plus the truncation already yields ``+1`` everywhere along the ray.
    * invalid: depth ``<= 0`` (sensor hole) or NaN inside the mask, a voxel that projects
      outside the image, and a voxel at ``z <= 0``: nothing was observed; these get
      ``invalid_value`` (default ``+1``, i.e. treated like background, the usual handling of
      holes in hand crops; the paper's refinement net is trained to fill them in). Set it to
      ``0`` to mark "unknown" instead.

Implementation: :func:`projective_tsdf` is one batched torch function (CPU, CUDA). Pixel
coordinates are computed in float64 on ``(B, D, D)`` tables (u depends only on x and z, v only on
y and z); per voxel there is one flat-index gather and a few float32 element-wise passes.
:func:`tsdf_reference_numpy` is a plain per-voxel version used to test it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch

from handvox.camera import Camera

Array = TypeVar("Array", np.ndarray, torch.Tensor)
Intrinsics = Camera | tuple[float, float, float, float]


@dataclass(frozen=True)
class VolumeConfig:
    """Size and value conventions of the TSDF volume (defaults: the paper's).

    Attributes:
        size: voxels along each axis (D).
        voxel_mm: edge of one voxel in mm.
        truncation_mm: distance at which the signed distance saturates to +-1.
        empty_value: value of voxels on rays of background / masked-out pixels.
        invalid_value: value of voxels on rays of invalid pixels (<= 0, NaN), outside the image or
            behind the camera.
        max_depth_mm: depths at or beyond this are background (default: none are).
        interpolation: ``"nearest"`` pixel, or ``"bilinear"``: used only where the 4 neighbouring
            pixels all show a surface, falling back to nearest elsewhere, so silhouette edges are
            never blended with background.
    """

    size: int = 60
    voxel_mm: float = 5.0
    truncation_mm: float = 50.0
    empty_value: float = 1.0
    invalid_value: float = 1.0
    max_depth_mm: float = float("inf")
    interpolation: str = "nearest"

    def __post_init__(self) -> None:
        if self.size < 1 or self.voxel_mm <= 0 or self.truncation_mm <= 0:
            raise ValueError(f"invalid volume geometry: {self}")
        if not (-1 <= self.empty_value <= 1 and -1 <= self.invalid_value <= 1):
            raise ValueError("empty_value and invalid_value must lie in [-1, 1]")
        if self.interpolation not in ("nearest", "bilinear"):
            raise ValueError(
                f"interpolation must be 'nearest' or 'bilinear', not {self.interpolation!r}"
            )

    @property
    def cube_mm(self) -> float:
        """Edge of the whole cube in mm."""
        return self.size * self.voxel_mm


@lru_cache(maxsize=16)
def _offsets(size: int, voxel_mm: float) -> np.ndarray:
    """``(D,)`` float64 offsets of voxel centres from the COM along one axis."""
    return (np.arange(size, dtype=np.float64) - (size - 1) / 2) * voxel_mm


def _intrinsics(camera: Intrinsics) -> tuple[float, float, float, float]:
    if isinstance(camera, Camera):
        return camera.intrinsics
    fx, fy, cx, cy = camera
    return float(fx), float(fy), float(cx), float(cy)


def voxel_centers(com: Array, cfg: VolumeConfig | None = None) -> Array:
    """Camera-frame centres of every voxel.

    Args:
        com: ``(B, 3)`` cube centres, mm.
    Returns:
        ``(B, D, D, D, 3)`` xyz in mm, indexed ``[b, z, y, x]``; same array type (and for torch,
        device and dtype) as ``com``.
    """
    cfg = cfg or VolumeConfig()
    off = _offsets(cfg.size, cfg.voxel_mm)
    d = cfg.size
    if isinstance(com, torch.Tensor):
        o = torch.as_tensor(off, dtype=com.dtype, device=com.device)
        grid = torch.stack(torch.meshgrid(o, o, o, indexing="ij")[::-1], dim=-1)
        return com[:, None, None, None, :] + grid
    com = np.asarray(com, dtype=np.float64)
    zz, yy, xx = np.meshgrid(off, off, off, indexing="ij")
    grid = np.stack([xx, yy, zz], axis=-1)
    return com.reshape(-1, 1, 1, 1, 3) + grid.reshape(1, d, d, d, 3)


def _expand_com(xyz: Array, com: Array) -> Array:
    """Insert the joint axis into ``com`` so ``(B, 3)`` broadcasts against ``(B, J, 3)``."""
    if com.ndim < xyz.ndim:
        return com[..., None, :]
    return com


def xyz_to_voxel(xyz: Array, com: Array, cfg: VolumeConfig | None = None) -> Array:
    """Camera-frame points to continuous voxel coordinates of the cube around ``com``.

    Args:
        xyz: ``(..., J, 3)`` or ``(..., 3)`` points, mm.
        com: ``(..., 3)``: one centre per leading index (the joint axis is added when missing).
    Returns:
        same shape as ``xyz``: coordinates ``(i, j, k)`` ordered like (x, y, z); voxel centres sit
        at integers, so ``volume[..., round(k), round(j), round(i)]`` holds the point; the cube
        spans ``[-0.5, D - 0.5]`` on each axis.
    """
    cfg = cfg or VolumeConfig()
    return (xyz - _expand_com(xyz, com)) / cfg.voxel_mm + (cfg.size - 1) / 2


def voxel_to_xyz(ijk: Array, com: Array, cfg: VolumeConfig | None = None) -> Array:
    """Inverse of :func:`xyz_to_voxel`: ``(..., 3)`` voxel coordinates to camera-frame mm."""
    cfg = cfg or VolumeConfig()
    return (ijk - (cfg.size - 1) / 2) * cfg.voxel_mm + _expand_com(ijk, com)


def _pixel_tables(
    com: torch.Tensor, intr: tuple[float, float, float, float], cfg: VolumeConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Continuous pixel coordinates of every voxel, exploiting separability: u depends only on
    (x, z) and v only on (y, z), so ``(B, D, D)`` tables replace ``(B, D, D, D)`` ones. float64
    keeps the chosen pixel identical to the NumPy reference (the tables are tiny).

    Returns u ``(B, Dz, Dx)``, v ``(B, Dz, Dy)``, validity of z ``(B, Dz, 1)`` and voxel z
    ``(B, Dz)``, all float64 except the mask.
    """
    fx, fy, cx, cy = intr
    dtype = torch.float32 if com.device.type == "mps" else torch.float64  # MPS has no float64
    off = torch.as_tensor(_offsets(cfg.size, cfg.voxel_mm), dtype=dtype, device=com.device)
    c = com.to(dtype)
    x = c[:, 0:1] + off
    y = c[:, 1:2] + off
    z = c[:, 2:3] + off
    zc = z[:, :, None]
    u = fx * x[:, None, :] / zc + cx
    v = fy * y[:, None, :] / zc + cy
    return u, v, zc > 0, z


def _index(coord: torch.Tensor, z_ok: torch.Tensor, n: int) -> torch.Tensor:
    """Integer pixel index, with ``n`` (the padding row/column) for anything off the image."""
    idx = torch.nan_to_num(coord, nan=-1.0, posinf=-1.0, neginf=-1.0).clamp_(-1, n).long()
    return torch.where((idx >= 0) & (idx < n) & z_ok, idx, n)


def _encode(depth: torch.Tensor, mask: torch.Tensor | None, cfg: VolumeConfig) -> torch.Tensor:
    """Depth with one padding row and column, where pixels that show no surface carry sentinels:
    +inf for background (any sdf becomes +inf) and NaN for invalid pixels and the padding. When
    both map to +1 a single +inf sentinel suffices and clamping does the rest, saving a pass."""
    b, h, w = depth.shape
    one_sentinel = cfg.empty_value == cfg.invalid_value == 1.0
    inval = torch.inf if one_sentinel else torch.nan
    out = torch.empty((b, h + 1, w + 1), dtype=torch.float32, device=depth.device)
    out[:, h, :] = inval
    out[:, :h, w] = inval
    d = depth if depth.dtype == torch.float32 else depth.to(torch.float32)
    body = out[:, :h, :w]
    surface = d > 0  # False for NaN too
    if one_sentinel:
        if cfg.max_depth_mm != float("inf"):
            surface &= d < cfg.max_depth_mm
        if mask is not None:
            surface &= mask
        torch.where(surface, d, d.new_tensor(torch.inf), out=body)
        return out
    background = d >= cfg.max_depth_mm
    if mask is not None:
        background |= ~mask
    torch.where(surface, d, d.new_tensor(torch.nan), out=body)
    body.masked_fill_(background, torch.inf)
    return out


def _finish(s: torch.Tensor, cfg: VolumeConfig, out: torch.Tensor) -> None:
    if not cfg.empty_value == cfg.invalid_value == 1.0:
        torch.nan_to_num_(s, nan=cfg.invalid_value, posinf=cfg.empty_value, neginf=-1.0)
    torch.clamp(s, -1.0, 1.0, out=out)


# CPU work is done a few volumes at a time: the temporaries then stay in cache and below
# malloc's mmap threshold, so they are reused instead of being page-faulted in on every call
# (fresh pages dominated the cost of whole-batch temporaries).
CPU_CHUNK_VOXELS = 1 << 20


def projective_tsdf(
    depth: torch.Tensor,
    com: torch.Tensor,
    camera: Intrinsics,
    cfg: VolumeConfig | None = None,
    mask: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projective TSDF volumes of a batch of depth images (conventions: module docstring).

    Runs wholly on ``depth``'s device, in float32 (pixel choice in float64), so CPU and CUDA give
    the same numbers.

    Args:
        depth: ``(B, H, W)`` depth in mm, any real dtype (uint16 PNG values are fine).
        com: ``(B, 3)`` cube centres, mm, camera frame.
        camera: a :class:`~handvox.camera.Camera` or ``(fx, fy, cx, cy)``.
        cfg: volume geometry and conventions; the paper's by default.
        mask: optional ``(B, H, W)`` bool, True on hand pixels; others count as background.
        out: optional ``(B, 1, D, D, D)`` float32 tensor on ``depth``'s device to write into
            (reusing one saves allocating fresh memory for every batch).
    Returns:
        ``(B, 1, D, D, D)`` float32 in [-1, 1], indexed ``[b, 0, z, y, x]`` (``out`` if given).
    """
    cfg = cfg or VolumeConfig()
    if depth.ndim != 3:
        raise ValueError(f"depth must be (B, H, W), got {tuple(depth.shape)}")
    b = depth.shape[0]
    n = cfg.size
    if com.shape != (b, 3):
        raise ValueError(f"com must be ({b}, 3) for {b} depth images, got {tuple(com.shape)}")
    if mask is not None and mask.shape != depth.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from depth {tuple(depth.shape)}")
    dev = depth.device
    if out is None:
        out = torch.empty((b, 1, n, n, n), dtype=torch.float32, device=dev)
    elif out.shape != (b, 1, n, n, n) or out.dtype != torch.float32 or out.device != dev:
        raise ValueError(f"out must be a float32 ({b}, 1, {n}, {n}, {n}) tensor on {dev}")
    com = com.to(dev)
    if mask is not None:
        mask = mask.to(dev, torch.bool)
    step = max(1, CPU_CHUNK_VOXELS // n**3) if dev.type == "cpu" else max(b, 1)
    for s in range(0, b, step):
        e = min(b, s + step)
        m = None if mask is None else mask[s:e]
        _tsdf_chunk(depth[s:e], com[s:e], _intrinsics(camera), cfg, m, out[s:e, 0])
    return out


def _tsdf_chunk(
    depth: torch.Tensor,
    com: torch.Tensor,
    intr: tuple[float, float, float, float],
    cfg: VolumeConfig,
    mask: torch.Tensor | None,
    out: torch.Tensor,
) -> None:
    """:func:`projective_tsdf` of a ``(b, H, W)`` slice into ``out`` ``(b, D, D, D)``."""
    b, h, w = depth.shape
    n = cfg.size
    u, v, z_ok, z = _pixel_tables(com, intr, cfg)
    # Column / row indices ((b, Dz, Dx) / (b, Dz, Dy)) of the nearest pixel, then for bilinear
    # of the left / top and right / bottom neighbours.
    steps = (0.5,) if cfg.interpolation == "nearest" else (0.5, 0.0, 1.0)
    cols = [_index(torch.floor(u) if s == 0 else torch.floor(u + s), z_ok, w) for s in steps]
    rows = [_index(torch.floor(v) if s == 0 else torch.floor(v + s), z_ok, h) for s in steps]
    if depth.device.type == "cpu":
        # Only the pixels some voxel reads need encoding: crop to them (the host sync of the
        # bounding box is free on CPU).
        (c0, c1), cols = _crop(cols, w)
        (r0, r1), rows = _crop(rows, h)
        depth = depth[:, r0:r1, c0:c1]
        mask = None if mask is None else mask[:, r0:r1, c0:c1]
    img = _encode(depth, mask, cfg)
    stride = img.shape[2]
    flat = img.view(b, -1)

    def look_up(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        # A materialised flat index plus torch.gather beats broadcast advanced indexing ~4x.
        idx = (row * stride).view(b, n, n, 1) + col.view(b, n, 1, n)
        return torch.gather(flat, 1, idx.view(b, -1)).view(b, n, n, n)

    obs = look_up(rows[0], cols[0])  # (b, Dz, Dy, Dx)
    if cfg.interpolation == "bilinear":
        au = (u - torch.floor(u)).to(torch.float32).view(b, n, 1, n)
        av = (v - torch.floor(v)).to(torch.float32).view(b, n, n, 1)
        top = torch.lerp(look_up(rows[1], cols[1]), look_up(rows[1], cols[2]), au)
        bottom = torch.lerp(look_up(rows[2], cols[1]), look_up(rows[2], cols[2]), au)
        interp = torch.lerp(top, bottom, av)
        # A sentinel corner makes interp inf or NaN (even at weight 0): fall back to nearest.
        obs = torch.where(torch.isfinite(interp), interp, obs)
    vz = z.to(torch.float32).view(b, n, 1, 1)
    _finish(obs.sub_(vz).mul_(1.0 / cfg.truncation_mm), cfg, out)


def _crop(indices: list[torch.Tensor], n: int) -> tuple[tuple[int, int], list[torch.Tensor]]:
    """Span ``[lo, hi)`` of the in-image indices (``n`` marks off-image) and the indices shifted
    into it, off-image ones mapped to the new padding index ``hi - lo``."""
    lo = min(int(i.min()) for i in indices)
    hi = max(int(torch.where(i < n, i, -1).max()) for i in indices) + 1
    if hi <= lo:
        lo = hi = 0
    return (lo, hi), [torch.where(i < n, i - lo, hi - lo) for i in indices]


def tsdf_reference_numpy(
    depth: np.ndarray,
    com: np.ndarray,
    camera: Intrinsics,
    cfg: VolumeConfig | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Plain per-voxel NumPy version of :func:`projective_tsdf` for one image, for testing.

    Args:
        depth: ``(H, W)`` mm. com: ``(3,)`` mm. mask: optional ``(H, W)`` bool.
    Returns:
        ``(D, D, D)`` float32, indexed ``[z, y, x]``.
    """
    cfg = cfg or VolumeConfig()
    fx, fy, cx, cy = _intrinsics(camera)
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    pts = voxel_centers(np.asarray(com, dtype=np.float64)[None], cfg)[0]
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * x / z + cx
        v = fy * y / z + cy

    def look_up(col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth at integer pixels, and whether it is a surface / background."""
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        ci, ri = (
            np.where(inside, col, 0).astype(np.int64),
            np.where(inside, row, 0).astype(np.int64),
        )
        d = np.where(inside, depth[ri, ci], np.nan)
        with np.errstate(invalid="ignore"):
            valid = d > 0
            background = valid & (d >= cfg.max_depth_mm)
        if mask is not None:
            background |= inside & ~mask[ri, ci]
        return d, valid & ~background, background

    d, surface, background = look_up(np.floor(u + 0.5), np.floor(v + 0.5))
    if cfg.interpolation == "bilinear":
        u0, v0 = np.floor(u), np.floor(v)
        au, av = u - u0, v - v0
        corners = [look_up(u0 + du, v0 + dv) for dv in (0, 1) for du in (0, 1)]
        weights = [(1 - au) * (1 - av), au * (1 - av), (1 - au) * av, au * av]
        all4 = np.logical_and.reduce([c[1] for c in corners])
        interp = sum(wt * np.where(c[1], c[0], 0.0) for wt, c in zip(weights, corners, strict=True))
        d = np.where(all4, interp, d)
    sdf = (d - z) / cfg.truncation_mm
    out = np.where(surface, np.clip(sdf, -1, 1), cfg.invalid_value)
    out = np.where(background, cfg.empty_value, out)
    return out.astype(np.float32)

"""The cube: the one projective TSDF sampler for training input, test input and test-time
views, and the one codec between joints and the pose net's target (paper Sec. 3.1, "3D
volumetric representation").

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

Rotated and scaled cubes (training's augmentation, test-time views)
    The cube may be rotated by ``angle`` about the axis through its centre parallel to the
    camera's z axis and scaled by ``scale`` about its centre::

        centre of voxel o  =  com + scale * Rz(angle) @ o      (o: the voxel's offset in the
                                                                plain cube, mm)

    with the truncation ``scale * truncation_mm``, so that in the cube's own units the volume is
    the TSDF of the scene rotated by ``-angle`` and shrunk by ``1 / scale`` about the centre.
    :func:`encode_joints` expresses joints in the same frame, so labels and volume agree exactly
    without resampling depth or volumes. Rotating the depth image about the centre's pixel
    instead would be rigid only for a centre on the optical axis, and resamples depth. What is
    not simulated: the scene is still seen along the original rays (the occlusion pattern and
    the noise are those of the original view), as with any in-plane augmentation.
    ``Rz`` is :func:`handvox.geometry.rotation_z` (a positive angle turns +x towards +y,
    clockwise on the image).

Implementation: :func:`projective_tsdf` is one batched torch function (CPU, CUDA). Pixel
coordinates are computed in float64; for a plain cube on ``(B, D, D)`` tables (u depends only on
x and z, v only on y and z), for a rotated one per voxel. Per voxel there is one flat-index
gather and a few float32 element-wise passes. Angle 0 and scale 1 give the plain cube bit for
bit (the rotated coordinates are written so that ``1 * o - 0 * o' == o``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from handvox.camera import Camera
from handvox.geometry import rotation_z

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
    """``(D,)`` float64 offsets of voxel centres from the cube centre along one axis."""
    return (np.arange(size, dtype=np.float64) - (size - 1) / 2) * voxel_mm


def _intrinsics(camera: Intrinsics) -> tuple[float, float, float, float]:
    if isinstance(camera, Camera):
        return camera.intrinsics
    fx, fy, cx, cy = camera
    return float(fx), float(fy), float(cx), float(cy)


# --- the cube's geometry ----------------------------------------------------------------------
def cube_axes(
    com: torch.Tensor,
    cfg: VolumeConfig,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Camera-frame x, y and z of the voxel centres, float64, in their smallest broadcastable
    form: z ``(B, Dz)`` always (a rotation about z leaves z alone); for a plain cube (``angle``
    None) x ``(B, 1, Dx)`` and y ``(B, Dy, 1)``, for a rotated one both ``(B, Dy, Dx)``.

    Args:
        com: ``(B, 3)`` cube centres, mm.
        angle, scale: optional ``(B,)`` rotation about the viewing axis (rad) and scale.
    """
    dtype = torch.float32 if com.device.type == "mps" else torch.float64  # MPS has no float64
    off = torch.as_tensor(_offsets(cfg.size, cfg.voxel_mm), dtype=dtype, device=com.device)
    c = com.to(dtype)
    cx, cy, cz = c[:, 0].view(-1, 1, 1), c[:, 1].view(-1, 1, 1), c[:, 2].view(-1, 1)
    k = None if scale is None else scale.to(dtype).view(-1, 1, 1)
    z = cz + (off if k is None else k.view(-1, 1) * off)
    oy, ox = off.view(-1, 1), off.view(1, -1)
    if angle is None:
        x, y = (ox, oy) if k is None else (k * ox, k * oy)
        return cx + x, cy + y, z
    cos = torch.cos(angle.to(dtype)).view(-1, 1, 1)
    sin = torch.sin(angle.to(dtype)).view(-1, 1, 1)
    # Written out rather than as a matrix product, so that angle 0 and scale 1 reproduce the
    # plain cube's coordinates exactly (1 * o - 0 * o' == o in floating point).
    x, y = cos * ox - sin * oy, sin * ox + cos * oy
    if k is not None:
        x, y = k * x, k * y
    return cx + x, cy + y, z


def voxel_centers(
    com: torch.Tensor,
    cfg: VolumeConfig | None = None,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Camera-frame centres of every voxel: ``(B, D, D, D, 3)`` float64 xyz, mm, indexed
    ``[b, z, y, x]`` like the volume, for cube centres ``com`` ``(B, 3)`` and optional ``(B,)``
    ``angle`` (rad) and ``scale``."""
    cfg = cfg or VolumeConfig()
    x, y, z = cube_axes(com, cfg, angle, scale)
    d = cfg.size
    zz = z[:, :, None, None].expand(-1, d, d, d)
    return torch.stack([x[:, None].expand_as(zz), y[:, None].expand_as(zz), zz], dim=-1)


# --- the joint codec ----------------------------------------------------------------------------
def encode_joints(
    xyz: torch.Tensor,
    com: torch.Tensor,
    unit_mm: float,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Camera-frame joints -> the pose net's target: offsets from the cube centre in the cube's
    own axes and scale, in units of ``unit_mm`` (``PoseNetConfig.target_scale_mm``).

    Args:
        xyz: ``(B, J, 3)`` mm. com: ``(B, 3)`` cube centres, mm.
        angle, scale: optional ``(B,)`` rotation (rad) and scale of the cube.
    Returns:
        ``(B, J, 3)``, ``xyz``'s dtype.
    """
    off = xyz - com[:, None, :].to(xyz.dtype)
    if angle is not None:
        off = off @ rotation_z(angle.to(xyz.dtype))
    if scale is not None:
        off = off / scale.to(xyz.dtype)[:, None, None]
    return off / unit_mm


def decode_joints(
    target: torch.Tensor,
    com: torch.Tensor,
    unit_mm: float,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Inverse of :func:`encode_joints`: the pose net's output ``(B, J, 3)`` -> camera-frame mm
    (``com``'s dtype when it is floating point)."""
    # Scaled in the network's precision first: the product is what a float32 net means.
    off = (target * unit_mm).to(com.dtype)
    if scale is not None:
        off = off * scale.to(off.dtype)[:, None, None]
    if angle is not None:
        off = off @ rotation_z(angle.to(off.dtype)).transpose(1, 2)
    return off + com[:, None, :]


# --- the sampler --------------------------------------------------------------------------------
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
    *,
    angle: torch.Tensor | None = None,
    scale: torch.Tensor | None = None,
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
        angle, scale: optional ``(B,)``: the cube rotated about the viewing axis by ``angle``
            (rad) and scaled by ``scale`` about its centre (module docstring); None: the plain
            cube.
    Returns:
        ``(B, 1, D, D, D)`` float32 in [-1, 1], indexed ``[b, 0, z, y, x]`` in the cube's own
        axes (``out`` if given).
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
    for name, v in (("angle", angle), ("scale", scale)):
        if v is not None and v.shape != (b,):
            raise ValueError(f"{name} must be ({b},), got {tuple(v.shape)}")
    dev = depth.device
    if out is None:
        out = torch.empty((b, 1, n, n, n), dtype=torch.float32, device=dev)
    elif out.shape != (b, 1, n, n, n) or out.dtype != torch.float32 or out.device != dev:
        raise ValueError(f"out must be a float32 ({b}, 1, {n}, {n}, {n}) tensor on {dev}")
    com = com.to(dev)
    angle = None if angle is None else angle.to(dev)
    scale = None if scale is None else scale.to(dev)
    if mask is not None:
        mask = mask.to(dev, torch.bool)
    step = max(1, CPU_CHUNK_VOXELS // n**3) if dev.type == "cpu" else max(b, 1)
    for s in range(0, b, step):
        e = min(b, s + step)
        _tsdf_chunk(
            depth[s:e],
            com[s:e],
            _intrinsics(camera),
            cfg,
            None if mask is None else mask[s:e],
            None if angle is None else angle[s:e],
            None if scale is None else scale[s:e],
            out[s:e, 0],
        )
    return out


def _tsdf_chunk(
    depth: torch.Tensor,
    com: torch.Tensor,
    intr: tuple[float, float, float, float],
    cfg: VolumeConfig,
    mask: torch.Tensor | None,
    angle: torch.Tensor | None,
    scale: torch.Tensor | None,
    out: torch.Tensor,
) -> None:
    """:func:`projective_tsdf` of a ``(b, H, W)`` slice into ``out`` ``(b, D, D, D)``."""
    b, h, w = depth.shape
    n = cfg.size
    fx, fy, cx, cy = intr
    x, y, z = cube_axes(com, cfg, angle, scale)
    zc = z[:, :, None, None]
    # (b, Dz, 1, Dx) and (b, Dz, Dy, 1) for a plain cube, (b, Dz, Dy, Dx) for a rotated one
    u = fx * x[:, None] / zc + cx
    v = fy * y[:, None] / zc + cy
    z_ok = zc > 0
    # Column / row indices of the nearest pixel, then for bilinear of the left / top and right /
    # bottom neighbours.
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
        # A materialised flat index plus torch.gather beats broadcast advanced indexing (an
        # ad-hoc timing: docs/benchmarks.md, "benchmarks/tsdf_speed.py").
        idx = (row * stride + col).expand(b, n, n, n).reshape(b, -1)
        return torch.gather(flat, 1, idx).view(b, n, n, n)

    obs = look_up(rows[0], cols[0])  # (b, Dz, Dy, Dx)
    if cfg.interpolation == "bilinear":
        au = (u - torch.floor(u)).to(torch.float32)
        av = (v - torch.floor(v)).to(torch.float32)
        top = torch.lerp(look_up(rows[1], cols[1]), look_up(rows[1], cols[2]), au)
        bottom = torch.lerp(look_up(rows[2], cols[1]), look_up(rows[2], cols[2]), au)
        interp = torch.lerp(top, bottom, av)
        # A sentinel corner makes interp inf or NaN (even at weight 0): fall back to nearest.
        obs = torch.where(torch.isfinite(interp), interp, obs)
    obs.sub_(zc.to(torch.float32))
    if scale is None:
        obs.mul_(1.0 / cfg.truncation_mm)
    else:  # the truncation scales with the cube
        inv = 1.0 / (cfg.truncation_mm * scale.to(torch.float64))
        obs.mul_(inv.to(torch.float32).view(b, 1, 1, 1))
    _finish(obs, cfg, out)


def _crop(indices: list[torch.Tensor], n: int) -> tuple[tuple[int, int], list[torch.Tensor]]:
    """Span ``[lo, hi)`` of the in-image indices (``n`` marks off-image) and the indices shifted
    into it, off-image ones mapped to the new padding index ``hi - lo``."""
    lo = min(int(i.min()) for i in indices)
    hi = max(int(torch.where(i < n, i, -1).max()) for i in indices) + 1
    if hi <= lo:
        lo = hi = 0
    return (lo, hi), [torch.where(i < n, i - lo, hi - lo) for i in indices]

"""Test oracles: plain, slow, independent versions of what the package computes fast. They live
with the tests, not in the package, because nothing but a test should call them."""

from __future__ import annotations

import math

import numpy as np

from handvox.camera import Camera


def cube_points(com, size: int, voxel_mm: float, angle: float = 0.0, scale: float = 1.0):
    """``(D, D, D, 3)`` float64 voxel centres of one cube, indexed ``[z, y, x]``, computed
    afresh: ``com + scale * Rz(angle) @ offset``."""
    off = (np.arange(size) - (size - 1) / 2) * voxel_mm
    zz, yy, xx = np.meshgrid(off, off, off, indexing="ij")
    c, s = math.cos(angle), math.sin(angle)
    x, y = c * xx - s * yy, s * xx + c * yy
    return np.asarray(com, np.float64) + scale * np.stack([x, y, zz], -1)


def tsdf_reference_numpy(
    depth: np.ndarray,
    com,
    camera: Camera,
    cfg,
    mask: np.ndarray | None = None,
    angle: float = 0.0,
    scale: float = 1.0,
) -> np.ndarray:
    """Plain per-voxel version of :func:`handvox.estimator.volume.projective_tsdf` for one image
    and one cube (rotated by ``angle`` rad and scaled by ``scale`` about its centre).

    Args:
        depth: ``(H, W)`` mm. com: ``(3,)`` mm. mask: optional ``(H, W)`` bool.
    Returns:
        ``(D, D, D)`` float32, indexed ``[z, y, x]``.
    """
    fx, fy, cx, cy = camera.intrinsics
    depth = np.asarray(depth, dtype=np.float64)
    h, w = depth.shape
    pts = cube_points(com, cfg.size, cfg.voxel_mm, angle, scale)
    x, y, z = pts[..., 0], pts[..., 1], pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = fx * x / z + cx
        v = fy * y / z + cy

    def look_up(col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth at integer pixels, and whether it is a surface / background."""
        inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
        ci = np.where(inside, col, 0).astype(np.int64)
        ri = np.where(inside, row, 0).astype(np.int64)
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
    sdf = (d - z) / (cfg.truncation_mm * scale)
    out = np.where(surface, np.clip(sdf, -1, 1), cfg.invalid_value)
    out = np.where(background, cfg.empty_value, out)
    return out.astype(np.float32)


def sphere_depth_librealsense(camera: Camera, model: str, coeffs, centre, radius: float):
    """``(H, W)`` float32 depth (z, mm; 0 where the ray misses) of a sphere seen by ``camera``
    with the lens ``model``/``coeffs`` as librealsense itself deprojects each pixel
    (``rs2_deproject_pixel_to_point``, one call a pixel: slow, small images only)."""
    import pyrealsense2 as rs  # a dev dependency; tests that call this skip without it

    intr = rs.intrinsics()
    intr.width, intr.height = camera.width, camera.height
    intr.fx, intr.fy, intr.ppx, intr.ppy = camera.fx, camera.fy, camera.cx, camera.cy
    intr.model, intr.coeffs = getattr(rs.distortion, model), list(coeffs)
    c = np.asarray(centre, np.float64)
    out = np.zeros((camera.height, camera.width), np.float32)
    for v in range(camera.height):
        for u in range(camera.width):
            ray = np.array(rs.rs2_deproject_pixel_to_point(intr, [float(u), float(v)], 1.0))
            # |t ray - c| = radius, nearest t > 0
            a, b = ray @ ray, -2.0 * ray @ c
            disc = b * b - 4 * a * (c @ c - radius * radius)
            if disc >= 0:
                t = (-b - math.sqrt(disc)) / (2 * a)
                if t > 0:
                    out[v, u] = t * ray[2]
    return out

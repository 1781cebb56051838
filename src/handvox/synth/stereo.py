"""Active stereo sensor noise (Intel RealSense D415 / D435): depth from disparity between two IR
cameras, the projector only adding texture.

``add_stereo_noise`` turns a clean rendered depth image into what a D4xx measures. Depth is
triangulated from the disparity ``d = f b / z`` between the left imager (the reference: the depth
image is the left camera's) and the right one, ``b`` to its right [D4 datasheet]:

- **Disparity noise** of ``subpixel_rms_px``, so the depth error is ``z^2 * subpixel / (f b)``:
  quadratic in distance, inverse in baseline and focal length (the D400 depth-quality
  whitepaper's "depth RMS error" [BKM]; typically 0.08 px on a textured target there). Part
  of it is spatially correlated over ``correlation_px``: the matcher's cost window spans
  neighbouring pixels.
- **Disparity quantisation** at ``subpixel_step_px`` (1/32 px: the D4's subpixel resolution
  [SPX]), then the stored depth's unit (1 mm by default).
- **Occlusion holes**: a point the right imager cannot see has no match and is invalid. With
  the right imager at +x they fall to the left of near objects, as does the invalid band at the
  image's left edge, ``f b / z`` px wide, where the left imager sees what the right does not
  [D4 datasheet, "invalid depth band"].
- **Foreground fattening** at depth edges: window-based matching lets a near surface's
  disparity spread ``fattening_px`` into the background (and onto nothing) beside it [SS02].
- **Speckle**: small blobs where matching fails, either invalid (the left-right check) or at a
  wrong disparity (a false match) [SS02; librealsense's "speckle" and spatial filters exist for
  them].
- **Grazing angles**: the two views of a steep surface differ too much to match; dropouts rise
  linearly from ``grazing_start_deg`` to ``grazing_full_deg``.
- **Range**: nothing nearer than ``f b / max_disparity_px`` (the matcher's disparity search
  range: the D4's minimum-Z) or farther than ``max_depth_mm``.

Sources:
    [D4]  Intel RealSense D400 Series Product Family Datasheet (depth FOV, baselines D415 55 mm
          and D435 50 mm, the left imager as the stereo reference, the invalid depth band's width
          ``B F / Z`` px, minimum-Z per resolution).
    [BKM] A. Grunnet-Jepsen, J. N. Sweetser, J. Woodfill, "Best-Known-Methods for Tuning Intel
          RealSense D400 Depth Cameras for Best Performance", Intel whitepaper (rev. 1.9/2.0):
          RMS error = distance^2 * subpixel / (focal length * baseline), subpixel about 0.08;
          optimal resolutions D415 1280x720, D435 848x480.
    [SPX] A. Grunnet-Jepsen et al., "Subpixel Linearity Improvement for Intel RealSense Depth
          Camera D400 Series", Intel whitepaper (rev. 1.3): disparity steps, 1/32 px.
    [SS02] D. Scharstein, R. Szeliski, "A Taxonomy and Evaluation of Dense Two-Frame Stereo
          Correspondence Algorithms", IJCV 47, 2002 (foreground fattening of window-based
          matching, occlusions, left-right checks).
Parameter ranges per frame, and the cameras: :mod:`handvox.synth.sensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera
from handvox.synth.noise import (
    _field_factors,
    _field_row,
    _jit,
    _shadow_kernel,
    _uniform,
    crop_scene,
    random_blobs,
)

__all__ = ["StereoConfig", "add_stereo_noise"]


@dataclass(frozen=True)
class StereoConfig:
    """Parameters of the active stereo model (lengths in mm, image distances in the sensor's
    px). Defaults: a D435 at 848x480 [BKM] with mid-range values of
    :data:`handvox.synth.sensors.RANGES`."""

    baseline_mm: float = 50.0
    focal_px: float = 447.0
    """The sensor's focal length at its resolution: disparities are in its pixels."""
    subpixel_rms_px: float = 0.08
    correlated_fraction: float = 0.5
    correlation_px: float = 7.0
    subpixel_step_px: float = 1.0 / 32.0
    max_disparity_px: float = 126.0
    """The disparity search range: sets the nearest depth measured, f b / this."""
    occlusion: bool = True
    fattening_px: float = 1.0
    """Largest spread of a near surface into the background; drawn per 2x2 block in 0 .. this."""
    edge_jump_mm: float = 20.0
    speckle_per_10k_px: float = 0.5
    speckle_radius_px: tuple[float, float] = (1.0, 3.0)
    speckle_outlier_fraction: float = 0.5
    """Share of speckles that are false matches (the rest invalid)."""
    speckle_disparity_px: tuple[float, float] = (0.5, 2.0)
    """Size of a false match's disparity error (either sign)."""
    grazing_dropout: bool = True
    grazing_start_deg: float = 75.0
    grazing_full_deg: float = 87.0
    max_depth_mm: float = 6000.0
    depth_unit_mm: float = 1.0
    invalid_value: float = 0.0

    def __post_init__(self) -> None:
        if min(self.baseline_mm, self.focal_px, self.subpixel_step_px) <= 0:
            raise ValueError("baseline_mm, focal_px and subpixel_step_px must be > 0")
        if self.subpixel_rms_px < 0 or self.correlation_px <= 0 or self.depth_unit_mm < 0:
            raise ValueError("subpixel_rms_px >= 0, correlation_px > 0, depth_unit_mm >= 0")
        if not 0.0 <= self.correlated_fraction <= 1.0:
            raise ValueError(f"correlated_fraction must be in 0..1: {self.correlated_fraction}")

    @property
    def min_depth_mm(self) -> float:
        """The nearest depth matched (the disparity search range's end)."""
        return self.focal_px * self.baseline_mm / self.max_disparity_px


_FAT_BLOCK = 2


@_jit
def _fatten_kernel(z, valid, cos, drop, reach_max, rcap, jump, key):
    """Foreground fattening: a pixel within ``r`` px (chessboard; ``r`` drawn per 2x2 block,
    uniform in 0 .. ``reach_max``, at most ``rcap``) of a near-side edge pixel (valid, with a
    4-neighbour invalid or farther by more than ``jump``) and farther than it by more than
    ``jump`` (or without depth) takes its depth and angle, valid and undropped. The edges are
    found first and keep their own depth, so nothing spreads twice; a pixel near several takes
    the first that is nearer by more than ``jump`` than what it holds."""
    h, w = z.shape
    wb = (w + _FAT_BLOCK - 1) // _FAT_BLOCK
    edge = np.zeros(w, np.uint8)
    n = 0
    for phase in range(2):  # count, then collect
        if phase == 1:
            src = np.empty(n, np.int64)
            sz, sc = np.empty(n, z.dtype), np.empty(n, cos.dtype)
            n = 0
        for i in range(h):
            zr, vr = z[i], valid[i]
            zu, vu = z[max(i - 1, 0)], valid[max(i - 1, 0)]
            zd, vd = z[min(i + 1, h - 1)], valid[min(i + 1, h - 1)]
            for j in range(1, w - 1):  # bitwise: vectorises
                zc = zr[j] + jump
                edge[j] = vr[j] & (
                    (~vr[j - 1] | (zr[j - 1] > zc))
                    | (~vr[j + 1] | (zr[j + 1] > zc))
                    | (~vu[j] | (zu[j] > zc))
                    | (~vd[j] | (zd[j] > zc))
                )
            for j in range(1, w - 1):
                if edge[j]:
                    if phase == 1:
                        src[n], sz[n], sc[n] = i * w + j, zr[j], cos[i, j]
                    n += 1
    for k in range(n):
        i, j = src[k] // w, src[k] % w
        ze, ce = sz[k], sc[k]
        for a in range(max(i - rcap, 0), min(i + rcap + 1, h)):
            for b in range(max(j - rcap, 0), min(j + rcap + 1, w)):
                if valid[a, b] and z[a, b] <= ze + jump:
                    continue
                u = _uniform(key, (a // _FAT_BLOCK) * wb + b // _FAT_BLOCK)
                r = min(int(math.floor(u * (reach_max + 1.0))), rcap)
                if max(abs(a - i), abs(b - j)) <= r:
                    z[a, b], cos[a, b], valid[a, b], drop[a, b] = ze, ce, True, False


@_jit
def _stereo_kernel(z, valid, cos, drop, field, u0, bf_s, bf_img, sigma_d, corr, step, dmax,
                   zmax, unit, grazing, cos_lo, graze_lo, graze_span, key_white, key_graze, bad,
                   out):  # fmt: skip
    """Disparity noise, quantisation, the unit, occlusion and range into ``out`` (the crop of
    the frame); ``field``: :func:`~handvox.synth.noise._field_factors` or None."""
    h, w = z.shape
    # The white share is uniform (one hash, as in the structured-light kernel) rather than
    # normal: cheaper, and under the correlated share its shape barely shows.
    a, b = math.sqrt(corr), math.sqrt(12.0 * (1.0 - corr))
    inv_step = 1.0 / step
    inv_unit = 1.0 / unit if unit > 0 else 0.0
    frow = np.zeros(w, np.float32)
    for i in range(h):
        if field is not None:
            _field_row(field[0], field[1], field[2], field[3], i, frow)
        zr, vr, dr, cr, outr = z[i], valid[i], drop[i], cos[i], out[i]
        base = i * w
        for j in range(w):  # no branches: vectorises
            inv_z = 1.0 / np.float64(zr[j])
            d = bf_s * inv_z + sigma_d * (a * frow[j] + b * (_uniform(key_white, base + j) - 0.5))
            dq = math.floor(d * inv_step + 0.5) * step
            zz = bf_s / max(dq, step)
            if unit > 0:
                zz = math.floor(zz * inv_unit + 0.5) * unit
            seen = (j + u0) - bf_img * inv_z >= 0.0  # inside the right imager's view
            ok = vr[j] & ~dr[j] & seen & (dq <= dmax) & (zz <= zmax)
            outr[j] = zz if ok else bad
        if grazing:
            for j in range(w):
                if cr[j] < cos_lo and outr[j] != bad:
                    p = (math.acos(cr[j]) - graze_lo) / graze_span
                    if _uniform(key_graze, base + j) < p:
                        outr[j] = bad


def add_stereo_noise(
    clean: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    config: StereoConfig | None = None,
    normals: np.ndarray | None = None,
    invalid_value: float | None = None,
) -> np.ndarray:
    """Simulate an active stereo (D4xx) measurement of a clean depth frame, the depth registered
    to the left imager.

    Args:
        clean: ``(H, W)`` depth, mm; <= 0 or non-finite is background (nothing to match).
        camera: intrinsics of the image (occlusion and band widths use its fx; disparities the
            sensor's ``config.focal_px``).
        rng: the only source of randomness: equal generator states give equal outputs.
        config: :class:`StereoConfig` (default: D435-like).
        normals: ``(H, W, 3)`` unit normals from a renderer; computed from ``clean`` if None.
        invalid_value: overrides ``config.invalid_value``.
    Returns:
        ``(H, W)`` float32 depth, mm, multiples of ``config.depth_unit_mm``; invalid pixels hold
        exactly the invalid value. Background beside a near surface may take its depth (within
        ``config.fattening_px``); elsewhere nothing is measured where ``clean`` is background.
    """
    cfg = StereoConfig() if config is None else config
    bad = cfg.invalid_value if invalid_value is None else invalid_value
    out = np.full(np.shape(clean), bad, dtype=np.float32)
    theta_max = min(math.radians(cfg.grazing_full_deg), math.radians(89.0))
    margin = int(math.ceil(cfg.fattening_px)) + 1
    crop = crop_scene(clean, camera, 0.5 * cfg.min_depth_mm, 1.5 * cfg.max_depth_mm, margin,
                      normals, math.cos(theta_max))  # fmt: skip
    if crop is None:
        return out
    keys = rng.integers(0, 2**63, size=3, dtype=np.uint64)
    z, valid, cos = crop.z, crop.valid, crop.cos
    h, w = z.shape
    drop = np.zeros((h, w), np.bool_)
    if cfg.occlusion:
        _shadow_kernel(z, valid, camera.fx * cfg.baseline_mm, 1, drop)
    if cfg.fattening_px > 0:
        _fatten_kernel(z, valid, cos, drop, cfg.fattening_px, int(math.ceil(cfg.fattening_px)),
                       np.float32(cfg.edge_jump_mm), keys[0])  # fmt: skip
    blobs = []
    if cfg.speckle_per_10k_px > 0:  # (centres in occlusions too: they change nothing there)
        blobs = random_blobs(rng, valid, cfg.speckle_per_10k_px, cfg.speckle_radius_px)
    false_match = rng.random(len(blobs)) < cfg.speckle_outlier_fraction
    n = len(blobs)
    shift = rng.uniform(*cfg.speckle_disparity_px, n) * (2.0 * rng.integers(0, 2, n) - 1.0)
    for blob, fm in zip(blobs, false_match, strict=True):
        if not fm:
            drop[blob] = True
    field = None
    corr = cfg.correlated_fraction if cfg.subpixel_rms_px > 0 else 0.0
    if corr > 0:
        field = _field_factors(rng, h, w, cfg.correlation_px)
    bf_s = cfg.focal_px * cfg.baseline_mm
    lo = math.radians(cfg.grazing_start_deg)
    view = out[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w]
    _stereo_kernel(
        z, valid, cos, drop, field, crop.x0, bf_s, camera.fx * cfg.baseline_mm,
        cfg.subpixel_rms_px, corr, cfg.subpixel_step_px, cfg.max_disparity_px, cfg.max_depth_mm,
        cfg.depth_unit_mm, cfg.grazing_dropout, math.cos(lo), lo, max(theta_max - lo, 1e-6),
        keys[1], keys[2], np.float32(bad), view,
    )  # fmt: skip
    # False matches: the blob's disparity off by its shift, re-quantised like the rest. All
    # read before any is written: where blobs overlap, one shift applies, not their sum.
    fixes = []
    for blob, fm, s in zip(blobs, false_match, shift, strict=True):
        if not fm:
            continue
        zb = view[blob].astype(np.float64)
        ok = zb != bad
        d = np.floor((bf_s / zb[ok] + s) / cfg.subpixel_step_px + 0.5) * cfg.subpixel_step_px
        zz = bf_s / np.maximum(d, cfg.subpixel_step_px)
        if cfg.depth_unit_mm > 0:
            zz = np.floor(zz / cfg.depth_unit_mm + 0.5) * cfg.depth_unit_mm
        zz[(d > cfg.max_disparity_px) | (zz > cfg.max_depth_mm)] = bad
        fixes.append((blob[0][ok], blob[1][ok], zz))
    for rows, cols, zz in fixes:
        view[rows, cols] = zz
    return out

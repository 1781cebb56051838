"""Short-range coded light sensor noise (Intel RealSense SR300 / SR305).

``add_coded_light_noise`` turns a clean rendered depth image into what an SR300-class camera
measures. The SR300 projects a temporal sequence of Gray-coded line patterns with a MEMS mirror;
each camera pixel decodes which projector line lit it and triangulates depth from the projector
to camera baseline, with 1/8 mm depth resolution, 0.2 to 1.5 m [Z20, RS]:

- **Triangulation noise** ``sigma = sigma_500 * (z / 500 mm)^2`` (a decoded projector
  coordinate's error, as for any triangulating sensor [K12's derivation]); mostly spatially
  correlated (``correlated_fraction``, over ``correlation_px``): the camera's on-board filters
  smooth the depth [Z20]. ``sigma_500`` is fitted to the SR305 frames of ``../shared`` (5x5
  median residuals on the palm: 0.1-0.6 mm at 490-660 mm, already filtered), not taken from a
  paper: [C17] and [L21] report accuracy on planes rather than this per-pixel figure.
- **Projector occlusion** (no code reaches the pixel) beside near objects, ``f b (1/z_near -
  1/z_far)`` px wide. Which side the projector sits on is drawn per frame: narrow gaps in the
  SR305 frames fall on both sides of near objects about equally (measured on their 19 frames:
  ~1,000 gaps each way), so they cannot settle it.
- **Ragged, blocky silhouettes** and **edge dropouts**: a pixel straddling an edge decodes a mix
  of two codes and fails. The silhouette is jittered with Kinect v1's lateral noise [N12] in
  blocks of ``lateral_block_px`` (the SR305 frames' staircase edges), but only in what is
  valid: the depth up to the rim stays smooth, as the SR305's filtered depth is. Scale and
  rates fitted to the SR305 frames' edge statistics.
- **Edge outliers**: a mixed code decodes to a wrong line now and then; a few silhouette pixels
  read nearer than the surface (the bright specks in the SR305 frames' finger gaps).
- **Holes**: small blobs inside surfaces (specular or dark spots, failed decodes), and
  **grazing-angle dropouts** as for the other triangulating sensors.

Sources:
    [Z20] A. Zabatani et al., "Intel RealSense SR300 Coded Light Depth Camera", IEEE TPAMI
          42(10), 2020 (principle, 0.125 mm depth resolution, filtering, calibration).
    [RS]  librealsense, "camera_specs.md": SR300 indoor range 0.2-1.5 m, depth FOV 68 x 54 deg,
          coded light IR (the SR305 has the same depth module).
    [C17] M. Carfagni et al., "On the Performance of the Intel SR300 Depth Camera: Metrological
          and Critical Characterization", IEEE Sensors Journal 17(14), 2017 (errors grow with
          distance; best below ~0.6 m).
    [L21] F. Lourenço, H. Araujo, "Intel RealSense SR305, D415 and L515: Experimental
          Evaluation and Comparison of Depth Estimation", VISAPP 2021.
    [K12] K. Khoshelham, S. O. Elberink, Sensors 12(2), 2012 (triangulation error ~ z^2).
    [N12] C. V. Nguyen, S. Izadi, D. Lovell, 3DIMPVT 2012 (lateral noise).
    SR305 frames: ``../shared/data/sr305`` (what the fits above used).
Parameter ranges per frame, and the cameras: :mod:`handvox.synth.sensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera
from handvox.synth.noise import (
    _edge_distance_kernel,
    _field_factors,
    _field_row,
    _jit,
    _normal4,
    _shadow_kernel,
    _uniform,
    crop_scene,
    random_blobs,
)

__all__ = ["CodedLightConfig", "add_coded_light_noise"]


@dataclass(frozen=True)
class CodedLightConfig:
    """Parameters of the coded light model (lengths in mm, image distances in px). Defaults: an
    SR305 as in ``../shared``'s frames, mid-range values of
    :data:`handvox.synth.sensors.RANGES`."""

    sigma_500_mm: float = 0.2
    """Noise std at 500 mm; grows with the square of the depth."""
    correlated_fraction: float = 0.9
    correlation_px: float = 7.0
    shadow: bool = True
    baseline_mm: float = 25.0
    """Projector to camera distance: sets only the occlusion widths here."""
    projector_side: int = 1
    """Sign of the projector's x: +1 puts the occlusions left of near objects, -1 right."""
    lateral_scale: float = 0.6
    lateral_block_px: int = 2
    lateral_band_px: int = 2
    edge_jump_mm: float = 15.0
    edge_dropout_prob: tuple[float, ...] = (0.08, 0.03)
    """Probability to drop a pixel at chessboard distance 0, 1, ... px from an edge."""
    edge_dropout_block_px: int = 2
    edge_outlier_prob: float = 0.004
    """Chance that a pixel on an edge decodes a wrong line, reading nearer by
    ``edge_outlier_mm``."""
    edge_outlier_mm: tuple[float, float] = (5.0, 40.0)
    holes_per_10k_px: float = 1.0
    hole_radius_px: tuple[float, float] = (0.7, 3.0)
    grazing_dropout: bool = True
    grazing_start_deg: float = 82.0
    grazing_full_deg: float = 89.0
    min_depth_mm: float = 200.0
    max_depth_mm: float = 1500.0
    depth_unit_mm: float = 0.125
    """The stored depth's step (SR300/SR305: 1/8 mm [Z20])."""
    invalid_value: float = 0.0

    def __post_init__(self) -> None:
        if self.projector_side not in (-1, 1):
            raise ValueError(f"projector_side must be -1 or 1, got {self.projector_side}")
        if min(self.lateral_block_px, self.edge_dropout_block_px) < 1:
            raise ValueError("block sizes must be >= 1 px")
        if self.sigma_500_mm < 0 or self.correlation_px <= 0 or self.depth_unit_mm < 0:
            raise ValueError("sigma_500_mm >= 0, correlation_px > 0, depth_unit_mm >= 0")
        if not 0.0 <= self.correlated_fraction <= 1.0:
            raise ValueError(f"correlated_fraction must be in 0..1: {self.correlated_fraction}")


# [N12]'s lateral std in px, 0.8 + 0.035 theta / (pi/2 - theta) (theta capped at 89 deg), by
# cos(theta) in steps of 1/1024: a table look-up where an arccos per pixel cost most of the
# kernel's time.
_LATERAL_BY_COS = np.array(
    [0.8 + 0.035 * t / (0.5 * math.pi - t)
     for t in np.minimum(np.arccos(np.linspace(0.0, 1.0, 1025)), math.radians(89.0))]
)  # fmt: skip


@_jit
def _rim_kernel(valid, cos, drop, dist, band, block, scale, key):
    """Ragged silhouettes: a valid pixel within ``band`` of an edge whose jittered position (the
    lateral noise of [N12], one jitter per ``block``, near-normal from :func:`_normal4`) falls
    on an invalid or dropped pixel is dropped. Its depth stays its own: the SR305's filtered
    depth is smooth up to the rim."""
    h, w = drop.shape
    wb = (w + block - 1) // block
    n = 0
    for i in range(h):
        for j in range(w):
            n += (dist[i, j] <= band) & valid[i, j]
    hit = np.empty(n, np.int64)
    n = 0
    # each block's two normals (Box-Muller), drawn once for the block row ``drawn``
    jy, jx = np.empty(wb), np.empty(wb)
    drawn = np.full(wb, -1, np.int64)
    for i in range(h):
        bi = i // block
        for j in range(w):
            if dist[i, j] > band or not valid[i, j]:
                continue
            bj = j // block
            if drawn[bj] != bi:
                b = 2 * (bi * wb + bj)
                jy[bj], jx[bj], drawn[bj] = _normal4(key, b), _normal4(key, b + 1), bi
            s = scale * _LATERAL_BY_COS[int(min(max(cos[i, j], 0.0), 1.0) * 1024.0 + 0.5)]
            si = min(max(i + int(math.floor(jy[bj] * s + 0.5)), 0), h - 1)
            sj = min(max(j + int(math.floor(jx[bj] * s + 0.5)), 0), w - 1)
            if drop[si, sj]:
                hit[n] = i * w + j
                n += 1
    for k in range(n):  # after the reads: no pixel sees another's new state
        drop[hit[k] // w, hit[k] % w] = True


@_jit
def _coded_kernel(z, cos, drop, field, dist, s500, corr, zmin, zmax, unit, edge_probs,
                  edge_block, out_prob, out_lo, out_hi, grazing, cos_lo, graze_lo, graze_span,
                  key_white, key_edge, key_out, key_graze, bad, out):  # fmt: skip
    """Noise, the unit, edge dropouts and outliers, grazing dropouts and range into ``out`` (the
    crop of the frame); pixels in ``drop`` are invalid."""
    h, w = z.shape
    # The white share is uniform (one hash, as in the structured-light kernel): a fifth of the
    # variance or less, its shape does not show.
    a, b = math.sqrt(corr), math.sqrt(12.0 * (1.0 - corr))
    inv_unit = 1.0 / unit if unit > 0 else 0.0
    scale = s500 / (500.0 * 500.0)
    n_probs = len(edge_probs)
    wb = (w + edge_block - 1) // edge_block
    frow = np.zeros(w, np.float32)
    zrow = np.empty(w)
    for i in range(h):
        if field is not None:
            _field_row(field[0], field[1], field[2], field[3], i, frow)
        zr, dr, cr, dsr, outr = z[i], drop[i], cos[i], dist[i], out[i]
        base = i * w
        for j in range(w):  # no branches: vectorises
            zc = np.float64(zr[j])
            zz = zc + scale * zc * zc * (a * frow[j] + b * (_uniform(key_white, base + j) - 0.5))
            if unit > 0:
                zz = math.floor(zz * inv_unit + 0.5) * unit
            zrow[j] = zz
            outr[j] = zz if ~dr[j] & (zz >= zmin) & (zz <= zmax) else bad
        for j in range(w):  # the few pixels at edges or steep angles
            if dr[j] or not ((dsr[j] < n_probs) | (cr[j] < cos_lo)):
                continue
            zz = zrow[j]
            if dsr[j] < n_probs:
                u = _uniform(key_edge, (i // edge_block) * wb + j // edge_block)
                if u < edge_probs[dsr[j]]:
                    outr[j] = bad
                    continue
                if dsr[j] == 0 and _uniform(key_out, 2 * (base + j)) < out_prob:
                    zz -= out_lo + (out_hi - out_lo) * _uniform(key_out, 2 * (base + j) + 1)
                    if unit > 0:
                        zz = math.floor(zz * inv_unit + 0.5) * unit
            if grazing and cr[j] < cos_lo:
                p = (math.acos(cr[j]) - graze_lo) / graze_span
                if _uniform(key_graze, base + j) < p:
                    outr[j] = bad
                    continue
            outr[j] = zz if (zz >= zmin) & (zz <= zmax) else bad


def add_coded_light_noise(
    clean: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    config: CodedLightConfig | None = None,
    normals: np.ndarray | None = None,
    invalid_value: float | None = None,
) -> np.ndarray:
    """Simulate a coded light (SR300/SR305) measurement of a clean depth frame.

    Args:
        clean: ``(H, W)`` depth, mm; <= 0 or non-finite is background (nothing measured).
        camera: intrinsics of the image (occlusion widths use its fx).
        rng: the only source of randomness: equal generator states give equal outputs.
        config: :class:`CodedLightConfig` (default: SR305-like).
        normals: ``(H, W, 3)`` unit normals from a renderer; computed from ``clean`` if None.
        invalid_value: overrides ``config.invalid_value``.
    Returns:
        ``(H, W)`` float32 depth, mm, multiples of ``config.depth_unit_mm``; invalid pixels hold
        exactly the invalid value. Nothing is measured where ``clean`` is background.
    """
    cfg = CodedLightConfig() if config is None else config
    bad = cfg.invalid_value if invalid_value is None else invalid_value
    out = np.full(np.shape(clean), bad, dtype=np.float32)
    theta_max = min(math.radians(cfg.grazing_full_deg), math.radians(89.0))
    crop = crop_scene(clean, camera, 0.9 * cfg.min_depth_mm, 1.1 * cfg.max_depth_mm,
                      cfg.lateral_band_px + 2, normals, math.cos(theta_max))  # fmt: skip
    if crop is None:
        return out
    keys = rng.integers(0, 2**63, size=5, dtype=np.uint64)
    z, valid, cos = crop.z, crop.valid, crop.cos
    h, w = z.shape
    drop = ~valid
    if cfg.shadow:
        _shadow_kernel(z, valid, camera.fx * cfg.baseline_mm, cfg.projector_side, drop)
    probs = np.asarray(cfg.edge_dropout_prob, np.float64)
    if probs.size == 0 and cfg.edge_outlier_prob > 0:
        probs = np.zeros(1)  # the kernel looks at edge pixels for outliers too
    lateral = cfg.lateral_scale > 0
    cap = max(len(probs), cfg.lateral_band_px + 1 if lateral else 0, 1)
    dist = np.zeros((h, w), np.int8 if cap < 127 else np.int32)
    _edge_distance_kernel(z, valid, np.float32(cfg.edge_jump_mm), cap, dist)
    if lateral:
        _rim_kernel(valid, cos, drop, dist, cfg.lateral_band_px, cfg.lateral_block_px,
                    cfg.lateral_scale, keys[0])  # fmt: skip
    for rows, cols in random_blobs(rng, ~drop, cfg.holes_per_10k_px, cfg.hole_radius_px):
        drop[rows, cols] = True
    field = None
    corr = cfg.correlated_fraction if cfg.sigma_500_mm > 0 else 0.0
    if corr > 0:
        field = _field_factors(rng, h, w, cfg.correlation_px)
    lo = math.radians(cfg.grazing_start_deg)
    _coded_kernel(
        z, cos, drop, field, dist, cfg.sigma_500_mm, corr, cfg.min_depth_mm, cfg.max_depth_mm,
        cfg.depth_unit_mm, probs, cfg.edge_dropout_block_px, cfg.edge_outlier_prob,
        cfg.edge_outlier_mm[0], cfg.edge_outlier_mm[1], cfg.grazing_dropout,
        math.cos(lo) if cfg.grazing_dropout else -1.0, lo, max(theta_max - lo, 1e-6), keys[1],
        keys[2], keys[3], keys[4], np.float32(bad),
        out[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w],
    )  # fmt: skip
    return out

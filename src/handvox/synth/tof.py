"""Time-of-flight sensor noise (Kinect v2, Azure Kinect): the continuous-wave ToF measurement.

``add_tof_noise`` turns a clean rendered depth image into what an amplitude-modulated
continuous-wave (AMCW) ToF camera measures. Each pixel integrates the returned light over its
footprint; depth is the phase of that signal, its noise falls with the signal's amplitude:

- **Amplitude** ``a = albedo * cos(incidence) * (1 m / z)^2 * cos^4(field angle)``, relative to a
  fronto-parallel reference target at 1 m on the optical axis: Lambertian return, inverse-square
  fall-off of the camera's own illumination, and the cos^4 fall-off towards the image corners
  [S15: noise grows towards the corners; F16: and with lower reflectance].
- **Noise** ``sigma = sigma_ref * sqrt((a + b) / (1 + b)) / a`` with ``b`` the ambient light (and
  dark signal) relative to the reference amplitude: the shot-noise-limited phase noise of
  [LS01] (``sigma_d ~ sqrt(A + B) / A``), scaled so ``sigma = sigma_ref`` at the reference.
  Per pixel and white: each ToF pixel demodulates its own phase (Kinect v1's correlated
  structure comes from its block matching, which ToF has not).
- **Invalid below an amplitude** ``min_amplitude``: the devices drop pixels whose signal is too
  weak [AK: "low signal" invalidation], which is what grazing angles, far and dark surfaces do.
- **Flying (mixed) pixels** at depth edges: a pixel that sees two surfaces returns the sum of
  their phasors, ``w a1 e^(i phi1) + (1 - w) a2 e^(i phi2)`` (``w``: the share of its footprint
  on its own surface, uniform in 0.5 .. 1 since its centre is there), whose phase lies between
  the two depths, pulled towards the brighter (nearer) one [S15, F16, T21 all show them;
  "flying pixels" in T21]. The phase is that of the lowest modulation frequency (Kinect v2:
  about 16 MHz, 9.4 m unambiguous), for which any two depths in range mix to a depth between
  them. The devices' outlier and edge filters drop a share of them (AK's "filter outlier"
  invalidation; the Kinect v2 SDK's edge filtering): ``flying_keep`` of them stay. Next to
  nothing (no return) a rim pixel keeps its depth with a weaker signal, so the silhouette
  erodes where that falls below ``min_amplitude``.
- **Multipath** near concave regions: light reaching a pixel via another surface travels
  further, so depths in concavities read too far [F16; T21's corner experiment; C16 "multiple
  reflections generate distortions in concave geometry"]. Modelled by a proxy, not a light
  transport simulation: ``bias = multipath_gain * clip(z - mean_window(z), 0, radius)``, the
  window ``multipath_radius_mm`` across (nearer surroundings mean a concavity).

What it leaves out: the periodic "wiggling" error (a per-frame offset over a hand's depth range,
which the estimator's cube centring removes), motion artefacts, sunlight, intensity-related
distance error, temperature drift.

Sources:
    [LS01] R. Lange, P. Seitz, "Solid-state time-of-flight range camera", IEEE J. Quantum
           Electronics 37(3), 2001 (range noise vs amplitude and background).
    [S15]  H. Sarbolandi, D. Lefloch, A. Kolb, "Kinect range sensing: Structured-light versus
           Time-of-Flight Kinect", CVIU 139, 2015 (arXiv:1505.05459): Kinect v2's
           millimetre-level noise near the centre, growing towards the corners; mixed pixels at
           edges; multipath.
    [F16]  P. Fürsattel et al., "A Comparative Error Analysis of Current Time-of-Flight
           Sensors", IEEE Trans. Computational Imaging 2(1), 2016 (amplitude-dependent noise,
           flying pixels, multipath in corners, across ToF cameras incl. Kinect v2).
    [C16]  A. Corti et al., "A metrological characterization of the Kinect V2 time-of-flight
           camera", Robotics and Autonomous Systems 75, 2016.
    [T21]  M. Tölgyessy et al., "Evaluation of the Azure Kinect and Its Comparison to Kinect V1
           and Kinect V2", Sensors 21(2), 2021: standard deviation <= 17 mm and distance error
           < 11 mm up to 3.5 m in all modes (confirming Microsoft's figures); multipath and
           flying pixels measured.
    [AK]   Microsoft, "Azure Kinect DK depth camera" (learn.microsoft.com/azure/kinect-dk/
           depth-camera): AMCW ToF; invalidation of low-signal, saturated, outlier and
           multipath pixels; the depth modes' ranges.
Parameter ranges per frame, and the cameras: :mod:`handvox.synth.sensors`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera
from handvox.synth.noise import _jit, _normal4, _uniform, crop_scene

__all__ = ["ToFConfig", "add_tof_noise"]

_C_MM_PER_S = 299_792_458_000.0
_BLOCK = 4  # multipath's window is averaged on a grid of this many px: it varies slowly


@dataclass(frozen=True)
class ToFConfig:
    """Parameters of the ToF model (lengths in mm). Defaults: a Kinect v2 at mid-range values
    of :data:`handvox.synth.sensors.RANGES`."""

    sigma_ref_mm: float = 1.0
    """Noise std at the reference amplitude (1 m, fronto-parallel, image centre) [S15, T21]."""
    ambient_ratio: float = 0.2
    """Ambient light and dark signal relative to the reference amplitude [LS01]."""
    albedo: float = 0.8
    """Near-infrared reflectance of the scene relative to the reference target."""
    min_amplitude: float = 0.08
    """Pixels returning less (relative to the reference) are invalid [AK]."""
    flying_pixels: bool = True
    edge_jump_mm: float = 20.0
    """A 4-neighbour farther than this (or invalid) is another surface in the footprint."""
    flying_keep: float = 0.5
    """Share of mixed pixels the device's edge filter leaves; the rest are invalid."""
    modulation_mhz: float = 16.0
    """Modulation frequency the mixing is computed at (Kinect v2's lowest [S15])."""
    multipath_gain: float = 0.08
    multipath_radius_mm: float = 30.0
    min_depth_mm: float = 500.0
    max_depth_mm: float = 4500.0
    depth_unit_mm: float = 1.0
    """The stored depth's step (Kinect v2, Azure Kinect: 1 mm); 0: not quantised."""
    invalid_value: float = 0.0

    def __post_init__(self) -> None:
        if self.sigma_ref_mm < 0 or self.ambient_ratio < 0 or self.albedo <= 0:
            raise ValueError("sigma_ref_mm and ambient_ratio must be >= 0 and albedo > 0")
        if not 0.0 <= self.flying_keep <= 1.0:
            raise ValueError(f"flying_keep must be in 0..1, got {self.flying_keep}")
        if self.min_amplitude <= 0 or self.modulation_mhz <= 0 or self.depth_unit_mm < 0:
            raise ValueError("min_amplitude and modulation_mhz must be > 0, depth_unit_mm >= 0")


@_jit
def _block_means(z, valid, block, reach, out):
    """``out[bi, bj]``: mean of the valid depths in the blocks within ``reach`` blocks (a square
    window) of block ``(bi, bj)``; 0 where there are none."""
    h, w = z.shape
    nby, nbx = out.shape
    s = np.zeros((nby, nbx))
    n = np.zeros((nby, nbx))
    for i in range(h):
        bi = i // block
        for j in range(w):
            if valid[i, j]:
                s[bi, j // block] += z[i, j]
                n[bi, j // block] += 1.0
    # separable box sums over the block grid (tiny next to the image)
    t_s, t_n = np.zeros((nby, nbx)), np.zeros((nby, nbx))
    for bi in range(nby):
        for bj in range(nbx):
            for k in range(max(bj - reach, 0), min(bj + reach + 1, nbx)):
                t_s[bi, bj] += s[bi, k]
                t_n[bi, bj] += n[bi, k]
    for bi in range(nby):
        for bj in range(nbx):
            a, b = 0.0, 0.0
            for k in range(max(bi - reach, 0), min(bi + reach + 1, nby)):
                a += t_s[k, bj]
                b += t_n[k, bj]
            out[bi, bj] = a / b if b > 0 else 0.0


@_jit
def _amplitude(albedo, c, zz, fall):
    """Returned amplitude relative to the reference (``fall``: cos^4 of the field angle)."""
    return albedo * c * (1.0e6 / (zz * zz)) * fall


@_jit
def _tof_kernel(z, valid, cos, mp, u0, v0, fx, fy, cx, cy, albedo, sigma_ref, ambient, min_amp,
                flying, jump, keep, rad_per_mm, mp_gain, mp_cap, zmin, zmax, unit, key_noise,
                key_mix, bad, out):  # fmt: skip
    """The measurement of every valid pixel of the crop into ``out`` (its crop of the frame).
    ``mp``: :func:`_block_means` (``mp_gain`` 0: unused)."""
    h, w = z.shape
    amb = 1.0 / math.sqrt(1.0 + ambient)
    inv_unit = 1.0 / unit if unit > 0 else 0.0
    rx2 = np.empty(w)
    for j in range(w):
        rx2[j] = ((j + u0 - cx) / fx) ** 2
    fall = np.empty(w)
    mrow = np.empty(w)
    edge = np.zeros(w, np.bool_)
    for i in range(h):
        ry2 = ((i + v0 - cy) / fy) ** 2
        for j in range(w):
            q = 1.0 / (1.0 + rx2[j] + ry2)
            fall[j] = q * q
        if mp_gain > 0:
            mb = mp[i // _BLOCK]
            for j in range(w):
                mrow[j] = mb[j // _BLOCK]
        zr, vr, cr, outr = z[i], valid[i], cos[i], out[i]
        base = i * w
        # Every pixel as if away from edges, without branches (vectorises); edges after.
        for j in range(w):
            zc = np.float64(zr[j])
            a = _amplitude(albedo, np.float64(cr[j]), zc, fall[j])
            zz = zc
            if mp_gain > 0:
                zz += mp_gain * min(max(zc - mrow[j], 0.0), mp_cap)
            zz += sigma_ref * math.sqrt(a + ambient) * amb / a * _normal4(key_noise, base + j)
            if unit > 0:
                zz = math.floor(zz * inv_unit + 0.5) * unit
            ok = vr[j] & (a >= min_amp) & (zz >= zmin) & (zz <= zmax)
            outr[j] = zz if ok else bad
        if not flying:
            continue
        up, down = z[max(i - 1, 0)], z[min(i + 1, h - 1)]
        vu, vd = valid[max(i - 1, 0)], valid[min(i + 1, h - 1)]
        for j in range(1, w - 1):  # bitwise: vectorises
            zc = zr[j]
            edge[j] = vr[j] & (
                (~vr[j - 1] | (abs(zr[j - 1] - zc) > jump))
                | (~vr[j + 1] | (abs(zr[j + 1] - zc) > jump))
                | (~vu[j] | (abs(up[j] - zc) > jump))
                | (~vd[j] | (abs(down[j] - zc) > jump))
            )
        for j in range(w):
            if not edge[j] and 0 < j < w - 1:
                continue
            if not vr[j]:
                continue
            # the 4-neighbour most unlike this pixel (an invalid one returns nothing)
            zc = np.float64(zr[j])
            best, bi, bj = 0.0, -1, -1
            for di, dj in ((0, -1), (0, 1), (-1, 0), (1, 0)):
                ni, nj = i + di, j + dj
                if ni < 0 or ni >= h or nj < 0 or nj >= w:
                    continue
                dz = abs(np.float64(z[ni, nj]) - zc) if valid[ni, nj] else np.inf
                if dz > best:
                    best, bi, bj = dz, ni, nj
            if best <= jump:
                continue
            a = _amplitude(albedo, np.float64(cr[j]), zc, fall[j])
            wgt = 0.5 + 0.5 * _uniform(key_mix, 2 * (base + j))
            zz = zc
            if valid[bi, bj]:
                zq = np.float64(z[bi, bj])
                fq = 1.0 / (1.0 + ((bj + u0 - cx) / fx) ** 2 + ((bi + v0 - cy) / fy) ** 2)
                aq = _amplitude(albedo, np.float64(cos[bi, bj]), zq, fq * fq)
                dphi = (zq - zc) * rad_per_mm
                re = wgt * a + (1.0 - wgt) * aq * math.cos(dphi)
                im = (1.0 - wgt) * aq * math.sin(dphi)
                zz = zc + math.atan2(im, re) / rad_per_mm
                a = math.sqrt(re * re + im * im)
                if _uniform(key_mix, 2 * (base + j) + 1) >= keep:
                    outr[j] = bad
                    continue
            else:
                a *= wgt
            if mp_gain > 0:
                zz += mp_gain * min(max(zc - mrow[j], 0.0), mp_cap)
            zz += sigma_ref * math.sqrt(a + ambient) * amb / a * _normal4(key_noise, base + j)
            if unit > 0:
                zz = math.floor(zz * inv_unit + 0.5) * unit
            outr[j] = zz if (a >= min_amp) & (zz >= zmin) & (zz <= zmax) else bad


def add_tof_noise(
    clean: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    config: ToFConfig | None = None,
    normals: np.ndarray | None = None,
    invalid_value: float | None = None,
) -> np.ndarray:
    """Simulate a continuous-wave time-of-flight measurement of a clean depth frame.

    Args:
        clean: ``(H, W)`` depth, mm; <= 0 or non-finite is background (nothing returns).
        camera: intrinsics of the image (field angles and the footprint of a pixel).
        rng: the only source of randomness: equal generator states give equal outputs.
        config: :class:`ToFConfig` (default: Kinect v2-like).
        normals: ``(H, W, 3)`` unit normals from a renderer; computed from ``clean`` if None.
        invalid_value: overrides ``config.invalid_value``.
    Returns:
        ``(H, W)`` float32 depth, mm, multiples of ``config.depth_unit_mm``; invalid pixels hold
        exactly the invalid value. Nothing is measured where ``clean`` is background.
    """
    cfg = ToFConfig() if config is None else config
    bad = cfg.invalid_value if invalid_value is None else invalid_value
    out = np.full(np.shape(clean), bad, dtype=np.float32)
    # A pixel just outside the range can be mixed or biased into it: keep a margin.
    crop = crop_scene(clean, camera, 0.8 * cfg.min_depth_mm, 1.2 * cfg.max_depth_mm, 1, normals,
                      0.0)  # fmt: skip
    if crop is None:
        return out
    keys = rng.integers(0, 2**63, size=2, dtype=np.uint64)
    h, w = crop.z.shape
    mp = np.zeros((1, 1), np.float32)
    if cfg.multipath_gain > 0:
        zv = crop.z[crop.valid]
        typical = float(np.median(zv[:: max(1, zv.size // 2000)]))
        # the window's size in px at the scene's typical depth
        reach_px = cfg.multipath_radius_mm * camera.fx / typical
        mp = np.empty(((h + _BLOCK - 1) // _BLOCK, (w + _BLOCK - 1) // _BLOCK), np.float32)
        _block_means(crop.z, crop.valid, _BLOCK, max(1, round(reach_px / _BLOCK)), mp)
    _tof_kernel(
        crop.z, crop.valid, crop.cos, mp, crop.x0, crop.y0, *camera.intrinsics, cfg.albedo,
        cfg.sigma_ref_mm, cfg.ambient_ratio, cfg.min_amplitude, cfg.flying_pixels,
        cfg.edge_jump_mm, cfg.flying_keep, 4e6 * math.pi * cfg.modulation_mhz / _C_MM_PER_S,
        cfg.multipath_gain, cfg.multipath_radius_mm, cfg.min_depth_mm, cfg.max_depth_mm,
        cfg.depth_unit_mm, keys[0], keys[1], np.float32(bad),
        out[crop.y0 : crop.y0 + h, crop.x0 : crop.x0 + w],
    )  # fmt: skip
    return out

"""Structured-light (Kinect v1 / PrimeSense) sensor noise for rendered depth frames.

``add_sensor_noise`` turns a clean rendered depth image into what the NYU dataset's camera would
have measured: depth- and angle-dependent axial noise, ragged edges, disparity quantisation,
projector shadows, dropouts at edges and grazing angles, and small random holes. Every component
is switchable in :class:`NoiseConfig`. All work happens on the bounding box of the valid pixels
plus a margin: a hand-sized scene in a 640x480 frame costs about 1.3 ms of CPU
(benchmarks/noise_speed.py); a frame whose every pixel is valid (a rendered wall behind the hand)
costs tens of ms.

ICVL and MSRA were taken with time-of-flight cameras, which this model does not describe; for
them only the invalid encoding (0) carries over.

Sources:
    [N12] C. V. Nguyen, S. Izadi, D. Lovell, "Modeling Kinect Sensor Noise for Improved 3D
          Reconstruction and Tracking", 3DIMPVT 2012, doi:10.1109/3DIMPVT.2012.84.
    [K12] K. Khoshelham, S. O. Elberink, "Accuracy and Resolution of Kinect Depth Data for Indoor
          Mapping Applications", Sensors 12(2), 2012 (disparity at 1/8 px, b = 75 mm, f = 580 px).
    NYU   the real frame ../shared/data/nyu/depth_1_0000001.png: quantisation levels fit
          z = 8 b f / k with b f = 43000 mm px (1 % from [K12]), shadows fall to the right of
          near objects, invalid pixels are stored as 2001.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera

__all__ = ["NoiseConfig", "add_sensor_noise", "axial_sigma", "lateral_sigma", "surface_normals"]


@dataclass(frozen=True)
class NoiseConfig:
    """Parameters of the sensor model (lengths in mm, image distances in px, angles in degrees).

    The defaults model a Kinect v1 as seen in NYU's frames: the correlated share and length of
    the axial noise make the share of equal horizontal neighbours on a smoothed copy of the real
    hand in ``depth_1_0000001.png`` match the real frame's (0.74); the dropout rates were tuned by
    eye against it. Presets: :meth:`kinect`, :meth:`nyu`, :meth:`none`, :meth:`preset`.
    """

    # --- sensor geometry [K12] ---
    baseline_mm: float = 75.0
    """Projector to IR-camera distance. Sets shadow widths (with the image camera's fx)."""
    sensor_focal_px: float = 580.0
    """IR camera focal length of the physical sensor; quantisation happens in its pixels."""
    projector_side: int = -1
    """Sign of the projector's x in the image frame. -1: projector at -x, so shadows fall on the
    +u (right) side of near objects, as in NYU's frames; +1 mirrors that."""

    # --- axial noise [N12] ---
    axial: bool = True
    axial_scale: float = 1.0
    """Multiplies sigma_z of [N12]."""
    axial_correlated_fraction: float = 0.97
    """Share of the axial variance that is spatially correlated (the "wavy" low-frequency look of
    Kinect v1, whose block matching correlates neighbouring pixels); the rest is white."""
    axial_correlation_px: float = 10.0
    """Correlation length of the correlated part."""

    # --- lateral noise [N12] ---
    lateral: bool = True
    lateral_scale: float = 1.0
    """Multiplies sigma_L of [N12]; jitter is applied within ``lateral_band_px`` of depth edges."""
    lateral_block_px: int = 3
    """Jitter is drawn per block of this size: Kinect v1 edges are blocky, not salt-and-pepper."""
    lateral_band_px: int = 2

    # --- disparity quantisation [K12] ---
    quantise: bool = True
    disparity_step_px: float = 0.125
    """Kinect v1 measures disparity in 1/8 px, so depth steps are z^2 / (b f) / 8."""
    round_mm: bool = True
    """Datasets store integer millimetres."""

    # --- projector shadow ---
    shadow: bool = True

    # --- dropouts ---
    edge_jump_mm: float = 15.0
    """A 4-neighbour depth difference above this (or valid next to background) is an edge."""
    edge_dropout: bool = True
    edge_dropout_prob: tuple[float, ...] = (0.15, 0.05)
    """Probability to drop a pixel at chessboard distance 0, 1, ... px from an edge."""
    edge_dropout_block_px: int = 2
    """Dropouts are decided per block of this size, giving notches rather than single pixels."""
    grazing_dropout: bool = True
    grazing_start_deg: float = 70.0
    """Incidence angle where dropouts start; their probability rises linearly to 1 at
    ``grazing_full_deg`` (at most 89), which also caps the angle fed to the noise formulas."""
    grazing_full_deg: float = 85.0
    holes: bool = True
    holes_per_10k_px: float = 0.6
    """Mean number of random holes per 10 000 valid pixels."""
    hole_radius_px: tuple[float, float] = (0.7, 2.5)

    # --- range and encoding ---
    min_depth_mm: float = 400.0
    """Kinect v1 measures nothing nearer than ~0.4-0.5 m."""
    max_depth_mm: float = 4000.0
    invalid_value: float = 0.0
    """What invalid pixels hold (0 for ICVL/MSRA/raw sensors; NYU stores 2001)."""

    def __post_init__(self) -> None:
        if self.projector_side not in (-1, 1):
            raise ValueError(f"projector_side must be -1 or 1, got {self.projector_side}")
        if min(self.lateral_block_px, self.edge_dropout_block_px) < 1:
            raise ValueError("block sizes must be >= 1 px")
        if self.lateral_band_px < 0 or self.axial_correlation_px <= 0:
            raise ValueError("lateral_band_px must be >= 0 and axial_correlation_px > 0")

    @classmethod
    def kinect(cls) -> NoiseConfig:
        """Kinect v1 with 0 as the invalid value."""
        return cls()

    @classmethod
    def nyu(cls) -> NoiseConfig:
        """Kinect v1 encoded like NYU's files: invalid and farther than 2000 mm become 2001."""
        return cls(max_depth_mm=2000.0, invalid_value=2001.0)

    @classmethod
    def none(cls) -> NoiseConfig:
        """Every component off: the output is the clean frame with the invalid encoding."""
        return cls(
            axial=False,
            lateral=False,
            quantise=False,
            round_mm=False,
            shadow=False,
            edge_dropout=False,
            grazing_dropout=False,
            holes=False,
            min_depth_mm=0.0,
            max_depth_mm=math.inf,
        )

    @classmethod
    def preset(cls, name: str) -> NoiseConfig:
        """``kinect``, ``nyu`` or ``none``."""
        makers = {"kinect": cls.kinect, "nyu": cls.nyu, "none": cls.none}
        try:
            return makers[name.lower()]()
        except KeyError:
            choices = sorted(makers)
            raise ValueError(f"unknown noise preset {name!r}; choose one of {choices}") from None


_THETA_CAP = math.radians(89.0)


def axial_sigma(z_mm: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Axial (depth) noise std of [N12], mm.

    sigma_z = 1.2 + 1.9 (z - 0.4)^2 mm (z in m) for theta <= 60 deg, plus
    0.1 / sqrt(z) * theta^2 / (pi/2 - theta)^2 mm beyond 60 deg ([N12] eq. for the axial noise;
    the Kinect v2 fit 1.5 - 0.5 z + 0.3 z^2 + ... is another sensor's).

    Args:
        z_mm: ``(...)`` depth, mm.
        theta: ``(...)`` incidence angle, rad; clipped at 89 deg, where the formula explodes.
    """
    theta = np.minimum(theta, _THETA_CAP)
    z = z_mm * 1e-3
    sigma = 1.2 + 1.9 * (z - 0.4) ** 2
    steep = theta > math.pi / 3
    extra = 0.1 / np.sqrt(np.maximum(z, 1e-3)) * theta**2 / (math.pi / 2 - theta) ** 2
    return sigma + steep * extra


def lateral_sigma(theta: np.ndarray) -> np.ndarray:
    """Lateral noise std of [N12], px: 0.8 + 0.035 theta / (pi/2 - theta), theta in rad
    (clipped at 89 deg)."""
    theta = np.minimum(theta, _THETA_CAP)
    return 0.8 + 0.035 * theta / (math.pi / 2 - theta)


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _gradient(z: np.ndarray, valid: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth derivative along ``axis`` by the one-sided difference with the smaller jump.

    Picking the smaller of forward and backward differences keeps a pixel on the silhouette of
    a surface from taking its slope across the depth edge. Returns ``(grad, ok)``.
    """

    def part(start: int | None, stop: int | None) -> tuple[slice, ...]:
        return (slice(None),) * axis + (slice(start, stop),)

    hi, lo = part(1, None), part(None, -1)
    pair = valid[hi] & valid[lo]
    d = (z[hi] - z[lo]) * pair
    big = np.float32(1e30)
    ad = np.where(pair, np.abs(d), big)
    fwd, back = np.zeros_like(z), np.zeros_like(z)
    afwd, aback = np.full_like(z, big), np.full_like(z, big)
    fwd[lo], afwd[lo] = d, ad
    back[hi], aback[hi] = d, ad
    use_fwd = afwd < aback
    return np.where(use_fwd, fwd, back), np.minimum(afwd, aback) < big


def _normals_and_cos(
    depth: np.ndarray, camera: Camera, u0: int = 0, v0: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unnormalised camera-facing normals, cos(incidence), validity, for a crop at (u0, v0)."""
    z = depth.astype(np.float32, copy=False)
    valid = _valid(z)
    z = np.where(valid, z, np.float32(0))
    zu, oku = _gradient(z, valid, axis=1)
    zv, okv = _gradient(z, valid, axis=0)
    h, w = z.shape
    rx = ((np.arange(w, dtype=np.float32) + (u0 - camera.cx)) / camera.fx)[None, :]
    ry = ((np.arange(h, dtype=np.float32) + (v0 - camera.cy)) / camera.fy)[:, None]
    # P(u, v) = z K^-1 (u, v, 1); dP/du x dP/dv scaled by fx fy / z is
    # (-fx z_u, -fy z_v, fx z_u rx + fy z_v ry + z) and its dot with the ray (rx, ry, 1) is z.
    a = camera.fx * zu
    c = camera.fy * zv
    nz = a * rx + c * ry + z
    norm = np.sqrt(a * a + c * c + nz * nz)
    ok = oku & okv
    cos = z / (norm * np.sqrt(rx * rx + ry * ry + 1) + (~ok))
    return (a, c, -nz, norm), np.clip(cos, 0.0, 1.0) * ok, ok


def _incidence(
    z: np.ndarray, camera: Camera, u0: int, v0: int, normals: np.ndarray | None
) -> np.ndarray:
    """Angle (rad) between the surface normal and the viewing ray; pi/2 where unknown."""
    if normals is None:
        _, cos, _ = _normals_and_cos(z, camera, u0, v0)
    else:
        h, w = z.shape
        rx = ((np.arange(u0, u0 + w, dtype=np.float32) - camera.cx) / camera.fx)[None, :]
        ry = ((np.arange(v0, v0 + h, dtype=np.float32) - camera.cy) / camera.fy)[:, None]
        n = normals.astype(np.float32, copy=False)
        dot = n[..., 0] * rx + n[..., 1] * ry + n[..., 2]
        cos = np.clip(np.abs(dot) / np.sqrt(rx * rx + ry * ry + 1), 0.0, 1.0)
    return np.arccos(cos)


def surface_normals(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """Unit surface normals facing the camera, from the back-projected depth image.

    The normal is dP/du x dP/dv of the back-projected surface P(u, v) = z(u, v) K^-1 (u, v, 1),
    with z_u, z_v taken as the one-sided finite difference (forward or backward) with the smaller
    depth jump, so silhouette pixels keep their own surface's slope.

    Args:
        depth: ``(H, W)`` depth, mm; <= 0 or non-finite is background.
        camera: the intrinsics the image was taken with.
    Returns:
        ``(H, W, 3)`` float32 unit normals in the OpenCV camera frame, pointing towards the
        camera (n . P < 0); (0, 0, 0) where a pixel or both of its neighbours along u or v are
        invalid.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    (a, c, nz, norm), _, ok = _normals_and_cos(depth, camera)
    inv = ok / np.where(ok, norm, 1)
    return np.stack([a * inv, c * inv, nz * inv], axis=-1).astype(np.float32)


def _bbox(valid: np.ndarray, margin: int) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(valid.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(valid[rows[0] : rows[-1] + 1].any(axis=0))
    h, w = valid.shape
    return (
        max(rows[0] - margin, 0),
        min(rows[-1] + 1 + margin, h),
        max(cols[0] - margin, 0),
        min(cols[-1] + 1 + margin, w),
    )


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Square (chessboard) dilation by ``r`` px with shifted ORs, much faster than ndimage."""
    out = mask.copy()
    for _ in range(r):
        out[1:] |= out[:-1].copy()
        out[:-1] |= out[1:].copy()
        out[:, 1:] |= out[:, :-1].copy()
        out[:, :-1] |= out[:, 1:].copy()
    return out


def _edges(z: np.ndarray, valid: np.ndarray, jump: float) -> np.ndarray:
    """Valid pixels next to a depth jump > ``jump`` mm or to an invalid pixel (4-neighbours)."""
    zi = np.where(valid, z, np.float32(-1e6))
    jh = np.abs(zi[:, 1:] - zi[:, :-1]) > jump
    jv = np.abs(zi[1:] - zi[:-1]) > jump
    e = np.zeros_like(valid)
    e[:, 1:] |= jh
    e[:, :-1] |= jh
    e[1:] |= jv
    e[:-1] |= jv
    return e & valid


def _shadow(z: np.ndarray, valid: np.ndarray, bf_img: float, side: int) -> np.ndarray:
    """Pixels the projector cannot see, by a running-max scan along each row (epipolar line).

    With the projector at x = side * b, a surface point at column u appears in the projector at
    u - side * b f / z. Scanning away from the projector, a pixel is lit only if its projector
    column passes every one before it; otherwise nearer geometry blocks the ray.
    """
    zz = z if side < 0 else z[:, ::-1]
    vv = valid if side < 0 else valid[:, ::-1]
    q = np.arange(zz.shape[1], dtype=np.float32)[None, :] + bf_img / np.where(vv, zz, np.inf)
    q[~vv] = -np.inf
    # accumulate runs fastest down axis 0 of a contiguous array
    qt = np.ascontiguousarray(q.T)
    shadow = (qt < np.maximum.accumulate(qt, axis=0) - 0.01).T
    return shadow if side < 0 else shadow[:, ::-1]


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Unit-variance Gaussian random field correlated over ~``scale`` px.

    Gaussian bumps on a coarse grid with random weights, summed separably (two small matrix
    products) and divided by the exact per-pixel std, so the variance is 1 everywhere.
    """
    step = max(scale * 0.75, 1.0)
    sig = scale * 0.6

    def weights(n: int) -> np.ndarray:
        nodes = np.arange(-2.0 * sig, n + 2.0 * sig, step) + rng.random() * step
        d2 = ((np.arange(n, dtype=np.float64)[:, None] - nodes[None, :]) / sig) ** 2
        # cut at 3 sigma: the far tails would be float32 subnormals, which make matmul crawl
        return np.where(d2 < 9.0, np.exp(-0.5 * d2), 0.0).astype(np.float32)

    ay, ax = weights(h), weights(w)
    g = rng.standard_normal((ay.shape[1], ax.shape[1]), dtype=np.float32)
    field = ay @ g @ ax.T
    std = np.sqrt((ay * ay).sum(1))[:, None] * np.sqrt((ax * ax).sum(1))[None, :]
    return field / std


def _holes(rng: np.random.Generator, valid: np.ndarray, config: NoiseConfig) -> np.ndarray:
    """Small irregular blobs at random valid pixels."""
    h, w = valid.shape
    out = np.zeros_like(valid)
    idx = np.flatnonzero(valid)
    n = rng.poisson(config.holes_per_10k_px * idx.size / 1e4)
    if n == 0:
        return out
    centre = idx[rng.integers(0, idx.size, n)]
    r_lo, r_hi = config.hole_radius_px
    radius = rng.uniform(r_lo, r_hi, n)
    k = int(math.ceil(r_hi))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1].reshape(2, 1, -1)
    # a random radius per offset makes the blobs ragged rather than discs
    reach = radius[:, None] * rng.uniform(0.7, 1.3, (n, dy.shape[-1]))
    keep = dy[0] ** 2 + dx[0] ** 2 <= reach**2
    yy = (centre // w)[:, None] + dy[0]
    xx = (centre % w)[:, None] + dx[0]
    keep &= (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    out[yy[keep], xx[keep]] = True
    return out


def add_sensor_noise(
    clean: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    config: NoiseConfig | None = None,
    normals: np.ndarray | None = None,
    invalid_value: float | None = None,
) -> np.ndarray:
    """Simulate a Kinect v1 / PrimeSense measurement of a clean depth frame.

    Args:
        clean: ``(H, W)`` depth, mm; <= 0 or non-finite is background (nothing measured).
        camera: intrinsics of the image (shadow widths use its fx).
        rng: the only source of randomness: equal generator states give equal outputs.
        config: :class:`NoiseConfig` (default Kinect v1, 0 invalid).
        normals: ``(H, W, 3)`` exact unit normals from a renderer; computed from ``clean`` if None.
        invalid_value: overrides ``config.invalid_value``.
    Returns:
        ``(H, W)`` float32 raw depth, mm; invalid pixels hold exactly the invalid value. Pixels
        that were background in ``clean`` are invalid in the output.
    """
    cfg = NoiseConfig() if config is None else config
    bad = cfg.invalid_value if invalid_value is None else invalid_value
    clean = np.asarray(clean)
    if clean.ndim != 2:
        raise ValueError(f"clean depth must be (H, W), got shape {clean.shape}")
    if normals is not None and normals.shape != (*clean.shape, 3):
        raise ValueError(f"normals must be {(*clean.shape, 3)}, got {normals.shape}")
    out = np.full(clean.shape, bad, dtype=np.float32)
    valid_full = _valid(clean)
    margin = cfg.lateral_band_px + 2
    box = _bbox(valid_full, margin)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    valid = valid_full[y0:y1, x0:x1]
    z = np.where(valid, clean[y0:y1, x0:x1], 0).astype(np.float32)
    h, w = z.shape

    theta_max = min(math.radians(cfg.grazing_full_deg), _THETA_CAP)
    if cfg.axial or cfg.lateral or cfg.grazing_dropout:
        crop_normals = None if normals is None else normals[y0:y1, x0:x1]
        theta = np.minimum(_incidence(z, camera, x0, y0, crop_normals), theta_max)

    drop = ~valid
    if cfg.shadow:
        drop |= _shadow(z, valid, camera.fx * cfg.baseline_mm, cfg.projector_side)
    edges = _edges(z, valid, cfg.edge_jump_mm)

    if cfg.lateral and cfg.lateral_scale > 0:
        band = _dilate(edges, cfg.lateral_band_px) & valid
        vv, uu = np.nonzero(band)
        blk = cfg.lateral_block_px
        hb, wb = -(-h // blk), -(-w // blk)
        jit = rng.standard_normal((2, hb, wb), dtype=np.float32)
        jv, ju = jit[:, vv // blk, uu // blk]
        s = cfg.lateral_scale * lateral_sigma(theta[vv, uu])
        sv = np.clip(vv + np.rint(jv * s).astype(np.intp), 0, h - 1)
        su = np.clip(uu + np.rint(ju * s).astype(np.intp), 0, w - 1)
        # a pixel that samples background (or shadow) becomes invalid: edges erode raggedly
        z[vv, uu] = z[sv, su]
        theta[vv, uu] = theta[sv, su]
        drop[vv, uu] = drop[sv, su]

    if cfg.axial and cfg.axial_scale > 0:
        sigma = cfg.axial_scale * axial_sigma(z, theta)
        if cfg.quantise:
            # [N12] measured quantised depth: leave the quantisation's share of the variance
            q = z * z * (cfg.disparity_step_px / (cfg.baseline_mm * cfg.sensor_focal_px))
            sigma = np.sqrt(np.maximum(sigma * sigma - q * q / 12.0, 0.0))
        f = min(max(cfg.axial_correlated_fraction, 0.0), 1.0)
        noise = np.zeros((h, w), np.float32)
        if f > 0:
            noise += math.sqrt(f) * _smooth_field(rng, h, w, cfg.axial_correlation_px)
        if f < 1:
            # uniform with unit variance: at a few % of the variance its shape is invisible, and
            # it costs a fraction of normal draws
            white = rng.random((h, w), dtype=np.float32) - np.float32(0.5)
            noise += math.sqrt(12.0 * (1.0 - f)) * white
        z = z + sigma * noise

    if cfg.quantise:
        bf = cfg.baseline_mm * cfg.sensor_focal_px
        disp = np.rint(bf / np.maximum(z, 1.0) / cfg.disparity_step_px)
        z = (bf / cfg.disparity_step_px) / np.maximum(disp, 1.0)
    if cfg.round_mm:
        z = np.rint(z)

    if cfg.edge_dropout and cfg.edge_dropout_prob:
        probs = np.zeros((h, w), np.float32)
        ring = edges
        reach = edges
        for p in cfg.edge_dropout_prob:
            probs[ring] = p
            grown = _dilate(reach, 1)
            ring = grown & ~reach
            reach = grown
        blk = max(cfg.edge_dropout_block_px, 1)
        r = rng.random((-(-h // blk), -(-w // blk)), dtype=np.float32)
        drop |= r.repeat(blk, 0).repeat(blk, 1)[:h, :w] < probs
    if cfg.grazing_dropout:
        lo, hi = math.radians(cfg.grazing_start_deg), theta_max
        p = (theta - lo) / max(hi - lo, 1e-6)
        # theta was clipped at grazing_full_deg, so p reaches exactly 1 there
        drop |= rng.random((h, w), dtype=np.float32) < p
    if cfg.holes and cfg.holes_per_10k_px > 0:
        drop |= _holes(rng, ~drop, cfg)
    drop |= (z < cfg.min_depth_mm) | (z > cfg.max_depth_mm) | ~np.isfinite(z)

    crop = z.astype(np.float32)
    crop[drop] = bad
    out[y0:y1, x0:x1] = crop
    return out

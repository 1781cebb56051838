"""Structured-light (Kinect v1 / PrimeSense) sensor noise for rendered depth frames.

``add_sensor_noise`` turns a clean rendered depth image into what the NYU dataset's camera would
have measured: depth- and angle-dependent axial noise, ragged edges, disparity quantisation,
projector shadows, dropouts at edges and grazing angles, and small random holes. Every component
is switchable in :class:`NoiseConfig`. All work happens on the bounding box of the valid pixels
plus a margin, in numba kernels (one pass per stage, no full-frame temporaries, the hot loops
vectorised), with per-pixel random numbers from a counter-based hash. That beats scalar loops
and numpy, most of all when every pixel is valid, as with a rendered wall behind the hand
(benchmarks/noise_speed.py; figures in docs/benchmarks.md, "benchmarks/noise_speed.py"). Pixels
so far out of the sensor's range that no noise brings them back (a wall beyond NYU's 2 m) cost
nothing.

ICVL and MSRA were taken with time-of-flight cameras, which this model does not describe; for
them only the invalid encoding (0) carries over. The other sensor families (time of flight,
active stereo, coded light) are :mod:`handvox.synth.tof`, :mod:`handvox.synth.stereo` and
:mod:`handvox.synth.coded_light`, drawn per frame by :mod:`handvox.synth.sensors`; they share
this module's crop, hash and blob helpers (:func:`crop_scene`, :func:`random_blobs`).

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

import numba
import numpy as np

from handvox.camera import Camera

__all__ = ["NoiseConfig", "add_sensor_noise"]


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
_RANGE_SLACK = 0.1


def _field_factors(
    rng: np.random.Generator, h: int, w: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A unit-variance Gaussian random field correlated over ~``scale`` px, in factored form.

    Gaussian bumps on a coarse grid with random weights, summed separably and divided by the
    exact per-pixel std, so the variance is 1 everywhere. Each pixel row (column) sums a band of
    a handful of bumps, cut at 3 sigma. Returns ``(ay, by, tmp, sx)``: row ``i`` of the field
    is ``sum_k ay[i, k] tmp[by[i, 0] + k] * sx / std_i`` (:func:`_field_row`). The measurement
    kernel makes each row when it needs it: no (H, W) field is stored.
    """
    step = max(scale * 0.75, 1.0)
    sig = scale * 0.6
    width = int(6.0 * sig / step) + 2  # most nodes closer than 3 sigma to a pixel

    def weights(n: int) -> tuple[np.ndarray, np.ndarray, int]:
        nodes = np.arange(-2.0 * sig, n + 2.0 * sig, step) + rng.random() * step
        d2 = np.empty((n, width))
        band = np.empty((n, 2), np.int64)
        _node_bands(nodes, sig, d2, band)
        return np.where(d2 < 9.0, np.exp(-0.5 * d2), 0.0).astype(np.float32), band, len(nodes)

    (ay, by, ny), (ax, bx, nx) = weights(h), weights(w)
    g = rng.standard_normal((ny, nx), dtype=np.float32)
    tmp = np.empty((ny, w), np.float32)
    sx = np.empty(w, np.float32)
    _field_columns(g, ax, bx, tmp, sx)
    return ay, by, tmp, sx


# --- per-pixel kernels (numba) -------------------------------------------------------------------
# Full frames (a rendered wall or body behind the hand) make every component touch ~300k pixels;
# numpy's temporaries then dominate the cost, and these loops make none (benchmarks/noise_speed.py;
# figures in docs/benchmarks.md, "benchmarks/noise_speed.py"). Per-pixel and per-block random
# numbers are a counter-based hash (splitmix64) of the frame's key drawn from ``rng``, the pixel
# or block index and a stream number: as deterministic as the generator, with no full-frame
# random arrays. The hot loops have no data-dependent branches (and index rows, not
# the 2-D arrays with offsets), so that LLVM vectorises them; the rare cases (steep angles,
# edges) are redone by scalar code. error_model="numpy": no zero-division checks, which would
# stop the vectoriser (no kernel divides by zero). The arithmetic is that of the scalar loops
# these replaced, operation for operation, so frames are bit for bit the same.
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")
_STREAM_LATERAL, _STREAM_WHITE, _STREAM_EDGE, _STREAM_GRAZING = 1, 2, 3, 4
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@_jit
def _mix(x):
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@_jit
def _uniform(key, index):
    """Uniform in (0, 1) from a stream key and a counter."""
    h = _mix(key + np.uint64(index + 1) * _GOLDEN)
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@_jit
def _normal4(key, index):
    """About standard normal from a stream key and a counter: the sum of the four 16-bit
    quarters of one hash (Irwin-Hall, n = 4), centred and scaled to unit variance. One hash where
    Box-Muller needs two and a log, sqrt and cos; bounded at +-3.46, which a sensor's noise
    (clipped by its range checks and quantisation anyway) never misses."""
    h = _mix(key + np.uint64(index + 1) * _GOLDEN)
    m = np.uint64(0xFFFF)
    s = (h & m) + ((h >> np.uint64(16)) & m) + ((h >> np.uint64(32)) & m) + (h >> np.uint64(48))
    return ((np.float64(s) + 2.0) * (1.0 / 65536.0) - 2.0) * 1.7320508075688772


@_jit
def _valid_box(clean, lo, hi):
    """``(found, v0, v1, u0, u1)``: the bounding box (half-open) of the pixels that are finite,
    > 0 and within ``lo .. hi``."""
    h, w = clean.shape
    v0, v1, u0, u1 = h, 0, w, 0
    for i in range(h):
        row = clean[i]
        first, last = w, -1
        for j in range(w):  # bitwise, not short-circuit: vectorises
            x = row[j]
            ok = (x > 0) & (x >= lo) & (x <= hi) & math.isfinite(x)
            first = min(first, j if ok else w)
            last = max(last, j if ok else -1)
        if last >= 0:
            v0 = min(v0, i)
            v1 = i + 1
            u0 = min(u0, first)
            u1 = max(u1, last + 1)
    return v1 > 0, v0, v1, u0, u1


@_jit
def _crop_kernel(clean, v0, u0, lo, hi, z, valid):
    """``valid`` (as in :func:`_valid_box`) and ``z`` (float32 depth, 0 where invalid) of the
    crop at (u0, v0)."""
    h, w = z.shape
    for i in range(h):
        row = clean[v0 + i, u0 : u0 + w]
        zr, vr = z[i], valid[i]
        for j in range(w):
            x = row[j]
            ok = (x > 0) & (x >= lo) & (x <= hi) & math.isfinite(x)
            vr[j] = ok
            zr[j] = np.float32(x) if ok else np.float32(0)


@_jit
def _node_bands(nodes, sig, d2, band):
    """For each pixel ``p`` (a row of ``d2``): ``band[p]``, the range of ``nodes`` closer than
    3 ``sig``, and ``d2[p, k]``, the squared distance in ``sig`` to node ``band[p, 0] + k`` (9,
    i.e. out of reach, past the band's end)."""
    d2[:] = 9.0
    for p in range(d2.shape[0]):
        start, stop = -1, -1
        for k in range(len(nodes)):
            t = (np.float64(p) - nodes[k]) / sig
            if t * t < 9.0:
                if start < 0:
                    start = k
                if k - start < d2.shape[1]:
                    d2[p, k - start] = t * t
                    stop = k + 1
        band[p, 0], band[p, 1] = start, stop


@_jit
def _field_columns(g, ax, bx, tmp, sx):
    """``tmp = g @ ax.T`` and ``sx = 1 / sqrt(sum(ax**2, 1))`` for the banded ``ax`` of
    :func:`_field_factors`. No BLAS, whose threads would compete with the job runner's worker
    processes."""
    na, w = tmp.shape
    gt = np.ascontiguousarray(g.T)
    acc = np.empty(na, np.float32)
    for j in range(w):
        acc[:] = 0
        s = np.float32(0)
        for k in range(bx[j, 1] - bx[j, 0]):
            wk = ax[j, k]
            s += wk * wk
            gk = gt[bx[j, 0] + k]
            for a in range(na):  # contiguous: vectorises
                acc[a] += gk[a] * wk
        tmp[:, j] = acc
        sx[j] = 1.0 / math.sqrt(s)


@_jit
def _field_row(ay, by, tmp, sx, i, row):
    """Row ``i`` of the field of :func:`_field_factors` into ``row`` (float32, ``(W,)``)."""
    row[:] = 0
    sy = 0.0
    for k in range(by[i, 1] - by[i, 0]):
        yk = ay[i, k]
        sy += yk * yk
        tk = tmp[by[i, 0] + k]
        for j in range(row.shape[0]):  # contiguous: vectorises
            row[j] += yk * tk[j]
    sy = 1.0 / math.sqrt(sy)
    for j in range(row.shape[0]):
        row[j] *= sy * sx[j]


@_jit
def _cos_kernel(normals, u0, v0, fx, fy, cx, cy, cos_min, out):
    """cos(incidence) of the unit normals ``(H, W, 3)`` (the whole frame) over the crop ``out``
    at (u0, v0), at least ``cos_min``. Angles stay cosines until needed: most pixels never need
    an arccos."""
    h, w = out.shape
    rx, rx2 = np.empty(w), np.empty(w)
    for j in range(w):
        rx[j] = (j + u0 - cx) / fx
        rx2[j] = rx[j] * rx[j]
    n0, n1, n2 = np.empty(w), np.empty(w), np.empty(w)
    for i in range(h):
        ry = (i + v0 - cy) / fy
        ry2 = ry * ry
        n = normals[v0 + i, u0 : u0 + w]
        for j in range(w):  # de-interleaved first: the loop below then vectorises
            n0[j], n1[j], n2[j] = n[j, 0], n[j, 1], n[j, 2]
        o = out[i]
        for j in range(w):
            c = abs(n0[j] * rx[j] + n1[j] * ry + n2[j]) / math.sqrt(rx2[j] + ry2 + 1.0)
            c = c if c < 1.0 else 1.0
            o[j] = c if c > cos_min else cos_min


@_jit
def _cos_from_depth_kernel(z, u0, v0, fx, fy, cx, cy, cos_min, out):
    """cos(incidence) from the depth itself, at least ``cos_min``; 0 where a pixel or both of
    its neighbours along u or v are invalid. ``z``: crop at (u0, v0), 0 where invalid.

    The normal is dP/du x dP/dv of the back-projected surface P(u, v) = z(u, v) K^-1 (u, v, 1),
    with z_u, z_v the one-sided difference (forward or backward) with the smaller depth jump, so
    silhouette pixels keep their own surface's slope. dP/du x dP/dv scaled by fx fy / z is
    (-fx z_u, -fy z_v, fx z_u rx + fy z_v ry + z) and its dot with the ray (rx, ry, 1) is z."""
    h, w = z.shape
    big = np.float32(1e30)
    for i in range(h):
        ry = (i + v0 - cy) / fy
        for j in range(w):
            zc = z[i, j]
            c = 0.0
            if zc > 0:
                af = abs(z[i, j + 1] - zc) if j < w - 1 and z[i, j + 1] > 0 else big
                ab = abs(zc - z[i, j - 1]) if j > 0 and z[i, j - 1] > 0 else big
                cf = abs(z[i + 1, j] - zc) if i < h - 1 and z[i + 1, j] > 0 else big
                cb = abs(zc - z[i - 1, j]) if i > 0 and z[i - 1, j] > 0 else big
                if min(af, ab) < big and min(cf, cb) < big:
                    zu = z[i, j + 1] - zc if af < ab else zc - z[i, j - 1]
                    zv = z[i + 1, j] - zc if cf < cb else zc - z[i - 1, j]
                    rx = (j + u0 - cx) / fx
                    a, b = fx * zu, fy * zv
                    nz = a * rx + b * ry + zc
                    norm = math.sqrt(a * a + b * b + nz * nz)
                    c = min(zc / (norm * math.sqrt(rx * rx + ry * ry + 1.0)), 1.0)
            out[i, j] = max(c, cos_min)


@_jit
def _shadow_kernel(z, valid, bf_img, side, drop):
    """Pixels the projector cannot see, by a running max along each row (epipolar line).

    With the projector at x = side * b, a surface point at column u appears in the projector at
    u - side * b f / z. Scanning away from the projector, a pixel is lit only if its projector
    column passes every one before it; otherwise nearer geometry blocks the ray.
    """
    h, w = z.shape
    for i in range(h):
        run = -np.inf
        for k in range(w):
            j = k if side < 0 else w - 1 - k
            if valid[i, j]:
                q = k + bf_img / z[i, j]
                if q < run - 0.01:
                    drop[i, j] = True
                run = max(run, q)


@_jit
def _breaks(n_valid, n_z, zc, jump):
    """Whether a neighbour (validity, depth) of a pixel of depth ``zc`` is invalid or more than
    ``jump`` away."""
    return (not n_valid) | (abs(zc - n_z) > jump)


@_jit
def _edge_distance_kernel(z, valid, jump, cap, dist):
    """Chessboard distance (0 .. cap, cap meaning farther) of every pixel to the nearest edge:
    a valid pixel next to a 4-neighbour more than ``jump`` mm away or invalid."""
    h, w = z.shape
    dt = dist.dtype.type
    row = np.empty((h, w), dist.dtype)  # distance to the nearest edge in the same row
    edge = np.zeros(w + 2 * cap, np.uint8)  # edges of the current row, padded by cap
    for i in range(h):
        # a border pixel is its own neighbour, which never breaks a valid pixel
        zr, vr = z[i], valid[i]
        zu, vu = z[max(i - 1, 0)], valid[max(i - 1, 0)]
        zd, vd = z[min(i + 1, h - 1)], valid[min(i + 1, h - 1)]
        for j in range(1, w - 1):  # bitwise, not short-circuit: vectorises
            zc = zr[j]
            edge[cap + j] = vr[j] & (
                _breaks(vr[j - 1], zr[j - 1], zc, jump)
                | _breaks(vr[j + 1], zr[j + 1], zc, jump)
                | _breaks(vu[j], zu[j], zc, jump)
                | _breaks(vd[j], zd[j], zc, jump)
            )
        for j in (0, w - 1):
            jl, jr = max(j - 1, 0), min(j + 1, w - 1)
            zc = zr[j]
            edge[cap + j] = vr[j] & (
                _breaks(vr[jl], zr[jl], zc, jump)
                | _breaks(vr[jr], zr[jr], zc, jump)
                | _breaks(vu[j], zu[j], zc, jump)
                | _breaks(vd[j], zd[j], zc, jump)
            )
        rr = row[i]
        rr[:] = cap
        for d in range(cap - 1, -1, -1):  # nearer edges last: they win
            left, right, dd = edge[cap - d : cap - d + w], edge[cap + d : cap + d + w], dt(d)
            for j in range(w):
                rr[j] = dd if (left[j] | right[j]) != 0 else rr[j]
    for i in range(h):
        out = dist[i]
        out[:] = row[i]
        for k in range(max(i - cap + 1, 0), min(i + cap, h)):
            if k != i:
                dk, rk = dt(abs(k - i)), row[k]
                for j in range(w):  # contiguous: vectorises
                    out[j] = min(out[j], max(dk, rk[j]))


@_jit
def _lateral_kernel(z, cos, drop, valid, dist, band, block, scale, key):
    """Each valid pixel within ``band`` of an edge takes the depth, angle and validity of a
    pixel jittered by the lateral noise of [N12] (one jitter per ``block``: blocky edges), of std
    ``scale`` (0.8 + 0.035 theta / (pi/2 - theta)) px, theta capped at 89 deg."""
    h, w = z.shape
    wb = (w + block - 1) // block
    n = 0
    for i in range(h):
        for j in range(w):
            n += (dist[i, j] <= band) & valid[i, j]
    src = np.empty((n, 4), np.int64)
    # each block's two normals (Box-Muller), drawn once for the block row ``drawn``
    jy, jx = np.empty(wb), np.empty(wb)
    drawn = np.full(wb, -1, np.int64)
    n = 0
    for i in range(h):
        bi = i // block
        for j in range(w):
            if dist[i, j] > band or not valid[i, j]:
                continue
            bj = j // block
            if drawn[bj] != bi:
                b = 2 * (bi * wb + bj)
                r = math.sqrt(-2.0 * math.log(_uniform(key, b)))
                a = 2.0 * math.pi * _uniform(key, b + 1)
                jy[bj], jx[bj], drawn[bj] = r * math.cos(a), r * math.sin(a), bi
            th = min(math.acos(cos[i, j]), _THETA_CAP)
            s = scale * (0.8 + 0.035 * th / (0.5 * math.pi - th))
            src[n, 0], src[n, 1] = i, j
            src[n, 2] = min(max(i + int(math.floor(jy[bj] * s + 0.5)), 0), h - 1)
            src[n, 3] = min(max(j + int(math.floor(jx[bj] * s + 0.5)), 0), w - 1)
            n += 1
    # Gathered first and written after, so every pixel samples the unjittered image.
    zs = np.empty(n, z.dtype)
    cs = np.empty(n, cos.dtype)
    ds = np.empty(n, np.bool_)
    for k in range(n):
        sv, su = src[k, 2], src[k, 3]
        zs[k], cs[k], ds[k] = z[sv, su], cos[sv, su], drop[sv, su]
    for k in range(n):
        i, j = src[k, 0], src[k, 1]
        z[i, j], cos[i, j], drop[i, j] = zs[k], cs[k], ds[k]


@_jit
def _axial_quantised(zz, c, steep, field, u, axial, axial_scale, a, b, quantise, step, bf,
                     round_mm):  # fmt: skip
    """Depth ``zz`` after axial noise (``field``: the correlated part, ``u``: a uniform draw for
    the white part), disparity quantisation and rounding. ``steep``: the incidence angle (cos
    ``c``) is beyond 60 degrees, where [N12]'s angle term starts.

    The axial std of [N12]: sigma_z = 1.2 + 1.9 (z - 0.4)^2 mm (z in m) for theta <= 60 deg,
    plus 0.1 / sqrt(z) * theta^2 / (pi/2 - theta)^2 mm beyond, theta capped at 89 deg where the
    formula explodes (the Kinect v2 fit 1.5 - 0.5 z + 0.3 z^2 + ... is another sensor's)."""
    if axial:
        zm = zz * 1e-3
        sigma = 1.2 + 1.9 * (zm - 0.4) * (zm - 0.4)
        if steep:
            th = min(math.acos(c), _THETA_CAP)
            sigma += 0.1 / math.sqrt(max(zm, 1e-3)) * th * th / (0.5 * math.pi - th) ** 2
        sigma *= axial_scale
        if quantise:
            q = zz * zz * (step / bf)
            sigma = math.sqrt(max(sigma * sigma - q * q / 12.0, 0.0))
        noise = a * field if a > 0 else 0.0
        if b > 0:
            noise += b * (u - 0.5)
        zz += sigma * noise
    if quantise:
        disp = math.floor(bf / max(zz, 1.0) / step + 0.5)
        zz = (bf / step) / max(disp, 1.0)
    if round_mm:
        zz = math.floor(zz + 0.5)
    return zz


@_jit
def _measure_kernel(z, cos, drop, field, dist, out, axial, axial_scale, corr, quantise,
                    step, bf, round_mm, edge_probs, edge_block, grazing, graze_lo, graze_span,
                    zmin, zmax, key_white, key_edge, key_graze, bad):  # fmt: skip
    """Axial noise, disparity quantisation, rounding, edge and grazing dropouts, range.
    ``field``: :func:`_field_factors` of the correlated axial noise, or None."""
    h, w = z.shape
    wb = (w + edge_block - 1) // edge_block
    a, b = math.sqrt(corr), math.sqrt(12.0 * (1.0 - corr))
    white = axial and b > 0
    # x * (1 / step) is x / step exactly for a power of two (1/8 px): a division less
    inv_step = 1.0 / step
    default = axial and quantise and round_mm and white and field is not None
    default &= math.frexp(step)[0] == 0.5
    n_probs = len(edge_probs)
    cos_steep = 0.5 if axial else -1.0  # 60 degrees: where [N12]'s angle term starts
    cos_graze = math.cos(graze_lo) if grazing else -1.0
    frow = np.zeros(w, np.float32)
    zrow = np.empty(w)
    special = np.zeros(w, np.bool_)
    for i in range(h):
        if field is not None:
            _field_row(field[0], field[1], field[2], field[3], i, frow)
        zr, cr, dr, dsr, outr = z[i], cos[i], drop[i], dist[i], out[i]
        base = i * w
        # Every pixel as if at a moderate angle and away from edges, dropped or not: without
        # branches these loops vectorise. The default model's loop is spelt out: LLVM
        # vectorises it better than the general one with its switches.
        if default:
            for j in range(w):
                zz = np.float64(zr[j])
                zm = zz * 1e-3
                sigma = (1.2 + 1.9 * (zm - 0.4) * (zm - 0.4)) * axial_scale
                q = zz * zz * (step / bf)
                sigma = math.sqrt(max(sigma * sigma - q * q / 12.0, 0.0))
                zz += sigma * (a * frow[j] + b * (_uniform(key_white, base + j) - 0.5))
                disp = math.floor(bf / max(zz, 1.0) * inv_step + 0.5)
                zrow[j] = math.floor((bf / step) / max(disp, 1.0) + 0.5)
        else:
            for j in range(w):
                u = _uniform(key_white, base + j) if white else 0.5
                zrow[j] = _axial_quantised(np.float64(zr[j]), cr[j], False, frow[j], u, axial,
                                           axial_scale, a, b, quantise, step, bf,
                                           round_mm)  # fmt: skip
        for j in range(w):
            zz, keep = zrow[j], not dr[j]
            outr[j] = zz if keep & (zmin <= zz) & (zz <= zmax) else bad  # NaN: bad
            special[j] = keep & ((cr[j] < cos_steep) | (dsr[j] < n_probs) | (cr[j] < cos_graze))
        # The rest: steep angles, edges, grazing dropouts.
        for j in range(w):
            if not special[j]:
                continue
            c, zz = cr[j], zrow[j]
            if c < cos_steep:
                u = _uniform(key_white, base + j) if white else 0.5
                zz = _axial_quantised(np.float64(zr[j]), c, True, frow[j], u, axial,
                                      axial_scale, a, b, quantise, step, bf, round_mm)  # fmt: skip
            if dsr[j] < n_probs:
                u = _uniform(key_edge, (i // edge_block) * wb + j // edge_block)
                if u < edge_probs[dsr[j]]:
                    outr[j] = bad
                    continue
            if c < cos_graze:
                p = (math.acos(c) - graze_lo) / graze_span
                if _uniform(key_graze, base + j) < p:
                    outr[j] = bad
                    continue
            outr[j] = zz if zmin <= zz <= zmax else bad


@_jit
def _unset_per_row(mask, cum):
    """``cum[i + 1] = cum[i] +`` the number of False pixels in row ``i`` of ``mask``."""
    for i in range(mask.shape[0]):
        row = mask[i].view(np.uint8)
        n = 0
        for j in range(row.shape[0]):  # vectorises
            n += row[j]
        cum[i + 1] = cum[i] + row.shape[0] - n


@_jit
def _nth_unset(mask, cum, ks):
    """Row-major flat indices of the ``ks``-th (0-based) False pixels of ``mask`` (``cum``: of
    :func:`_unset_per_row`), as ``np.flatnonzero(~mask)[ks]`` without a full-frame array."""
    w = mask.shape[1]
    out = np.empty(len(ks), np.int64)
    for t in range(len(ks)):
        i = np.searchsorted(cum, ks[t], side="right") - 1
        left = ks[t] - cum[i]
        for j in range(w):
            if not mask[i, j]:
                if left == 0:
                    out[t] = i * w + j
                    break
                left -= 1
    return out


def _add_holes(rng: np.random.Generator, drop: np.ndarray, config: NoiseConfig) -> None:
    """Small irregular blobs at random pixels not in ``drop``, added to it."""
    h, w = drop.shape
    cum = np.zeros(h + 1, np.int64)
    _unset_per_row(drop, cum)
    count = int(cum[-1])
    n = rng.poisson(config.holes_per_10k_px * count / 1e4)
    if n == 0:
        return
    centre = _nth_unset(drop, cum, rng.integers(0, count, n))
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
    drop[yy[keep], xx[keep]] = True


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
    # No noise brings a pixel this far out of range back in (at 2 m the axial sigma is ~6 mm,
    # ~20 mm near the grazing cut-off; the slack is 200 mm): skip them, so a far wall costs
    # nothing. They read invalid either way. Bounds in the depth's own float type, as numpy
    # would compare.
    if clean.dtype not in (np.float32, np.float64):
        clean = clean.astype(np.float64)
    lo = clean.dtype.type((1.0 - _RANGE_SLACK) * cfg.min_depth_mm)
    hi = clean.dtype.type((1.0 + _RANGE_SLACK) * cfg.max_depth_mm)
    found, y0, y1, x0, x1 = _valid_box(clean, lo, hi)
    if not found:
        return out
    margin = cfg.lateral_band_px + 2
    y0, y1 = max(y0 - margin, 0), min(y1 + margin, clean.shape[0])
    x0, x1 = max(x0 - margin, 0), min(x1 + margin, clean.shape[1])
    h, w = y1 - y0, x1 - x0
    z = np.empty((h, w), np.float32)
    valid = np.empty((h, w), np.bool_)
    _crop_kernel(clean, y0, x0, lo, hi, z, valid)
    crop = out[y0:y1, x0:x1]
    # One key per hashed random stream (see _uniform), drawn up front.
    keys = rng.integers(0, 2**63, size=5, dtype=np.uint64)

    # Incidence angles as cosines, clipped at grazing_full_deg (so the grazing dropout
    # reaches exactly 1 there).
    theta_max = min(math.radians(cfg.grazing_full_deg), _THETA_CAP)
    cos = np.ones((h, w), np.float32)
    if cfg.axial or cfg.lateral or cfg.grazing_dropout:
        if normals is None:
            _cos_from_depth_kernel(z, x0, y0, *camera.intrinsics, math.cos(theta_max), cos)
        else:
            n = np.ascontiguousarray(normals, dtype=np.float32)
            _cos_kernel(n, x0, y0, *camera.intrinsics, math.cos(theta_max), cos)

    drop = ~valid
    if cfg.shadow:
        _shadow_kernel(z, valid, camera.fx * cfg.baseline_mm, cfg.projector_side, drop)
    probs = np.asarray(cfg.edge_dropout_prob if cfg.edge_dropout else (), np.float64)
    lateral = cfg.lateral and cfg.lateral_scale > 0
    cap = max(len(probs), cfg.lateral_band_px + 1 if lateral else 0)
    dist = np.zeros((h, w), np.int8 if cap < 127 else np.int32)
    if cap:
        _edge_distance_kernel(z, valid, np.float32(cfg.edge_jump_mm), cap, dist)

    if lateral:
        # A pixel that samples background (or shadow) becomes invalid: edges erode raggedly.
        _lateral_kernel(z, cos, drop, valid, dist, cfg.lateral_band_px,
                        cfg.lateral_block_px, cfg.lateral_scale, keys[_STREAM_LATERAL])  # fmt: skip
    if cfg.holes and cfg.holes_per_10k_px > 0:
        _add_holes(rng, drop, cfg)

    axial = cfg.axial and cfg.axial_scale > 0
    corr = min(max(cfg.axial_correlated_fraction, 0.0), 1.0)
    field = None
    if axial and corr > 0:
        field = _field_factors(rng, h, w, cfg.axial_correlation_px)
    lo = math.radians(cfg.grazing_start_deg)
    # [N12] measured quantised depth, so the axial sigma leaves the quantisation's variance.
    _measure_kernel(
        z, cos, drop, field, dist, crop, axial, cfg.axial_scale, corr, cfg.quantise,
        cfg.disparity_step_px, cfg.baseline_mm * cfg.sensor_focal_px, cfg.round_mm, probs,
        max(cfg.edge_dropout_block_px, 1), cfg.grazing_dropout, lo, max(theta_max - lo, 1e-6),
        cfg.min_depth_mm, cfg.max_depth_mm, keys[_STREAM_WHITE], keys[_STREAM_EDGE],
        keys[_STREAM_GRAZING], np.float32(bad),
    )  # fmt: skip
    return out


# --- shared with the other sensor families (synth.tof, synth.stereo, synth.coded_light) ---------


@dataclass
class SceneCrop:
    """The box of a frame's measurable pixels plus a margin, as the families' kernels take it.

    Attributes:
        y0, x0: the box's corner in the frame (px).
        z: ``(h, w)`` float32 depth, mm; 0 where invalid.
        valid: ``(h, w)`` bool, finite, > 0 and within the range asked for.
        cos: ``(h, w)`` float32 cos(incidence), at least the ``cos_min`` asked for (from the
            given normals, else from the depth); 0 where :func:`_cos_from_depth_kernel` has no
            neighbours to use.
    """

    y0: int
    x0: int
    z: np.ndarray
    valid: np.ndarray
    cos: np.ndarray


def crop_scene(
    clean: np.ndarray,
    camera: Camera,
    lo_mm: float,
    hi_mm: float,
    margin: int,
    normals: np.ndarray | None,
    cos_min: float,
) -> SceneCrop | None:
    """The :class:`SceneCrop` of ``clean`` (``(H, W)`` mm) for pixels within ``lo_mm .. hi_mm``,
    or None when there are none; ``normals``: ``(H, W, 3)`` or None. The steps of
    :func:`add_sensor_noise` before its model, for the other sensor families."""
    clean = np.asarray(clean)
    if clean.ndim != 2:
        raise ValueError(f"clean depth must be (H, W), got shape {clean.shape}")
    if normals is not None and normals.shape != (*clean.shape, 3):
        raise ValueError(f"normals must be {(*clean.shape, 3)}, got {normals.shape}")
    if clean.dtype not in (np.float32, np.float64):
        clean = clean.astype(np.float64)
    lo, hi = clean.dtype.type(lo_mm), clean.dtype.type(hi_mm)
    found, y0, y1, x0, x1 = _valid_box(clean, lo, hi)
    if not found:
        return None
    y0, y1 = max(y0 - margin, 0), min(y1 + margin, clean.shape[0])
    x0, x1 = max(x0 - margin, 0), min(x1 + margin, clean.shape[1])
    z = np.empty((y1 - y0, x1 - x0), np.float32)
    valid = np.empty(z.shape, np.bool_)
    _crop_kernel(clean, y0, x0, lo, hi, z, valid)
    cos = np.empty(z.shape, np.float32)
    if normals is None:
        _cos_from_depth_kernel(z, x0, y0, *camera.intrinsics, cos_min, cos)
    else:
        n = np.ascontiguousarray(normals, dtype=np.float32)
        _cos_kernel(n, x0, y0, *camera.intrinsics, cos_min, cos)
    return SceneCrop(int(y0), int(x0), z, valid, cos)


def random_blobs(
    rng: np.random.Generator,
    free: np.ndarray,
    per_10k_px: float,
    radius_px: tuple[float, float],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Small ragged blobs centred on random pixels where ``free`` (``(h, w)`` bool) holds, about
    ``per_10k_px`` per 10 000 such pixels (Poisson), radii uniform in ``radius_px``: a list of
    ``(rows, cols)`` index arrays, one per blob, clipped to the array. The blobs of
    :func:`add_sensor_noise`'s holes, for models that do more than drop them."""
    h, w = free.shape
    taken = ~free
    cum = np.zeros(h + 1, np.int64)
    _unset_per_row(taken, cum)
    count = int(cum[-1])
    n = rng.poisson(per_10k_px * count / 1e4) if count else 0
    if n == 0:
        return []
    centre = _nth_unset(taken, cum, rng.integers(0, count, n))
    r_lo, r_hi = radius_px
    radius = rng.uniform(r_lo, r_hi, n)
    k = int(math.ceil(r_hi * 1.3))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1].reshape(2, -1)
    # a random radius per offset makes the blobs ragged rather than discs
    reach = radius[:, None] * rng.uniform(0.7, 1.3, (n, dy.size))
    keep = dy**2 + dx**2 <= reach**2
    yy, xx = (centre // w)[:, None] + dy, (centre % w)[:, None] + dx
    keep &= (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    return [(yy[b][keep[b]], xx[b][keep[b]]) for b in range(n)]

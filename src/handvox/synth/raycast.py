"""Exact depth rendering of analytic primitives (:mod:`handvox.synth.primitives`) by ray casting.

Each pixel's ray is intersected analytically with every primitive whose projected screen region
holds the pixel, and the nearest hit wins (a z-buffer), so depth and visibility are exact: no
meshes, no sampling. The kernels are numba, rows interleaved over threads; the tests check them
against a numpy twin (``tests/synth/oracles.py``).

Frame: OpenCV camera frame (x right, y down, z forward), millimetres. Pixel ``(row i, column j)``
looks along the ray through ``u = j, v = i`` (pixel centres at integer coordinates, the convention
of :meth:`handvox.camera.Camera.xyz_to_uvd`). Depth is z, not ray length.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numba
import numpy as np

from handvox.camera import Camera
from handvox.synth.primitives import ELLIPSOID, PLANE, ROUND_CONE, SLAB, SPHERE, Primitives

# --- screen-space bounds ------------------------------------------------------------------------


def _sphere_boxes(c: np.ndarray, r: np.ndarray, cam: Camera) -> np.ndarray:
    """Exact screen box ``(N, 4)`` (u_min, u_max, v_min, v_max) of spheres in front of the camera.

    The extreme u is the slope of a plane through the camera's y axis tangent to the sphere.
    Spheres reaching behind the image plane get the whole image (or nothing if fully behind).
    """
    x, y, z = c[:, 0], c[:, 1], c[:, 2]
    ahead = z > r + 1e-6
    den = np.where(ahead, z * z - r * r, 1.0)
    sx = np.sqrt(np.maximum(x * x + z * z - r * r, 0.0))
    sy = np.sqrt(np.maximum(y * y + z * z - r * r, 0.0))
    box = np.stack(
        [
            cam.cx + cam.fx * (x * z - r * sx) / den,
            cam.cx + cam.fx * (x * z + r * sx) / den,
            cam.cy + cam.fy * (y * z - r * sy) / den,
            cam.cy + cam.fy * (y * z + r * sy) / den,
        ],
        axis=1,
    )
    full = np.array([-np.inf, np.inf, -np.inf, np.inf])
    empty = np.array([np.inf, -np.inf, np.inf, -np.inf])
    box[~ahead] = full
    box[z + r <= 0] = empty
    return box


def _screen_boxes(prims: Primitives, cam: Camera) -> tuple[np.ndarray, ...]:
    """Where each primitive can appear on screen.

    Returns:
        ``(P, 4)`` int64 pixel boxes [j0, j1, i0, i1] (inclusive; empty if j0 > j1); ``(P,)`` the
        nearest z each primitive reaches (for per-pixel early-outs); ``(P,)`` int8 span kind and
        ``(P, 12)`` span data for tighter per-row column ranges (see :func:`_row_span`).
    """
    k, q = prims.kind, prims.params
    # Bounding spheres: for a round cone the union of its two end spheres' boxes is exact,
    # since perspective projection maps the convex hull of two spheres to the hull of their images.
    c1 = q[:, 0:3].copy()
    r1 = q[:, 3].copy()
    c2, r2 = c1.copy(), r1.copy()
    cone = k == ROUND_CONE
    r1[cone] = q[cone, 6]
    c2[cone], r2[cone] = q[cone, 3:6], q[cone, 7]
    ell = k == ELLIPSOID
    r1[ell] = r2[ell] = q[ell, 3:6].max(axis=1)
    c3, r3 = c2.copy(), r2.copy()
    slab = k == SLAB
    c2[slab], c3[slab] = q[slab, 3:6], q[slab, 6:9]
    r1[slab], r2[slab], r3[slab] = q[slab, 9], q[slab, 10], q[slab, 11]
    with np.errstate(invalid="ignore", over="ignore"):
        b = np.stack([_sphere_boxes(c, r, cam) for c, r in ((c1, r1), (c2, r2), (c3, r3))])
    box = np.concatenate([b[:, :, 0::2].min(0), b[:, :, 1::2].max(0)], axis=1)[:, [0, 2, 1, 3]]
    plane = k == PLANE
    box[plane] = [-np.inf, np.inf, -np.inf, np.inf]
    zmin = np.minimum(np.minimum(c1[:, 2] - r1, c2[:, 2] - r2), c3[:, 2] - r3)
    zmin[plane] = 0.0
    eps = 1e-3  # a margin against rounding in the bounds; a wider box only costs a few misses
    lo = np.clip(np.ceil(box[:, [0, 2]] - eps), -1, [cam.width, cam.height])
    hi = np.clip(np.floor(box[:, [1, 3]] + eps), -1, [cam.width - 1, cam.height - 1])
    lo = np.maximum(lo, 0)
    ibox = np.stack([lo[:, 0], hi[:, 0], lo[:, 1], hi[:, 1]], axis=1).astype(np.int64)

    # Row spans. A round cone's image lies in the hull of its end spheres' boxes; a slab is its
    # two flat faces, whose images are triangles. Only for primitives wholly ahead of the camera.
    span_kind = np.zeros(len(k), np.int8)
    spans = np.zeros((len(k), 12))
    ahead = np.isfinite(b).all(axis=2)
    ok = cone & ahead[0] & ahead[1]
    span_kind[ok] = 1
    spans[ok, :8] = np.concatenate([b[0, ok], b[1, ok]], axis=1)
    ok = slab & ahead.all(axis=0)
    if ok.any():
        qs = q[ok]
        corners = [
            cam.project(
                qs[:, 3 * v : 3 * v + 3] + qs[:, 9 + v, None] * (qs[:, 12:15] + side * qs[:, 15:18])
            )
            for side in (1.0, -1.0)
            for v in range(3)
        ]
        spans[ok] = np.concatenate(corners, axis=1)
        span_kind[ok] = 2
    return ibox, zmin, span_kind, spans


# --- kernels ------------------------------------------------------------------------------------
# Ray / primitive intersections: the distance ``t`` along the unit ray ``(dx, dy, dz)`` from the
# camera to the nearest hit (inf for none), each ray's origin first moved to its point nearest the
# primitive (small numbers, no cancellation at 1 m).

_jit = numba.njit(cache=True, nogil=True)


@_jit
def _hit_sphere(q, dx, dy, dz):
    t0 = q[0] * dx + q[1] * dy + q[2] * dz
    ox, oy, oz = t0 * dx - q[0], t0 * dy - q[1], t0 * dz - q[2]
    b = ox * dx + oy * dy + oz * dz
    h = b * b - (ox * ox + oy * oy + oz * oz) + q[3] * q[3]
    if h < 0.0:
        return np.inf
    return t0 - b - np.sqrt(h)


@_jit
def _hit_round_cone(q, dx, dy, dz):
    # Inigo Quilez's ray / round cone intersection (iquilezles.org/articles/intersectors), with
    # the quadratic's near root in a cancellation-free form.
    ax, ay, az, bx, by, bz, ra, rb = q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]
    t0 = ax * dx + ay * dy + az * dz
    bax, bay, baz = bx - ax, by - ay, bz - az
    oax, oay, oaz = t0 * dx - ax, t0 * dy - ay, t0 * dz - az
    rr = ra - rb
    m0 = bax * bax + bay * bay + baz * baz
    m1 = bax * oax + bay * oay + baz * oaz
    m2 = bax * dx + bay * dy + baz * dz
    m3 = dx * oax + dy * oay + dz * oaz
    m5 = oax * oax + oay * oay + oaz * oaz
    d2 = m0 - rr * rr
    k2 = d2 - m2 * m2
    k1 = d2 * m3 - m1 * m2 + m2 * rr * ra
    k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * 2.0 - m0 * ra * ra
    h = k1 * k1 - k0 * k2
    if h < 0.0:
        return np.inf
    sh = np.sqrt(h)
    if k1 >= 0.0:
        tb = -(k1 + sh) / k2 if k2 != 0.0 else np.inf
    else:
        tb = k0 / (sh - k1)
    y = m1 - ra * rr + tb * m2
    if y > 0.0 and y < d2:
        return t0 + tb
    obx, oby, obz = t0 * dx - bx, t0 * dy - by, t0 * dz - bz
    m6 = obx * dx + oby * dy + obz * dz
    m7 = obx * obx + oby * oby + obz * obz
    h1 = m3 * m3 - m5 + ra * ra
    h2 = m6 * m6 - m7 + rb * rb
    t = np.inf
    if h1 > 0.0:
        t = -m3 - np.sqrt(h1)
    if h2 > 0.0:
        t = min(t, -m6 - np.sqrt(h2))
    return t0 + t


@_jit
def _hit_ellipsoid(q, dx, dy, dz):
    t0 = q[0] * dx + q[1] * dy + q[2] * dz
    ox, oy, oz = t0 * dx - q[0], t0 * dy - q[1], t0 * dz - q[2]
    a = 0.0
    b = 0.0
    cc = 0.0
    for k in range(3):
        ol = (q[6 + k] * ox + q[9 + k] * oy + q[12 + k] * oz) / q[3 + k]
        dl = (q[6 + k] * dx + q[9 + k] * dy + q[12 + k] * dz) / q[3 + k]
        a += dl * dl
        b += ol * dl
        cc += ol * ol
    cc -= 1.0
    h = b * b - a * cc
    if h < 0.0:
        return np.inf
    return t0 + (-b - np.sqrt(h)) / a


@_jit
def _hit_plane(q, dx, dy, dz):
    den = q[3] * dx + q[4] * dy + q[5] * dz
    if den == 0.0:
        return np.inf
    t = (q[3] * q[0] + q[4] * q[1] + q[5] * q[2]) / den
    return t if t > 0.0 else np.inf


@_jit
def _hit_slab(q, dx, dy, dz):
    t = np.inf
    for side in (1.0, -1.0):
        nx, ny, nz = q[12] + side * q[15], q[13] + side * q[16], q[14] + side * q[17]
        den = nx * dx + ny * dy + nz * dz
        if not den < 0.0:
            continue
        ts = (nx * q[0] + ny * q[1] + nz * q[2] + q[9]) / den
        if not (ts > 0.0 and ts < t):
            continue
        wx = ts * dx - q[0] - q[9] * nx
        wy = ts * dy - q[1] - q[9] * ny
        wz = ts * dz - q[2] - q[9] * nz
        d20 = wx * (q[3] - q[0]) + wy * (q[4] - q[1]) + wz * (q[5] - q[2])
        d21 = wx * (q[6] - q[0]) + wy * (q[7] - q[1]) + wz * (q[8] - q[2])
        b1 = q[20] * d20 - q[19] * d21
        b2 = q[18] * d21 - q[19] * d20
        det = q[18] * q[20] - q[19] * q[19]
        if b1 >= 0.0 and b2 >= 0.0 and b1 + b2 <= det:
            t = ts
    return t


@_jit
def _row_span(span_kind, s, y):
    """Column range ``(lo, hi)`` (floats; lo > hi if empty) that can hold the primitive in
    row ``y``: kind 1, the hull of boxes ``s[0:4]``, ``s[4:8]`` (u0, u1, v0, v1), as the union
    of the boxes ``(1 - l) A + l B``; kind 2, two triangles ``s[0:6]``, ``s[6:12]`` (u, v)."""
    if span_kind == 1:
        l0, l1 = 0.0, 1.0
        d = s[6] - s[2]  # the lower edge v0(l) <= y
        if d > 0.0:
            l1 = min(l1, (y - s[2]) / d)
        elif d < 0.0:
            l0 = max(l0, (y - s[2]) / d)
        elif s[2] > y:
            return np.inf, -np.inf
        d = s[7] - s[3]  # the upper edge v1(l) >= y
        if d > 0.0:
            l0 = max(l0, (y - s[3]) / d)
        elif d < 0.0:
            l1 = min(l1, (y - s[3]) / d)
        elif s[3] < y:
            return np.inf, -np.inf
        if l0 > l1:
            return np.inf, -np.inf
        lo = min(s[0] + l0 * (s[4] - s[0]), s[0] + l1 * (s[4] - s[0]))
        hi = max(s[1] + l0 * (s[5] - s[1]), s[1] + l1 * (s[5] - s[1]))
        return lo, hi
    lo, hi = np.inf, -np.inf
    for f in range(0, 12, 6):
        for e in range(3):
            a, b = f + 2 * e, f + 2 * ((e + 1) % 3)
            ua, va, ub, vb = s[a], s[a + 1], s[b], s[b + 1]
            if (va <= y <= vb) or (vb <= y <= va):
                if va == vb:
                    lo, hi = min(lo, ua, ub), max(hi, ua, ub)
                else:
                    x = ua + (y - va) * (ub - ua) / (vb - va)
                    lo, hi = min(lo, x), max(hi, x)
    return lo, hi


@_jit
def _render_rows(
    first, step, kind, params, boxes, zmin, span_kind, spans, order, fx, fy, cx, cy,
    background, depth, ids, want_ids,
):  # fmt: skip
    h, w = depth.shape
    for i in range(first, h, step):
        row = depth[i]
        row_ids = ids[i] if want_ids else ids[0]
        # Only the columns some primitive's box covers need the z-buffer's inf.
        a, b = w, -1
        for p in order:
            if boxes[p, 2] <= i <= boxes[p, 3] and boxes[p, 0] <= boxes[p, 1]:
                a, b = min(a, boxes[p, 0]), max(b, boxes[p, 1])
        row[:a] = background
        row[a : b + 1] = np.inf
        row[b + 1 :] = background
        if want_ids:
            row_ids[:] = -1
        ry = (i - cy) / fy
        for p in order:
            if i < boxes[p, 2] or i > boxes[p, 3]:
                continue
            j0, j1 = boxes[p, 0], boxes[p, 1]
            if span_kind[p] != 0:
                lo, hi = _row_span(span_kind[p], spans[p], float(i))
                if lo > hi:
                    continue
                j0 = max(j0, int(np.ceil(lo - 1e-3)))
                j1 = min(j1, int(np.floor(hi + 1e-3)))
            q = params[p]
            k = kind[p]
            zm = zmin[p]
            for j in range(j0, j1 + 1):
                if zm >= row[j]:
                    continue
                rx = (j - cx) / fx
                inv = 1.0 / np.sqrt(rx * rx + ry * ry + 1.0)
                dx, dy, dz = rx * inv, ry * inv, inv
                if k == ROUND_CONE:
                    t = _hit_round_cone(q, dx, dy, dz)
                elif k == SLAB:
                    t = _hit_slab(q, dx, dy, dz)
                elif k == SPHERE:
                    t = _hit_sphere(q, dx, dy, dz)
                elif k == ELLIPSOID:
                    t = _hit_ellipsoid(q, dx, dy, dz)
                else:
                    t = _hit_plane(q, dx, dy, dz)
                z = t * dz
                if z > 0.0 and z < row[j]:
                    row[j] = z
                    if want_ids:
                        row_ids[j] = p
        for j in range(a, b + 1):
            if row[j] == np.inf:
                row[j] = background


@_jit
def _normals_kernel(kind, params, depth, ids, fx, fy, cx, cy, out):
    """Outward unit normals at the visible hits, written into ``out`` ``(H, W, 3)`` (zeroed),
    from the hit point and the primitive's geometry; a plane's normal faces the camera."""
    h, w = depth.shape
    for i in range(h):
        for j in range(w):
            p = ids[i, j]
            if p < 0:
                continue
            q = params[p]
            z = np.float64(depth[i, j])
            px, py, pz = (j - cx) / fx * z, (i - cy) / fy * z, z
            k = kind[p]
            if k == SPHERE:
                nx, ny, nz = px - q[0], py - q[1], pz - q[2]
            elif k == ROUND_CONE:
                bax, bay, baz = q[3] - q[0], q[4] - q[1], q[5] - q[2]
                rx, ry, rz = px - q[0], py - q[1], pz - q[2]
                rr = q[6] - q[7]
                d2 = bax * bax + bay * bay + baz * baz - rr * rr
                y = bax * rx + bay * ry + baz * rz - q[6] * rr
                if y <= 0.0:
                    nx, ny, nz = rx, ry, rz
                elif y >= d2:
                    nx, ny, nz = px - q[3], py - q[4], pz - q[5]
                else:
                    nx, ny, nz = d2 * rx - bax * y, d2 * ry - bay * y, d2 * rz - baz * y
            elif k == ELLIPSOID:
                ox, oy, oz = px - q[0], py - q[1], pz - q[2]
                nx, ny, nz = 0.0, 0.0, 0.0
                for a in range(3):
                    loc = (q[6 + a] * ox + q[9 + a] * oy + q[12 + a] * oz) / (q[3 + a] ** 2)
                    nx += q[6 + a] * loc
                    ny += q[9 + a] * loc
                    nz += q[12 + a] * loc
            elif k == SLAB:
                ox, oy, oz = px - q[0], py - q[1], pz - q[2]
                ux, uy, uz = q[12] + q[15], q[13] + q[16], q[14] + q[17]
                vx, vy, vz = q[12] - q[15], q[13] - q[16], q[14] - q[17]
                res_u = abs(ux * ox + uy * oy + uz * oz - q[9])
                res_v = abs(vx * ox + vy * oy + vz * oz - q[9])
                nx, ny, nz = (ux, uy, uz) if res_u <= res_v else (vx, vy, vz)
            else:
                s = -1.0 if q[3] * px + q[4] * py + q[5] * pz > 0.0 else 1.0
                nx, ny, nz = s * q[3], s * q[4], s * q[5]
            norm = np.sqrt(nx * nx + ny * ny + nz * nz)
            out[i, j, 0] = nx / norm
            out[i, j, 1] = ny / norm
            out[i, j, 2] = nz / norm


# Keyed by (process id, threads): a pool inherited through fork() (data-loader workers) has no
# threads behind it, so each process makes its own.
_POOL: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _render_threads(n: int, args: tuple) -> None:
    """Rows interleaved over ``n`` threads (the hand covers the middle rows only, so blocks of
    rows would leave threads idle). The kernel releases the GIL, so plain threads run it in
    parallel, without the busy-waiting of an OpenMP pool on a shared machine."""
    key = (os.getpid(), n)
    if key not in _POOL:
        _POOL[key] = ThreadPoolExecutor(n - 1, thread_name_prefix="handvox-render")
    jobs = [_POOL[key].submit(_render_rows, b, n, *args) for b in range(1, n)]
    _render_rows(0, n, *args)
    for job in jobs:
        job.result()


# --- public entry point -------------------------------------------------------------------------


class Rendering(NamedTuple):
    """Depth ``(H, W)`` float32 mm; primitive index ``(H, W)`` int32 (-1 = no hit) if asked;
    camera-frame unit normals ``(H, W, 3)`` float32 (0 = no hit) if asked."""

    depth: np.ndarray
    ids: np.ndarray | None
    normals: np.ndarray | None


def part_map(prims: Primitives, ids: np.ndarray) -> np.ndarray:
    """Per-pixel part labels ``(H, W)`` int16 (index into
    :data:`handvox.synth.primitives.PART_NAMES`, -1 = no hit) from the primitive ids of
    :func:`render_depth`."""
    return np.where(ids >= 0, prims.part[np.maximum(ids, 0)], -1).astype(np.int16)


def _default_threads() -> int:
    return int(os.environ.get("HANDVOX_RENDER_THREADS", min(2, os.cpu_count() or 1)))


def render_depth(
    prims: Primitives,
    camera: Camera,
    background: float = 0.0,
    *,
    return_ids: bool = False,
    return_normals: bool = False,
    threads: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray | Rendering:
    """Render the exact z-depth of ``prims`` seen by ``camera``.

    Args:
        prims: the scene, camera frame, mm.
        camera: intrinsics and image size.
        background: depth of pixels that hit nothing.
        return_ids: also return the index of the visible primitive per pixel (map it through
            ``prims.part`` for part labels).
        return_normals: also return camera-frame unit surface normals.
        threads: threads for the kernel (rows interleaved); None for
            ``$HANDVOX_RENDER_THREADS`` or else 2 (fewer on a 1-core machine); 1 renders in the
            calling thread (best inside data-loader worker processes).
        out: optional C-contiguous float32 ``(H, W)`` array to render the depth into (e.g. a
            slice of a batch), saving an allocation per frame.
    Returns:
        ``(H, W)`` float32 depth, or a :class:`Rendering` if ids or normals are asked for.
    """
    h, w = camera.height, camera.width
    boxes, zmin, span_kind, spans = _screen_boxes(prims, camera)
    # Front to back so the per-pixel early-out skips most hidden work; planes (walls) last.
    order = np.argsort(np.where(prims.kind == PLANE, np.inf, zmin), kind="stable")
    want_ids = return_ids or return_normals
    ids = np.empty((h, w) if want_ids else (1, w), np.int32)
    if out is None:
        depth = np.empty((h, w), np.float32)
    elif out.shape != (h, w) or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"out: expected a C-contiguous float32 ({h}, {w}) array")
    else:
        depth = out
    args = (prims.kind, prims.params, boxes, zmin, span_kind, spans, order, *camera.intrinsics)
    args = (*args, float(background), depth, ids, want_ids)
    n = _default_threads() if threads is None else max(1, int(threads))
    if n == 1:
        _render_rows(0, 1, *args)
    else:
        _render_threads(n, args)
    if not (return_ids or return_normals):
        return depth
    normals = None
    if return_normals:
        normals = np.zeros((h, w, 3), np.float32)
        _normals_kernel(prims.kind, prims.params, depth, ids, *camera.intrinsics, normals)
    return Rendering(depth, ids if return_ids else None, normals)


def occlude(
    depth: np.ndarray,
    camera: Camera,
    prims: Primitives,
    noise_mm: float = 0.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``depth`` ``(H, W)`` mm (0: no reading) with ``prims`` pasted in where they are nearer
    (or where there was no reading), their depth plus Gaussian ``noise_mm`` drawn from ``rng``:
    a new float32 array, and the ``(H, W)`` bool mask of the pixels they cover."""
    drawn = render_depth(prims, camera, background=np.inf, threads=1)
    with np.errstate(invalid="ignore"):
        covered = drawn < np.where(depth > 0, depth, np.inf)  # 0 and NaN: no reading
    out = np.array(depth, np.float32, copy=True)
    hit = drawn[covered]
    if noise_mm > 0:
        if rng is None:
            raise ValueError("occlude: noise_mm > 0 needs an rng (the draw must be reproducible)")
        hit = hit + rng.normal(0.0, noise_mm, hit.shape)
    out[covered] = hit
    return out, covered

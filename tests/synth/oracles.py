"""Test oracles of handvox.synth: plain numpy versions of what the package computes in numba
kernels, and brute-force references. Nothing but a test should call them."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from handvox.camera import Camera
from handvox.synth.mesh import _GUARD, SUBPIXEL
from handvox.synth.noise import _field_factors, _field_row
from handvox.synth.primitives import ELLIPSOID, PLANE, ROUND_CONE, SLAB, SPHERE, Primitives
from handvox.synth.raycast import _screen_boxes

# --- ray casting: brute force -------------------------------------------------------------------


def rays(cam: Camera) -> np.ndarray:
    """``(H, W, 3)`` unit ray directions through pixel centres."""
    v, u = np.mgrid[: cam.height, : cam.width].astype(float)
    d = np.stack([(u - cam.cx) / cam.fx, (v - cam.cy) / cam.fy, np.ones_like(u)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def sphere_trace(dist, cam: Camera, t_max: float = 450.0, steps: int = 300) -> np.ndarray:
    """Reference z-depth (inf = miss) by sphere tracing ``dist(points (N, 3)) -> (N,)``, a
    distance bound that is exact outside the solid."""
    ray = rays(cam).reshape(-1, 3)
    t = np.zeros(len(ray))
    done = np.zeros(len(ray), bool)
    active = np.ones(len(ray), bool)
    for _ in range(steps):
        idx = np.nonzero(active)[0]
        if len(idx) == 0:
            break
        d = dist(t[idx, None] * ray[idx])
        t[idx] += d
        hit = d < 1e-5
        done[idx[hit]] = True
        active[idx[hit | (t[idx] > t_max)]] = False
    return np.where(done, t * ray[:, 2], np.inf).reshape(cam.height, cam.width)


def union_of_balls_dist(centers: np.ndarray, radii: np.ndarray):
    """Distance to a dense union of balls: a round cone or round triangle, by sampling."""

    c2 = (centers**2).sum(1)

    def dist(p):
        d2 = (p**2).sum(1)[:, None] - 2.0 * p @ centers.T + c2[None]
        return (np.sqrt(np.maximum(d2, 0.0)) - radii[None]).min(axis=1)

    return dist


# --- ray casting: the numpy twin of handvox.synth.raycast ---------------------------------------
# The same formulas as the kernels, vectorised over the pixels of each primitive's screen box.


class Rendering(NamedTuple):
    depth: np.ndarray
    ids: np.ndarray
    normals: np.ndarray | None


def render_depth(
    prims: Primitives, camera: Camera, background: float = 0.0, return_normals: bool = False
) -> Rendering:
    """:func:`handvox.synth.raycast.render_depth` with ids (and normals if asked)."""
    h, w = camera.height, camera.width
    boxes, zmin, _, _ = _screen_boxes(prims, camera)
    order = np.argsort(np.where(prims.kind == PLANE, np.inf, zmin), kind="stable")
    depth = np.full((h, w), np.inf, np.float32)
    ids = np.full((h, w), -1, np.int32)
    for p in order:
        j0, j1, i0, i1 = boxes[p]
        if j0 > j1 or i0 > i1:
            continue
        rx = (np.arange(j0, j1 + 1) - camera.cx) / camera.fx
        ry = (np.arange(i0, i1 + 1)[:, None] - camera.cy) / camera.fy
        inv = 1.0 / np.sqrt(rx * rx + ry * ry + 1.0)
        dx, dy, dz = rx * inv, ry * inv, np.broadcast_to(inv, (len(ry), len(rx)))
        z = _INTERSECT[int(prims.kind[p])](prims.params[p], dx, dy, dz) * dz
        buf = depth[i0 : i1 + 1, j0 : j1 + 1]
        win = (z > 0.0) & (z < buf)
        buf[win] = z[win]
        ids[i0 : i1 + 1, j0 : j1 + 1][win] = p
    depth[ids < 0] = background
    normals = _normals(prims, camera, depth, ids) if return_normals else None
    return Rendering(depth, ids, normals)


def _np_sphere(q, dx, dy, dz):
    c = q[0:3]
    t0 = c[0] * dx + c[1] * dy + c[2] * dz
    ox, oy, oz = t0 * dx - c[0], t0 * dy - c[1], t0 * dz - c[2]
    b = ox * dx + oy * dy + oz * dz
    h = b * b - (ox * ox + oy * oy + oz * oz) + q[3] * q[3]
    t = t0 - b - np.sqrt(np.maximum(h, 0.0))
    return np.where(h >= 0.0, t, np.inf)


def _np_round_cone(q, dx, dy, dz):
    ax, ay, az, bx, by, bz, ra, rb = q[:8]
    t0 = ax * dx + ay * dy + az * dz
    bax, bay, baz = bx - ax, by - ay, bz - az
    oax, oay, oaz = t0 * dx - ax, t0 * dy - ay, t0 * dz - az
    obx, oby, obz = t0 * dx - bx, t0 * dy - by, t0 * dz - bz
    rr = ra - rb
    m0 = bax * bax + bay * bay + baz * baz
    m1 = bax * oax + bay * oay + baz * oaz
    m2 = bax * dx + bay * dy + baz * dz
    m3 = dx * oax + dy * oay + dz * oaz
    m5 = oax * oax + oay * oay + oaz * oaz
    m6 = obx * dx + oby * dy + obz * dz
    m7 = obx * obx + oby * oby + obz * obz
    d2 = m0 - rr * rr
    k2 = d2 - m2 * m2
    k1 = d2 * m3 - m1 * m2 + m2 * rr * ra
    k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * 2.0 - m0 * ra * ra
    h = k1 * k1 - k0 * k2
    sh = np.sqrt(np.maximum(h, 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        # The near root, written to avoid cancellation whichever sign k1 has.
        tb = np.where(k1 >= 0.0, -(k1 + sh) / k2, k0 / (sh - k1))
    y = m1 - ra * rr + tb * m2
    body = (h >= 0.0) & (y > 0.0) & (y < d2)
    h1 = m3 * m3 - m5 + ra * ra
    h2 = m6 * m6 - m7 + rb * rb
    t1 = np.where(h1 > 0.0, -m3 - np.sqrt(np.maximum(h1, 0.0)), np.inf)
    t2 = np.where(h2 > 0.0, -m6 - np.sqrt(np.maximum(h2, 0.0)), np.inf)
    tc = np.minimum(t1, t2)
    t = np.where(body, tb, np.where(h >= 0.0, tc, np.inf))
    return t0 + t


def _np_ellipsoid(q, dx, dy, dz):
    c, s, rot = q[0:3], q[3:6], q[6:15].reshape(3, 3)
    t0 = c[0] * dx + c[1] * dy + c[2] * dz
    o = (t0 * dx - c[0], t0 * dy - c[1], t0 * dz - c[2])
    d = (dx, dy, dz)
    ol = [(rot[0, k] * o[0] + rot[1, k] * o[1] + rot[2, k] * o[2]) / s[k] for k in range(3)]
    dl = [(rot[0, k] * d[0] + rot[1, k] * d[1] + rot[2, k] * d[2]) / s[k] for k in range(3)]
    a = dl[0] * dl[0] + dl[1] * dl[1] + dl[2] * dl[2]
    b = ol[0] * dl[0] + ol[1] * dl[1] + ol[2] * dl[2]
    cc = ol[0] * ol[0] + ol[1] * ol[1] + ol[2] * ol[2] - 1.0
    h = b * b - a * cc
    t = t0 + (-b - np.sqrt(np.maximum(h, 0.0))) / a
    return np.where(h >= 0.0, t, np.inf)


def _np_plane(q, dx, dy, dz):
    den = q[3] * dx + q[4] * dy + q[5] * dz
    num = q[3] * q[0] + q[4] * q[1] + q[5] * q[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = num / den
    return np.where((den != 0.0) & (t > 0.0), t, np.inf)


def _np_slab(q, dx, dy, dz):
    t = np.full(dx.shape, np.inf)
    for side in (1.0, -1.0):
        nx, ny, nz = q[12] + side * q[15], q[13] + side * q[16], q[14] + side * q[17]
        den = nx * dx + ny * dy + nz * dz
        with np.errstate(divide="ignore", invalid="ignore"):
            ts = (nx * q[0] + ny * q[1] + nz * q[2] + q[9]) / den
        # w: hit minus the face's first corner; it lies in the face, so w.E_k = w.(c_k - c_0).
        wx = ts * dx - q[0] - q[9] * nx
        wy = ts * dy - q[1] - q[9] * ny
        wz = ts * dz - q[2] - q[9] * nz
        d20 = wx * (q[3] - q[0]) + wy * (q[4] - q[1]) + wz * (q[5] - q[2])
        d21 = wx * (q[6] - q[0]) + wy * (q[7] - q[1]) + wz * (q[8] - q[2])
        b1 = q[20] * d20 - q[19] * d21
        b2 = q[18] * d21 - q[19] * d20
        det = q[18] * q[20] - q[19] * q[19]
        # Only faces turned towards the camera can be where the ray enters the convex hull.
        hit = (den < 0.0) & (ts > 0.0) & (b1 >= 0.0) & (b2 >= 0.0) & (b1 + b2 <= det)
        t = np.where(hit & (ts < t), ts, t)
    return t


_INTERSECT = {SPHERE: _np_sphere, ROUND_CONE: _np_round_cone, ELLIPSOID: _np_ellipsoid,
              PLANE: _np_plane, SLAB: _np_slab}  # fmt: skip


def _normals(prims: Primitives, cam: Camera, depth: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Outward unit normals ``(H, W, 3)`` at the visible hits (zero elsewhere), from the hit
    point and the primitive's geometry; a plane's normal faces the camera."""
    out = np.zeros((*depth.shape, 3), np.float32)
    hit = np.nonzero(ids >= 0)
    pid = ids[hit]
    z = depth[hit].astype(np.float64)
    p = np.stack([(hit[1] - cam.cx) / cam.fx * z, (hit[0] - cam.cy) / cam.fy * z, z], axis=1)
    q = prims.params[pid]
    k = prims.kind[pid]
    n = np.zeros_like(p)
    s = k == SPHERE
    n[s] = p[s] - q[s, 0:3]
    c = k == ROUND_CONE
    if c.any():
        a, b, ra, rb = q[c, 0:3], q[c, 3:6], q[c, 6], q[c, 7]
        ba, rel = b - a, p[c] - a
        rr = ra - rb
        d2 = (ba * ba).sum(1) - rr * rr
        y = (ba * rel).sum(1) - ra * rr
        body = d2[:, None] * rel - ba * y[:, None]
        n[c] = np.where((y <= 0)[:, None], rel, np.where((y >= d2)[:, None], p[c] - b, body))
    e = k == ELLIPSOID
    if e.any():
        rot = q[e, 6:15].reshape(-1, 3, 3)
        local = np.einsum("nji,nj->ni", rot, p[e] - q[e, 0:3]) / q[e, 3:6] ** 2
        n[e] = np.einsum("nij,nj->ni", rot, local)
    sl = k == SLAB
    if sl.any():
        # The face whose plane holds the hit.
        g, hn, ps = q[sl, 12:15], q[sl, 15:18], p[sl] - q[sl, 0:3]
        up, down = g + hn, g - hn
        res_up = np.abs((up * ps).sum(1) - q[sl, 9])
        res_down = np.abs((down * ps).sum(1) - q[sl, 9])
        n[sl] = np.where((res_up <= res_down)[:, None], up, down)
    pl = k == PLANE
    n[pl] = q[pl, 3:6] * -np.sign((q[pl, 3:6] * p[pl]).sum(1, keepdims=True) + 1e-300)
    out[hit] = n / np.linalg.norm(n, axis=-1, keepdims=True)
    return out


# --- z-buffer rasteriser: the numpy twin of handvox.synth.mesh.rasterize_depth ------------------


def rasterize_depth(
    vertices: np.ndarray,
    faces: np.ndarray,
    camera: Camera,
    background: float = 0.0,
    near: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Depth ``(H, W)`` float32 and face ids ``(H, W)`` int32, as the kernel draws them."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    depth = np.full((camera.height, camera.width), background, np.float32)
    face_ids = np.full((camera.height, camera.width), -1, np.int32)
    setup = _setup(vertices, faces, camera, near)
    zbuf = np.full((camera.height, camera.width), np.inf)
    ids = np.full((camera.height, camera.width), -1, np.int64)
    _raster(setup, zbuf, ids)
    hit = ids >= 0
    depth[hit] = zbuf[hit]
    face_ids[hit] = setup[6][ids[hit]]
    return depth, face_ids


def _setup(vertices: np.ndarray, faces: np.ndarray, camera: Camera, near: float) -> tuple:
    """Screen data of the drawable triangles (what the kernel computes inline): fixed-point
    corners, edge biases, pixel boxes, 1/z coefficients, z range, face index."""
    fx, fy, cx, cy = camera.intrinsics
    tri = vertices[faces]  # (F, 3, 3)
    face_id = np.nonzero((tri[:, :, 2] > near).all(axis=1))[0]
    tri = tri[face_id]
    z = tri[:, :, 2]
    u = tri[:, :, 0] / z * fx + cx
    v = tri[:, :, 1] / z * fy + cy
    ok = (np.abs(u) < _GUARD).all(axis=1) & (np.abs(v) < _GUARD).all(axis=1)
    u, v = np.where(ok[:, None], u, 0.0), np.where(ok[:, None], v, 0.0)  # no int overflow
    x = np.rint(u * SUBPIXEL).astype(np.int64)
    y = np.rint(v * SUBPIXEL).astype(np.int64)
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    flip = area < 0
    x[flip] = x[flip][:, [0, 2, 1]]
    y[flip] = y[flip][:, [0, 2, 1]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    dist = np.einsum("fk,fk->f", normal, tri[:, 0])
    ok &= (area != 0) & (dist != 0)
    box = np.stack(
        [
            -(-x.min(1) // SUBPIXEL),
            x.max(1) // SUBPIXEL,
            -(-y.min(1) // SUBPIXEL),
            y.max(1) // SUBPIXEL,
        ],
        axis=1,
    )
    box[:, 0::2] = np.maximum(box[:, 0::2], 0)
    box[:, 1] = np.minimum(box[:, 1], camera.width - 1)
    box[:, 3] = np.minimum(box[:, 3], camera.height - 1)
    ok &= (box[:, 0] <= box[:, 1]) & (box[:, 2] <= box[:, 3])
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.stack(
            [
                normal[:, 0] / (fx * dist),
                normal[:, 1] / (fy * dist),
                (normal[:, 2] - normal[:, 0] * cx / fx - normal[:, 1] * cy / fy) / dist,
            ],
            axis=1,
        )
    # A pixel on an edge belongs to the triangle whose edge runs "up", or right when flat; the
    # triangle on the other side sees the same edge reversed, so exactly one of them takes it.
    dx = np.roll(x, -1, axis=1) - x
    dy = np.roll(y, -1, axis=1) - y
    bias = np.where((dy < 0) | ((dy == 0) & (dx > 0)), 0, 1).astype(np.int64)
    zr = np.stack([z.min(1), z.max(1)], axis=1)
    keep = np.nonzero(ok)[0]
    return tuple(np.ascontiguousarray(a[keep]) for a in (x, y, bias, box, coef, zr, face_id))


def _raster(setup: tuple, zbuf: np.ndarray, ids: np.ndarray, chunk: int = 1 << 21) -> None:
    x, y, bias, box, coef, zr, _ = setup
    w = zbuf.shape[1]
    bw, bh = box[:, 1] - box[:, 0] + 1, box[:, 3] - box[:, 2] + 1
    counts = bw * bh
    ends = np.cumsum(counts)
    t0 = 0
    while t0 < len(counts):  # triangles in order, a bounded number of candidate pixels at a time
        base = ends[t0] - counts[t0]
        t1 = max(t0 + 1, int(np.searchsorted(ends, base + chunk, side="right")))
        cnt = counts[t0:t1]
        t = np.repeat(np.arange(t0, t1), cnt)
        k = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        jj = box[t, 0] + k % bw[t]
        ii = box[t, 2] + k // bw[t]
        px, py = jj * SUBPIXEL, ii * SUBPIXEL
        inside = np.ones(len(t), bool)
        for e in range(3):
            a, b = e, (e + 1) % 3
            ew = (x[t, b] - x[t, a]) * (py - y[t, a]) - (y[t, b] - y[t, a]) * (px - x[t, a])
            inside &= ew >= bias[t, e]
        t, jj, ii = t[inside], jj[inside], ii[inside]
        inv = coef[t, 0] * jj + coef[t, 1] * ii + coef[t, 2]
        with np.errstate(divide="ignore"):
            z = np.where(inv > 0, 1.0 / inv, zr[t, 1])
        z = np.minimum(np.maximum(z, zr[t, 0]), zr[t, 1])
        pix = ii * w + jj
        order = np.lexsort((t, z, pix))  # nearest first, then lowest triangle, per pixel
        first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]]
        pix, z, t = pix[first], z[first], t[first]
        better = z < zbuf.flat[pix]
        zbuf.flat[pix[better]] = z[better]
        ids.flat[pix[better]] = t[better]
        t0 = t1


# --- sensor noise ---------------------------------------------------------------------------------

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


def _gradient(z: np.ndarray, valid: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Depth derivative along ``axis`` by the one-sided difference with the smaller jump, and
    whether there was one. Returns ``(grad, ok)``."""

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


def surface_normals(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """Unit normals ``(H, W, 3)`` float32 facing the camera, as the noise model finds them from
    the depth when no renderer's normals are given: dP/du x dP/dv of the back-projected surface,
    z_u and z_v the one-sided difference with the smaller jump; (0, 0, 0) where a pixel or both
    of its neighbours along u or v are invalid (<= 0 or non-finite)."""
    z = np.asarray(depth).astype(np.float32, copy=False)
    valid = np.isfinite(z) & (z > 0)
    z = np.where(valid, z, np.float32(0))
    zu, oku = _gradient(z, valid, axis=1)
    zv, okv = _gradient(z, valid, axis=0)
    h, w = z.shape
    rx = ((np.arange(w, dtype=np.float32) - camera.cx) / camera.fx)[None, :]
    ry = ((np.arange(h, dtype=np.float32) - camera.cy) / camera.fy)[:, None]
    a = camera.fx * zu
    c = camera.fy * zv
    nz = -(a * rx + c * ry + z)
    ok = oku & okv
    inv = ok / np.where(ok, np.sqrt(a * a + c * c + nz * nz), 1)
    return np.stack([a * inv, c * inv, nz * inv], axis=-1).astype(np.float32)


def smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """``(h, w)`` float32 unit-variance Gaussian random field correlated over ~``scale`` px: the
    noise model's factored field (``handvox.synth.noise._field_factors``), evaluated in full."""
    ay, by, tmp, sx = _field_factors(rng, h, w, scale)
    field = np.empty((h, w), np.float32)
    for i in range(h):
        _field_row(ay, by, tmp, sx, i, field[i])
    return field

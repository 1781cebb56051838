"""Exact depth rendering of a hand built from analytic primitives.

Primitives: spheres, round cones (the convex hull of two spheres: a capsule whose ends may differ
in radius), round triangles (the convex hull of three spheres: a tapering slab with rounded rims),
ellipsoids and planes. Each pixel's ray is intersected analytically with every primitive whose
projected screen region holds the pixel, and the nearest hit wins (a z-buffer), so depth and
visibility are exact: no meshes, no sampling. :func:`hand_primitives` builds a hand from the 21
canonical joints, :func:`scene_primitives` a person and a wall behind it.

Frame: OpenCV camera frame (x right, y down, z forward), millimetres. Pixel ``(row i, column j)``
looks along the ray through ``u = j, v = i`` (pixel centres at integer coordinates, the convention
of :meth:`handvox.camera.Camera.xyz_to_uvd`). Depth is z, not ray length.

Two backends give the same image: a numba kernel (rows shared among threads) and a numpy one
(vectorised over the pixels of each primitive's box). ``backend="auto"`` picks numba when it
imports.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from handvox.camera import Camera

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the fallback keeps renders working
    numba = None

SPHERE, ROUND_CONE, ELLIPSOID, PLANE, SLAB = 0, 1, 2, 3, 4
N_PARAMS = 24
# Part label of each primitive, an index into PART_NAMES (hand groups match handvox.joints).
PART_NAMES = ("palm", "thumb", "index", "middle", "ring", "little", "forearm", "body", "background")
PALM, THUMB, INDEX, MIDDLE, RING, LITTLE, FOREARM, BODY, BACKGROUND = range(9)


@dataclass(frozen=True)
class Primitives:
    """A scene of ``P`` analytic primitives in camera coordinates (mm).

    Attributes:
        kind: ``(P,)`` int8, one of ``SPHERE, ROUND_CONE, ELLIPSOID, PLANE, SLAB``.
        params: ``(P, 24)`` float64. Sphere: centre, radius. Round cone: end ``a``, end ``b``,
            radius at ``a``, radius at ``b``. Ellipsoid: centre, semi-axes, 3x3 rotation (row-major,
            columns = the axes in the camera frame). Plane: a point, unit normal. Slab (the flat
            faces of a hull of three spheres): centres ``c0, c1, c2``, radii ``r0, r1, r2``,
            in-plane part ``g`` and normal part ``h n`` of the face normals ``g +- h n``, and the
            Gram entries ``E1.E1, E1.E2, E2.E2`` of the faces' edges.
        part: ``(P,)`` int16 part label (index into :data:`PART_NAMES`).
    """

    kind: np.ndarray
    params: np.ndarray
    part: np.ndarray

    def __post_init__(self) -> None:
        p = len(self.kind)
        if self.params.shape != (p, N_PARAMS) or self.part.shape != (p,):
            raise ValueError(
                f"primitives: inconsistent shapes {self.params.shape}, {self.part.shape}"
            )
        if not np.isfinite(self.params).all():
            raise ValueError("primitives: non-finite parameters")

    def __len__(self) -> int:
        return len(self.kind)

    def __add__(self, other: Primitives) -> Primitives:
        return Primitives.concat([self, other])

    @staticmethod
    def concat(items: list[Primitives]) -> Primitives:
        if not items:
            return _make(np.zeros(0, np.int8), np.zeros((0, N_PARAMS)), np.zeros(0, np.int16))
        return _make(*(np.concatenate([getattr(x, f) for x in items]) for f in _FIELDS))

    @staticmethod
    def spheres(centers: np.ndarray, radii: np.ndarray, part: int | np.ndarray = 0) -> Primitives:
        """``(N, 3)`` centres, ``(N,)`` radii."""
        c = np.atleast_2d(np.asarray(centers, float))
        r = _positive("radii", np.broadcast_to(np.asarray(radii, float), len(c)))
        return _build(SPHERE, [c, r[:, None]], part)

    @staticmethod
    def round_cones(
        a: np.ndarray, b: np.ndarray, ra: np.ndarray, rb: np.ndarray, part: int | np.ndarray = 0
    ) -> Primitives:
        """``(N, 3)`` ends ``a`` and ``b`` with ``(N,)`` radii ``ra``, ``rb``.

        A cone whose larger end sphere swallows the other is stored as that sphere: the
        intersection formula needs ``|a - b| > |ra - rb|``.
        """
        a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
        n = len(a)
        ra, rb = (_positive("radii", np.broadcast_to(np.asarray(r, float), n)) for r in (ra, rb))
        part = np.broadcast_to(np.asarray(part, np.int16), n)
        degenerate = np.linalg.norm(b - a, axis=1) <= np.abs(ra - rb) + 1e-6
        big_a = ra >= rb
        cones = _build(ROUND_CONE, [a, b, ra[:, None], rb[:, None]], part)
        if not degenerate.any():
            return cones
        centers = np.where(big_a[:, None], a, b)[degenerate]
        radii = np.maximum(ra, rb)[degenerate]
        keep = ~degenerate
        cones = _make(cones.kind[keep], cones.params[keep], cones.part[keep])
        return cones + Primitives.spheres(centers, radii, part[degenerate])

    @staticmethod
    def ellipsoids(
        centers: np.ndarray, axes: np.ndarray, rotations: np.ndarray, part: int | np.ndarray = 0
    ) -> Primitives:
        """``(N, 3)`` centres, ``(N, 3)`` semi-axes, ``(N, 3, 3)`` rotations (columns = axes)."""
        c = np.atleast_2d(np.asarray(centers, float))
        s = _positive("axes", np.broadcast_to(np.asarray(axes, float), c.shape))
        rot = np.broadcast_to(np.asarray(rotations, float), (len(c), 3, 3)).reshape(len(c), 9)
        return _build(ELLIPSOID, [c, s, rot], part)

    @staticmethod
    def round_triangles(
        v0: np.ndarray,
        v1: np.ndarray,
        v2: np.ndarray,
        radii: float | np.ndarray,
        part: int | np.ndarray = 0,
        rims: bool = True,
    ) -> Primitives:
        """Convex hulls of three spheres: triangles ``(N, 3)`` x 3 thickened by per-vertex
        ``radii`` ``(N, 3)`` (or anything broadcasting to it), e.g. a tapering slab of palm.

        A ``SLAB`` primitive holds only the two flat faces tangent to the three spheres; the
        rounded rims are round cones on the edges, added here unless ``rims=False`` (for meshes
        that add each shared edge once). A triangle with no tangent faces (one sphere swallows
        the rest, or collinear vertices) keeps only its rims.
        """
        c = [np.atleast_2d(np.asarray(x, float)) for x in (v0, v1, v2)]
        n = len(c[0])
        r = _positive("radii", np.broadcast_to(np.asarray(radii, float), (n, 3)))
        out = _slab_faces(*c, r, part)
        if rims:
            a, b = np.concatenate(c), np.concatenate(c[1:] + c[:1])
            ra, rb = r.T.reshape(-1), np.roll(r, -1, axis=1).T.reshape(-1)
            part = np.tile(np.broadcast_to(np.asarray(part, np.int16), n), 3)
            out = out + Primitives.round_cones(a, b, ra, rb, part)
        return out

    @staticmethod
    def planes(points: np.ndarray, normals: np.ndarray, part: int | np.ndarray = BACKGROUND):
        """``(N, 3)`` points on the planes, ``(N, 3)`` normals (normalised here)."""
        p = np.atleast_2d(np.asarray(points, float))
        n = np.atleast_2d(np.asarray(normals, float))
        n = n / np.linalg.norm(n, axis=1, keepdims=True)
        return _build(PLANE, [p, n], part)


def _slab_faces(c0, c1, c2, r, part) -> Primitives:
    """The tangent faces of the hulls of spheres ``(c_k, r[:, k])``: outward unit normals
    ``g +- h n`` with ``g`` in the triangle's plane solving ``g . (c_k - c_0) = r_0 - r_k``."""
    e1, e2 = c1 - c0, c2 - c0
    cross = np.cross(e1, e2)
    area2 = np.linalg.norm(cross, axis=1)
    m11, m12, m22 = (e1 * e1).sum(1), (e1 * e2).sum(1), (e2 * e2).sum(1)
    rhs1, rhs2 = r[:, 0] - r[:, 1], r[:, 0] - r[:, 2]
    det = m11 * m22 - m12 * m12
    ok = area2 > 1e-9 * (m11 + m22)
    det = np.where(ok, det, 1.0)
    alpha, beta = (m22 * rhs1 - m12 * rhs2) / det, (m11 * rhs2 - m12 * rhs1) / det
    g = alpha[:, None] * e1 + beta[:, None] * e2
    h2 = 1.0 - (g * g).sum(1)
    ok &= h2 > 1e-6
    hn = np.sqrt(np.maximum(h2, 0.0))[:, None] * cross / np.where(ok, area2, 1.0)[:, None]
    # Edge Gram matrix of the tangent triangles; the same for both faces.
    d1, d2 = r[:, 1] - r[:, 0], r[:, 2] - r[:, 0]
    gram = np.stack([m11 - d1 * d1, m12 - d1 * d2, m22 - d2 * d2], axis=1)
    part = np.broadcast_to(np.asarray(part, np.int16), len(c0))
    faces = _build(SLAB, [c0, c1, c2, r, g, hn, gram], part)
    return _make(faces.kind[ok], faces.params[ok], faces.part[ok])


_FIELDS = ("kind", "params", "part")


def _positive(name: str, x: np.ndarray) -> np.ndarray:
    if not (x > 0).all():
        raise ValueError(f"{name}: expected positive values")
    return x


def _make(kind, params, part) -> Primitives:
    return Primitives(kind.astype(np.int8), params.astype(np.float64), part.astype(np.int16))


def _build(kind: int, columns: list[np.ndarray], part) -> Primitives:
    block = np.concatenate(columns, axis=1)
    n = len(block)
    params = np.zeros((n, N_PARAMS))
    params[:, : block.shape[1]] = block
    part = np.broadcast_to(np.asarray(part, np.int16), n)
    return _make(np.full(n, kind, np.int8), params, part)


# --- hand surface from the canonical 21 joints ------------------------------------------------

# Radii (mm) at each canonical joint: wrist; thumb CMC MCP IP tip; fingers MCP PIP DIP tip.
DEFAULT_RADII = np.array(
    [20.0, 14.0, 11.0, 9.5, 8.5]
    + [10.0, 9.0, 8.0, 7.0]  # index
    + [10.5, 9.5, 8.5, 7.5]  # middle
    + [10.0, 9.0, 8.0, 7.0]  # ring
    + [8.5, 7.5, 7.0, 6.0]  # little
)
_FINGER_PARTS = (THUMB, INDEX, MIDDLE, RING, LITTLE)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_primitives(
    joints21: np.ndarray,
    radii: np.ndarray | None = None,
    palm_thickness: float = 28.0,
    forearm: bool = False,
    forearm_length: float = 220.0,
    tip_inset: float = 1.0,
) -> Primitives:
    """The surface of a hand (and optionally its forearm) from canonical-21 joints.

    Fingers are one tapering round cone per phalanx and a fingertip sphere (by default its
    surface reaches the tip joint). The palm is a mesh of round triangles (hulls of three
    spheres) over the heel and the four knuckles: solid, flat-faced,
    ``palm_thickness`` thick at the heel and thinner at the knuckles, with a rounded outline.
    Round triangles to the thumb's CMC and MCP make the thenar pad and the thinner thumb web. The
    forearm, leaving the wrist away from the middle finger, is a tapering round quad (flattened
    cross-section, wider than thick).

    Args:
        joints21: ``(21, 3)`` joints in mm, camera frame, order of :data:`handvox.CANONICAL21`.
        radii: ``(21,)`` finger radii at each joint in mm (:data:`DEFAULT_RADII` if None); the
            wrist entry is the forearm's half-thickness at the wrist.
        palm_thickness: palm thickness at the heel in mm.
        forearm: add the forearm.
        forearm_length: forearm length from the wrist, mm.
        tip_inset: how far inside the tip joint the fingertip sphere's centre sits, in tip
            radii: 1 puts the finger's end on the joint, 0 centres the sphere on it (NYU's tip
            labels sit about there).
    Returns:
        The primitives, labelled with parts (palm, thumb, index, ..., forearm).
    """
    j = np.asarray(joints21, float)
    if j.shape != (21, 3) or not np.isfinite(j).all():
        raise ValueError(f"joints21: expected finite (21, 3), got {j.shape}")
    r = DEFAULT_RADII if radii is None else np.asarray(radii, float)
    if r.shape != (21,) or not (r > 0).all():
        raise ValueError("radii: expected (21,) positive values")

    wrist, mcp = j[0], j[[5, 9, 13, 17]]
    up = _unit(mcp[1] - wrist)
    across = mcp[0] - mcp[3]  # little -> index
    lat = _unit(across - up * (across @ up))
    width = np.linalg.norm(across)
    rp = palm_thickness / 2

    parts = []
    for f in range(5):
        base = 1 + 4 * f
        pts, rad = j[base : base + 4].copy(), r[base : base + 4]
        pts[3] -= _unit(pts[3] - pts[2]) * rad[3] * tip_inset
        # The distal cone ends a little thinner than the tip sphere: a fingertip pad.
        parts.append(
            Primitives.round_cones(
                pts[:3], pts[1:], rad[:3], rad[1:] * [1, 1, 0.9], _FINGER_PARTS[f]
            )
        )
        parts.append(Primitives.spheres(pts[3:], rad[3:], _FINGER_PARTS[f]))

    half_heel = 0.4 * width * lat
    verts = np.stack([wrist + half_heel, wrist - half_heel, *mcp, j[1], j[2]])
    r_knuckle = max(0.85 * rp, r[[5, 9, 13, 17]].max())
    vr = np.array([rp, rp] + [r_knuckle] * 4 + [r[1], 0.6 * rp])
    hr, hu, mi, mm, mr, ml, cmc, tm = range(8)
    faces = [
        (hr, mi, mm), (hr, mm, hu), (hu, mm, mr), (hu, mr, ml),  # palm
        (hr, cmc, mi), (cmc, tm, mi),  # thenar, web
    ]  # fmt: skip
    # The web's rim along the thumb metacarpal is inside the thumb's own cone.
    parts.append(_round_mesh(verts, vr, faces, PALM, skip={(cmc, tm)}))

    if forearm:
        back = _unit(wrist - mcp[1])
        near, far = 0.3 * width * lat, 0.36 * width * lat
        end = wrist + back * forearm_length
        quad = np.stack([wrist + near, wrist - near, end - far, end + far])
        qr = np.array([r[0], r[0], 1.3 * r[0], 1.3 * r[0]]) * [0.85, 0.85, 1, 1]
        # Coplanar, symmetric corners: the two triangles share tangent faces, no diagonal rim.
        parts.append(_round_mesh(quad, qr, [(0, 1, 2), (0, 2, 3)], FOREARM, skip={(0, 2)}))
    return Primitives.concat(parts)


def _round_mesh(
    verts: np.ndarray, radii: np.ndarray, faces: list, part: int, skip: set = frozenset()
) -> Primitives:
    """Round triangles over ``faces`` (index triples into ``(V, 3)`` verts with ``(V,)`` radii),
    each shared edge's round cone added once; edges in ``skip`` (sorted pairs) left out."""
    f = np.asarray(faces)
    rolled = np.roll(f, -1, axis=1)
    edges = {(min(a, b), max(a, b)) for a, b in zip(f.ravel(), rolled.ravel(), strict=True)}
    e = np.array(sorted(edges - set(skip)))
    slabs = Primitives.round_triangles(*verts[f.T], radii[f], part, rims=False)
    return slabs + Primitives.round_cones(verts[e[:, 0]], verts[e[:, 1]], *radii[e.T], part)


def scene_primitives(
    hand_center: np.ndarray,
    body_offset: tuple[float, float, float] = (150.0, 200.0, 300.0),
    shoulder_width: float = 380.0,
    torso_height: float = 550.0,
    torso_thickness: float = 220.0,
    head: bool = True,
    wall_depth: float | None = 2000.0,
) -> Primitives:
    """A person behind the hand (torso, neck, head) and a wall facing the camera.

    Args:
        hand_center: ``(3,)`` mm; the torso's centre sits at ``hand_center + body_offset``.
        shoulder_width, torso_height, torso_thickness: torso size in mm (a round quad narrowing
            a little towards the waist, upright in the camera frame).
        head: add a neck and an ellipsoid head above the torso.
        wall_depth: z of a fronto-parallel wall in mm; None for no wall.
    """
    c = np.asarray(hand_center, float) + np.asarray(body_offset, float)
    rt = torso_thickness / 2
    half_top, half_bottom = shoulder_width / 2 - rt, 0.85 * (shoulder_width / 2) - rt
    dy = torso_height / 2 - rt
    quad = c + np.array(
        [[-half_top, -dy, 0], [half_top, -dy, 0], [half_bottom, dy, 0], [-half_bottom, dy, 0]]
    )
    out = _round_mesh(quad, np.full(4, rt), [(0, 1, 2), (0, 2, 3)], BODY, skip={(0, 2)})
    if head:
        neck = c - [0, torso_height / 2, 0]
        skull = neck - [0, 130, 0]
        out = out + Primitives.round_cones(neck, skull, 55, 50, BODY)
        out = out + Primitives.ellipsoids(skull - [0, 20, 0], [80, 110, 95], np.eye(3), BODY)
    if wall_depth is not None:
        out = out + Primitives.planes([0.0, 0.0, wall_depth], [0.0, 0.0, -1.0], BACKGROUND)
    return out


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


# --- numpy backend --------------------------------------------------------------------------------


def _np_sphere(q, dx, dy, dz):
    c = q[0:3]
    t0 = c[0] * dx + c[1] * dy + c[2] * dz
    ox, oy, oz = t0 * dx - c[0], t0 * dy - c[1], t0 * dz - c[2]
    b = ox * dx + oy * dy + oz * dz
    h = b * b - (ox * ox + oy * oy + oz * oz) + q[3] * q[3]
    t = t0 - b - np.sqrt(np.maximum(h, 0.0))
    return np.where(h >= 0.0, t, np.inf)


def _np_round_cone(q, dx, dy, dz):
    # Inigo Quilez's ray / round cone intersection (iquilezles.org/articles/intersectors), with
    # the ray's origin moved to its point nearest ``a`` (small numbers, no cancellation at 1 m)
    # and the quadratic's near root in a cancellation-free form. The numba twin is the same.
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


_NP_INTERSECT = {SPHERE: _np_sphere, ROUND_CONE: _np_round_cone, ELLIPSOID: _np_ellipsoid,
                 PLANE: _np_plane, SLAB: _np_slab}  # fmt: skip


def _render_numpy(prims, cam, boxes, order, depth, ids) -> None:
    for p in order:
        j0, j1, i0, i1 = boxes[p]
        if j0 > j1 or i0 > i1:
            continue
        rx = (np.arange(j0, j1 + 1) - cam.cx) / cam.fx
        ry = (np.arange(i0, i1 + 1)[:, None] - cam.cy) / cam.fy
        inv = 1.0 / np.sqrt(rx * rx + ry * ry + 1.0)
        dx, dy, dz = rx * inv, ry * inv, np.broadcast_to(inv, (len(ry), len(rx)))
        z = _NP_INTERSECT[int(prims.kind[p])](prims.params[p], dx, dy, dz) * dz
        buf = depth[i0 : i1 + 1, j0 : j1 + 1]
        win = (z > 0.0) & (z < buf)
        buf[win] = z[win]
        ids[i0 : i1 + 1, j0 : j1 + 1][win] = p


# --- numba backend (same formulas, scalar) ----------------------------------------------------

if numba is not None:
    _jit = numba.njit(cache=True, nogil=True)

    @_jit
    def _nb_sphere(q, dx, dy, dz):
        t0 = q[0] * dx + q[1] * dy + q[2] * dz
        ox, oy, oz = t0 * dx - q[0], t0 * dy - q[1], t0 * dz - q[2]
        b = ox * dx + oy * dy + oz * dz
        h = b * b - (ox * ox + oy * oy + oz * oz) + q[3] * q[3]
        if h < 0.0:
            return np.inf
        return t0 - b - np.sqrt(h)

    @_jit
    def _nb_round_cone(q, dx, dy, dz):
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
    def _nb_ellipsoid(q, dx, dy, dz):
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
    def _nb_plane(q, dx, dy, dz):
        den = q[3] * dx + q[4] * dy + q[5] * dz
        if den == 0.0:
            return np.inf
        t = (q[3] * q[0] + q[4] * q[1] + q[5] * q[2]) / den
        return t if t > 0.0 else np.inf

    @_jit
    def _nb_slab(q, dx, dy, dz):
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
                        t = _nb_round_cone(q, dx, dy, dz)
                    elif k == SLAB:
                        t = _nb_slab(q, dx, dy, dz)
                    elif k == SPHERE:
                        t = _nb_sphere(q, dx, dy, dz)
                    elif k == ELLIPSOID:
                        t = _nb_ellipsoid(q, dx, dy, dz)
                    else:
                        t = _nb_plane(q, dx, dy, dz)
                    z = t * dz
                    if z > 0.0 and z < row[j]:
                        row[j] = z
                        if want_ids:
                            row_ids[j] = p
            for j in range(a, b + 1):
                if row[j] == np.inf:
                    row[j] = background

    @_jit
    def _nb_normals(kind, params, depth, ids, fx, fy, cx, cy, out):
        """The numba twin of :func:`_normals`, written into ``out`` ``(H, W, 3)`` (zeroed)."""
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


# --- normals (shared by both backends) ----------------------------------------------------------


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
    out[hit] = _unit(n)
    return out


# --- public entry point -------------------------------------------------------------------------


class Rendering(NamedTuple):
    """Depth ``(H, W)`` float32 mm; primitive index ``(H, W)`` int32 (-1 = no hit) if asked;
    camera-frame unit normals ``(H, W, 3)`` float32 (0 = no hit) if asked."""

    depth: np.ndarray
    ids: np.ndarray | None
    normals: np.ndarray | None


def part_map(prims: Primitives, ids: np.ndarray) -> np.ndarray:
    """Per-pixel part labels ``(H, W)`` int16 (index into :data:`PART_NAMES`, -1 = no hit)
    from the primitive ids of :func:`render_depth`."""
    return np.where(ids >= 0, prims.part[np.maximum(ids, 0)], -1).astype(np.int16)


def _default_threads() -> int:
    return int(os.environ.get("HANDVOX_RENDER_THREADS", min(2, os.cpu_count() or 1)))


def available_backends() -> tuple[str, ...]:
    return ("numba", "numpy") if numba is not None else ("numpy",)


def render_depth(
    prims: Primitives,
    camera: Camera,
    background: float = 0.0,
    *,
    return_ids: bool = False,
    return_normals: bool = False,
    backend: str = "auto",
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
        backend: ``"numba"``, ``"numpy"`` or ``"auto"`` (numba when importable).
        threads: threads for the numba kernel (rows interleaved); None for
            ``$HANDVOX_RENDER_THREADS`` or else 2 (fewer on a 1-core machine); 1 renders in the
            calling thread (best inside data-loader worker processes).
        out: optional C-contiguous float32 ``(H, W)`` array to render the depth into (e.g. a
            slice of a batch), saving an allocation per frame.
    Returns:
        ``(H, W)`` float32 depth, or a :class:`Rendering` if ids or normals are asked for.
    """
    if backend == "auto":
        backend = available_backends()[0]
    if backend not in available_backends():
        raise ValueError(f"backend {backend!r} not available; choose from {available_backends()}")
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
    if backend == "numba":
        args = (prims.kind, prims.params, boxes, zmin, span_kind, spans, order, *camera.intrinsics)
        args = (*args, float(background), depth, ids, want_ids)
        n = _default_threads() if threads is None else max(1, int(threads))
        if n == 1:
            _render_rows(0, 1, *args)
        else:
            _render_threads(n, args)
    else:
        depth[:] = np.inf
        ids = np.full((h, w), -1, np.int32)
        _render_numpy(prims, camera, boxes, order, depth, ids)
        depth[ids < 0] = background
    if not (return_ids or return_normals):
        return depth
    normals = None
    if return_normals and backend == "numba":
        normals = np.zeros((h, w, 3), np.float32)
        _nb_normals(prims.kind, prims.params, depth, ids, *camera.intrinsics, normals)
    elif return_normals:
        normals = _normals(prims, camera, depth, ids)
    return Rendering(depth, ids if return_ids else None, normals)

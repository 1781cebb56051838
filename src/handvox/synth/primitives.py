"""Hands and scenes as analytic primitives: what :mod:`handvox.synth.raycast` renders.

Primitives: spheres, round cones (the convex hull of two spheres: a capsule whose ends may differ
in radius), round triangles (the convex hull of three spheres: a tapering slab with rounded rims),
ellipsoids and planes, each labelled with the part of the scene it belongs to
(:data:`PART_NAMES`). :func:`hand_primitives` builds a hand (and its forearm) from the 21
canonical joints, :func:`scene_primitives` a person and a wall behind it.

Frame: OpenCV camera frame (x right, y down, z forward), millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPHERE, ROUND_CONE, ELLIPSOID, PLANE, SLAB = 0, 1, 2, 3, 4
N_PARAMS = 24
# Part label of each primitive, an index into PART_NAMES (hand groups match handvox.joints).
PART_NAMES = ("palm", "thumb", "index", "middle", "ring", "little", "forearm", "body", "background")
PALM, THUMB, INDEX, MIDDLE, RING, LITTLE, FOREARM, BODY, BACKGROUND = range(9)
# Parts only some scenes hold, numbered after PART_NAMES: an object (held or near the hand) and
# a second, unlabelled hand with its arm. Apart, so that scenes without them keep their part list.
EXTRA_PART_NAMES = ("object", "other_hand")
OBJECT, OTHER_HAND = range(len(PART_NAMES), len(PART_NAMES) + len(EXTRA_PART_NAMES))


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


def forearm_primitives(
    start: np.ndarray,
    end: np.ndarray,
    lateral: np.ndarray,
    half_width: tuple[float, float],
    radius: tuple[float, float],
    part: int = FOREARM,
) -> Primitives:
    """A forearm (or any flattened limb) from ``start`` to ``end`` (``(3,)``, mm): the round quad
    of :func:`hand_primitives`' forearm, its cross-section a rounded rectangle ``2 (half_width +
    radius)`` wide along ``lateral`` and ``2 radius`` thick, each given at ``start`` and ``end``.
    ``lateral`` is made perpendicular to the limb's axis here."""
    a, b = np.asarray(start, float), np.asarray(end, float)
    axis = _unit(b - a)
    lat = np.asarray(lateral, float)
    lat = _unit(lat - axis * (lat @ axis))
    near, far = half_width[0] * lat, half_width[1] * lat
    quad = np.stack([a + near, a - near, b - far, b + far])
    qr = np.array([radius[0], radius[0], radius[1], radius[1]], float)
    # Coplanar, symmetric corners, as hand_primitives' forearm: no diagonal rim.
    return _round_mesh(quad, qr, [(0, 1, 2), (0, 2, 3)], part, skip={(0, 2)})


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

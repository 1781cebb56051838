"""Rigged triangle meshes: linear blend skinning, a capsule hand mesh, z-buffer depth, glTF files.

The mesh route renders synthetic hands as a skinned triangle mesh instead of handvox's analytic
primitives (:mod:`handvox.synth.primitives`, ray cast by :mod:`handvox.synth.raycast`): a user's
own rigged hand (glTF 2.0 with a skin) or the capsule hand of :func:`mesh_from_capsules`, posed
by linear blend skinning (:func:`skin`) and drawn by a z-buffer rasteriser
(:func:`rasterize_depth`). No frame generator uses it yet. Imported meshes get welded
(:func:`weld_vertices`), simplified (:func:`decimate`) and checked for inside points
(:func:`winding_numbers`); :mod:`handvox.synth.skinned` does so for the LibHand hand.

Frames: vertices and transforms are in millimetres in handvox's OpenCV camera frame (x right,
y down, z forward). glTF files are in metres, y up, and a glTF camera looks along ``-z``; the
reader and the writer convert with ``(x, y, z)_cv = 1000 (x, -y, -z)_gltf``, a rotation, so a
scene seen by a default glTF camera is the scene handvox's camera sees.

Joint frames of :func:`mesh_from_capsules` follow :mod:`handvox.hand.kinematics`: joint ``j``'s
frame has its origin at the joint, ``-y`` along the bone to its child, ``+z`` dorsal and
``+x = y x z`` (the flexion axis: a positive rotation about ``+x`` curls the bone towards the
palm). Tips carry their parent bone's orientation. Skinning depends only on each joint's motion
``T T_rest^-1``, so any rigid frames work as long as posed frames are the same frames moved.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numba
import numpy as np
import torch
from scipy.spatial import ConvexHull, Delaunay

from handvox.atomic import atomic_path
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.joints import CANONICAL21

Array = TypeVar("Array", np.ndarray, torch.Tensor)

CANONICAL_PARENTS: tuple[int, ...] = tuple(
    [-1] + [dict((c, p) for p, c in CANONICAL21.bones)[j] for j in range(1, 21)]
)
MAX_INFLUENCES = 4


@dataclass
class RiggedMesh:
    """A triangle mesh skinned to ``J`` joints.

    Attributes:
        vertices: ``(V, 3)`` float64 rest-pose positions, mm.
        faces: ``(F, 3)`` int64 vertex indices.
        weights: ``(V, J)`` float64 skinning weights, rows summing to 1.
        rest_transforms: ``(J, 4, 4)`` float64 each joint's world transform in the rest pose.
        joint_names: ``J`` names.
        parents: parent joint of each joint (-1 for roots), or None when unknown.
    """

    vertices: np.ndarray
    faces: np.ndarray
    weights: np.ndarray
    rest_transforms: np.ndarray
    joint_names: tuple[str, ...]
    parents: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, np.float64)
        self.faces = np.asarray(self.faces, np.int64)
        self.weights = np.asarray(self.weights, np.float64)
        self.rest_transforms = np.asarray(self.rest_transforms, np.float64)
        self.joint_names = tuple(self.joint_names)
        v, j = len(self.vertices), len(self.joint_names)
        if self.vertices.shape != (v, 3) or self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"mesh: vertices {self.vertices.shape}, faces {self.faces.shape}")
        if self.weights.shape != (v, j) or self.rest_transforms.shape != (j, 4, 4):
            raise ValueError(
                f"mesh: {v} vertices and {j} joints but weights {self.weights.shape}, "
                f"rest_transforms {self.rest_transforms.shape}"
            )
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= v):
            raise ValueError("mesh: face index out of range")
        if not np.allclose(self.weights.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("mesh: skinning weights must sum to 1 per vertex")
        if self.parents is not None:
            self.parents = tuple(int(p) for p in self.parents)
            if len(self.parents) != j:
                raise ValueError(f"mesh: {len(self.parents)} parents for {j} joints")


# --- linear blend skinning ----------------------------------------------------------------------


def skin(mesh: RiggedMesh, posed_transforms: Array) -> Array:
    """Pose a mesh by linear blend skinning: ``v' = sum_j w_j T_j T_rest_j^-1 v``.

    Args:
        mesh: the rigged mesh.
        posed_transforms: ``(..., J, 4, 4)`` each joint's world transform in the new pose, numpy
            or torch (any device; the result follows its type, device and float dtype).
    Returns:
        ``(..., V, 3)`` posed vertices, mm.
    """
    n_joints = len(mesh.joint_names)
    if tuple(posed_transforms.shape[-3:]) != (n_joints, 4, 4):
        raise ValueError(
            f"skin: need (..., {n_joints}, 4, 4) transforms, got {posed_transforms.shape}"
        )
    rest_inv = np.linalg.inv(mesh.rest_transforms)
    if isinstance(posed_transforms, torch.Tensor):
        t = posed_transforms
        dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
        t = t.to(dtype)

        def conv(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(a, dtype=dtype, device=t.device)

        rel = (t @ conv(rest_inv))[..., :3, :].flatten(-2)  # (..., J, 12)
        weights, verts = conv(mesh.weights), conv(mesh.vertices)
    else:
        t = np.asarray(posed_transforms)
        t = t.astype(t.dtype if np.issubdtype(t.dtype, np.floating) else np.float64, copy=False)
        rel = (t @ rest_inv.astype(t.dtype))[..., :3, :]
        rel = rel.reshape(*rel.shape[:-2], 12)
        weights, verts = mesh.weights.astype(t.dtype), mesh.vertices.astype(t.dtype)
    # Blend the joints' 3x4 motions per vertex (one matmul), then apply; columns i*4 + k.
    b = weights @ rel  # (..., V, 12)
    return (
        b[..., 3::4]
        + b[..., 0::4] * verts[:, 0:1]
        + b[..., 1::4] * verts[:, 1:2]
        + b[..., 2::4] * verts[:, 2:3]
    )


def retarget(rest_transforms: Array, skeleton_rest: Array, skeleton_posed: Array) -> Array:
    """Posed transforms for a mesh whose joint frames differ from those of the skeleton driving
    it (a user's glTF hand driven by :mod:`handvox.hand.kinematics`): each mesh joint gets its
    skeleton joint's world-space motion, ``S_posed S_rest^-1 T_rest``. Right when the mesh's
    rest pose is the skeleton's rest pose (same joint positions, in the same frame).

    Args:
        rest_transforms: ``(J, 4, 4)`` the mesh's rest transforms.
        skeleton_rest: ``(J, 4, 4)`` the skeleton's frames in that rest pose.
        skeleton_posed: ``(..., J, 4, 4)`` the skeleton's frames in the new pose.
    Returns:
        ``(..., J, 4, 4)`` transforms for :func:`skin`; torch if ``skeleton_posed`` is.
    """
    if isinstance(skeleton_posed, torch.Tensor):
        s = skeleton_posed
        rest = torch.as_tensor(np.asarray(rest_transforms), dtype=s.dtype, device=s.device)
        s_rest = torch.as_tensor(skeleton_rest, dtype=s.dtype, device=s.device)
        return s @ torch.linalg.solve(s_rest, rest)
    return np.asarray(skeleton_posed) @ np.linalg.solve(skeleton_rest, rest_transforms)


def pose_transforms(
    rest_transforms: np.ndarray, parents: tuple[int, ...], rotations: np.ndarray
) -> np.ndarray:
    """Articulate a skeleton: rotate each joint's frame about its own origin, down the tree.

    A light forward kinematics on rest frames for tests and demos (the pose model is
    :mod:`handvox.hand.kinematics`).

    Args:
        rest_transforms: ``(J, 4, 4)`` rest world transforms.
        parents: parent of each joint, -1 for roots; parents must come before their children.
        rotations: ``(..., J, 3, 3)`` each joint's rotation in its own (rest) frame.
    Returns:
        ``(..., J, 4, 4)`` posed world transforms.
    """
    rest = np.asarray(rest_transforms, np.float64)
    rot = np.asarray(rotations, np.float64)
    out = np.zeros((*rot.shape[:-3], len(parents), 4, 4))
    for j, p in enumerate(parents):
        if p >= j:
            raise ValueError(f"pose_transforms: parent {p} of joint {j} must come before it")
        local = rest[j] if p < 0 else np.linalg.solve(rest[p], rest[j])
        r = np.zeros((*rot.shape[:-3], 4, 4))
        r[..., :3, :3] = rot[..., j, :, :]
        r[..., 3, 3] = 1.0
        out[..., j, :, :] = (local if p < 0 else out[..., p, :, :] @ local) @ r
    return out


# --- capsule hand mesh --------------------------------------------------------------------------


def example_hand() -> tuple[np.ndarray, np.ndarray]:
    """A plausible rest layout of a right hand for tests and demos (canonical 21 joints).

    Wrist at (0, 60, 500) mm in the camera frame, fingers along ``-y``, palm facing the camera,
    thumb on the image's right (oriented like the zero pose of :mod:`handvox.hand.kinematics`).

    Returns:
        joints ``(21, 3)`` mm and surface radii ``(21,)`` mm.
    """
    wrist = np.array([0.0, 60.0, 500.0])
    joints = [wrist]
    # Thumb: CMC near the wrist, palmar; the chain swings radially and towards the camera.
    cmc = wrist + [22.0, -18.0, -10.0]
    d = np.array([0.62, -0.72, -0.30])
    joints.append(cmc)
    for length in (42.0, 32.0, 27.0):
        d = d / np.linalg.norm(d)
        joints.append(joints[-1] + length * d)
        d = d + [-0.12, -0.1, 0.0]
    fingers = {  # MCP offset from the wrist, splay (deg, + radial), phalanx lengths (mm)
        "index": ([21.0, -88.0, 0.0], 6.0, (40.0, 24.0, 21.0)),
        "middle": ([2.0, -92.0, 0.0], 0.0, (45.0, 28.0, 24.0)),
        "ring": ([-16.0, -87.0, 2.0], -6.0, (42.0, 27.0, 23.0)),
        "little": ([-32.0, -78.0, 5.0], -13.0, (34.0, 20.0, 20.0)),
    }
    for offset, splay, lengths in fingers.values():
        a = np.deg2rad(splay)
        d = np.array([np.sin(a), -np.cos(a), 0.0])
        joints.append(wrist + offset)
        for length in lengths:
            joints.append(joints[-1] + length * d)
    radii = [22.0, 13.0, 11.0, 9.5, 8.5]
    radii += [10.0, 9.0, 8.0, 7.0] + [10.5, 9.5, 8.5, 7.5] + [10.0, 9.0, 8.0, 7.0]
    radii += [9.0, 8.0, 7.0, 6.5]
    return np.array(joints), np.array(radii)


def _smooth01(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _frames(origins: np.ndarray, axes: np.ndarray, dorsal: np.ndarray) -> np.ndarray:
    """``(n, 4, 4)`` frames with ``-y`` along ``axes`` and ``+z`` as close to ``dorsal`` as fits."""
    y = -_unit(axes)
    z = dorsal - (y @ dorsal)[:, None] * y
    weak = np.linalg.norm(z, axis=1) < 1e-6
    z[weak] = np.cross(y[weak], [1.0, 0.0, 0.0])  # a bone along the dorsal axis: any normal will do
    z = _unit(z)
    frames = np.zeros((len(y), 4, 4))
    frames[:, :3, 0] = np.cross(y, z)
    frames[:, :3, 1] = y
    frames[:, :3, 2] = z
    frames[:, :3, 3] = origins
    frames[:, 3, 3] = 1.0
    return frames


def _children(parents: tuple[int, ...]) -> list[list[int]]:
    return [[c for c in range(len(parents)) if parents[c] == j] for j in range(len(parents))]


def capsule_rest_frames(
    joints: np.ndarray, parents: tuple[int, ...], dorsal: np.ndarray
) -> np.ndarray:
    """Joint frames for a skeleton given by positions (conventions in the module docstring).

    A joint with several children (the wrist) points at the canonical middle MCP (joint 9) when
    the skeleton is the canonical one, else at the mean of its children.

    Args:
        joints: ``(J, 3)`` rest positions, mm.
        parents: parent of each joint, -1 for the root.
        dorsal: ``(3,)`` the back-of-hand direction, orthogonalised against each bone.
    Returns:
        ``(J, 4, 4)`` rest world transforms.
    """
    joints = np.asarray(joints, np.float64)
    children = _children(parents)
    axis = np.zeros_like(joints)
    for j, kids in enumerate(children):
        if tuple(parents) == CANONICAL_PARENTS and j == 0:
            axis[j] = joints[9] - joints[0]
        elif kids:
            axis[j] = joints[kids].mean(axis=0) - joints[j]
        else:  # a tip continues its parent bone
            axis[j] = joints[j] - joints[parents[j]]
    return _frames(joints, axis, np.asarray(dorsal, np.float64))


def _keep_largest(w: np.ndarray, k: int) -> np.ndarray:
    """Zero all but each row's ``k`` largest weights and renormalise."""
    if (w > 0).sum(axis=1).max() <= k:
        return w
    w = w.copy()
    np.put_along_axis(w, np.argsort(w, axis=1)[:, :-k], 0.0, axis=1)
    return w / w.sum(axis=1, keepdims=True)


def mesh_from_capsules(
    joints_rest: np.ndarray,
    radii: np.ndarray,
    parents: tuple[int, ...] = CANONICAL_PARENTS,
    *,
    palm_thickness: float = 25.0,
    around: int = 16,
    ring_step: float = 4.0,
    cap_rings: int = 4,
    blend: float = 1.0,
    dorsal: np.ndarray | None = None,
    rest_transforms: np.ndarray | None = None,
    joint_names: tuple[str, ...] | None = None,
) -> RiggedMesh:
    """Build a rigged hand mesh from joint positions and radii (canonical 21-joint layout).

    Every bone that does not start at the wrist becomes a closed capsule (a tube whose radius
    runs linearly from its joints' radii, ``around`` vertices per ring, rings every
    ``ring_step`` mm, hemispherical caps at both ends). The palm is one closed rounded slab,
    ``palm_thickness`` thick, spanning the wrist (widened to 0.6 x the index-little MCP distance)
    and the wrist's children (thumb CMC, the four MCPs). Parts overlap; a z-buffer does not mind.

    Weights: a capsule vertex belongs to the bone's own joint frame, blending with the parent
    joint's frame around the bone's start and with the child's frame around its end (when the
    child has a bone of its own); the blend is a smoothstep over ``+-blend x radius`` of the
    joint along the bone (capped at 0.45 x the bone's length), 50/50 at the joint. A palm
    vertex belongs to the wrist, blending the same way into each finger's (and the thumb's) first
    joint frame near that joint, fading out sideways beyond the joint's radius. At most
    :data:`MAX_INFLUENCES` joints per vertex.

    Args:
        joints_rest: ``(21, 3)`` rest joint positions, mm.
        radii: ``(21,)`` surface radius at each joint, mm (the wrist's is unused).
        parents: parent of each joint (-1 for the wrist).
        palm_thickness: mm.
        around, ring_step, cap_rings: capsule resolution.
        blend: width of the weight blend at joints, in joint radii.
        dorsal: ``(3,)`` back-of-hand direction; default ``(J17 - J0) x (J5 - J0)``, a right
            hand's (pass its negative for a left hand).
        rest_transforms: ``(21, 4, 4)`` rest joint frames to store instead of
            :func:`capsule_rest_frames` (e.g. ``FKResult.frames[0]`` of the zero pose, so that
            :mod:`handvox.hand.kinematics` frames drive :func:`skin` directly).
        joint_names: default the canonical names.
    Returns:
        The :class:`RiggedMesh`.
    """
    joints = np.asarray(joints_rest, np.float64)
    radii = np.asarray(radii, np.float64)
    parents = tuple(int(p) for p in parents)
    if joints.shape != (21, 3) or radii.shape != (21,) or len(parents) != 21:
        raise ValueError(
            f"mesh_from_capsules: need 21 joints, radii and parents, got {joints.shape}, "
            f"{radii.shape}, {len(parents)}"
        )
    children = _children(parents)
    if dorsal is None:
        dorsal = np.cross(joints[17] - joints[0], joints[5] - joints[0])
    dorsal = _unit(np.asarray(dorsal, np.float64))
    frames = capsule_rest_frames(joints, parents, dorsal)
    rb = blend * radii
    for c, p in enumerate(parents):
        if p >= 0:
            length = np.linalg.norm(joints[c] - joints[p])
            rb[p], rb[c] = min(rb[p], 0.45 * length), min(rb[c], 0.45 * length)
    rb = np.maximum(rb, 1e-9)

    def ramp(x: np.ndarray) -> np.ndarray:  # 0 -> 1 smoothly over x in [-1, 1]
        return _smooth01((x + 1.0) / 2.0)

    verts, faces, weights = [], [], []
    for c, j in enumerate(parents):
        if j < 0 or parents[j] < 0:
            continue
        length = float(np.linalg.norm(joints[c] - joints[j]))
        frame = _frames(joints[j][None], (joints[c] - joints[j])[None], dorsal)[0]
        v, f, s = _capsule(
            joints[j], frame, length, radii[j], radii[c], around, ring_step, cap_rings
        )
        w = np.zeros((len(v), 21))
        w[:, parents[j]] = 1.0 - ramp(s / rb[j])
        if children[c]:
            w[:, c] = 1.0 - ramp((length - s) / rb[c])
        w[:, j] = np.maximum(1.0 - w.sum(axis=1), 0.0)  # rb <= L/2: never truly negative
        verts.append(v), faces.append(f), weights.append(w)

    root = parents.index(-1)
    lateral = frames[root, :3, 0]
    half_wrist = 0.3 * np.linalg.norm(joints[5] - joints[17])
    keypoints = np.concatenate(
        [joints[root] + np.outer([1.0, -1.0], half_wrist * lateral), joints[children[root]]]
    )
    v, f = _palm_slab(keypoints, dorsal, lateral, palm_thickness / 2, step=5.0)
    w = np.zeros((len(v), 21))
    for k in children[root]:
        rel = v - joints[k]
        s = rel @ -frames[k, :3, 1]
        q = np.linalg.norm(rel + s[:, None] * frames[k, :3, 1], axis=1)
        w[:, k] = ramp(s / rb[k]) * (1.0 - _smooth01((q - radii[k]) / rb[k]))
    w /= np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    w[:, root] = np.maximum(1.0 - w.sum(axis=1), 0.0)
    verts.append(v), faces.append(f), weights.append(w)

    offsets = np.cumsum([0] + [len(v) for v in verts[:-1]])
    rest = frames if rest_transforms is None else np.asarray(rest_transforms, np.float64)
    return RiggedMesh(
        vertices=np.concatenate(verts),
        faces=np.concatenate([f + o for f, o in zip(faces, offsets, strict=True)]),
        weights=_keep_largest(np.concatenate(weights), MAX_INFLUENCES),
        rest_transforms=rest,
        joint_names=joint_names or CANONICAL21.names,
        parents=parents,
    )


def _orient_outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Wind a convex part's faces counter-clockwise seen from outside (glTF's front faces)."""
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2])]
    faces = faces[faces[:, 0] != faces[:, 2]]
    tri = verts[faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    out = np.einsum("fk,fk->f", normal, tri.mean(axis=1) - verts.mean(axis=0)) < 0
    faces[out] = faces[out][:, ::-1]
    return faces


def _capsule(
    a: np.ndarray, frame: np.ndarray, length: float, ra: float, rb: float, around: int,
    ring_step: float, cap_rings: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """A closed tube from ``a`` along ``-y`` of ``frame``: hemisphere, cone, hemisphere.

    Returns vertices ``(N, 3)``, faces ``(M, 3)`` and each vertex's distance ``s`` along the bone.
    """
    phi = np.linspace(0.0, np.pi / 2, cap_rings + 1)
    n_body = max(1, int(np.ceil(length / ring_step)))
    t = np.linspace(0.0, 1.0, n_body + 1)[1:-1]
    s = np.concatenate([-ra * np.cos(phi[1:]), length * t, length + rb * np.sin(phi[:-1])])
    rho = np.concatenate([ra * np.sin(phi[1:]), ra + (rb - ra) * t, rb * np.cos(phi[:-1])])
    d, e1, e2 = -frame[:3, 1], frame[:3, 0], frame[:3, 2]
    theta = 2 * np.pi * np.arange(around) / around
    ring = np.cos(theta)[:, None] * e1 + np.sin(theta)[:, None] * e2  # (around, 3)
    rings = a + s[:, None, None] * d + rho[:, None, None] * ring  # (R, around, 3)
    poles = np.stack([a - ra * d, a + (length + rb) * d])
    verts = np.concatenate([rings.reshape(-1, 3), poles])
    n_rings = len(s)
    idx = np.arange(n_rings * around).reshape(n_rings, around)
    nxt = np.roll(idx, -1, axis=1)
    quads = [idx[:-1], nxt[:-1], nxt[1:], idx[1:]]
    faces = [
        np.stack([quads[0], quads[1], quads[2]], -1),
        np.stack([quads[0], quads[2], quads[3]], -1),
    ]
    p0, p1 = n_rings * around, n_rings * around + 1
    faces.append(np.stack([np.full(around, p0), idx[0], nxt[0]], -1))
    faces.append(np.stack([np.full(around, p1), nxt[-1], idx[-1]], -1))
    faces = np.concatenate([f.reshape(-1, 3) for f in faces])
    s_all = np.concatenate([np.repeat(s, around), [-ra, length + rb]])
    return verts, _orient_outward(verts, faces), s_all


def _palm_slab(
    points: np.ndarray, normal: np.ndarray, lateral: np.ndarray, half: float, step: float
) -> tuple[np.ndarray, np.ndarray]:
    """A rounded slab: the convex hull of ``points`` flattened onto their mean plane, swept by a
    sphere of radius ``half`` (flat faces, half-round rim), as one closed mesh.

    Returns vertices ``(N, 3)`` and faces ``(M, 3)``.
    """
    e1 = _unit(lateral - (lateral @ normal) * normal)
    to3 = np.stack([e1, np.cross(normal, e1)])  # (2, 3) in-plane axes
    origin = points.mean(axis=0)
    poly = ((points - origin) @ to3.T)[ConvexHull((points - origin) @ to3.T).vertices]  # CCW
    edge = np.roll(poly, -1, axis=0) - poly
    m = _unit(np.stack([edge[:, 1], -edge[:, 0]], axis=1))  # outward edge normals
    # Rim samples: a point of the polygon outline and a 2-D outward normal; corners fan out.
    uniq, base_id, normals = [], [], []
    for k in range(len(poly)):
        uniq.append(poly[k])
        a0 = np.arctan2(m[k - 1, 1], m[k - 1, 0])
        turn = (np.arctan2(m[k, 1], m[k, 0]) - a0) % (2 * np.pi)
        n_arc = max(1, int(np.ceil(turn / np.deg2rad(20))))
        ang = a0 + turn * np.arange(n_arc + 1) / n_arc
        normals += [np.array([np.cos(a), np.sin(a)]) for a in ang]
        base_id += [len(uniq) - 1] * len(ang)
        n_seg = max(1, int(np.ceil(np.linalg.norm(edge[k]) / step)))
        for i in range(1, n_seg):
            uniq.append(poly[k] + edge[k] * i / n_seg)
            normals.append(m[k])
            base_id.append(len(uniq) - 1)
    uniq, base_id, normals = np.array(uniq), np.array(base_id), np.array(normals)
    # Interior grid for the flat faces, kept off the outline.
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    gx, gy = np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    inset = np.einsum("gkc,kc->gk", poly[None] - grid[:, None], m).min(axis=1)
    grid = grid[inset > 0.5 * step]
    n_u, n_s, n_g, n_prof = len(uniq), len(base_id), len(grid), 6
    alpha = -np.pi / 2 + np.pi * np.arange(1, n_prof) / n_prof
    rim_dir = (normals @ to3)[:, None] * np.cos(alpha)[:, None] + normal * np.sin(alpha)[:, None]
    rim = origin + (uniq[base_id] @ to3)[:, None] + half * rim_dir  # (S, n_prof - 1, 3)
    flat = origin + np.concatenate([uniq, grid]) @ to3
    # Vertex blocks: bottom outline, top outline, rim rows, bottom grid, top grid.
    verts = np.concatenate(
        [flat[:n_u] - half * normal, flat[:n_u] + half * normal, rim.reshape(-1, 3)]
        + [flat[n_u:] - half * normal, flat[n_u:] + half * normal]
    )
    first_grid = 2 * n_u + n_s * (n_prof - 1)
    bottom = np.concatenate([np.arange(n_u), first_grid + np.arange(n_g)])
    top = np.concatenate([n_u + np.arange(n_u), first_grid + n_g + np.arange(n_g)])
    mid_rows = 2 * n_u + np.arange(n_s * (n_prof - 1)).reshape(n_s, n_prof - 1)
    rows = np.concatenate([base_id[:, None], mid_rows, n_u + base_id[:, None]], axis=1)
    nxt = np.roll(rows, -1, axis=0)
    strip = [
        np.stack([rows[:, :-1], nxt[:, :-1], nxt[:, 1:]], -1),
        np.stack([rows[:, :-1], nxt[:, 1:], rows[:, 1:]], -1),
    ]
    flat2 = np.concatenate([uniq, grid])
    tri = Delaunay(flat2).simplices
    e = flat2[tri[:, 1:]] - flat2[tri[:, :1]]
    area2 = e[:, 0, 0] * e[:, 1, 1] - e[:, 0, 1] * e[:, 1, 0]
    tri = tri[np.abs(area2) > 1e-6]  # slivers of collinear outline points
    faces = np.concatenate([f.reshape(-1, 3) for f in strip] + [bottom[tri], top[tri]])
    return verts, _orient_outward(verts, faces)


# --- z-buffer rasteriser ------------------------------------------------------------------------
#
# Coverage is decided on a fixed-point grid (1/256 px) with integer edge functions, so shared
# edges are watertight, each pixel on a shared edge goes to exactly one triangle (top-left style
# rule). Depth is exact: the pixel's ray meets the triangle's plane at 1/z = a u + b v + c (1/z
# is affine in screen space), computed in float64 from the unsnapped vertices and clamped to the
# triangle's z range against snapping at silhouettes.

SUBPIXEL = 256
_GUARD = float(2**21)  # px; keeps fixed-point edge products inside int64


@numba.njit(cache=True, nogil=True)
def _raster_numba(verts, faces, fx, fy, cx, cy, near, width, height):
    """Per triangle: its fixed-point corners, edge biases, pixel box, 1/z coefficients and z
    range; then the z-buffer of the pixels they cover, only over the region the triangles'
    boxes span. Serial: a frame is about a millisecond of work, and ``nogil`` lets callers render
    frames in threads. (``tests/synth/oracles.py`` holds a vectorised numpy twin.)"""
    n = faces.shape[0]
    xs = np.empty((n, 3), np.int64)
    ys = np.empty((n, 3), np.int64)
    bias = np.empty((n, 3), np.int64)
    box = np.empty((n, 4), np.int64)
    coef = np.empty((n, 3))
    zr = np.empty((n, 2))
    ok = np.zeros(n, np.bool_)
    for f in range(n):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        if verts[a, 2] <= near or verts[b, 2] <= near or verts[c, 2] <= near:
            continue
        guard = True
        for k in range(3):
            p = faces[f, k]
            u = verts[p, 0] / verts[p, 2] * fx + cx
            v = verts[p, 1] / verts[p, 2] * fy + cy
            guard = guard and abs(u) < _GUARD and abs(v) < _GUARD
            xs[f, k] = np.int64(np.rint(u * SUBPIXEL)) if guard else 0
            ys[f, k] = np.int64(np.rint(v * SUBPIXEL)) if guard else 0
        if not guard:
            continue
        x0, x1, x2 = xs[f, 0], xs[f, 1], xs[f, 2]
        y0, y1, y2 = ys[f, 0], ys[f, 1], ys[f, 2]
        area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
        if area < 0:
            xs[f, 1], xs[f, 2], ys[f, 1], ys[f, 2] = x2, x1, y2, y1
        e1 = verts[b] - verts[a]
        e2 = verts[c] - verts[a]
        nx = e1[1] * e2[2] - e1[2] * e2[1]
        ny = e1[2] * e2[0] - e1[0] * e2[2]
        nz = e1[0] * e2[1] - e1[1] * e2[0]
        dist = nx * verts[a, 0] + ny * verts[a, 1] + nz * verts[a, 2]
        if area == 0 or dist == 0:
            continue
        box[f, 0] = max(-(-min(x0, x1, x2) // SUBPIXEL), 0)
        box[f, 1] = min(max(x0, x1, x2) // SUBPIXEL, width - 1)
        box[f, 2] = max(-(-min(y0, y1, y2) // SUBPIXEL), 0)
        box[f, 3] = min(max(y0, y1, y2) // SUBPIXEL, height - 1)
        if box[f, 0] > box[f, 1] or box[f, 2] > box[f, 3]:
            continue
        coef[f, 0] = nx / (fx * dist)
        coef[f, 1] = ny / (fy * dist)
        coef[f, 2] = (nz - nx * cx / fx - ny * cy / fy) / dist
        for k in range(3):
            dx = xs[f, (k + 1) % 3] - xs[f, k]
            dy = ys[f, (k + 1) % 3] - ys[f, k]
            bias[f, k] = 0 if (dy < 0 or (dy == 0 and dx > 0)) else 1
        zr[f, 0] = min(verts[a, 2], verts[b, 2], verts[c, 2])
        zr[f, 1] = max(verts[a, 2], verts[b, 2], verts[c, 2])
        ok[f] = True
    c0, c1, r0, r1 = width, -1, height, -1
    for f in range(n):
        if ok[f]:
            c0, c1 = min(c0, box[f, 0]), max(c1, box[f, 1])
            r0, r1 = min(r0, box[f, 2]), max(r1, box[f, 3])
    c0, r0 = min(c0, c1 + 1), min(r0, r1 + 1)  # an empty region when nothing is drawn
    zbuf = np.full((r1 - r0 + 1, c1 - c0 + 1), np.inf)
    ids = np.full((r1 - r0 + 1, c1 - c0 + 1), -1, np.int32)
    for f in range(n):
        if not ok[f]:
            continue
        x0, x1, x2 = xs[f, 0], xs[f, 1], xs[f, 2]
        y0, y1, y2 = ys[f, 0], ys[f, 1], ys[f, 2]
        for i in range(box[f, 2], box[f, 3] + 1):
            py = i * SUBPIXEL
            for j in range(box[f, 0], box[f, 1] + 1):
                px = j * SUBPIXEL
                if (x1 - x0) * (py - y0) - (y1 - y0) * (px - x0) < bias[f, 0]:
                    continue
                if (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1) < bias[f, 1]:
                    continue
                if (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2) < bias[f, 2]:
                    continue
                inv = coef[f, 0] * j + coef[f, 1] * i + coef[f, 2]
                z = 1.0 / inv if inv > 0 else zr[f, 1]
                z = min(max(z, zr[f, 0]), zr[f, 1])
                if z < zbuf[i - r0, j - c0]:
                    zbuf[i - r0, j - c0] = z
                    ids[i - r0, j - c0] = f
    return zbuf, ids, r0, c0


def rasterize_depth(
    vertices: Array,
    faces: Array,
    camera: Camera,
    background: float = 0.0,
    *,
    near: float = 1.0,
    return_ids: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render a triangle mesh's z-depth with exact visibility (z-buffer).

    Pixel ``(row i, column j)`` samples the ray through ``u = j, v = i`` (pixel centres at
    integer coordinates, as in :mod:`handvox.synth.raycast`). Both sides of every triangle are
    drawn.
    Triangles with a vertex at ``z <= near`` are dropped whole (no clipping: a hand never comes
    that close), as are triangles reaching beyond 2^21 px of the image.

    Args:
        vertices: ``(V, 3)`` camera frame, mm (numpy or torch).
        faces: ``(F, 3)`` vertex indices.
        camera: intrinsics and image size.
        background: depth of pixels no triangle covers.
        near: near plane, mm.
        return_ids: also return the visible face index per pixel (-1 where none).
    Returns:
        ``(H, W)`` float32 depth, mm; with ``return_ids`` also ``(H, W)`` int32 face indices.
    """
    if isinstance(vertices, torch.Tensor):
        vertices = vertices.detach().cpu().numpy()
    if isinstance(faces, torch.Tensor):
        faces = faces.detach().cpu().numpy()
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("rasterize_depth: face index out of range")
    depth = np.full((camera.height, camera.width), background, np.float32)
    face_ids = np.full((camera.height, camera.width), -1, np.int32)
    zbuf, ids, r0, c0 = _raster_numba(
        np.ascontiguousarray(vertices), np.ascontiguousarray(faces), *camera.intrinsics,
        float(near), camera.width, camera.height,
    )  # fmt: skip
    region = (slice(r0, r0 + zbuf.shape[0]), slice(c0, c0 + zbuf.shape[1]))
    hit = ids >= 0
    depth[region][hit] = zbuf[hit]
    face_ids[region] = ids
    return (depth, face_ids) if return_ids else depth


# --- glTF 2.0 -----------------------------------------------------------------------------------

_CV_FROM_GLTF = np.diag([1000.0, -1000.0, -1000.0, 1.0])  # points: metres y-up -> mm OpenCV
_GLTF_FROM_CV = np.linalg.inv(_CV_FROM_GLTF)
_DTYPES = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def _buffer(gltf, index: int, path: Path, cache: dict) -> bytes:
    if index not in cache:
        uri = gltf.buffers[index].uri
        if uri is None:
            data = gltf.binary_blob()
        elif uri.startswith("data:"):
            data = base64.b64decode(uri.split(",", 1)[1])
        else:
            try:
                data = (path.parent / uri).read_bytes()
            except OSError as e:
                raise DataError(path, f"buffer {uri!r}: {e}") from None
        if data is None:
            raise DataError(path, f"buffer {index} has no data")
        cache[index] = data
    return cache[index]


def _accessor(gltf, index: int, path: Path, cache: dict) -> np.ndarray:
    """``(count, width)`` values of an accessor (normalised integers scaled to [0, 1])."""
    acc = gltf.accessors[index]
    if acc.sparse is not None:
        raise DataError(path, f"accessor {index}: sparse accessors are not supported")
    if acc.componentType not in _DTYPES or acc.type not in _WIDTH:
        raise DataError(path, f"accessor {index}: unsupported {acc.type} of {acc.componentType}")
    dtype, width = np.dtype(_DTYPES[acc.componentType]), _WIDTH[acc.type]
    if acc.bufferView is None:
        return np.zeros((acc.count, width), dtype)
    view = gltf.bufferViews[acc.bufferView]
    data = _buffer(gltf, view.buffer, path, cache)
    stride = view.byteStride or dtype.itemsize * width
    start = (view.byteOffset or 0) + (acc.byteOffset or 0)
    end = start + stride * (acc.count - 1) + dtype.itemsize * width
    if acc.count and end > min(len(data), (view.byteOffset or 0) + view.byteLength):
        raise DataError(path, f"accessor {index} runs past the end of its buffer (truncated?)")
    out = np.ndarray(
        (acc.count, width), dtype, buffer=data, offset=start, strides=(stride, dtype.itemsize)
    ).copy()
    if acc.normalized and dtype.kind in "iu":
        out = np.maximum(out / np.iinfo(dtype).max, -1.0)
    return out


def _node_parents(gltf) -> dict[int, int]:
    return {c: i for i, node in enumerate(gltf.nodes) for c in (node.children or [])}


def load_gltf_rigged(path: str | Path, joint_map: dict[str, int] | None = None) -> RiggedMesh:
    """Read a skinned triangle mesh from a glTF 2.0 file (``.gltf`` or ``.glb``).

    Takes the first node with both a mesh and a skin, all of its mesh's triangle primitives
    (``POSITION``, ``JOINTS_n``/``WEIGHTS_n``, optional indices), and the skin's joints and
    ``inverseBindMatrices``: rest transforms are their inverses (the bind pose), so posed
    transforms are the joints' world transforms, as in glTF's own skinning. The mesh node's own
    transform is ignored, as the glTF spec says for skinned meshes. Metres, y up -> mm, OpenCV.

    Args:
        path: the file.
        joint_map: file joint name -> handvox joint index (e.g. into ``CANONICAL21``). Several
            names may share an index (they then move as one, with the rest frame of the first
            of them in skin order); indices no name maps to get zero weight and identity rest
            transforms. Every joint carrying weight must be mapped. None keeps the file's joints.
    Returns:
        The :class:`RiggedMesh` (weights renormalised to sum to 1).
    Raises:
        DataError: naming the file, when it is unreadable, has no skinned mesh, lacks
            ``JOINTS_0``/``WEIGHTS_0``, holds weights that do not sum to 1 or indices out of
            range, or does not match ``joint_map``.
    """
    import pygltflib  # the optional "gltf" extra: only reading and writing glTF files need it

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        gltf = pygltflib.GLTF2().load(str(path))
    except Exception as e:  # pygltflib raises whatever its JSON/struct parsing hits
        raise DataError(path, f"not a readable glTF file ({type(e).__name__}: {e})") from None
    if gltf is None:
        raise DataError(path, "not a readable glTF file")
    try:
        mesh = _read_skinned(gltf, path)
    except (IndexError, KeyError, TypeError, AttributeError) as e:  # dangling indices and such
        raise DataError(path, f"malformed glTF ({type(e).__name__}: {e})") from None
    return mesh if joint_map is None else _remap(mesh, joint_map, path)


def _read_skinned(gltf, path: Path) -> RiggedMesh:
    skinned = [n for n in gltf.nodes if n.mesh is not None and n.skin is not None]
    if not skinned:
        raise DataError(path, "no skinned mesh (no node has both a mesh and a skin)")
    node, cache = skinned[0], {}
    skin_ = gltf.skins[node.skin]
    n_joints = len(skin_.joints)
    if not n_joints:
        raise DataError(path, "the skin has no joints")
    verts, faces, weights = [], [], []
    for k, prim in enumerate(gltf.meshes[node.mesh].primitives):
        if prim.mode not in (None, 4):
            raise DataError(path, f"primitive {k}: mode {prim.mode} is not triangles")
        attr = prim.attributes
        if getattr(attr, "POSITION", None) is None:
            raise DataError(path, f"primitive {k}: no POSITION")
        if getattr(attr, "JOINTS_0", None) is None or getattr(attr, "WEIGHTS_0", None) is None:
            raise DataError(path, f"primitive {k}: no JOINTS_0/WEIGHTS_0 skinning attributes")
        pos = _accessor(gltf, attr.POSITION, path, cache).astype(np.float64)
        w = np.zeros((len(pos), n_joints))
        n_set = 0
        while getattr(attr, f"JOINTS_{n_set}", None) is not None:
            ji = _accessor(gltf, getattr(attr, f"JOINTS_{n_set}"), path, cache).astype(np.int64)
            if getattr(attr, f"WEIGHTS_{n_set}", None) is None:
                raise DataError(path, f"primitive {k}: JOINTS_{n_set} without WEIGHTS_{n_set}")
            wi = _accessor(gltf, getattr(attr, f"WEIGHTS_{n_set}"), path, cache).astype(float)
            if ji.shape != (len(pos), 4) or wi.shape != (len(pos), 4):
                raise DataError(path, f"primitive {k}: JOINTS_{n_set}/WEIGHTS_{n_set} shapes")
            if np.any((wi != 0) & ((ji < 0) | (ji >= n_joints))):
                raise DataError(path, f"primitive {k}: joint index out of range in JOINTS_{n_set}")
            np.add.at(w, (np.arange(len(pos))[:, None], np.clip(ji, 0, n_joints - 1)), wi)
            n_set += 1
        if prim.indices is None:
            tri = np.arange(len(pos) - len(pos) % 3).reshape(-1, 3)
        else:
            tri = _accessor(gltf, prim.indices, path, cache).astype(np.int64)
            if tri.size % 3:
                raise DataError(path, f"primitive {k}: {tri.size} indices, not a multiple of 3")
            tri = tri.reshape(-1, 3)
        if tri.size and (tri.min() < 0 or tri.max() >= len(pos)):
            raise DataError(path, f"primitive {k}: vertex index out of range")
        faces.append(tri + sum(len(v) for v in verts))
        verts.append(pos)
        weights.append(w)
    if not verts:
        raise DataError(path, "the skinned mesh has no primitives")
    pos, w = np.concatenate(verts), np.concatenate(weights)
    if not (np.isfinite(pos).all() and np.isfinite(w).all()):
        raise DataError(path, "NaN or infinite vertex positions or weights")
    sums = w.sum(axis=1)
    bad = np.nonzero(np.abs(sums - 1.0) > 1e-2)[0]
    if len(bad):
        raise DataError(
            path, f"skinning weights of {len(bad)} vertices don't sum to 1 "
            f"(vertex {bad[0]}: {sums[bad[0]]:.4g})",
        )  # fmt: skip
    w /= sums[:, None]
    if skin_.inverseBindMatrices is None:
        ibm = np.tile(np.eye(4), (n_joints, 1, 1))
    else:
        ibm = _accessor(gltf, skin_.inverseBindMatrices, path, cache).astype(np.float64)
        if ibm.shape != (n_joints, 16):
            raise DataError(path, f"{len(ibm)} inverse bind matrices for {n_joints} joints")
        ibm = ibm.reshape(-1, 4, 4).transpose(0, 2, 1)  # glTF stores matrices column-major
    rest = _CV_FROM_GLTF @ np.linalg.inv(ibm) @ _GLTF_FROM_CV
    names = [gltf.nodes[i].name or f"joint_{k}" for k, i in enumerate(skin_.joints)]
    node_parent, joint_of = _node_parents(gltf), {n: k for k, n in enumerate(skin_.joints)}
    parents = []
    for n in skin_.joints:  # nearest ancestor that is one of the skin's joints
        n = node_parent.get(n, -1)
        while n >= 0 and n not in joint_of:
            n = node_parent.get(n, -1)
        parents.append(joint_of.get(n, -1))
    return RiggedMesh(pos @ _CV_FROM_GLTF[:3, :3].T, np.concatenate(faces), w, rest, names, parents)


def _remap(mesh: RiggedMesh, joint_map: dict[str, int], path: Path) -> RiggedMesh:
    names = mesh.joint_names
    if any(i < 0 for i in joint_map.values()):
        raise ValueError("joint_map: indices must be >= 0")
    missing = sorted(set(joint_map) - set(names))
    if missing:
        raise DataError(path, f"joint_map names joints the file lacks: {missing}")
    unmapped = [n for k, n in enumerate(names) if n not in joint_map and mesh.weights[:, k].any()]
    if unmapped:
        raise DataError(path, f"joints with skinning weight are missing from joint_map: {unmapped}")
    if len(set(names)) != len(names):
        raise DataError(path, "duplicate joint names; a joint_map cannot tell them apart")
    n_out = max(joint_map.values()) + 1
    weights = np.zeros((len(mesh.vertices), n_out))
    rest = np.tile(np.eye(4), (n_out, 1, 1))
    out_names, source = [""] * n_out, [-1] * n_out
    for k, n in enumerate(names):
        if n in joint_map:
            i = joint_map[n]
            weights[:, i] += mesh.weights[:, k]
            if source[i] < 0:
                source[i], rest[i], out_names[i] = k, mesh.rest_transforms[k], n
    parents = []
    for i, k in enumerate(source):
        p = mesh.parents[k] if k >= 0 else -1
        while p >= 0 and joint_map.get(names[p], i) == i:
            p = mesh.parents[p]
        parents.append(joint_map[names[p]] if p >= 0 else -1)
    return RiggedMesh(mesh.vertices, mesh.faces, weights, rest, out_names, parents)


def save_gltf_rigged(path: str | Path, mesh: RiggedMesh) -> None:
    """Write a rigged mesh as glTF 2.0 with a skin, atomically: ``.glb`` (binary) or ``.gltf``
    (one JSON file, buffer embedded as a data URI). Joints become nodes named after
    ``mesh.joint_names``, nested by ``mesh.parents`` and posed at the rest transforms; metres,
    y up (see the module docstring).
    """
    import pygltflib as g  # the optional "gltf" extra, as in load_gltf_rigged

    path = Path(path)
    n_joints = len(mesh.joint_names)
    rest = _GLTF_FROM_CV @ mesh.rest_transforms @ _CV_FROM_GLTF
    n_inf = max(1, int((mesh.weights > 0).sum(axis=1).max()))
    n_sets = -(-n_inf // 4)
    top = np.argsort(-mesh.weights, axis=1, kind="stable")[:, : 4 * n_sets]
    if top.shape[1] < 4 * n_sets:  # fewer joints than slots
        top = np.pad(top, ((0, 0), (0, 4 * n_sets - top.shape[1])))
    top_w = np.take_along_axis(mesh.weights, top, axis=1)
    top_w[:, n_joints:] = 0.0
    arrays = [
        ("POSITION", (mesh.vertices @ _GLTF_FROM_CV[:3, :3].T).astype("<f4"), "VEC3", 5126),
        ("indices", mesh.faces.astype("<u4").ravel(), "SCALAR", 5125),
        ("ibm", np.linalg.inv(rest).transpose(0, 2, 1).reshape(-1, 16).astype("<f4"), "MAT4", 5126),
    ]
    for s in range(n_sets):
        arrays.append((f"JOINTS_{s}", top[:, 4 * s : 4 * s + 4].astype("<u2"), "VEC4", 5123))
        arrays.append((f"WEIGHTS_{s}", top_w[:, 4 * s : 4 * s + 4].astype("<f4"), "VEC4", 5126))
    blob, views, accessors, acc_of = b"", [], [], {}
    for name, arr, kind, ctype in arrays:
        data = np.ascontiguousarray(arr).tobytes()
        target = 34963 if name == "indices" else (None if name == "ibm" else 34962)
        views.append(
            g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target)
        )
        acc = g.Accessor(bufferView=len(views) - 1, componentType=ctype, count=len(arr), type=kind)
        if name == "POSITION":
            acc.min, acc.max = arr.min(axis=0).tolist(), arr.max(axis=0).tolist()
        acc_of[name] = len(accessors)
        accessors.append(acc)
        blob += data + b"\0" * (-len(data) % 4)
    parents = mesh.parents or (-1,) * n_joints
    nodes = []
    for j in range(n_joints):
        p = parents[j]
        local = rest[j] if p < 0 else np.linalg.solve(rest[p], rest[j])
        kids = [c for c in range(n_joints) if parents[c] == j]
        nodes.append(
            g.Node(name=mesh.joint_names[j], matrix=local.T.ravel().tolist(), children=kids)
        )
    attributes = g.Attributes(**{k: v for k, v in acc_of.items() if k.isupper()})
    nodes.append(g.Node(name="hand", mesh=0, skin=0))
    roots = [j for j in range(n_joints) if parents[j] < 0]
    gltf = g.GLTF2(
        scene=0,
        scenes=[g.Scene(nodes=[n_joints] + roots)],
        nodes=nodes,
        meshes=[g.Mesh(primitives=[g.Primitive(attributes=attributes, indices=acc_of["indices"])])],
        skins=[
            g.Skin(
                inverseBindMatrices=acc_of["ibm"],
                joints=list(range(n_joints)),
                skeleton=roots[0] if len(roots) == 1 else None,
            )
        ],
        accessors=accessors,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    if path.suffix.lower() == ".glb":
        gltf.set_binary_blob(blob)
    else:
        gltf.buffers[0].uri = "data:application/octet-stream;base64," + base64.b64encode(
            blob
        ).decode("ascii")
    with atomic_path(path, mkdir=False) as tmp:
        gltf.save(str(tmp), g.Asset(generator="handvox"))


# --- mesh clean-up: welding, decimation, inside tests ------------------------------------------


def weld_vertices(
    vertices: np.ndarray, faces: np.ndarray, tol: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices closer than about ``tol`` (exporters split them along UV and normal
    seams, which leaves a closed surface full of cracks as far as topology goes).

    Positions are snapped to a ``tol`` grid for the comparison; each group keeps its first
    vertex. Triangles that lose a corner to the merge are dropped.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` vertex indices.
        tol: merge distance, in the vertices' units.
    Returns:
        ``(V', 3)`` welded vertices, ``(F', 3)`` faces into them, and ``(V',)`` int64 the
        original index of each welded vertex (to carry weights or normals over).
    """
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64).reshape(-1, 3)
    used = np.unique(faces)
    key = np.round(vertices[used] / tol).astype(np.int64)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # keep the original order of the groups' first vertices
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    remap = np.full(len(vertices), -1, np.int64)
    remap[used] = rank[inverse.ravel()]
    keep = used[first[order]]
    f = remap[faces]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])]
    return vertices[keep], f, keep


_I64 = numba.types.int64


@numba.njit(cache=True)
def _plane_quadric(q, n0, n1, n2, d, w):
    """Add ``w`` times the plane ``n . x + d = 0``'s squared-distance quadric to ``q`` (10,)."""
    q[0] += w * n0 * n0
    q[1] += w * n0 * n1
    q[2] += w * n0 * n2
    q[3] += w * n0 * d
    q[4] += w * n1 * n1
    q[5] += w * n1 * n2
    q[6] += w * n1 * d
    q[7] += w * n2 * n2
    q[8] += w * n2 * d
    q[9] += w * d * d


@numba.njit(cache=True)
def _quadric_cost(qa, qb, p):
    x, y, z = p[0], p[1], p[2]
    c = 0.0
    for q in (qa, qb):
        c += (q[0] * x * x + 2 * q[1] * x * y + 2 * q[2] * x * z + 2 * q[3] * x
              + q[4] * y * y + 2 * q[5] * y * z + 2 * q[6] * y + q[7] * z * z + 2 * q[8] * z
              + q[9])  # fmt: skip
    return max(c, 0.0)


@numba.njit(cache=True)
def _heap_push(cost, frm, to, sf, st, n, c, a, b, s_a, s_b):
    if n == len(cost):  # grow
        cost2, frm2, to2 = np.empty(2 * n), np.empty(2 * n, np.int64), np.empty(2 * n, np.int64)
        sf2, st2 = np.empty(2 * n, np.int64), np.empty(2 * n, np.int64)
        cost2[:n], frm2[:n], to2[:n], sf2[:n], st2[:n] = cost, frm, to, sf, st
        cost, frm, to, sf, st = cost2, frm2, to2, sf2, st2
    i = n
    while i > 0:
        p = (i - 1) // 2
        if cost[p] <= c:
            break
        cost[i], frm[i], to[i], sf[i], st[i] = cost[p], frm[p], to[p], sf[p], st[p]
        i = p
    cost[i], frm[i], to[i], sf[i], st[i] = c, a, b, s_a, s_b
    return cost, frm, to, sf, st, n + 1


@numba.njit(cache=True)
def _heap_pop(cost, frm, to, sf, st, n):
    top = (cost[0], frm[0], to[0], sf[0], st[0])
    n -= 1
    c, a, b, s_a, s_b = cost[n], frm[n], to[n], sf[n], st[n]
    i = 0
    while True:
        k = 2 * i + 1
        if k >= n:
            break
        if k + 1 < n and cost[k + 1] < cost[k]:
            k += 1
        if cost[k] >= c:
            break
        cost[i], frm[i], to[i], sf[i], st[i] = cost[k], frm[k], to[k], sf[k], st[k]
        i = k
    if n > 0:
        cost[i], frm[i], to[i], sf[i], st[i] = c, a, b, s_a, s_b
    return top, n


@numba.njit(cache=True)
def _push_edge(heap, n, q, verts, stamp, a, b):
    cost, frm, to, sf, st = heap
    c_ab = _quadric_cost(q[a], q[b], verts[b])  # a collapses onto b
    c_ba = _quadric_cost(q[a], q[b], verts[a])
    if c_ab <= c_ba:
        return _heap_push(cost, frm, to, sf, st, n, c_ab, a, b, stamp[a], stamp[b])
    return _heap_push(cost, frm, to, sf, st, n, c_ba, b, a, stamp[b], stamp[a])


@numba.njit(cache=True)
def _face_normal(verts, a, b, c):
    e1 = verts[b] - verts[a]
    e2 = verts[c] - verts[a]
    return np.array([e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2],
                     e1[0] * e2[1] - e1[1] * e2[0]])  # fmt: skip


@numba.njit(cache=True)
def _decimate_numba(verts, faces, target, boundary_weight, min_cos):
    """Garland-Heckbert quadric error edge collapses onto an existing vertex (a half-edge
    collapse: the kept vertices are original ones, so their skinning weights stay exact), in
    order of cost, keeping the link condition (no new non-manifold edges), refusing collapses
    that turn a face by more than ``acos(min_cos)``; boundaries are held by planes through
    their edges. Returns the surviving faces (original vertex ids) and their count."""
    nv, nf = verts.shape[0], faces.shape[0]
    f_of = faces.copy()
    f_alive = np.ones(nf, np.bool_)
    v_alive = np.ones(nv, np.bool_)
    q = np.zeros((nv, 10))
    edge_faces = numba.typed.Dict.empty(_I64, _I64)
    for f in range(nf):
        a, b, c = f_of[f, 0], f_of[f, 1], f_of[f, 2]
        n = _face_normal(verts, a, b, c)
        area2 = np.sqrt(n @ n)
        if area2 > 0:
            n = n / area2
            d = -(n @ verts[a])
            for v in (a, b, c):
                _plane_quadric(q[v], n[0], n[1], n[2], d, 0.5 * area2)
        for k in range(3):
            u, w = f_of[f, k], f_of[f, (k + 1) % 3]
            key = min(u, w) * nv + max(u, w)
            edge_faces[key] = edge_faces.get(key, 0) + 1
    for f in range(nf):  # boundary edges: planes through the edge, perpendicular to the face
        n = _face_normal(verts, f_of[f, 0], f_of[f, 1], f_of[f, 2])
        area2 = np.sqrt(n @ n)
        if area2 == 0:
            continue
        n = n / area2
        for k in range(3):
            u, w = f_of[f, k], f_of[f, (k + 1) % 3]
            if edge_faces[min(u, w) * nv + max(u, w)] != 1:
                continue
            e = verts[w] - verts[u]
            m = np.array([e[1] * n[2] - e[2] * n[1], e[2] * n[0] - e[0] * n[2],
                          e[0] * n[1] - e[1] * n[0]])  # fmt: skip
            length2 = e @ e
            mn = np.sqrt(m @ m)
            if mn == 0:
                continue
            m = m / mn
            d = -(m @ verts[u])
            for v in (u, w):
                _plane_quadric(q[v], m[0], m[1], m[2], d, boundary_weight * length2)
    # Vertex -> face lists in one pool; a list that outgrows its slot moves to the pool's end.
    deg = np.zeros(nv, np.int64)
    for f in range(nf):
        for k in range(3):
            deg[f_of[f, k]] += 1
    start = np.zeros(nv, np.int64)
    start[1:] = np.cumsum(deg)[:-1]
    cap = deg.copy()
    count = np.zeros(nv, np.int64)
    pool = np.empty(12 * nf + 64, np.int64)
    for f in range(nf):
        for k in range(3):
            v = f_of[f, k]
            pool[start[v] + count[v]] = f
            count[v] += 1
    pool_end = 3 * nf
    stamp = np.zeros(nv, np.int64)
    heap = (np.empty(4 * nf), np.empty(4 * nf, np.int64), np.empty(4 * nf, np.int64),
            np.empty(4 * nf, np.int64), np.empty(4 * nf, np.int64))  # fmt: skip
    n_heap = 0
    for f in range(nf):
        for k in range(3):
            a, b = f_of[f, k], f_of[f, (k + 1) % 3]
            if a < b or edge_faces[b * nv + a] == 1:
                cost, frm, to, sf, st, n_heap = _push_edge(heap, n_heap, q, verts, stamp, a, b)
                heap = (cost, frm, to, sf, st)
    mark = np.zeros(nv, np.int64)
    tag = 0
    n_faces = nf
    while n_faces > target and n_heap > 0:
        top, n_heap = _heap_pop(heap[0], heap[1], heap[2], heap[3], heap[4], n_heap)
        u, v = top[1], top[2]
        if not (v_alive[u] and v_alive[v]) or stamp[u] != top[3] or stamp[v] != top[4]:
            continue
        # Faces around u: those on the edge go, the others swing onto v.
        tag += 1
        n_shared = 0
        for i in range(start[u], start[u] + count[u]):
            f = pool[i]
            if not f_alive[f]:
                continue
            has_v = f_of[f, 0] == v or f_of[f, 1] == v or f_of[f, 2] == v
            if has_v:
                n_shared += 1
            for k in range(3):
                mark[f_of[f, k]] = tag
        if n_shared == 0:
            continue
        # Link condition: u and v may share no neighbour but the apexes of their edge's faces.
        tag += 1
        common = 0
        n_v_faces = 0
        for i in range(start[v], start[v] + count[v]):
            f = pool[i]
            if not f_alive[f]:
                continue
            n_v_faces += 1
            for k in range(3):
                w = f_of[f, k]
                if w != u and w != v and mark[w] == tag - 1:
                    mark[w] = tag  # count each neighbour once
                    common += 1
        if common != n_shared:
            continue
        ok = True
        n_u_faces = 0
        for i in range(start[u], start[u] + count[u]):
            f = pool[i]
            if not f_alive[f]:
                continue
            n_u_faces += 1
            a, b, c = f_of[f, 0], f_of[f, 1], f_of[f, 2]
            if a == v or b == v or c == v:
                continue
            n_old = _face_normal(verts, a, b, c)
            a, b, c = (v if a == u else a), (v if b == u else b), (v if c == u else c)
            n_new = _face_normal(verts, a, b, c)
            lo, ln = np.sqrt(n_old @ n_old), np.sqrt(n_new @ n_new)
            if ln <= 1e-12 * (1.0 + lo) or (n_old @ n_new) < min_cos * lo * ln:
                ok = False
                break
        if not ok or n_u_faces + n_v_faces - 2 * n_shared > 48:
            continue
        # Collapse u onto v.
        need = count[v] + count[u]
        if need > cap[v]:
            if pool_end + 2 * need > len(pool):
                break  # out of room: stop early, the mesh is still valid
            m = 0
            for i in range(start[v], start[v] + count[v]):
                if f_alive[pool[i]]:
                    pool[pool_end + m] = pool[i]
                    m += 1
            start[v], count[v], cap[v] = pool_end, m, 2 * need
            pool_end += 2 * need
        for i in range(start[u], start[u] + count[u]):
            f = pool[i]
            if not f_alive[f]:
                continue
            if f_of[f, 0] == v or f_of[f, 1] == v or f_of[f, 2] == v:
                f_alive[f] = False
                n_faces -= 1
                continue
            for k in range(3):
                if f_of[f, k] == u:
                    f_of[f, k] = v
            pool[start[v] + count[v]] = f
            count[v] += 1
        v_alive[u] = False
        q[v] += q[u]
        stamp[v] += 1
        tag += 1
        for i in range(start[v], start[v] + count[v]):
            f = pool[i]
            if not f_alive[f]:
                continue
            for k in range(3):
                w = f_of[f, k]
                if w != v and mark[w] != tag:
                    mark[w] = tag
                    cost, frm, to, sf, st, n_heap = _push_edge(heap, n_heap, q, verts, stamp, v, w)
                    heap = (cost, frm, to, sf, st)
    out = np.empty((n_faces, 3), np.int64)
    m = 0
    for f in range(nf):
        if f_alive[f]:
            out[m] = f_of[f]
            m += 1
    return out[:m]


def decimate(
    vertices: np.ndarray, faces: np.ndarray, target_faces: int, *, max_turn_deg: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """Simplify a triangle mesh to about ``target_faces`` faces by quadric-error edge collapses.

    Each collapse moves a vertex onto a neighbour (Garland & Heckbert 1997 costs, half-edge
    placement), so the kept vertices are a subset of the input's and keep their attributes
    (skinning weights) exactly. Collapses that would make an edge non-manifold or turn a face by
    more than ``max_turn_deg`` are refused; boundary edges are held in place by extra
    quadrics. Weld the mesh first (:func:`weld_vertices`): split seams count as boundaries.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` vertex indices.
        target_faces: stop at this many faces (more remain when no valid collapse is left).
        max_turn_deg: largest turn of a face's normal a collapse may cause.
    Returns:
        ``(F', 3)`` int64 faces into the kept vertices and ``(V',)`` int64 the kept vertices'
        indices into ``vertices`` (``vertices[kept]`` is the simplified mesh's vertex array).
    """
    verts = np.ascontiguousarray(vertices, np.float64)
    faces = np.ascontiguousarray(np.asarray(faces, np.int64).reshape(-1, 3))
    if len(faces) and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ValueError("decimate: face index out of range")
    if len(faces) <= target_faces:
        out = faces
    else:
        # Boundary planes weigh like a face of the edge's length squared times 10: borders hold.
        min_cos = float(np.cos(np.deg2rad(max_turn_deg)))
        out = _decimate_numba(verts, faces, int(target_faces), 10.0, min_cos)
    kept, new = np.unique(out, return_inverse=True)
    return new.reshape(-1, 3).astype(np.int64), kept


def winding_numbers(vertices: np.ndarray, faces: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Generalised winding numbers of points with respect to a triangle mesh (Jacobson et al.
    2013): the signed solid angle of all faces seen from each point over ``4 pi``. 1 inside and
    0 outside a closed, outward-wound surface; near 0.5 on it, and still a robust inside test
    (``> 0.5``) for a surface with small holes or cracks.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` vertex indices, counter-clockwise seen from outside.
        points: ``(P, 3)``.
    Returns:
        ``(P,)`` float64.
    """
    tri = np.asarray(vertices, np.float64)[np.asarray(faces, np.int64).reshape(-1, 3)]
    points = np.asarray(points, np.float64).reshape(-1, 3)
    out = np.empty(len(points))
    for i, p in enumerate(points):  # one point at a time keeps the (F, 3, 3) temporaries small
        a, b, c = (tri - p).transpose(1, 0, 2)
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum("fi,fi->f", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("fi,fi->f", a, b) * lc
               + np.einsum("fi,fi->f", b, c) * la + np.einsum("fi,fi->f", c, a) * lb)  # fmt: skip
        # Van Oosterom & Strackee 1983: tan(omega / 2) = det / den for each face.
        out[i] = 2.0 * np.arctan2(det, den).sum() / (4.0 * np.pi)
    return out

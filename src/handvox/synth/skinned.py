"""The LibHand hand: a realistic skinned mesh driven by handvox's kinematic hand.

LibHand (libhand.org, Marin Saric, CC BY 3.0, see NOTICE) ships a rigged right hand with a short
stub of forearm, as OGRE binary files (:mod:`handvox.io.ogre`, copied into
``handvox/data/libhand``). :func:`libhand_hand` binds it, once per process, to the 30-DOF hand of
:mod:`handvox.hand.kinematics`:

- **joints.** LibHand's 22 bones name wrist, palm, metacarpals and phalanges (the table
  :data:`LIBHAND_BONES`; which finger is which is in the geometry, not the names, and
  :func:`libhand_chains` derives it). Its bone heads give the thumb CMC, MCP, IP and the finger
  MCPs, PIPs and DIPs (they sit where its skinning weights blend, so the skin bends there). The
  wrist is its carpals-metacarpals joint moved to the middle of the skin's cross-section there;
  each tip lies :data:`TIP_INSET_MM` inside the skin where the distal bone's axis leaves it.
- **scale and frame.** Model units become mm by the least-squares ratio of LibHand's bone
  lengths (all but the tips) to the average adult hand of :mod:`handvox.hand.shapes`; the hand
  frame (wrist origin, x radial, y proximal, z dorsal) is the rotation that best lays LibHand's
  thumb CMC and finger MCPs onto the average hand's. LibHand is a right hand, as handvox's is:
  radial x proximal is dorsal in its own axes, so nothing is mirrored.
- **bones and rest pose.** The fitted :class:`~handvox.hand.kinematics.HandBones` take the
  joints' own positions and segment lengths (the finger CMC pivots, which LibHand lacks, keep
  the average hand's metacarpal vectors); radii are the average hand's times one factor, the
  median ratio of LibHand's phalanges' girth to them. The rest pose is the articulation whose
  forward kinematics best reaches the joints (LibHand's hand is relaxed, slightly curled);
  :attr:`SkinnedHand.joints` are its joints.
- **skin.** LibHand's own vertex-bone weights, each bone's weight moved to the kinematic frame
  that carries its segment (:data:`LIBHAND_BONES`): phalanges to the canonical joint frames, the
  metacarpal bones to :class:`~handvox.hand.kinematics.FKResult`'s metacarpal frames (palm
  cupping), wrist, palm and forearm to the hand frame; at most :data:`MAX_INFLUENCES` per
  vertex. The mesh (skin and the forearm's end cap) is welded and decimated
  (:func:`~handvox.synth.mesh.decimate`) from 70,298 to ``faces`` triangles.

Posing (:meth:`SkinnedHand.skinning_matrices`): each segment's vertices move with its frame,
stretched along the bone by the new bone length over the fitted one and radially by a girth
factor (default: the new radius over the fitted one), ``A_j = F_j(pose) S_j F_j(rest)^-1``. The
palm and forearm are scaled in the hand frame by the least-squares ratio of the palm's
landmarks (x, y) and by the metacarpals' girth (z). Rendering is :func:`~handvox.synth.mesh.
rasterize_depth` of the posed mesh; the labels are the pose's forward kinematics.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
import torch
from scipy.optimize import least_squares
from torch import Tensor

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.hand.kinematics import (
    NUM_DOF,
    NUM_JOINTS,
    FKResult,
    HandBones,
    forward_kinematics,
    zero_pose,
)
from handvox.hand.shapes import base_shape
from handvox.io.ogre import OgreMesh, OgreSkeleton, read_mesh, read_skeleton
from handvox.joints import CANONICAL21, FINGERS
from handvox.synth.mesh import (
    CANONICAL_PARENTS,
    RiggedMesh,
    decimate,
    rasterize_depth,
    weld_vertices,
)
from handvox.synth.primitives import FOREARM, PALM, THUMB

LIBHAND_DIR = Path(__file__).resolve().parents[1] / "data" / "libhand"
MAX_INFLUENCES = 4
TIP_INSET_MM = 3.0
DEFAULT_FACES = 10_000

# The 25 frames that carry the skin: the canonical joints' frames (the bone leaving each joint)
# and the four finger metacarpals' (FKResult.metacarpal_frames[:, 1:]).
METACARPALS: tuple[str, ...] = tuple(f"{f}_metacarpal" for f in FINGERS[1:])
FRAME_NAMES: tuple[str, ...] = CANONICAL21.names + METACARPALS
FRAME_PARENTS: tuple[int, ...] = CANONICAL_PARENTS + (0,) * len(METACARPALS)

# LibHand's chains, by the bones' own names: a metacarpal (none for the thumb, which hangs off
# the palm bone "metacarpals") and three phalanges. Which finger is which is read from the
# geometry by libhand_chains(); this table is what it finds, kept for readers and the tests.
LIBHAND_CHAINS: dict[str, tuple[str | None, str, str, str]] = {
    "thumb": (None, "finger5joint1", "finger5joint2", "finger5joint3"),
    "index": ("Bone.003", "finger4joint1", "finger4joint2", "finger4joint3"),
    "middle": ("Bone.002", "finger3joint1", "finger3joint2", "finger3joint3"),
    "ring": ("Bone.001", "finger2joint1", "finger2joint2", "finger2joint3"),
    "little": ("Bone", "finger1joint1", "finger1joint2", "finger1joint3"),
}


def _bone_map() -> dict[str, str]:
    out = {"root": "wrist", "carpals": "wrist", "metacarpals": "wrist"}
    out |= dict(zip(LIBHAND_CHAINS["thumb"][1:], ("thumb_cmc", "thumb_mcp", "thumb_ip"),
                    strict=True))  # fmt: skip
    for f in FINGERS[1:]:
        mc, p1, p2, p3 = LIBHAND_CHAINS[f]
        out |= {mc: f"{f}_metacarpal", p1: f"{f}_mcp", p2: f"{f}_pip", p3: f"{f}_dip"}
    return out


# LibHand bone -> the kinematic frame whose segment it is (a name of FRAME_NAMES).
LIBHAND_BONES: dict[str, str] = _bone_map()


# --- reading and reading off the geometry -------------------------------------------------------


def load_libhand(folder: str | Path | None = None) -> tuple[OgreMesh, OgreSkeleton]:
    """LibHand's ``hand.mesh`` and ``hand.skeleton`` (default: the copy shipped in handvox)."""
    folder = LIBHAND_DIR if folder is None else Path(folder)
    mesh = read_mesh(folder / "hand.mesh")
    skeleton = read_skeleton(folder / "hand.skeleton")
    missing = sorted(set(LIBHAND_BONES) - set(skeleton.names))
    if missing:
        raise DataError(folder / "hand.skeleton", f"not LibHand's skeleton: no bones {missing}")
    if len(mesh.bone_index) and mesh.bone_index.max() >= len(skeleton.names):
        raise DataError(folder / "hand.mesh", "bone assignments name bones the skeleton lacks")
    return mesh, skeleton


def libhand_chains(skeleton: OgreSkeleton) -> dict[str, tuple[str | None, str, str, str]]:
    """Name LibHand's five chains from the geometry of its bind pose.

    The thumb is the chain hanging directly off the palm bone (``metacarpals``), the others hang
    off the four metacarpal bones; across the knuckles the finger MCPs run in a line, the index
    nearest the thumb's MCP and the little finger farthest.

    Returns:
        finger name -> (metacarpal bone or None, the three phalanx bones), as
        :data:`LIBHAND_CHAINS`.
    """
    heads = skeleton.world_transforms()[:, :3, 3]
    children = {j: [c for c, p in enumerate(skeleton.parents) if p == j]
                for j in range(len(skeleton.names))}  # fmt: skip

    def chain(start: int) -> list[int]:
        out = [start]
        while len(children[out[-1]]) == 1:
            out.append(children[out[-1]][0])
        return out

    palm = skeleton.index("metacarpals")
    thumbs = [c for c in children[palm] if len(chain(c)) == 3]
    fingers = [c for c in children[palm] if len(chain(c)) == 4]
    if len(thumbs) != 1 or len(fingers) != 4:
        raise ValueError("libhand_chains: expected one 3-bone and four 4-bone chains off the palm")
    thumb = chain(thumbs[0])
    fingers = [chain(c) for c in fingers]
    thumb_mcp = heads[thumb[1]]
    fingers.sort(key=lambda ch: np.linalg.norm(heads[ch[1]] - thumb_mcp))
    out = {"thumb": (None, *(skeleton.names[j] for j in thumb))}
    for name, ch in zip(FINGERS[1:], fingers, strict=True):
        out[name] = tuple(skeleton.names[j] for j in ch)
    return out


def handedness(joints: np.ndarray) -> str:
    """``"right"`` or ``"left"`` from canonical-21 joints in any frame: for a right hand the
    radial direction (little MCP -> index MCP) crossed with the proximal one (middle MCP ->
    wrist) points dorsally, away from the thumb's CMC and from where curled fingers go."""
    j = np.asarray(joints, np.float64)
    radial = j[5] - j[17]
    proximal = j[0] - j[9]
    # Palmar: where the thumb's CMC sits and where curled fingers' tips go, off the palm's axis.
    palmar = j[1] - j[0] + sum(j[b + 3] - j[b] for b in (5, 9, 13, 17))
    palmar = palmar - (palmar @ _unit(proximal)) * _unit(proximal)
    return "right" if np.cross(radial, proximal) @ palmar < 0 else "left"


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _ray_exit(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray, d: np.ndarray) -> float:
    """Distance along the unit ray ``origin + t d`` to the nearest surface crossing, t > 0
    (Moeller-Trumbore over all faces)."""
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d, e2)
    det = np.einsum("fi,fi->f", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - tri[:, 0]
    u = np.einsum("fi,fi->f", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ d) * inv
    t = np.einsum("fi,fi->f", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    if not hit.any():
        raise ValueError("ray leaves no surface: the origin is not inside the mesh")
    return float(t[hit].min())


def _joints_model(mesh: OgreMesh, skeleton: OgreSkeleton, faces: np.ndarray,
                  chains: dict, inset: float) -> np.ndarray:  # fmt: skip
    """``(21, 3)`` canonical joints in LibHand's model units (module docstring); ``inset`` in
    model units."""
    world = skeleton.world_transforms()
    heads = world[:, :3, 3]
    joints = np.zeros((NUM_JOINTS, 3))
    w = mesh.weights(len(skeleton.names))
    dominant = w.argmax(axis=1)
    thumb_bones = [skeleton.index(b) for b in chains["thumb"][1:]]
    for k, f in enumerate(FINGERS):
        _, *phalanges = chains[f]
        ids = [skeleton.index(b) for b in phalanges]
        joints[1 + 4 * k : 4 + 4 * k] = heads[ids]
        # The tip: where the distal bone's axis (a Blender bone points along its +y) leaves the
        # skin, moved back inside by the inset.
        d = _unit(world[ids[2], :3, 1])
        joints[4 + 4 * k] = heads[ids[2]] + (_ray_exit(mesh.vertices, faces, heads[ids[2]], d)
                                             - inset) * d  # fmt: skip
    # The wrist: the carpals -> metacarpals joint, centred in the skin's cross-section there
    # (the thenar's thumb-weighted skin left out).
    palm = skeleton.index("metacarpals")
    frame = world[palm, :3, :3]
    rel = (mesh.vertices - heads[palm]) @ frame  # bone axes: x, y (along the bone), z
    near = (np.abs(rel[:, 1]) < 0.03) & ~np.isin(dominant, thumb_bones)
    if near.sum() < 8:
        raise ValueError("no skin around LibHand's wrist joint")
    lo, hi = rel[near].min(axis=0), rel[near].max(axis=0)
    centre = 0.5 * (lo + hi)
    centre[1] = 0.0
    joints[0] = heads[palm] + frame @ centre
    return joints


# --- binding ------------------------------------------------------------------------------------


def _segment_radius(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Median distance of the points that project inside the middle 60 % of segment ``ab`` from
    its axis (the ends are joints and caps, not the segment's girth)."""
    d = b - a
    t = (points - a) @ d / (d @ d)
    keep = (t > 0.2) & (t < 0.8)
    if keep.sum() < 8:
        raise ValueError("too few vertices along a segment to measure its girth")
    r = points[keep] - a - np.outer(t[keep], d)
    return float(np.median(np.linalg.norm(r, axis=1)))


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotation ``R`` minimising ``sum |R src_i - dst_i|^2`` (no translation, det +1)."""
    u, _, vt = np.linalg.svd(dst.T @ src)
    s = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ s @ vt


def _fit_rest_pose(bones: HandBones, targets: Tensor) -> Tensor:
    """``(1, 30)`` articulation (zero root, finger CMCs flat) whose joints best reach
    ``targets`` ``(21, 3)`` (hand frame, mm): least squares on forward kinematics, Jacobians by
    autograd (torch.optim would import torch's compiler, a slow first import)."""
    free = [d for d in range(6, NUM_DOF) if d < 10 or (d - 10) % 5 != 0]

    def pose_of(x: np.ndarray | Tensor) -> Tensor:
        pose = zero_pose(1, torch.float64)
        pose[0, free] = torch.as_tensor(x, dtype=torch.float64)
        return pose

    def residual(x: Tensor) -> Tensor:
        return (forward_kinematics(pose_of(x), bones).joints[0] - targets).ravel()

    fit = least_squares(
        lambda x: residual(torch.from_numpy(x)).numpy(),
        np.zeros(len(free)),
        jac=lambda x: torch.autograd.functional.jacobian(residual, torch.from_numpy(x)).numpy(),
        method="lm",
    )
    return pose_of(fit.x)


@dataclass(frozen=True)
class SkinnedHand:
    """The LibHand mesh bound to the kinematic hand (see the module docstring).

    Attributes:
        mesh: the rest-pose mesh in the hand frame (mm), skinned to the 25 frames of
            :data:`FRAME_NAMES` (``rest_transforms`` are their rest-pose frames).
        bones: the fitted :class:`HandBones` (float64, batch 1).
        rest_pose: ``(1, 30)`` float64 the fitted rest pose (zero root).
        joints: ``(21, 3)`` its canonical joints (hand frame, mm): forward kinematics of
            ``rest_pose`` with ``bones``.
        landmarks: ``(21, 3)`` the joints read off LibHand's skeleton and skin before the fit
            (hand frame, mm); ``joints - landmarks`` is the fit's residual.
        mm_per_unit: LibHand model units to mm.
        model_to_hand: ``(4, 4)`` LibHand model coordinates -> hand frame (mm).
        influence: ``(V, MAX_INFLUENCES)`` int64 frames of each vertex's weights ...
        influence_weight: ``(V, MAX_INFLUENCES)`` float64 ... and the weights (rows sum to 1).
        face_part: ``(F,)`` int16 part of each face (index into
            :data:`handvox.synth.primitives.PART_NAMES`: palm, thumb..little, forearm).
        source_faces: faces of the mesh before decimation.
    """

    mesh: RiggedMesh
    bones: HandBones
    rest_pose: Tensor
    joints: np.ndarray
    landmarks: np.ndarray
    mm_per_unit: float
    model_to_hand: np.ndarray
    influence: np.ndarray
    influence_weight: np.ndarray
    face_part: np.ndarray
    source_faces: int

    def girth_of(self, bones: HandBones) -> Tensor:
        """``(B, 5, 4)`` the default girth factors of ``bones``: their radii over the fitted
        ones, per segment (``HandBones.radius`` layout)."""
        ref = self.bones.radius.to(dtype=bones.dtype, device=bones.device)
        return bones.radius / ref

    def skinning_matrices(
        self, fk: FKResult, pose: Tensor, girth: Tensor | np.ndarray | None = None
    ) -> np.ndarray:
        """The blend matrices of posed hands: ``(B, 25, 3, 4)`` float64, one per frame of
        :data:`FRAME_NAMES`, mapping rest-pose vertices to posed ones (camera frame, mm).

        Args:
            fk: :func:`~handvox.hand.kinematics.forward_kinematics` of ``pose`` with the new
                bones (``fk.bones``).
            pose: ``(B, 30)`` the poses (their CMC flexions undo the arch in the palm's map).
            girth: ``(B, 5, 4)`` or ``(5, 4)`` radial scale of each segment relative to LibHand
                (``HandBones.radius`` layout; ``[:, 1:, 0]`` sets the palm's thickness,
                ``[:, 0, 0]`` is unused: the thenar goes with the thumb's metacarpal); default
                :meth:`girth_of` ``(fk.bones)``.
        """
        bones = fk.bones
        nb = fk.joints.shape[0]
        g = self.girth_of(bones) if girth is None else torch.as_tensor(girth)
        g = g.detach().to("cpu", torch.float64).expand(nb, 5, 4).numpy()
        ref = self.bones
        frames = torch.cat([fk.frames, fk.metacarpal_frames[:, 1:]], 1)
        frames = frames.detach().to("cpu", torch.float64).numpy()  # (B, 25, 4, 4)
        scale = np.ones((nb, len(FRAME_NAMES), 3))
        ratio = (bones.length / ref.length.to(bones.length)).detach().to("cpu", torch.float64)
        ratio = ratio.expand(nb, 5, 3).numpy()
        for c in range(5):
            for b in range(3):
                j = 1 + 4 * c + b
                scale[:, j] = np.stack([g[:, c, b + 1], ratio[:, c, b], g[:, c, b + 1]], -1)
        s = np.zeros((nb, len(FRAME_NAMES), 4, 4))
        idx = np.arange(3)
        s[:, :, idx, idx] = scale
        s[:, :, 3, 3] = 1.0
        s[:, 0, :3, :3] = np.eye(3) * _palm_scale(ref, bones, g)[:, None, :]
        out = frames @ s @ np.linalg.inv(self.mesh.rest_transforms)
        # Metacarpals: undo the arch in the metacarpal's frame, then the palm's map from the
        # hand frame: A = M R_x(arch) M^-1 F_root P (rest arch and root are zero).
        arch = pose.detach().to("cpu", torch.float64).numpy()[:, 10::5]  # (B, 4)
        rx = np.tile(np.eye(4), (nb, 4, 1, 1))
        c, si = np.cos(arch), np.sin(arch)
        rx[..., 1, 1], rx[..., 1, 2], rx[..., 2, 1], rx[..., 2, 2] = c, -si, si, c
        m = frames[:, 21:]
        out[:, 21:] = m @ rx @ np.linalg.inv(m) @ (frames[:, :1] @ s[:, :1])
        return out[:, :, :3, :]

    def skin(self, matrices: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Pose the mesh's vertices with blend matrices of :meth:`skinning_matrices`.

        Args:
            matrices: ``(25, 3, 4)`` one hand's, or ``(B, 25, 3, 4)``.
            out: optional float64 C-contiguous array of the result's shape to write into.
        Returns:
            ``(V, 3)`` or ``(B, V, 3)`` float64 vertices (camera frame, mm).
        """
        mats = np.ascontiguousarray(matrices, np.float64)
        n_frames = len(FRAME_NAMES)
        if mats.shape[-3:] != (n_frames, 3, 4) or mats.ndim not in (3, 4):
            raise ValueError(f"skin: need ({n_frames}, 3, 4) matrices, got {mats.shape}")
        shape = (*mats.shape[:-3], len(self.mesh.vertices), 3)
        if out is None:
            out = np.empty(shape)
        elif out.shape != shape or out.dtype != np.float64 or not out.flags.c_contiguous:
            raise ValueError(f"skin: out must be a C-contiguous float64 {shape} array")
        for m, o in zip(mats.reshape(-1, n_frames, 3, 4), out.reshape(-1, *shape[-2:]),
                        strict=True):  # fmt: skip
            _skin_sparse(self.mesh.vertices, self.influence, self.influence_weight, m, o)
        return out

    def posed(
        self,
        pose: Tensor,
        bones: HandBones | None = None,
        girth: Tensor | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posed vertices and their joints.

        Args:
            pose: ``(B, 30)`` poses (:mod:`handvox.hand.kinematics`).
            bones: :class:`HandBones` of batch ``B`` or 1 (default: LibHand's own).
            girth: see :meth:`skinning_matrices`.
        Returns:
            ``(B, V, 3)`` float64 vertices and ``(B, 21, 3)`` float64 joints, camera frame, mm.
        """
        fk = self._fk(pose, bones)
        verts = self.skin(self.skinning_matrices(fk, pose, girth))
        return verts, fk.joints.detach().to("cpu", torch.float64).numpy()

    def render(
        self,
        pose: Tensor,
        camera: Camera,
        bones: HandBones | None = None,
        girth: Tensor | np.ndarray | None = None,
        *,
        background: float = 0.0,
        return_ids: bool = False,
    ) -> SkinnedFrames:
        """Depth images of posed hands and their ground-truth joints. Kinematics run once for
        the batch, then each frame is skinned and rasterised in the calling thread.

        Args:
            pose: ``(B, 30)`` poses in front of ``camera``.
            camera: intrinsics and image size.
            bones, girth: as in :meth:`posed`.
            background: depth where no face is seen.
            return_ids: also return the visible face per pixel (``face_part`` maps it to
                parts).
        Returns:
            :class:`SkinnedFrames`: ``(B, H, W)`` float32 depth, ``(B, 21, 3)`` float32 joints.
        """
        fk = self._fk(pose, bones)
        mats = self.skinning_matrices(fk, pose, girth)
        verts = np.empty((len(self.mesh.vertices), 3))
        depth = np.empty((len(mats), camera.height, camera.width), np.float32)
        ids = np.empty(depth.shape, np.int32) if return_ids else None
        for i in range(len(mats)):
            self.skin(mats[i], out=verts)
            r = rasterize_depth(verts, self.mesh.faces, camera, background, return_ids=return_ids)
            if return_ids:
                depth[i], ids[i] = r
            else:
                depth[i] = r
        joints = fk.joints.detach().to("cpu", torch.float32).numpy()
        return SkinnedFrames(depth, joints, ids)

    def _fk(self, pose: Tensor, bones: HandBones | None) -> FKResult:
        pose = torch.as_tensor(pose)
        if pose.dim() != 2 or pose.shape[1] != NUM_DOF:
            raise ValueError(f"pose: expected shape (B, {NUM_DOF}), got {tuple(pose.shape)}")
        bones = self.bones if bones is None else bones
        return forward_kinematics(pose.to(torch.float64), bones.to(dtype=torch.float64))


class SkinnedFrames(NamedTuple):
    """Rendered hands: ``depth`` ``(B, H, W)`` float32 mm; ``joints`` ``(B, 21, 3)`` float32
    canonical joints, camera frame, mm; ``ids`` ``(B, H, W)`` int32 visible face (-1: none) if
    asked for."""

    depth: np.ndarray
    joints: np.ndarray
    ids: np.ndarray | None


def _palm_scale(ref: HandBones, bones: HandBones, girth: np.ndarray) -> np.ndarray:
    """``(B, 3)`` the palm's scale in the hand frame: x and y by least squares over the palm's
    landmarks (thumb CMC, MCPs, finger CMCs), z by the metacarpals' mean girth."""

    def landmarks(b: HandBones) -> np.ndarray:
        return torch.cat([b.base, b.cmc], 1).detach().to("cpu", torch.float64).numpy()

    new, old = landmarks(bones), landmarks(ref)
    sxy = (new[..., :2] * old[..., :2]).sum(1) / (old[..., :2] ** 2).sum(1)  # (B, 2)
    return np.concatenate([sxy, girth[:, 1:, 0].mean(1, keepdims=True)], 1)


@numba.njit(cache=True, nogil=True)
def _skin_sparse(verts, idx, weight, mats, out):
    """``out[v] = sum_k weight[v, k] mats[idx[v, k]] [verts[v], 1]`` (linear blend skinning with
    a few influences per vertex)."""
    for v in range(verts.shape[0]):
        x, y, z = verts[v, 0], verts[v, 1], verts[v, 2]
        ox = oy = oz = 0.0
        for k in range(idx.shape[1]):
            w = weight[v, k]
            if w == 0.0:
                continue
            m = mats[idx[v, k]]
            ox += w * (m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + m[0, 3])
            oy += w * (m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + m[1, 3])
            oz += w * (m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + m[2, 3])
        out[v, 0], out[v, 1], out[v, 2] = ox, oy, oz


@functools.lru_cache(maxsize=4)
def libhand_hand(faces: int = DEFAULT_FACES, folder: str | None = None) -> SkinnedHand:
    """The LibHand hand bound to the kinematic hand (module docstring); built once per
    process and argument, then shared (its arrays are read-only).

    Args:
        faces: triangles to decimate the mesh to (its full 70,298 if larger).
        folder: where ``hand.mesh`` and ``hand.skeleton`` are (default: the shipped copy).
    """
    mesh, skel = load_libhand(folder)
    chains = libhand_chains(skel)
    if chains != LIBHAND_CHAINS:
        raise DataError(folder or LIBHAND_DIR, f"finger chains read as {chains}, not LibHand's")
    full = mesh.faces(("skin", "blackness"))
    avg = base_shape("average_adult", torch.float64)
    avg_joints = forward_kinematics(zero_pose(1, torch.float64), avg).joints[0].numpy()

    # Scale: LibHand's bone lengths (tips aside: they depend on the inset, in mm) onto the
    # average hand's. The inset is then set in model units from a first scale.
    segments = [(0, 1), (1, 2), (2, 3)] + [(0, b) for b in (5, 9, 13, 17)]
    segments += [(b + i, b + i + 1) for b in (5, 9, 13, 17) for i in (0, 1)]
    seg = np.array(segments)
    lib = _joints_model(mesh, skel, full, chains, inset=0.0)
    length_lib = np.linalg.norm(lib[seg[:, 1]] - lib[seg[:, 0]], axis=1)
    length_avg = np.linalg.norm(avg_joints[seg[:, 1]] - avg_joints[seg[:, 0]], axis=1)
    mm = float(length_lib @ length_avg / (length_lib @ length_lib))
    lib = _joints_model(mesh, skel, full, chains, inset=TIP_INSET_MM / mm)

    # Hand frame: the rotation laying thumb CMC and finger MCPs (from the wrist) onto the
    # average hand's.
    palm_ids = [1, 5, 9, 13, 17]
    rot = _kabsch(mm * (lib[palm_ids] - lib[0]), avg_joints[palm_ids])
    to_hand = np.eye(4)
    to_hand[:3, :3] = mm * rot
    to_hand[:3, 3] = -mm * rot @ lib[0]
    landmarks = (lib - lib[0]) @ (mm * rot).T
    if handedness(landmarks) != "right":
        raise DataError(folder or LIBHAND_DIR, "the hand model is not a right hand")

    # Bones: LibHand's joints and lengths; CMC pivots keep the average hand's metacarpals.
    base = landmarks[[1, 5, 9, 13, 17]]
    length = np.linalg.norm(np.diff(landmarks[1:].reshape(5, 4, 3), axis=1), axis=2)
    a_base, a_cmc = avg.base[0].numpy(), avg.cmc[0].numpy()
    palm_ratio = np.linalg.norm(base[1:], axis=1) / np.linalg.norm(a_base[1:], axis=1)
    cmc = base[1:] + (a_cmc - a_base[1:]) * palm_ratio[:, None]

    # Skin: welded, LibHand's weights moved onto the kinematic frames, decimated.
    verts_h = mesh.vertices @ to_hand[:3, :3].T + to_hand[:3, 3]
    verts_w, faces_w, first = weld_vertices(verts_h, full, tol=1e-3)
    w_lib = mesh.weights(len(skel.names))[first]
    frame_of = np.array([FRAME_NAMES.index(LIBHAND_BONES[n]) if n in LIBHAND_BONES else -1
                         for n in skel.names])  # fmt: skip
    if (frame_of < 0).any() and w_lib[:, frame_of < 0].any():
        raise DataError(folder or LIBHAND_DIR, "weights on bones without a kinematic frame")
    w = np.zeros((len(verts_w), len(FRAME_NAMES)))
    np.add.at(w.T, frame_of[frame_of >= 0], w_lib[:, frame_of >= 0].T)
    if (w.sum(axis=1) <= 0).any():
        raise DataError(folder or LIBHAND_DIR, "vertices without bone weights")
    w /= w.sum(axis=1, keepdims=True)  # LibHand's rows sum to 0.13-1.19
    radius = _radii(verts_w, w, landmarks, avg)
    fitted = HandBones(
        base=torch.from_numpy(base)[None], length=torch.from_numpy(length)[None],
        radius=torch.from_numpy(radius)[None], cmc=torch.from_numpy(cmc)[None],
    )  # fmt: skip
    rest_pose = _fit_rest_pose(fitted, torch.from_numpy(landmarks))
    fk = forward_kinematics(rest_pose, fitted)
    rest = torch.cat([fk.frames, fk.metacarpal_frames[:, 1:]], 1)[0].numpy()

    faces_d, kept = decimate(verts_w, faces_w, faces)
    w = w[kept]
    top = np.argsort(-w, axis=1, kind="stable")[:, :MAX_INFLUENCES]
    top_w = np.take_along_axis(w, top, axis=1)
    top_w /= top_w.sum(axis=1, keepdims=True)
    dense = np.zeros_like(w)
    np.put_along_axis(dense, top, top_w, axis=1)
    rigged = RiggedMesh(verts_w[kept], faces_d, dense, rest, FRAME_NAMES, FRAME_PARENTS)
    parts = _face_parts(w_lib[kept], skel, chains, faces_d)
    hand = SkinnedHand(
        mesh=rigged, bones=fitted, rest_pose=rest_pose, joints=fk.joints[0].numpy(),
        landmarks=landmarks, mm_per_unit=mm, model_to_hand=to_hand,
        influence=np.ascontiguousarray(top), influence_weight=np.ascontiguousarray(top_w),
        face_part=parts, source_faces=len(faces_w),
    )  # fmt: skip
    # The hand is cached and shared by every caller: freeze its arrays.
    for a in (
        rigged.vertices,
        rigged.faces,
        rigged.weights,
        rigged.rest_transforms,
        hand.joints,
        hand.landmarks,
        hand.model_to_hand,
        hand.influence,
        hand.influence_weight,
        parts,
    ):
        a.flags.writeable = False
    return hand


def _radii(verts: np.ndarray, w: np.ndarray, joints: np.ndarray, avg: HandBones) -> np.ndarray:
    """``(5, 4)`` segment radii (mm): the average hand's, times the median ratio of LibHand's
    phalanges' girth (the skin's median distance from each axis) to them. One factor, because
    handvox's radii are those of capsules (the thumb's metacarpal capsule is thinner than the
    thenar skin around it), so a segment-by-segment measure would not mean the same thing."""
    ratios = []
    a = avg.radius[0].numpy()
    for c in range(5):
        for b in range(1, 4):
            j = 4 * c + b
            mine = w[:, j] > 0.5
            ratios.append(_segment_radius(verts[mine], joints[j], joints[j + 1]) / a[c, b])
    return a * float(np.median(ratios))


def _face_parts(w_lib: np.ndarray, skel: OgreSkeleton, chains: dict, faces: np.ndarray):
    """``(F,)`` int16 part of each face from the LibHand bone with most weight on its corners:
    a chain's phalanges (and the thumb's metacarpal) its finger, the forearm bone the forearm,
    the palm and the metacarpal bones the palm."""
    part_of = np.full(len(skel.names), PALM, np.int16)
    part_of[skel.index("carpals")] = FOREARM
    for k, f in enumerate(FINGERS):
        for b in chains[f][1:]:
            part_of[skel.index(b)] = THUMB + k
    return part_of[w_lib[faces].sum(axis=1).argmax(axis=1)]

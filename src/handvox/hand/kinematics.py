"""Kinematic hand: 30-DOF pose, bone lengths, batched differentiable forward kinematics, markers.

The skeleton is handvox's canonical 21 joints (:data:`handvox.joints.CANONICAL21`): wrist, then
per chain thumb CMC, MCP, IP, tip and, for each finger, MCP, PIP, DIP, tip. It is a right hand;
everything here is torch, batched over a leading ``B`` and differentiable in pose and bones.

Hand frame (the root frame; the pose's root rotation maps it to the camera):
    origin at the wrist joint (centre of the wrist at the distal wrist crease), ``+x`` radial
    (towards the thumb), ``+y`` proximal (the straight fingers point along ``-y``), ``+z`` dorsal
    (the palm faces ``-z``). With a zero root rotation the OpenCV camera (x right, y down,
    z forward) sees the palm, fingers pointing up the image and the thumb on the image's right.

Bone frames: every bone has a frame whose ``-y`` axis runs along the bone (proximal to distal),
``+x`` is its flexion axis (for fingers the radial side) and ``+z`` its dorsal (nail) side, so a
positive rotation about ``+x`` curls the bone towards the palm side. ``FKResult.frames[:, j]`` is
the frame of the bone that starts at joint ``j`` (origin at the joint); tips carry their distal
phalanx's frame, the wrist the hand frame.

Pose (``(B, 30)``, angles in radians, translation in mm):

=====  ====================  ===========================================================
index  name                  meaning (positive direction)
=====  ====================  ===========================================================
0-2    root_tx/ty/tz         wrist position in the camera frame, mm
3-5    root_rx/ry/rz         hand-to-camera rotation R, axis-angle (rad): p_cam = R p + t
6      thumb_cmc_flex        CMC flexion: metacarpal swings ulnarly across the palm
7      thumb_cmc_abd         CMC palmar abduction: metacarpal lifts away from the palm plane
8      thumb_mcp_flex        MCP flexion
9      thumb_ip_flex         IP flexion
10+5k  {finger}_cmc_flex     CMC flexion of the metacarpal: palm arching (cupping)
11+5k  {finger}_mcp_flex     MCP flexion
12+5k  {finger}_mcp_abd      MCP abduction-adduction, positive = radial (towards the thumb)
13+5k  {finger}_pip_flex     PIP flexion
14+5k  {finger}_dip_flex     DIP flexion
=====  ====================  ===========================================================

with ``k = 0..3`` for index, middle, ring, little. Every angle turns a bone about an axis fixed
in its parent bone's frame (``R = I + sin(a) K + (1 - cos(a)) K^2``). Two-axis joints (thumb
CMC, finger MCPs) rotate by ``R_flex @ R_abd``: the flexion axis is fixed in the proximal bone
and the abduction axis moves with the distal one, as measured for the thumb CMC (Hollister et
al. 1992) and the MCPs (Brand & Hollister 1999). For the fingers these are the x and z axes
(BVH channels ``Xrotation Zrotation``); the thumb CMC's axes are oblique
(:data:`THUMB_CMC_AXIS_TILT_DEG`), so an exporter converts its rotation matrix. Each chain's
rest orientation (:data:`THUMB_REST_DEG`; for fingers their metacarpal direction) is a fixed
rotation an exporter puts in the parent.

Why CMC flexion is each finger's fifth DOF: the MCP is condyloid, with no active axial rotation,
so an MCP twist DOF would model only passive slack; the 4th and 5th carpometacarpal joints do
flex (about 10-20 and 20-30 degrees: El-Shennawy et al. 2001), which cups the palm in a fist, a
grasp and little-finger-to-thumb opposition, all visible in depth images. Index and middle
CMC joints are nearly rigid; they keep the same DOF with a 0-5 degree range so all fingers
share one parameter layout (one code path for IK, priors and export).

Zero pose: flat open hand, fingers straight along their metacarpals (the metacarpal fan gives
the natural rest spread), thumb beside the palm as set by :data:`THUMB_REST_DEG`.

Markers: dataset joints (NYU 14, ICVL 16, MSRA 21) are points rigidly attached to a joint's
frame, see :func:`markers`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from handvox.geometry import axis_angle_to_matrix, euler_zxy_deg, skew
from handvox.joints import (
    CANONICAL21,
    FINGERS,
    ICVL16,
    MSRA21,
    NYU14,
    JointSet,
    get_joint_set,
    get_mapping,
)

NUM_DOF = 30
NUM_JOINTS = 21
_FINGER_DOFS = ("cmc_flex", "mcp_flex", "mcp_abd", "pip_flex", "dip_flex")
_THUMB_DOFS = ("cmc_flex", "cmc_abd", "mcp_flex", "ip_flex")
DOF_NAMES: tuple[str, ...] = (
    ("root_tx", "root_ty", "root_tz", "root_rx", "root_ry", "root_rz")
    + tuple(f"thumb_{d}" for d in _THUMB_DOFS)
    + tuple(f"{f}_{d}" for f in FINGERS[1:] for d in _FINGER_DOFS)
)

# Joint limits in degrees (lower, upper). Typical active ranges of motion from Lee & Kunii 1995
# ("Model-based analysis of hand posture"), Cobos et al. 2008 ("Efficient human hand kinematics
# for manipulation tasks") and the AAOS clinical norms; hyperextension allowed where healthy
# hands show it. Abduction is measured from the rest spread, positive radial, so a finger's
# abduction (away from the middle finger) is positive for the index and negative for ring/little.
_INF = math.inf
_THUMB_LIMITS = {
    "cmc_flex": (-25.0, 50.0),  # flexion-extension arc ~50-60 deg (Cooney et al. 1981)
    "cmc_abd": (-20.0, 60.0),  # palmar abduction 0-60 (clinical), small adduction past rest
    "mcp_flex": (-20.0, 60.0),  # MCP flexion 0-55/60, hyperextension up to ~20
    "ip_flex": (-20.0, 85.0),  # IP flexion 0-80/90, hyperextension ~20
}
_FINGER_LIMITS = {
    # cmc_flex: index/middle CMC nearly rigid; ring ~15, little ~25 (El-Shennawy et al. 2001)
    # mcp_flex: 0-90 flexion, ~30 hyperextension (Lee & Kunii: -30..90; little reaches ~95)
    # mcp_abd: ~20-30 abduction, 10-15 adduction past rest, radial positive
    # pip_flex: 0-110 (Lee & Kunii, Cobos); dip_flex: 0-90, ~15 hyperextension
    "index": {"cmc_flex": (0.0, 5.0), "mcp_flex": (-30.0, 90.0), "mcp_abd": (-15.0, 25.0),
              "pip_flex": (-5.0, 110.0), "dip_flex": (-15.0, 90.0)},
    "middle": {"cmc_flex": (0.0, 5.0), "mcp_flex": (-30.0, 90.0), "mcp_abd": (-15.0, 15.0),
               "pip_flex": (-5.0, 110.0), "dip_flex": (-15.0, 90.0)},
    "ring": {"cmc_flex": (-5.0, 15.0), "mcp_flex": (-30.0, 90.0), "mcp_abd": (-20.0, 15.0),
             "pip_flex": (-5.0, 110.0), "dip_flex": (-15.0, 90.0)},
    "little": {"cmc_flex": (-5.0, 25.0), "mcp_flex": (-30.0, 95.0), "mcp_abd": (-30.0, 15.0),
               "pip_flex": (-5.0, 110.0), "dip_flex": (-15.0, 90.0)},
}  # fmt: skip
LIMITS_DEG: dict[str, tuple[float, float]] = {
    **{n: (-_INF, _INF) for n in DOF_NAMES[:6]},
    **{f"thumb_{d}": _THUMB_LIMITS[d] for d in _THUMB_DOFS},
    **{f"{f}_{d}": _FINGER_LIMITS[f][d] for f in FINGERS[1:] for d in _FINGER_DOFS},
}

# Thumb rest orientation relative to the hand frame, degrees: the metacarpal points ``spread``
# radially from the fingers' direction and ``palmar`` out of the palm plane, and the thumb is
# rotated ``pronation`` about its own axis so its nail faces mostly radially (in a relaxed flat
# hand the thumbnail sits at roughly 60-90 degrees to the fingernails), which makes thumb
# flexion curl across the palm and lets the 4 thumb DOFs reach opposition.
THUMB_REST_DEG = {"spread": 40.0, "palmar": 10.0, "pronation": 85.0}

# The thumb CMC's flexion and abduction axes are oblique to the metacarpal (Hollister et al.
# 1992), so flexing and abducting it also pronates the thumb: the conjunct rotation that turns
# the thumb's pulp towards the fingers in opposition (Kapandji). Each axis is tilted by these
# angles (degrees) from the bone's x / z axis towards its long axis, giving ~20-35 degrees of
# pronation over the opposition range; without it the 4 thumb DOFs cannot bring the pulps of
# thumb and ring/little finger face to face.
THUMB_CMC_AXIS_TILT_DEG = {"flex": 25.0, "abd": 25.0}

# Hand size the default marker offsets are written for (wrist to middle MCP, mm); offsets are
# scaled by each hand's own wrist-to-middle-MCP distance.
REFERENCE_PALM_LENGTH = 90.0


def dof_index(name: str) -> int:
    """Position of a DOF in the pose vector, e.g. ``dof_index("index_pip_flex") == 13``."""
    return DOF_NAMES.index(name)


def pose_limits(
    degrees: bool = False, dtype: torch.dtype = torch.float32, device=None
) -> tuple[Tensor, Tensor]:
    """Per-DOF limits ``(lower, upper)``, each ``(30,)``.

    Angles in radians (degrees with ``degrees=True``); the 6 root DOFs are unbounded (``±inf``).
    """
    lo, hi = zip(*(LIMITS_DEG[n] for n in DOF_NAMES), strict=True)
    lower = torch.tensor(lo, dtype=torch.float64)
    upper = torch.tensor(hi, dtype=torch.float64)
    if not degrees:
        art = slice(6, None)
        lower[art], upper[art] = torch.deg2rad(lower[art]), torch.deg2rad(upper[art])
    return lower.to(dtype=dtype, device=device), upper.to(dtype=dtype, device=device)


def clamp_to_limits(pose: Tensor) -> Tensor:
    """Clamp every joint angle of a ``(..., 30)`` pose (radians) into its limits."""
    lower, upper = pose_limits(dtype=pose.dtype, device=pose.device)
    return torch.clamp(pose, lower, upper)


def zero_pose(batch: int = 1, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """``(batch, 30)`` rest pose: flat open hand, wrist at the camera origin, no rotation."""
    return torch.zeros(batch, NUM_DOF, dtype=dtype, device=device)


def random_pose(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """``(n, 30)`` poses with joint angles uniform within their limits and a zero root.

    Uniform over the box is not a natural pose distribution (fingers move independently); it is
    meant for tests and coverage, not as a prior.
    """
    lower, upper = pose_limits(dtype=torch.float64)
    u = torch.rand(n, NUM_DOF, generator=generator, dtype=torch.float64)
    pose = lower + u * (upper - lower)
    pose[:, :6] = 0.0
    return pose.to(dtype=dtype, device=device)


# --- bones ------------------------------------------------------------------------------------
@dataclass
class HandBones:
    """Bone geometry of ``B`` right hands (mm, in the hand frame of the zero pose).

    Chains are in :data:`handvox.joints.FINGERS` order (thumb, index, middle, ring, little).

    Attributes:
        base: ``(B, 5, 3)`` first joint of each chain: thumb CMC, index..little MCP. These and
            ``cmc`` set the palm's shape; each finger's rest direction is its metacarpal's
            (``cmc -> base``), which gives the natural rest spread.
        length: ``(B, 5, 3)`` the three bones after ``base``: thumb CMC->MCP, MCP->IP, IP->tip;
            fingers MCP->PIP, PIP->DIP, DIP->tip (tip = end of the finger pad).
        radius: ``(B, 5, 4)`` thickness (mm) of each canonical bone, in
            ``CANONICAL21.bones`` order per chain: wrist->base, then the three of ``length``.
        cmc: ``(B, 4, 3)`` carpometacarpal joints (metacarpal bases) of index..little: the pivots
            of palm arching (``*_cmc_flex``); not canonical joints.
    """

    base: Tensor
    length: Tensor
    radius: Tensor
    cmc: Tensor

    def __post_init__(self) -> None:
        b = self.base.shape[0] if self.base.dim() == 3 else -1
        want = {"base": (5, 3), "length": (5, 3), "radius": (5, 4), "cmc": (4, 3)}
        for name, tail in want.items():
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.dim() != 3 or tuple(t.shape) != (b, *tail):
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"HandBones.{name}: expected shape (B, {tail[0]}, {tail[1]}), "
                                 f"got {got} (B = {b})")  # fmt: skip

    @property
    def batch_size(self) -> int:
        return self.base.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def device(self) -> torch.device:
        return self.base.device

    def _map(self, fn) -> HandBones:
        return HandBones(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> HandBones:
        """Like ``Tensor.to`` (device and/or dtype) for every field."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def expand(self, batch: int) -> HandBones:
        """Broadcast a batch of 1 to ``batch`` hands (a view, no copy)."""
        if self.batch_size == batch:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot expand HandBones of batch {self.batch_size} to {batch}")
        return self._map(lambda t: t.expand(batch, *t.shape[1:]))

    def __getitem__(self, idx) -> HandBones:
        """Select hands; an integer keeps the batch dimension (``bones[3]`` has ``B = 1``)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1 if idx != -1 else None)
        return self._map(lambda t: t[idx])

    @staticmethod
    def cat(items: list[HandBones]) -> HandBones:
        """Concatenate batches."""
        return HandBones(
            **{f.name: torch.cat([getattr(b, f.name) for b in items]) for f in fields(HandBones)}
        )

    def scaled(self, scale: float | Tensor) -> HandBones:
        """Every length scaled by ``scale`` (a number or a ``(B,)`` tensor)."""
        s = torch.as_tensor(scale, dtype=self.dtype, device=self.device)
        s = s.reshape(-1, 1, 1) if s.dim() else s
        return self._map(lambda t: t * s)

    def palm_length(self) -> Tensor:
        """``(B,)`` wrist to middle-finger MCP distance (mm), the size markers scale with."""
        return self.base[:, 2].norm(dim=-1)

    def to_dict(self) -> dict[str, list]:
        """Plain nested lists (for JSON, BVH metadata)."""
        return {f.name: getattr(self, f.name).detach().cpu().tolist() for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict, dtype: torch.dtype = torch.float32, device=None) -> HandBones:
        return cls(
            **{f.name: torch.as_tensor(d[f.name], dtype=dtype, device=device) for f in fields(cls)}
        )


_THUMB_REST = euler_zxy_deg(
    THUMB_REST_DEG["spread"], THUMB_REST_DEG["palmar"], THUMB_REST_DEG["pronation"]
)


def _unit(v: tuple[float, float, float]) -> tuple[float, float, float]:
    n = math.sqrt(sum(x * x for x in v))
    return tuple(x / n for x in v)


def _joint_axes() -> Tensor:
    """``(5, 5, 3)`` rotation axis of each chain's 5 angle slots in the parent bone's frame.

    Slots: arch (CMC flexion; none for the thumb), first flexion, first abduction, second and
    second + third flexion (consecutive rotations about one axis add).
    """
    phi = math.radians(THUMB_CMC_AXIS_TILT_DEG["flex"])
    psi = math.radians(THUMB_CMC_AXIS_TILT_DEG["abd"])
    x, z = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    # Tilting an axis towards the bone (+y) adds a spin about the bone with the swing.
    thumb = [x, _unit((math.cos(phi), math.sin(phi), 0.0)),
             _unit((0.0, math.sin(psi), math.cos(psi))), x, x]  # fmt: skip
    return torch.tensor([thumb] + [[x, x, z, x, x]] * 4, dtype=torch.float64)


JOINT_AXES: Tensor = _joint_axes()  # float64, see _joint_axes
_AXIS_K = skew(JOINT_AXES)  # (5, 5, 3, 3)
_AXIS_K2 = _AXIS_K @ _AXIS_K


def _rest_frames(bones: HandBones) -> Tensor:
    """``(B, 5, 3, 3)`` rest orientation of each chain's metacarpal in the hand frame."""
    y = bones.cmc - bones.base[:, 1:]
    y = y / y.norm(dim=-1, keepdim=True)
    # Gram-Schmidt against the hand's dorsal axis keeps each finger's nail facing +z at rest.
    z = -y[..., 2:3] * y
    z = z + torch.tensor([0.0, 0.0, 1.0], dtype=y.dtype, device=y.device)
    z = z / z.norm(dim=-1, keepdim=True)
    fingers = torch.stack([torch.linalg.cross(y, z), y, z], -1)
    thumb = _THUMB_REST.to(dtype=y.dtype, device=y.device).expand(y.shape[0], 1, 3, 3)
    return torch.cat([thumb, fingers], 1)


# --- forward kinematics -----------------------------------------------------------------------
def _homogeneous(rot: Tensor, pos: Tensor) -> Tensor:
    """``(..., 3, 3)``, ``(..., 3)`` -> ``(..., 4, 4)``."""
    out = rot.new_zeros(*rot.shape[:-2], 4, 4)
    out[..., :3, :3] = rot
    out[..., :3, 3] = pos
    out[..., 3, 3] = 1.0
    return out


@dataclass
class FKResult:
    """Output of :func:`forward_kinematics` (camera frame, mm).

    Attributes:
        joints: ``(B, 21, 3)`` canonical-21 joint positions.
        rotations: ``(B, 21, 3, 3)`` orientation of each joint's frame: the frame of the bone
            leaving the joint (tips keep the distal phalanx's, the wrist the hand's); columns
            are the frame's x, y, z axes in the camera frame.
        metacarpal_rotations: ``(B, 5, 3, 3)`` orientation of each metacarpal (for skinning the
            palm); for the thumb, the fixed frame its CMC rotates in.
        metacarpal_origins: ``(B, 5, 3)`` their CMC joints (the thumb's is ``joints[:, 1]``).
        bones: the bones used, expanded to the batch.
    """

    joints: Tensor
    rotations: Tensor
    metacarpal_rotations: Tensor
    metacarpal_origins: Tensor
    bones: HandBones

    @property
    def frames(self) -> Tensor:
        """``(B, 21, 4, 4)`` joint frames: a point ``p`` in joint ``j``'s frame is at
        ``frames[:, j] @ [p, 1]`` in the camera frame."""
        return _homogeneous(self.rotations, self.joints)

    @property
    def metacarpal_frames(self) -> Tensor:
        """``(B, 5, 4, 4)`` metacarpal frames, origin at each CMC joint."""
        return _homogeneous(self.metacarpal_rotations, self.metacarpal_origins)

    def to_local(self, points: Tensor, joint: int | Tensor) -> Tensor:
        """Camera-frame ``(B, M, 3)`` points into joint frames (``joint``: an index or
        ``(M,)`` indices): the inverse of attaching a marker."""
        rot = self.rotations[:, joint]
        pos = self.joints[:, joint]
        if rot.dim() == 3:
            rot, pos = rot[:, None], pos[:, None]
        return ((points - pos)[..., None, :] @ rot).squeeze(-2)


def forward_kinematics(pose: Tensor, bones: HandBones) -> FKResult:
    """Pose hands and return their joints and frames in the camera frame.

    Args:
        pose: ``(B, 30)`` see the module's DOF table (radians, mm). Not clamped: call
            :func:`clamp_to_limits` first where limits matter.
        bones: :class:`HandBones` with batch ``B`` or 1 (one hand shape for every pose), on the
            pose's device and dtype.
    Returns:
        :class:`FKResult` with joints ``(B, 21, 3)`` and rotations ``(B, 21, 3, 3)``.
    """
    if pose.dim() != 2 or pose.shape[1] != NUM_DOF:
        raise ValueError(f"pose: expected shape (B, {NUM_DOF}), got {tuple(pose.shape)}")
    nb = pose.shape[0]
    bones = bones.expand(nb)
    r_root = axis_angle_to_matrix(pose[:, 3:6])  # (B, 3, 3) hand -> camera
    t_root = pose[:, :3]
    # Working in the camera frame from the start saves transforming 21 frames at the end.
    rest = r_root[:, None] @ _rest_frames(bones)  # (B, 5, 3, 3)
    pivot = torch.cat([bones.base[:, :1], bones.cmc], 1)  # (B, 5, 3) hand frame
    pivot = pivot @ r_root.transpose(1, 2) + t_root[:, None]

    # Per chain: arch, flex1, abd1, flex2, flex3 (the thumb has no arch DOF: a zero column).
    ang = torch.cat([pose.new_zeros(nb, 1), pose[:, 6:]], 1).view(nb, 5, 5)
    arch, f1, abd, f2, f3 = ang.unbind(-1)
    # Every DOF turns about a fixed axis of its parent bone, R = I + sin(a) K + (1 - cos(a)) K^2;
    # consecutive turns about one axis add, so bones 2 and 3 both hang off bone 1.
    a = torch.stack([arch, arch + f1, abd, f2, f2 + f3], -1)[..., None, None]
    k = _AXIS_K.to(dtype=pose.dtype, device=pose.device)
    k2 = _AXIS_K2.to(dtype=pose.dtype, device=pose.device)
    eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
    rot = eye + a.sin() * k + (1 - a.cos()) * k2  # (B, 5, 5, 3, 3)
    f_mc_f1 = rest[:, :, None] @ rot[:, :, :2]  # (B, 5, 2, 3, 3) metacarpal, bone 1 pre-abd.
    f_mc = f_mc_f1[:, :, 0]
    f_1 = f_mc_f1[:, :, 1] @ rot[:, :, 2]
    f_23 = f_1[:, :, None] @ rot[:, :, 3:]  # bones 2, 3

    # Chain starts: the thumb's at its CMC; each finger's MCP swings about its CMC.
    mc_len = (bones.base[:, 1:] - bones.cmc).norm(dim=-1)
    mc_len = torch.cat([mc_len.new_zeros(nb, 1), mc_len], 1)  # (B, 5)
    y_axes = torch.stack([f_mc[..., 1], f_1[..., 1], f_23[:, :, 0, :, 1], f_23[:, :, 1, :, 1]], 2)
    lengths = torch.cat([mc_len[..., None], bones.length], 2)  # (B, 5, 4)
    # Joints run along each bone's -y axis from the pivot.
    chain = pivot[:, :, None] - (lengths[..., None] * y_axes).cumsum(2)  # (B, 5, 4, 3)

    joints = torch.cat([t_root[:, None], chain.reshape(nb, 20, 3)], 1)
    rots = torch.cat([f_1[:, :, None], f_23, f_23[:, :, 1:]], 2).reshape(nb, 20, 3, 3)
    rots = torch.cat([r_root[:, None], rots], 1)
    return FKResult(joints, rots, f_mc, pivot, bones)


# --- markers: dataset joint sets attached to the skeleton ---------------------------------------
@dataclass(frozen=True)
class MarkerSet:
    """Where each joint of a dataset's joint set sits on the skeleton.

    Attributes:
        joint_set: the dataset joint set the markers produce, in its order.
        parents: canonical-21 joint whose frame carries each marker.
        offsets: ``(M, 3)`` default offset in the parent's frame, mm, for a hand with
            :data:`REFERENCE_PALM_LENGTH`; scaled with each hand's palm length.
    """

    joint_set: JointSet
    parents: tuple[int, ...]
    offsets: tuple[tuple[float, float, float], ...]

    def default_offsets(self, bones: HandBones) -> Tensor:
        """``(B, M, 3)`` default offsets scaled to each hand's size."""
        off = torch.tensor(self.offsets, dtype=bones.dtype, device=bones.device)
        return off * (bones.palm_length() / REFERENCE_PALM_LENGTH)[:, None, None]


def _canon(name: str) -> int:
    return CANONICAL21.index(name)


def _marker_set(joint_set: JointSet, table: dict[str, tuple]) -> MarkerSet:
    """``table``: joint name -> (canonical parent name, offset mm or None for zero)."""
    parents, offsets = [], []
    for name in joint_set.names:
        parent, off = table[name]
        parents.append(_canon(parent))
        offsets.append(tuple(off) if off is not None else (0.0, 0.0, 0.0))
    return MarkerSet(joint_set, tuple(parents), tuple(offsets))


def _nyu14_table() -> dict:
    return {
        **{f"{f}_tip": (f"{f}_tip", None) for f in FINGERS},
        **{f"{f}_root": (f"{f}_pip", None) for f in FINGERS[1:]},
        "thumb_root2": ("thumb_ip", NYU14_THUMB_ROOT2),
        "thumb_root1": ("thumb_mcp", None),
        "wrist1": ("wrist", NYU14_WRIST1),
        "wrist2": ("wrist", NYU14_WRIST2),
        "palm": ("wrist", NYU14_PALM),
    }


# Default offsets (mm, reference-size hand) of the markers that are not joint centres, fitted
# by inverse kinematics of the average adult shape (one global scale, per-frame poses) to 400
# NYU and 300 ICVL test frames: NYU's wrist markers sit either side of the wrist, ~30 mm apart
# and a little ulnar; its palm point is on the palm's midline two thirds of the way to the
# MCPs; "thumb root2" (KNU3_B) lies ~8 mm into the distal phalanx (tip->root2 : root2->root1
# is 0.5 on the labels, against 0.8 for distal : proximal phalanx). NYU "root" (KNU2_B) is the
# PIP and "thumb root1" the thumb MCP. The fit leaves 5.3 mm mean marker error on NYU.
NYU14_THUMB_ROOT2 = (0.0, -8.0, -5.0)
NYU14_WRIST1 = (10.0, -1.0, 1.0)
NYU14_WRIST2 = (-19.0, -4.0, 4.0)
NYU14_PALM = (3.0, -67.0, 0.0)
# ICVL's palm point is mid-palm, ~45 mm distal of the wrist. Its "tip" labels sit at the DIP
# (the thumb's at its IP): on the test labels PIP->tip : MCP->PIP is 0.64 for the middle
# finger, as middle : proximal phalanx (0.62), not (middle + distal) : proximal (1.16), and
# IK fits better that way (10.5 mm mean error, against 12.9 with tips at the fingertips).
ICVL16_PALM = (-6.0, -43.0, -5.0)


def _build_marker_sets() -> dict[str, MarkerSet]:
    sets = {
        "canonical21": MarkerSet(
            CANONICAL21, tuple(range(NUM_JOINTS)), ((0.0, 0.0, 0.0),) * NUM_JOINTS
        ),
        "nyu14": _marker_set(NYU14, _nyu14_table()),
    }
    icvl = {"palm": ("wrist", ICVL16_PALM), "thumb_root": ("thumb_cmc", None),
            "thumb_mid": ("thumb_mcp", None), "thumb_tip": ("thumb_ip", None)}  # fmt: skip
    for f in FINGERS[1:]:
        icvl |= {f"{f}_root": (f"{f}_mcp", None), f"{f}_mid": (f"{f}_pip", None),
                 f"{f}_tip": (f"{f}_dip", None)}  # fmt: skip
    sets["icvl16"] = _marker_set(ICVL16, icvl)
    # MSRA's joints are the canonical ones renamed (exact mapping in handvox.joints).
    w = get_mapping(CANONICAL21, MSRA21).weights
    msra = {name: (CANONICAL21.names[int(w[i].argmax())], None) for i, name in
            enumerate(MSRA21.names)}  # fmt: skip
    sets["msra21"] = _marker_set(MSRA21, msra)
    return sets


MARKER_SETS: dict[str, MarkerSet] = _build_marker_sets()


def get_marker_set(joint_set: str | JointSet | MarkerSet) -> MarkerSet:
    """The marker set producing ``joint_set`` (a name such as ``nyu``/``nyu14`` or a JointSet)."""
    if isinstance(joint_set, MarkerSet):
        return joint_set
    js = get_joint_set(joint_set)
    try:
        return MARKER_SETS[js.name]
    except KeyError:
        raise ValueError(
            f"no markers for joint set {js.name!r}; choose one of {sorted(MARKER_SETS)}"
        ) from None


def markers(
    fk: FKResult, joint_set: str | JointSet | MarkerSet, offsets: Tensor | None = None
) -> Tensor:
    """A dataset's joints on posed hands.

    Args:
        fk: result of :func:`forward_kinematics`.
        joint_set: ``canonical21``, ``nyu14``, ``icvl16``, ``msra21`` (or ``nyu``/``icvl``/
            ``msra``, a JointSet, a MarkerSet).
        offsets: ``(M, 3)`` or ``(B, M, 3)`` offsets in each marker's parent frame, mm, used as
            given (e.g. fitted per subject, ``requires_grad`` welcome); default: the set's
            offsets scaled to each hand's size.
    Returns:
        ``(B, M, 3)`` marker positions in the camera frame, mm, in the joint set's order.
    """
    ms = get_marker_set(joint_set)
    if offsets is None:
        offsets = ms.default_offsets(fk.bones)
    m = len(ms.parents)
    if offsets.shape[-2:] != (m, 3) or offsets.dim() not in (2, 3):
        raise ValueError(f"offsets: expected ({m}, 3) or (B, {m}, 3), got {tuple(offsets.shape)}")
    parents = list(ms.parents)
    rot, pos = fk.rotations[:, parents], fk.joints[:, parents]  # (B, M, 3, 3), (B, M, 3)
    return pos + (rot @ offsets.to(rot)[..., None]).squeeze(-1)

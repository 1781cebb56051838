"""Objects for hands to hold: their kinds and graspable sizes (:func:`draw_objects`), where they
rest in the open hand (:func:`object_in_hand`), the fingers closed onto them
(:func:`grasp_poses`, by :mod:`handvox.hand.grasp`) and their surfaces for the ray caster
(:meth:`HeldObject.primitives`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from handvox.geometry import axis_angle_to_matrix
from handvox.hand.grasp import CLOSING_DOFS, GraspObject, close_grasp, hand_overlap, place_on_palm
from handvox.hand.kinematics import HandBones, dof_index, forward_kinematics, pose_limits
from handvox.synth.primitives import Primitives

# Objects a hand holds (or that lie near it): capsules (cylinders with rounded ends: cans,
# bottles, tool handles), spheres and boxes with rounded edges, drawn with these chances and
# sizes (mm): the graspable range of everyday objects, from thin handles (15-30 mm across)
# through cans and bottles (20-80 mm) to balls (40-90 mm); boxes 80-180 mm long, 36-90 mm wide
# and 16-60 mm thick (a phone to a carton of juice), held across the palm flat side down. A
# box's radius is its edges' rounding (2-6 mm), its width and thickness OBJECT_BOX_MM.
OBJECT_KINDS = ("cylinder", "sphere", "handle", "box")


OBJECT_KIND_PROBS = (0.35, 0.2, 0.25, 0.2)


OBJECT_RADIUS_MM = ((10.0, 40.0), (20.0, 45.0), (7.5, 15.0), (2.0, 6.0))


OBJECT_LENGTH_MM = ((60.0, 200.0), (0.0, 0.0), (80.0, 150.0), (80.0, 180.0))


# A box's full width and thickness (mm), the thickness at most the width.
OBJECT_BOX_MM = ((36.0, 90.0), (16.0, 60.0))


# Precision grasps (Feix et al.'s GRASP taxonomy, 2016: pinches and tripods, the object held
# by the thumb's and fingers' pads, away from the palm) for objects small enough to pinch:
# balls up to 60 mm across, handles, cylinders up to 40 mm, boxes up to 30 mm thick. They take
# this share of those objects; power grasps (the object in the palm) the rest.
PRECISION_PROB = 0.4
PRECISION_MAX_MM = {"cylinder": 20.0, "sphere": 30.0, "handle": 15.0, "box": 15.0}


@dataclass
class HeldObject:
    """An object in the hand or near it: the axis ``a``-``b`` (``(3,)`` each, camera frame, mm;
    a sphere where they coincide) of ``radius``, its kind (:data:`OBJECT_KINDS`) and, for a
    box, its half-width vector ``across`` (``(3,)``, perpendicular to the axis) and half
    thickness ``thick`` (:class:`handvox.hand.grasp.GraspObject`; zero for round objects);
    ``pinched``: held in a precision grasp (:func:`grasp_poses`)."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    kind: str
    across: np.ndarray = field(default_factory=lambda: np.zeros(3))
    thick: float = 0.0
    pinched: bool = False

    @property
    def box(self) -> bool:
        return self.kind == "box"

    def bounding_radius(self) -> float:
        """Radius of a capsule from ``a`` to ``b`` that holds the object."""
        return self.radius + float(np.sqrt(self.across @ self.across + self.thick**2))

    def vector(self) -> np.ndarray:
        """``(12,)`` float32: ``a``, ``b``, radius, ``across``, ``thick``, ``pinched`` (what
        frames store)."""
        return np.array([*self.a, *self.b, self.radius, *self.across, self.thick,
                         float(self.pinched)], np.float32)  # fmt: skip

    def primitives(self, part: int) -> Primitives:
        """The object as ray-cast primitives labelled ``part``: a round cone, or a box as the
        round triangles of its faces (the rims round its edges and corners)."""
        if not self.box:
            return Primitives.round_cones(self.a, self.b, self.radius, self.radius, part)
        axis = (self.b - self.a) / 2
        normal = np.cross(_unit(axis), _unit(self.across)) * self.thick
        centre = (self.a + self.b) / 2
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
        corners = centre + signs @ np.stack([axis, self.across, normal])
        # each face: its four corners (indices into signs) as two triangles
        faces = []
        for k in range(3):
            for side in (-1, 1):
                quad = [i for i in range(8) if signs[i, k] == side]
                a, b, c, d = quad[0], quad[1], quad[3], quad[2]  # in order round the face
                faces += [(a, b, c), (a, c, d)]
        tri = np.array(faces)
        return Primitives.round_triangles(corners[tri[:, 0]], corners[tri[:, 1]],
                                          corners[tri[:, 2]], self.radius, part)  # fmt: skip


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@dataclass
class ObjectDraw:
    """Objects drawn for ``n`` hands (:func:`draw_objects`): kind (index into
    :data:`OBJECT_KINDS`), radius and axis length (mm), a box's half width and half thickness
    (mm; zero for round kinds), five uniform numbers placing each on the palm
    (:func:`object_in_hand`) or the fingertips, the pre-shape's thumb CMC flexion (rad) and
    whether the grasp is a precision grasp (:data:`PRECISION_PROB`)."""

    kind: np.ndarray
    radius: np.ndarray
    length: np.ndarray
    place: np.ndarray
    thumb: np.ndarray
    width: np.ndarray
    thick: np.ndarray
    precision: np.ndarray

    def __getitem__(self, idx) -> ObjectDraw:
        if isinstance(idx, int | np.integer):
            idx = slice(int(idx), int(idx) + 1)
        return ObjectDraw(*(getattr(self, f)[idx] for f in ObjectDraw.__dataclass_fields__))


def draw_objects(rng: np.random.Generator, n: int) -> ObjectDraw:
    """Kinds and sizes of :data:`OBJECT_KINDS` (:data:`OBJECT_KIND_PROBS`,
    :data:`OBJECT_RADIUS_MM`, :data:`OBJECT_LENGTH_MM`, :data:`OBJECT_BOX_MM`) for ``n``
    objects, in one draw."""
    u = rng.random((n, 12))
    kind = np.minimum(np.searchsorted(np.cumsum(OBJECT_KIND_PROBS), u[:, 0], side="right"),
                      len(OBJECT_KINDS) - 1)  # fmt: skip
    lo, hi = np.asarray(OBJECT_RADIUS_MM)[kind].T
    radius = lo + (hi - lo) * u[:, 1]
    lo, hi = np.asarray(OBJECT_LENGTH_MM)[kind].T
    length = lo + (hi - lo) * u[:, 2]
    # The thumb swung radially, 5-25 degrees, out of the palm's way (it closes from there).
    thumb = np.radians(-25.0 + 20.0 * u[:, 3])
    box = kind == OBJECT_KINDS.index("box")
    (w0, w1), (t0, t1) = OBJECT_BOX_MM
    width = w0 + (w1 - w0) * u[:, 9]
    thick = np.minimum(t0 + (t1 - t0) * u[:, 10], width)
    # half extents of the box's core: the rounding adds the radius all round
    width = np.where(box, width / 2 - radius, 0.0)
    thick = np.where(box, thick / 2 - radius, 0.0)
    small = radius + thick <= np.array([PRECISION_MAX_MM[k] for k in OBJECT_KINDS])[kind]
    precision = small & (u[:, 11] < PRECISION_PROB)
    # A precision grasp's thumb starts in front of the index, 0-15 degrees (it closes onto
    # the index's pad from there: at 0 the two tips come within 15 mm, :func:`pinch_point`).
    thumb = np.where(precision, np.radians(-15.0 * u[:, 3]), thumb)
    return ObjectDraw(kind, radius, length, u[:, 4:9], thumb, width, thick, precision)


def object_in_hand(draw: ObjectDraw, bones: HandBones) -> tuple[Tensor, Tensor]:
    """Axis ends ``(n, 3)`` float64 in the hand frame (z = 0: :func:`handvox.hand.grasp.
    place_on_palm` lowers them) of drawn objects on hands ``bones`` (batch 1 or n).

    A capsule lies across the palm below the knuckles (62-85 % of the way from the wrist to the
    MCP row), its axis within 25 degrees of the knuckle line and 10 of the palm's plane, gripped
    anywhere but its last 30 mm, a box likewise (flat side down: :func:`box_across`); a sphere
    sits in the palm's hollow (60-80 % of the way)."""
    n = len(draw.kind)
    mcp = bones.base[:, 1:].to(torch.float64).expand(n, 4, 3)
    p = torch.from_numpy(np.asarray(draw.place, np.float64))
    sphere = torch.from_numpy(draw.kind == OBJECT_KINDS.index("sphere"))
    length = torch.from_numpy(np.asarray(draw.length, np.float64))
    x = mcp[..., 0].mean(1) + 16.0 * (p[:, 2] - 0.5) - 5.0 * sphere
    y = mcp[..., 1].mean(1) * torch.where(sphere, 0.6 + 0.2 * p[:, 3], 0.62 + 0.23 * p[:, 3])
    centre = torch.stack([x, y, torch.zeros_like(x)], 1)
    turn, tilt = math.radians(50.0) * (p[:, 0] - 0.5), math.radians(20.0) * (p[:, 1] - 0.5)
    axis = torch.stack([turn.cos() * tilt.cos(), turn.sin() * tilt.cos(), tilt.sin()], 1)
    shift = (p[:, 4] - 0.5) * 2.0 * (length / 2 - 30.0).clamp_min(0.0)
    a = centre + axis * (shift - length / 2)[:, None]
    b = centre + axis * (shift + length / 2)[:, None]
    return a, b


_CLOSING = [dof_index(name) for chain in CLOSING_DOFS for name in chain]


_ABDUCTION = [dof_index(f"{f}_mcp_abd") for f in ("index", "middle", "ring", "little")]


_THUMB_CMC_FLEX = dof_index("thumb_cmc_flex")


def box_across(draw: ObjectDraw, a: Tensor, b: Tensor) -> Tensor:
    """``(n, 3)`` half-width vectors of drawn boxes with axes ``a``-``b`` in the hand frame:
    in the palm's plane, across the axis, so that a box lies flat side down (zero for the
    round kinds)."""
    d = b - a
    across = torch.stack([-d[:, 1], d[:, 0], torch.zeros_like(d[:, 0])], 1)
    across = across / across.norm(dim=1, keepdim=True).clamp_min(1e-9)
    return across * torch.from_numpy(np.asarray(draw.width, np.float64))[:, None]


def pinch_point(pre: Tensor, bones: HandBones, index_frac: Tensor) -> tuple[Tensor, Tensor]:
    """Where the thumb's and the index's tips come closest as the pre-shapes ``pre``
    (``(n, 30)``, closing joints at 0) close: the index's closing joints at ``index_frac``
    (``(n,)``) of their range, the thumb's at the fraction (of 21 tried) that brings its tip
    nearest. Returns the midpoint of the two tips ``(n, 3)`` and the unit direction from the
    index's tip to the thumb's ``(n, 3)``, hand frame."""
    n, steps = pre.shape[0], 21
    _, hi = pose_limits(dtype=pre.dtype, device=pre.device)
    thumb, index = ([dof_index(d) for d in CLOSING_DOFS[k]] for k in (0, 1))
    pose = pre.repeat_interleave(steps, 0)
    pose[:, index] = index_frac.repeat_interleave(steps)[:, None] * hi[index]
    frac = torch.linspace(0.0, 1.0, steps, dtype=pre.dtype, device=pre.device).repeat(n)
    pose[:, thumb] = frac[:, None] * hi[thumb]
    hands = bones if bones.batch_size == 1 else bones[torch.arange(n).repeat_interleave(steps)]
    j = forward_kinematics(pose, hands).joints.view(n, steps, -1, 3)
    k = (j[:, :, 4] - j[:, :, 8]).norm(dim=-1).argmin(1)
    rows = torch.arange(n)
    tt, ti = j[rows, k, 4], j[rows, k, 8]
    d = tt - ti
    return (tt + ti) / 2, d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def object_at_fingertips(draw: ObjectDraw, pre: Tensor, bones: HandBones) -> GraspObject:
    """The drawn objects held for a precision grasp by the pre-shapes ``pre`` (hand frame):
    centred where the thumb and index close onto each other (:func:`pinch_point`, the index at
    30-60 % of its range), a capsule's or box's axis across both the pinch and the fingers
    (a pen between the pads), gripped anywhere but its last 30 mm, a box's thickness between
    the pads."""
    p = torch.from_numpy(np.asarray(draw.place, np.float64))
    centre, d = pinch_point(pre, bones, 0.3 + 0.3 * p[:, 0])
    fingers = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64).expand_as(d)
    axis = torch.linalg.cross(fingers, d)
    axis = axis / axis.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    length = torch.from_numpy(np.asarray(draw.length, np.float64))
    shift = (p[:, 4] - 0.5) * 2.0 * (length / 2 - 30.0).clamp_min(0.0)
    a = centre + axis * (shift - length / 2)[:, None]
    b = centre + axis * (shift + length / 2)[:, None]
    radius = torch.from_numpy(np.asarray(draw.radius, np.float64))
    across = torch.linalg.cross(d, axis)
    across = across * torch.from_numpy(np.asarray(draw.width, np.float64))[:, None]
    return GraspObject(a, b, radius, across, torch.from_numpy(np.asarray(draw.thick, np.float64)))


def _where(cond: Tensor, x: GraspObject, y: GraspObject) -> GraspObject:
    """Per object, ``x`` where ``cond`` (``(n,)``) holds, else ``y`` (both boxes: ``x``'s
    across and thick; ``y``'s may be None, i.e. zero)."""
    fields = []
    for p, q in zip(x._fields(), y._fields(), strict=True):
        q = torch.zeros_like(p) if q is None else q
        fields.append(torch.where(cond.view(-1, *[1] * (p.dim() - 1)), p, q))
    return GraspObject(*fields)


def grasp_poses(
    poses, bones: HandBones, draw: ObjectDraw
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Close ``(n, 30)`` sampled poses onto drawn objects.

    The pre-shape is the pose's own hand opened: its closing joints (:data:`handvox.hand.grasp.
    CLOSING_DOFS`) straight, the finger spread halved, the thumb swung out of the palm's way
    (``draw.thumb``); palm cupping and the root stay. The object is lowered onto it
    (:func:`~handvox.hand.grasp.place_on_palm`), or for a precision grasp (``draw.precision``)
    put between the thumb's and index's pads (:func:`object_at_fingertips`; where it would
    touch the open hand there, the grasp stays a power grasp), the fingers closed
    (:func:`~handvox.hand.grasp.close_grasp`: each bone stops on the surface, within
    :data:`~handvox.hand.grasp.CONTACT_TOLERANCE_MM`), and the root put back.

    Returns:
        ``(n, 30)`` float32 poses, the objects' axis ends ``(n, 2, 3)`` and a box's half-width
        vector ``(n, 3)`` (zero for round kinds), float64 in the camera frame (radii are
        ``draw.radius``, a box's half thickness ``draw.thick``), and which grasps are precision
        grasps ``(n,)`` bool.
    """
    pose = torch.as_tensor(np.asarray(poses, np.float32)).double()
    root = pose[:, :6].clone()
    pre = pose.clone()
    pre[:, :6] = 0.0
    pre[:, _CLOSING] = 0.0
    pre[:, _ABDUCTION] *= 0.5
    pre[:, _THUMB_CMC_FLEX] = torch.from_numpy(np.asarray(draw.thumb, np.float64))
    hands = bones.to(dtype=torch.float64)
    a, b = object_in_hand(draw, hands)
    radius = torch.from_numpy(np.asarray(draw.radius, np.float64))
    box = None, None
    if bool((np.asarray(draw.kind) == OBJECT_KINDS.index("box")).any()):
        box = box_across(draw, a, b), torch.from_numpy(np.asarray(draw.thick, np.float64))
    obj = place_on_palm(pre, hands, a, b, radius, *box)
    ok = torch.tensor(np.asarray(draw.precision, bool))  # a copy: the draw stays as drawn
    if bool(ok.any()):
        pinch = object_at_fingertips(draw, pre, hands)
        # where the pinched object would touch the open pre-shape, the grasp is a power grasp
        ok &= hand_overlap(pre, hands, pinch) < -1.0
        obj = _where(ok, pinch, obj)
    out = close_grasp(pre, hands, obj).pose
    out[:, :6] = root
    rot = axis_angle_to_matrix(root[:, 3:6])
    ends = torch.stack([obj.a, obj.b], 1) @ rot.transpose(1, 2) + root[:, None, :3]
    across = torch.zeros_like(obj.a) if obj.across is None else obj.across
    across = (rot @ across[..., None])[..., 0]
    return out.float().numpy(), ends.numpy(), across.numpy(), ok.numpy()


def clear_of_camera(ends: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Whether objects ``(n, 2, 3)`` of bounding radius ``radius`` keep 30 mm in front of the
    camera."""
    return ends[..., 2].min(axis=-1) - radius > 30.0


def bounding_radius(draw: ObjectDraw) -> np.ndarray:
    """``(n,)`` radius of a capsule on each drawn object's axis that holds it."""
    return np.asarray(draw.radius) + np.hypot(draw.width, draw.thick)

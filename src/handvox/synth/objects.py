"""Objects for hands to hold: their kinds and graspable sizes (:func:`draw_objects`), where they
rest in the open hand (:func:`object_in_hand`) and the fingers closed onto them
(:func:`grasp_poses`, by :mod:`handvox.hand.grasp`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from handvox.geometry import axis_angle_to_matrix
from handvox.hand.grasp import CLOSING_DOFS, close_grasp, place_on_palm
from handvox.hand.kinematics import HandBones, dof_index

# Objects a hand holds (or that lie near it): capsules (cylinders with rounded ends: cans,
# bottles, tool handles) and spheres, drawn with these chances and sizes (mm): the graspable range
# of everyday objects, from thin handles (15-30 mm across) through cans and bottles (20-80 mm)
# to balls (40-90 mm).
OBJECT_KINDS = ("cylinder", "sphere", "handle")


OBJECT_KIND_PROBS = (0.45, 0.25, 0.30)


OBJECT_RADIUS_MM = ((10.0, 40.0), (20.0, 45.0), (7.5, 15.0))


OBJECT_LENGTH_MM = ((60.0, 200.0), (0.0, 0.0), (80.0, 150.0))


@dataclass
class HeldObject:
    """An object in the hand: the capsule ``a``-``b`` (``(3,)`` each, camera frame, mm; a sphere
    where they coincide) of ``radius``, and its kind (:data:`OBJECT_KINDS`)."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    kind: str


@dataclass
class ObjectDraw:
    """Objects drawn for ``n`` hands (:func:`draw_objects`): kind (index into
    :data:`OBJECT_KINDS`), radius and axis length (mm), five uniform numbers placing each on the
    palm (:func:`object_in_hand`) and the pre-shape's thumb CMC flexion (rad)."""

    kind: np.ndarray
    radius: np.ndarray
    length: np.ndarray
    place: np.ndarray
    thumb: np.ndarray

    def __getitem__(self, idx) -> ObjectDraw:
        if isinstance(idx, int | np.integer):
            idx = slice(int(idx), int(idx) + 1)
        return ObjectDraw(*(getattr(self, f)[idx] for f in ObjectDraw.__dataclass_fields__))


def draw_objects(rng: np.random.Generator, n: int) -> ObjectDraw:
    """Kinds and sizes of :data:`OBJECT_KINDS` (:data:`OBJECT_KIND_PROBS`,
    :data:`OBJECT_RADIUS_MM`, :data:`OBJECT_LENGTH_MM`) for ``n`` objects, in one draw."""
    u = rng.random((n, 9))
    kind = np.minimum(np.searchsorted(np.cumsum(OBJECT_KIND_PROBS), u[:, 0], side="right"),
                      len(OBJECT_KINDS) - 1)  # fmt: skip
    lo, hi = np.asarray(OBJECT_RADIUS_MM)[kind].T
    radius = lo + (hi - lo) * u[:, 1]
    lo, hi = np.asarray(OBJECT_LENGTH_MM)[kind].T
    length = lo + (hi - lo) * u[:, 2]
    # The thumb swung radially, 5-25 degrees, out of the palm's way (it closes from there).
    thumb = np.radians(-25.0 + 20.0 * u[:, 3])
    return ObjectDraw(kind, radius, length, u[:, 4:], thumb)


def object_in_hand(draw: ObjectDraw, bones: HandBones) -> tuple[Tensor, Tensor]:
    """Axis ends ``(n, 3)`` float64 in the hand frame (z = 0: :func:`handvox.hand.grasp.
    place_on_palm` lowers them) of drawn objects on hands ``bones`` (batch 1 or n).

    A capsule lies across the palm below the knuckles (62-85 % of the way from the wrist to the
    MCP row), its axis within 25 degrees of the knuckle line and 10 of the palm's plane, gripped
    anywhere but its last 30 mm; a sphere sits in the palm's hollow (60-80 % of the way)."""
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


def grasp_poses(
    poses, bones: HandBones, draw: ObjectDraw
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close ``(n, 30)`` sampled poses onto drawn objects.

    The pre-shape is the pose's own hand opened: its closing joints (:data:`handvox.hand.grasp.
    CLOSING_DOFS`) straight, the finger spread halved, the thumb swung out of the palm's way
    (``draw.thumb``); palm cupping and the root stay. The object is lowered onto it
    (:func:`~handvox.hand.grasp.place_on_palm`), the fingers closed
    (:func:`~handvox.hand.grasp.close_grasp`: each bone stops on the surface, within
    :data:`~handvox.hand.grasp.CONTACT_TOLERANCE_MM`), and the root put back.

    Returns:
        ``(n, 30)`` float32 poses, and the objects' axis ends ``(n, 2, 3)`` float64 in the camera
        frame; radii are ``draw.radius``.
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
    obj = place_on_palm(pre, hands, a, b, torch.from_numpy(np.asarray(draw.radius, np.float64)))
    out = close_grasp(pre, hands, obj).pose
    out[:, :6] = root
    rot = axis_angle_to_matrix(root[:, 3:6])
    ends = torch.stack([obj.a, obj.b], 1) @ rot.transpose(1, 2) + root[:, None, :3]
    return out.float().numpy(), ends.numpy()


def clear_of_camera(ends: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Whether objects ``(n, 2, 3)`` keep 30 mm in front of the camera."""
    return ends[..., 2].min(axis=-1) - radius > 30.0

"""Grasps: the kinematic hand closed onto an object, fingers on its surface, not through it.

Objects are spheres and capsules (a cylinder with rounded ends: bottles, cans, tool handles,
mugs' handles) in the hand frame of :mod:`handvox.hand.kinematics` (mm; the palm faces ``-z``,
straight fingers point along ``-y``, the thumb is on ``+x``), one per hand of a batch:
:class:`GraspObject`. The hand's bones are capsules of the
:class:`~handvox.hand.kinematics.HandBones` radii, as :func:`handvox.hand.poses.self_overlap`
models them.

How a grasp closes (the auto-grasp of GraspIt!, Miller & Allen 2004, on this hand): from a
pre-shape, every chain's three flexion joints (thumb CMC flexion, MCP and IP; finger MCP, PIP and
DIP) turn together towards their flexion limits, each in proportion to its remaining range. When
one of the chain's bones touches the object, the joints proximal to that bone stop and the ones
distal to it go on, until the distal bone touches too or the joints reach their limits (a
finger that misses the object curls fully, as a hand's free fingers do). The first contact along
each path is found by a scan and then bisection, so a bone ends within :data:`CONTACT_TOLERANCE_MM`
of the surface and never inside it by more.

Chains close independently (the forward kinematics of one chain does not depend on another's
angles), so all chains of all hands are searched in one batched pass per step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor

from handvox.geometry import segment_distance
from handvox.hand.kinematics import HandBones, dof_index, forward_kinematics, pose_limits

# The three joints each chain closes with, proximal to distal (DOF names of the pose).
CLOSING_DOFS = (
    ("thumb_cmc_abd", "thumb_mcp_flex", "thumb_ip_flex"),
    *((f"{f}_mcp_flex", f"{f}_pip_flex", f"{f}_dip_flex") for f in ("index", "middle", "ring",
                                                                  "little")),
)  # fmt: skip
# A scan of this many steps along each closing path finds the first contact's bracket (a step
# moves a fingertip by a few mm at most), bisection then narrows it to well below a millimetre.
SCAN_STEPS = 32
BISECT_STEPS = 14
# How far a bone may stay from the surface it stopped at: what bisection leaves, comfortably
# inside the 2 mm a depth sensor cannot resolve at hand range.
CONTACT_TOLERANCE_MM = 0.5


@dataclass(frozen=True)
class GraspObject:
    """A batch of ``B`` graspable objects in the hand frame (mm): capsules from ``a`` to ``b``
    of ``radius`` (a sphere where ``a == b``).

    Attributes:
        a, b: ``(B, 3)`` the axis' ends.
        radius: ``(B,)``.
    """

    a: Tensor
    b: Tensor
    radius: Tensor

    def __post_init__(self) -> None:
        n = self.a.shape[0] if self.a.dim() == 2 else -1
        if self.a.shape != (n, 3) or self.b.shape != (n, 3) or self.radius.shape != (n,):
            raise ValueError(
                f"GraspObject: a, b (B, 3) and radius (B,) expected, got {tuple(self.a.shape)}, "
                f"{tuple(self.b.shape)}, {tuple(self.radius.shape)}"
            )
        if not bool((self.radius > 0).all()):
            raise ValueError("GraspObject: radii must be positive")

    def distance(self, p: Tensor, q: Tensor, r: Tensor) -> Tensor:
        """Gap (mm; negative: overlap) between the objects and capsules ``p``-``q`` of radius
        ``r``, ``(B, ...)`` for ``p``, ``q`` ``(B, ..., 3)`` and ``r`` ``(B, ...)``."""
        shape = (-1,) + (1,) * (p.dim() - 2) + (3,)
        a, b = self.a.view(shape).expand_as(p), self.b.view(shape).expand_as(p)
        rad = self.radius.view(shape[:-1])
        return segment_distance(p, q, a, b) - r - rad


@dataclass(frozen=True)
class GraspResult:
    """What :func:`close_grasp` did: the closed ``pose`` ``(B, 30)``, which chains touch the
    object (``contact`` ``(B, 5)``, thumb first) and the deepest overlap of any hand bone with
    it (``overlap_mm`` ``(B,)``, <= 0 when nothing goes inside)."""

    pose: Tensor
    contact: Tensor
    overlap_mm: Tensor


def _chain_capsules(fk, bones: HandBones) -> tuple[Tensor, Tensor, Tensor]:
    """The three closing bones of every chain: ends ``(B, 5, 3, 3)`` and radii ``(B, 5, 3)``."""
    chains = fk.joints[:, 1:].unflatten(1, (5, 4))  # thumb CMC..tip, fingers MCP..tip
    return chains[:, :, :3], chains[:, :, 1:], bones.expand(fk.joints.shape[0]).radius[..., 1:]


def palm_capsules(pose: Tensor, bones: HandBones) -> tuple[Tensor, Tensor, Tensor]:
    """The palm as capsules: wrist to each chain's first joint, and each finger's metacarpal
    (CMC to MCP); ends ``(B, 9, 3)`` and radii ``(B, 9)``, in the frame of ``pose``."""
    fk = forward_kinematics(pose, bones)
    radius = bones.expand(pose.shape[0]).radius
    wrist = fk.joints[:, :1].expand(-1, 5, -1)
    firsts = fk.joints[:, 1::4][:, :5]  # thumb CMC, index..little MCP
    p = torch.cat([wrist, fk.metacarpal_origins[:, 1:]], 1)
    q = torch.cat([firsts, firsts[:, 1:]], 1)
    r = torch.cat([radius[:, :, 0], radius[:, 1:, 0]], 1)
    return p, q, r


def hand_overlap(pose: Tensor, bones: HandBones, obj: GraspObject) -> Tensor:
    """Deepest overlap (mm) of any hand bone, palm included, with the object, ``(B,)``: > 0 when
    the object goes inside the hand."""
    fk = forward_kinematics(pose, bones)
    p, q, r = _chain_capsules(fk, bones)
    fingers = -obj.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1))
    pp, pq, pr = palm_capsules(pose, bones)
    return torch.cat([fingers, -obj.distance(pp, pq, pr)], 1).amax(1)


def _repeat(x, reps: int):
    """A batch (tensor or HandBones) tiled ``reps`` times along its first axis."""
    if isinstance(x, HandBones):
        return HandBones(**{f.name: _repeat(getattr(x, f.name), reps) for f in fields(x)})
    return x.repeat(reps, *([1] * (x.dim() - 1)))


def place_on_palm(
    pose: Tensor, bones: HandBones, a: Tensor, b: Tensor, radius: Tensor
) -> GraspObject:
    """Objects lowered onto the pre-shaped hands along the palm's normal (from hand ``-z``):
    the capsules ``a``-``b`` (``(B, 3)``, hand frame; only their x and y count) of ``radius``
    ``(B,)``, placed where they first touch the hand (:func:`hand_overlap` zero, within
    :data:`CONTACT_TOLERANCE_MM`): on the palm, the thenar eminence or the fingers' bases, as a
    hand takes an object from a table."""
    lo = torch.zeros_like(radius)  # centre in the palm's plane: inside
    hi = torch.full_like(radius, 400.0)  # far below the palm: outside

    def at(d: Tensor) -> GraspObject:
        shift = torch.zeros_like(a)
        shift[:, 2] = -d
        flat = torch.zeros_like(a)
        flat[:, 2] = a[:, 2]
        return GraspObject(a - flat + shift, b - flat + shift, radius)

    while float((hi - lo).max()) > CONTACT_TOLERANCE_MM / 4:
        mid = (lo + hi) / 2
        inside = hand_overlap(pose, bones, at(mid)) >= 0
        lo, hi = torch.where(inside, mid, lo), torch.where(inside, hi, mid)
    return at(hi)


def _first_step(test, b: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """Along paths ``t`` in [0, 1] of ``(B, 5)`` chains: the last ``t`` before ``test(t)``
    (``(S, B, 5)`` -> bool) first holds, and whether it holds anywhere (else ``t = 1``)."""
    ts = torch.linspace(0.0, 1.0, SCAN_STEPS + 1, dtype=dtype, device=device)
    hit = test(ts[:, None, None].expand(-1, b, 5))
    found = hit.any(0)
    k = torch.where(found, hit.float().argmax(0), SCAN_STEPS)
    lo, hi = ts[(k - 1).clamp_min(0)], ts[k]
    for _ in range(BISECT_STEPS):
        mid = (lo + hi) / 2
        yes = test(mid[None])[0]
        lo, hi = torch.where(yes, lo, mid), torch.where(yes, mid, hi)
    return torch.where(found, lo, torch.ones_like(lo)), found


def close_grasp(pose: Tensor, bones: HandBones, obj: GraspObject) -> GraspResult:
    """Close every chain of the pre-shaped hands ``pose`` onto ``obj`` (module docstring).

    A chain that holds the object inside it in the pre-shape is first opened (its closing
    joints towards their extension limits) until it is free.

    Args:
        pose: ``(B, 30)`` pre-shapes with a zero root (the objects are in the hand frame).
        bones: one hand for all (batch 1) or one per pose.
        obj: the objects, one per pose, outside the palm (e.g. by :func:`place_on_palm`).
    Returns:
        :class:`GraspResult`; root and non-closing DOFs of ``pose`` unchanged.
    Raises:
        ValueError: an object inside the palm, or inside a chain that opening cannot free.
    """
    b = pose.shape[0]
    pp, pq, pr = palm_capsules(pose, bones)
    palm = (-obj.distance(pp, pq, pr)).amax(1)
    if bool((palm > CONTACT_TOLERANCE_MM).any()):
        raise ValueError(f"close_grasp: an object is {float(palm.max()):.1f} mm inside the palm")
    idx = torch.tensor([[dof_index(n) for n in chain] for chain in CLOSING_DOFS])
    lower, upper = pose_limits(dtype=pose.dtype, device=pose.device)
    angles = pose[:, idx]  # (B, 5, 3) current closing angles
    dev, dt = pose.device, pose.dtype

    def gaps(ang: Tensor) -> Tensor:
        """``(..., B, 5, 3)`` gap of each closing bone for angles ``(..., B, 5, 3)``."""
        lead = ang.shape[:-3]
        full = pose.expand(*lead, b, -1).clone()
        full[..., idx] = ang
        reps = full.numel() // (b * full.shape[-1])
        hands = _repeat(bones, reps) if bones.batch_size > 1 else bones
        fk = forward_kinematics(full.reshape(-1, full.shape[-1]), hands)
        p, q, r = _chain_capsules(fk, hands)
        o = GraspObject(*(_repeat(x, reps) for x in (obj.a, obj.b, obj.radius)))
        g = o.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1))
        return g.view(*lead, b, 5, 3)

    # Open the chains the object is inside of, just enough to free them.
    stuck = gaps(angles[None])[0].amin(-1) <= 0  # (B, 5)
    if bool(stuck.any()):
        back = torch.where(stuck[..., None], lower[idx] - angles, torch.zeros_like(angles))
        t, freed = _first_step(lambda s: gaps(angles + s[..., None] * back).amin(-1) > 0,
                               b, dt, dev)  # fmt: skip
        if bool((stuck & ~freed).any()):
            raise ValueError("close_grasp: an object is inside a finger that cannot open")
        # One bisection step further: the first free angle, not the last stuck one.
        t = torch.where(stuck, (t + 2.0**-BISECT_STEPS / SCAN_STEPS).clamp_max(1.0), t)
        angles = angles + t[..., None] * back

    limit = upper[idx].expand_as(angles)
    moving = torch.ones(b, 5, 3, dtype=torch.bool, device=dev)
    contact = torch.zeros(b, 5, dtype=torch.bool, device=dev)
    joint = torch.arange(3, device=dev)
    for _ in range(3):  # each stage stops at least one more bone of every chain still moving
        if not bool(moving.any()):
            break
        # Bones that move in this stage: those distal to a chain's first moving joint.
        first = torch.where(moving.any(-1), moving.float().argmax(-1), 3)  # (B, 5)
        live = joint >= first[..., None]  # (B, 5, 3)
        step = torch.where(moving, limit - angles, torch.zeros_like(angles))

        def touching(s: Tensor, angles=angles, step=step, live=live) -> Tensor:
            """``(S, B, 5)`` path parameters -> whether a moving bone touches the object."""
            g = gaps(angles + s[..., None] * step)
            return (torch.where(live, g, torch.full_like(g, float("inf"))) <= 0).any(-1)

        t, touches = _first_step(touching, b, dt, dev)
        angles = angles + t[..., None] * step
        # The bone that touched stops with every joint proximal to it; the rest go on.
        g = torch.where(live, gaps(angles[None])[0], torch.full_like(step, float("inf")))
        stopped_at = torch.where(touches, g.argmin(-1), 2)  # a miss: the chain is done
        contact |= touches
        moving &= joint > stopped_at[..., None]
    out = pose.clone()
    out[:, idx] = angles
    return GraspResult(out, contact, hand_overlap(out, bones, obj))

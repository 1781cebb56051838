"""Grasps: the kinematic hand closed onto an object, fingers on its surface, not through it.

Objects are spheres, capsules (a cylinder with rounded ends: bottles, cans, tool handles,
mugs' handles) and boxes with rounded edges (packs, cartons, phones) in the hand frame of
:mod:`handvox.hand.kinematics` (mm; the palm faces ``-z``, straight fingers point along ``-y``,
the thumb is on ``+x``), one per hand of a batch: :class:`GraspObject`. The hand's bones are
capsules of the :class:`~handvox.hand.kinematics.HandBones` radii, as
:func:`handvox.hand.poses.self_overlap` models them.

How a grasp closes (the auto-grasp of GraspIt!, Miller & Allen 2004, on this hand): from a
pre-shape, every chain's three flexion joints (thumb CMC flexion, MCP and IP; finger MCP, PIP and
DIP) turn together towards their flexion limits, each in proportion to its remaining range. When
one of the chain's bones touches the object, the joints proximal to that bone stop and the ones
distal to it go on, until the distal bone touches too or the joints reach their limits (a
finger that misses the object curls fully, as a hand's free fingers do). The first contact along
each path is found by a scan and then bisection, so a bone ends within :data:`CONTACT_TOLERANCE_MM`
of the surface and never inside it by more.

The four fingers close independently (the forward kinematics of one chain does not depend on
another's angles), so all of them in all hands are searched in one batched pass per step; the
thumb closes after them, stopping on the object or on the closed fingers, whichever it meets
first (closing all five against the object alone put the thumb through the index in most
small-ball grasps: docs/benchmarks.md, "Pose coverage").
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
    """A batch of ``B`` graspable objects in the hand frame (mm): the points within ``radius``
    of a box whose axis runs from ``a`` to ``b``, ``across`` (``(B, 3)``, perpendicular to the
    axis; None: zero) its half-width vector and ``thick`` (``(B,)``; None: zero) its half
    thickness along ``axis x across``. With both zero (or None) the object is a capsule from
    ``a`` to ``b`` (a sphere where ``a == b``); else a box with edges rounded by ``radius``.

    Attributes:
        a, b: ``(B, 3)`` the axis' ends.
        radius: ``(B,)``.
        across: ``(B, 3)`` or None.
        thick: ``(B,)`` or None.
    """

    a: Tensor
    b: Tensor
    radius: Tensor
    across: Tensor | None = None
    thick: Tensor | None = None

    def __post_init__(self) -> None:
        n = self.a.shape[0] if self.a.dim() == 2 else -1
        if self.a.shape != (n, 3) or self.b.shape != (n, 3) or self.radius.shape != (n,):
            raise ValueError(
                f"GraspObject: a, b (B, 3) and radius (B,) expected, got {tuple(self.a.shape)}, "
                f"{tuple(self.b.shape)}, {tuple(self.radius.shape)}"
            )
        if not bool((self.radius > 0).all()):
            raise ValueError("GraspObject: radii must be positive")
        if (self.across is None) != (self.thick is None):
            raise ValueError("GraspObject: a box needs both across and thick")
        if self.across is not None and (self.across.shape != (n, 3) or self.thick.shape != (n,)):
            raise ValueError(
                f"GraspObject: across (B, 3) and thick (B,) expected, got "
                f"{tuple(self.across.shape)}, {tuple(self.thick.shape)}"
            )

    @property
    def boxes(self) -> bool:
        return self.across is not None

    def moved(self, shift: Tensor) -> GraspObject:
        """The objects translated by ``shift`` ``(B, 3)``."""
        return GraspObject(self.a + shift, self.b + shift, self.radius, self.across, self.thick)

    def repeat(self, reps: int) -> GraspObject:
        """The batch tiled ``reps`` times."""
        t = [None if x is None else _repeat(x, reps) for x in self._fields()]
        return GraspObject(*t)

    def _fields(self) -> tuple:
        return self.a, self.b, self.radius, self.across, self.thick

    def bounding_radius(self) -> Tensor:
        """``(B,)`` radius of a capsule from ``a`` to ``b`` that holds each object."""
        if not self.boxes:
            return self.radius
        return self.radius + (self.across.square().sum(-1) + self.thick.square()).sqrt()

    def distance(self, p: Tensor, q: Tensor, r: Tensor) -> Tensor:
        """Gap (mm; negative: overlap) between the objects and capsules ``p``-``q`` of radius
        ``r``, ``(B, ...)`` for ``p``, ``q`` ``(B, ..., 3)`` and ``r`` ``(B, ...)``."""
        shape = (-1,) + (1,) * (p.dim() - 2) + (3,)
        a, b = self.a.view(shape).expand_as(p), self.b.view(shape).expand_as(p)
        rad = self.radius.view(shape[:-1])
        if not self.boxes:
            return segment_distance(p, q, a, b) - r - rad
        frame = box_frame(self.a, self.b, self.across)  # (B, 3, 3) rows: axis, across, normal
        half = torch.stack([(self.b - self.a).norm(dim=-1) / 2, self.across.norm(dim=-1),
                            self.thick], -1)  # fmt: skip
        centre = ((self.a + self.b) / 2).view(shape)
        frame = frame.view(*shape[:-1], 3, 3)
        half = half.view(shape)
        return segment_box_distance(p - centre, q - centre, frame, half) - r - rad


def box_frame(a: Tensor, b: Tensor, across: Tensor) -> Tensor:
    """``(..., 3, 3)`` orthonormal rows: the axis ``a -> b``, ``across``'s direction and their
    cross product; any perpendicular completes it where ``a == b`` or ``across`` is zero."""
    e = torch.eye(3, dtype=a.dtype, device=a.device)
    d = b - a
    long = d.norm(dim=-1, keepdim=True)
    u = torch.where(long > 1e-9, d / long.clamp_min(1e-12), e[0].expand_as(d))
    w = across - u * (across * u).sum(-1, keepdim=True)
    wide = w.norm(dim=-1, keepdim=True)
    # a fallback perpendicular: the world axis least aligned with u
    other = e[(u.abs()).argmin(-1)]
    alt = other - u * (other * u).sum(-1, keepdim=True)
    alt = alt / alt.norm(dim=-1, keepdim=True)
    v = torch.where(wide > 1e-9, w / wide.clamp_min(1e-12), alt)
    return torch.stack([u, v, torch.linalg.cross(u, v)], -2)


# Golden-section steps of segment_box_distance: the bracket shrinks to 0.618^40 of the segment.
_GOLDEN_STEPS = 40


def segment_box_distance(p: Tensor, q: Tensor, frame: Tensor, half: Tensor) -> Tensor:
    """Distance ``(...)`` from segments ``p``-``q`` (``(..., 3)``) to boxes centred at the
    origin with orthonormal axes the rows of ``frame`` (``(..., 3, 3)``) and half-extents
    ``half`` (``(..., 3)``, >= 0; zero extents make a rectangle, a segment or a point).

    The distance to a convex set is convex along a segment, so a golden-section search over
    the segment's parameter finds its minimum."""
    pl = (frame @ p[..., None])[..., 0]
    ql = (frame @ q[..., None])[..., 0]
    d = ql - pl

    def f(t: Tensor) -> Tensor:
        x = pl + t[..., None] * d
        return (x.abs() - half).clamp_min(0.0).norm(dim=-1)

    g = (5**0.5 - 1) / 2
    lo, hi = torch.zeros_like(pl[..., 0]), torch.ones_like(pl[..., 0])
    x1, x2 = hi - g * (hi - lo), lo + g * (hi - lo)
    f1, f2 = f(x1), f(x2)
    for _ in range(_GOLDEN_STEPS):
        # The minimum lies in [lo, x2] (left) or [x1, hi]; the inner point kept is one of the
        # new pair (the golden ratio's property), so a step evaluates one new point.
        left = f1 <= f2
        hi = torch.where(left, x2, hi)
        lo = torch.where(left, lo, x1)
        new = torch.where(left, hi - g * (hi - lo), lo + g * (hi - lo))
        fn = f(new)
        x1, x2, f1, f2 = (torch.where(left, new, x2), torch.where(left, x1, new),
                          torch.where(left, fn, f2), torch.where(left, f1, fn))  # fmt: skip
    ends = torch.minimum(f(torch.zeros_like(lo)), f(torch.ones_like(lo)))
    return torch.minimum(torch.minimum(f1, f2), ends)


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
    pose: Tensor,
    bones: HandBones,
    a: Tensor,
    b: Tensor,
    radius: Tensor,
    across: Tensor | None = None,
    thick: Tensor | None = None,
) -> GraspObject:
    """Objects lowered onto the pre-shaped hands along the palm's normal (from hand ``-z``):
    the capsules ``a``-``b`` (``(B, 3)``, hand frame; only their x and y count) of ``radius``
    ``(B,)`` (boxes with ``across`` and ``thick``: :class:`GraspObject`), placed where they
    first touch the hand (:func:`hand_overlap` zero, within :data:`CONTACT_TOLERANCE_MM`): on
    the palm, the thenar eminence or the fingers' bases, as a
    hand takes an object from a table."""
    lo = torch.zeros_like(radius)  # centre in the palm's plane: inside
    hi = torch.full_like(radius, 400.0)  # far below the palm: outside

    def at(d: Tensor) -> GraspObject:
        shift = torch.zeros_like(a)
        shift[:, 2] = -d
        flat = torch.zeros_like(a)
        flat[:, 2] = a[:, 2]
        return GraspObject(a - flat + shift, b - flat + shift, radius, across, thick)

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


def _thumb_on_fingers(p: Tensor, q: Tensor, r: Tensor) -> Tensor:
    """Gap (mm) of each thumb closing bone to the nearest finger closing bone, ``(N, 3)``, for
    chain capsules ``p``, ``q`` ``(N, 5, 3, 3)`` and radii ``r`` ``(N, 5, 3)``."""
    pf, qf, rf = p[:, 1:].flatten(1, 2), q[:, 1:].flatten(1, 2), r[:, 1:].flatten(1)
    d = segment_distance(p[:, 0, :, None], q[:, 0, :, None], pf[:, None], qf[:, None])
    return (d - r[:, 0, :, None] - rf[:, None]).amin(-1)


def hand_self_overlap(pose: Tensor, bones: HandBones) -> Tensor:
    """Deepest overlap (mm) of a thumb closing bone with a finger's, ``(B,)``: > 0 when the
    thumb goes through a finger (what :func:`close_grasp` prevents)."""
    p, q, r = _chain_capsules(forward_kinematics(pose, bones), bones)
    return -_thumb_on_fingers(p, q, r).amin(-1)


def close_grasp(pose: Tensor, bones: HandBones, obj: GraspObject) -> GraspResult:
    """Close every chain of the pre-shaped hands ``pose`` onto ``obj`` (module docstring).

    The four fingers close first, against the object; then the thumb, against the object and
    the closed fingers, so that it rests on them (a fist's thumb over the index, a small
    ball's thumb on the fingers) instead of closing through them. A chain that holds the object
    (or, for the thumb, a finger) inside it in its start pose is first opened (its closing
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
    dev, dt = pose.device, pose.dtype

    def gaps(ang: Tensor, on_fingers: bool = False) -> Tensor:
        """``(..., B, 5, 3)`` gap of each closing bone to the object (the thumb's also to the
        fingers with ``on_fingers``) for angles ``(..., B, 5, 3)``."""
        lead = ang.shape[:-3]
        full = pose.expand(*lead, b, -1).clone()
        full[..., idx] = ang
        reps = full.numel() // (b * full.shape[-1])
        hands = _repeat(bones, reps) if bones.batch_size > 1 else bones
        fk = forward_kinematics(full.reshape(-1, full.shape[-1]), hands)
        p, q, r = _chain_capsules(fk, hands)
        o = obj.repeat(reps)
        g = o.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1)).view(-1, 5, 3)
        if on_fingers:
            g = torch.cat([torch.minimum(g[:, :1], _thumb_on_fingers(p, q, r)[:, None]),
                           g[:, 1:]], 1)  # fmt: skip
        return g.view(*lead, b, 5, 3)

    def close(angles: Tensor, chains: Tensor, on_fingers: bool) -> tuple[Tensor, Tensor]:
        """Open the ``chains`` (``(5,)`` bool) that are stuck, then close them; the other
        chains' angles stay. Returns the angles and which chains touched."""
        stuck = (gaps(angles[None], on_fingers)[0].amin(-1) <= 0) & chains  # (B, 5)
        if bool(stuck.any()):
            back = torch.where(stuck[..., None], lower[idx] - angles, torch.zeros_like(angles))
            t, freed = _first_step(
                lambda s: gaps(angles + s[..., None] * back, on_fingers).amin(-1) > 0, b, dt, dev
            )
            if bool((stuck & ~freed).any()):
                raise ValueError("close_grasp: an object is inside a finger that cannot open")
            # One bisection step further: the first free angle, not the last stuck one.
            t = torch.where(stuck, (t + 2.0**-BISECT_STEPS / SCAN_STEPS).clamp_max(1.0), t)
            angles = angles + t[..., None] * back
        limit = upper[idx].expand_as(angles)
        moving = chains[None, :, None].expand(b, 5, 3).clone()
        contact = torch.zeros(b, 5, dtype=torch.bool, device=dev)
        joint = torch.arange(3, device=dev)
        for _ in range(3):  # each stage stops at least one more bone of every moving chain
            if not bool(moving.any()):
                break
            # Bones that move in this stage: those distal to a chain's first moving joint.
            first = torch.where(moving.any(-1), moving.float().argmax(-1), 3)  # (B, 5)
            live = joint >= first[..., None]  # (B, 5, 3)
            step = torch.where(moving, limit - angles, torch.zeros_like(angles))

            def touching(s: Tensor, angles=angles, step=step, live=live) -> Tensor:
                """``(S, B, 5)`` path parameters -> whether a moving bone touches."""
                g = gaps(angles + s[..., None] * step, on_fingers)
                return (torch.where(live, g, torch.full_like(g, float("inf"))) <= 0).any(-1)

            t, touches = _first_step(touching, b, dt, dev)
            angles = angles + t[..., None] * step
            # The bone that touched stops with every joint proximal to it; the rest go on.
            g = gaps(angles[None], on_fingers)[0]
            g = torch.where(live, g, torch.full_like(step, float("inf")))
            stopped_at = torch.where(touches, g.argmin(-1), 2)  # a miss: the chain is done
            contact |= touches & chains
            moving &= joint > stopped_at[..., None]
        return angles, contact

    thumb = torch.arange(5, device=dev) == 0
    angles, contact = close(pose[:, idx], ~thumb, False)
    angles, thumb_contact = close(angles, thumb, True)
    # The thumb's contact is with the object only when it stopped on the object's surface.
    on_object = gaps(angles[None])[0][:, 0].amin(-1) <= CONTACT_TOLERANCE_MM
    contact[:, 0] = thumb_contact[:, 0] & on_object
    out = pose.clone()
    out[:, idx] = angles
    return GraspResult(out, contact, hand_overlap(out, bones, obj))

"""Grasps (handvox.hand.grasp): fingers end on the object's surface, never inside it; fingers
that miss curl fully; objects placed inside the hand are refused."""

from __future__ import annotations

import math

import pytest
import torch

from handvox.hand.grasp import (
    CLOSING_DOFS,
    CONTACT_TOLERANCE_MM,
    GraspObject,
    box_frame,
    close_grasp,
    hand_overlap,
    hand_self_overlap,
    place_on_palm,
    segment_box_distance,
)
from handvox.hand.kinematics import dof_index, pose_limits, zero_pose
from handvox.hand.shapes import base_shape

F64 = torch.float64


def pre_shape(n: int) -> torch.Tensor:
    """Open hand, the thumb swung radially out of the palm's way."""
    pose = zero_pose(n, F64)
    pose[:, dof_index("thumb_cmc_flex")] = math.radians(-15)
    return pose


def objects(n: int, bones) -> tuple[torch.Tensor, GraspObject]:
    """Power grasps' objects resting on the open hand: cylinders of 24-60 mm across the palm
    near the MCP row (handles, cans, bottles) and balls of 50-80 mm in the palm."""
    g = torch.Generator().manual_seed(0)
    u, v = torch.rand(2, n, generator=g, dtype=F64)
    sphere = torch.arange(n) % 2 == 1
    radius = torch.where(sphere, 25 + 15 * u, 12 + 18 * u)
    y = torch.where(sphere, -65 + 15 * v, -75 + 20 * v)
    a = torch.stack([torch.full((n,), -50.0, dtype=F64), y, torch.zeros(n, dtype=F64)], 1)
    b = a.clone()
    b[:, 0] = 20.0
    a[sphere, 0] = b[sphere, 0] = -10.0
    pose = pre_shape(n)
    return pose, place_on_palm(pose, bones, a, b, radius)


def bone_gaps(pose, bones, obj) -> torch.Tensor:
    """``(B, 5)`` each chain's smallest gap to the object."""
    from handvox.hand.grasp import _chain_capsules
    from handvox.hand.kinematics import forward_kinematics

    p, q, r = _chain_capsules(forward_kinematics(pose, bones), bones)
    return obj.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1)).view(-1, 5, 3).amin(-1)


def test_power_grasps_end_on_the_surface():
    bones = base_shape("average_adult", F64)
    pose, obj = objects(12, bones)
    # resting on the open hand, not in it
    rest = -hand_overlap(pose, bones, obj)
    assert bool((rest >= 0).all()) and float(rest.max()) < CONTACT_TOLERANCE_MM
    res = close_grasp(pose, bones, obj)
    assert float(res.overlap_mm.max()) <= 2.0  # the bound; bisection leaves far less
    assert float(res.overlap_mm.max()) <= CONTACT_TOLERANCE_MM
    # at least three fingers wrap every object; a touching chain's bone is on the surface
    assert bool((res.contact[:, 1:].sum(1) >= 3).all()), res.contact
    gaps = bone_gaps(res.pose, bones, obj)
    assert float(gaps[res.contact].abs().max()) <= CONTACT_TOLERANCE_MM
    # only the closing joints moved, and within their limits
    idx = [dof_index(n) for chain in CLOSING_DOFS for n in chain]
    keep = [i for i in range(30) if i not in idx]
    assert torch.equal(res.pose[:, keep], pose[:, keep])
    lo, hi = pose_limits(dtype=F64)
    assert bool(((res.pose >= lo - 1e-9) & (res.pose <= hi + 1e-9)).all())


def test_the_thumb_rests_on_the_fingers_not_through_them():
    # Small balls in the palm: the fingers curl over them and the thumb, closing after them,
    # meets the curled index; closing it against the ball alone put it through the index.
    bones = base_shape("average_adult", F64)
    n = 6
    radius = torch.linspace(20.0, 28.0, n, dtype=F64)
    a = torch.stack([torch.full((n,), -12.0, dtype=F64), torch.full((n,), -60.0, dtype=F64),
                     torch.zeros(n, dtype=F64)], 1)  # fmt: skip
    pose = pre_shape(n)
    obj = place_on_palm(pose, bones, a, a.clone(), radius)
    res = close_grasp(pose, bones, obj)
    assert float(hand_self_overlap(res.pose, bones).max()) <= CONTACT_TOLERANCE_MM
    assert float(res.overlap_mm.max()) <= CONTACT_TOLERANCE_MM
    # the thumb did close (it is not left open), and stopped on something within tolerance
    thumb = [dof_index(name) for name in CLOSING_DOFS[0]]
    moved = (res.pose[:, thumb] - pose[:, thumb]).abs().sum(1)
    assert bool((moved > math.radians(10)).all()), moved
    gap_fingers = -hand_self_overlap(res.pose, bones)
    gap_object = bone_gaps(res.pose, bones, obj)[:, 0]
    _, hi = pose_limits(dtype=F64)
    at_limit = (res.pose[:, thumb] >= hi[thumb] - 1e-6).any(1)
    stopped = torch.minimum(gap_fingers, gap_object) <= CONTACT_TOLERANCE_MM
    assert bool((stopped | at_limit).all())
    # the thumb's contact flag means the ball, not a finger
    assert bool((res.contact[:, 0] == (gap_object <= CONTACT_TOLERANCE_MM)).all())


def test_a_missed_object_leaves_the_fingers_fully_curled():
    bones = base_shape("average_adult", F64)
    pose = pre_shape(1)
    far = torch.tensor([[0.0, -60.0, -400.0]], dtype=F64)
    res = close_grasp(pose, bones, GraspObject(far, far, torch.tensor([20.0], dtype=F64)))
    assert not bool(res.contact.any())
    _, hi = pose_limits(dtype=F64)
    fingers = [dof_index(n) for chain in CLOSING_DOFS[1:] for n in chain]
    torch.testing.assert_close(res.pose[0, fingers], hi[fingers])


def test_an_object_inside_the_palm_is_refused():
    bones = base_shape("average_adult", F64)
    inside = torch.tensor([[0.0, -50.0, 0.0]], dtype=F64)
    with pytest.raises(ValueError, match="inside the palm"):
        close_grasp(
            pre_shape(1), bones, GraspObject(inside, inside, torch.tensor([25.0], dtype=F64))
        )


def test_batch_equals_one_by_one_and_shapes_vary():
    bones = base_shape("small_female", F64)
    pose, obj = objects(4, bones)
    batch = close_grasp(pose, bones, obj)
    for i in range(4):
        one = close_grasp(pose[i : i + 1], bones, GraspObject(obj.a[i : i + 1], obj.b[i : i + 1],
                                                              obj.radius[i : i + 1]))  # fmt: skip
        torch.testing.assert_close(one.pose, batch.pose[i : i + 1])
    assert float(hand_overlap(batch.pose, bones, obj).max()) <= CONTACT_TOLERANCE_MM


def test_bad_objects():
    z = torch.zeros(1, 3, dtype=F64)
    with pytest.raises(ValueError, match="positive"):
        GraspObject(z, z, torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match="expected"):
        GraspObject(z, z[0], torch.ones(1, dtype=F64))


def test_segment_box_distance_matches_a_dense_search():
    g = torch.Generator().manual_seed(3)
    n = 200
    p, q = (torch.randn(n, 3, generator=g, dtype=F64) * 60 for _ in range(2))
    frame = box_frame(torch.zeros(n, 3, dtype=F64), torch.randn(n, 3, generator=g, dtype=F64),
                      torch.randn(n, 3, generator=g, dtype=F64))  # fmt: skip
    assert torch.allclose(frame @ frame.transpose(1, 2), torch.eye(3, dtype=F64).expand(n, 3, 3))
    half = torch.rand(n, 3, generator=g, dtype=F64) * 40
    half[:20, 1:] = 0.0  # segments: a capsule's core
    half[20:30] = 0.0  # points: a sphere's
    t = torch.linspace(0, 1, 20001, dtype=F64)[:, None, None]
    pts = torch.einsum("tnj,nij->tni", p + t * (q - p), frame)  # (T, n, 3), boxes' frames
    dense = (pts.abs() - half).clamp_min(0).norm(dim=-1).amin(0)
    torch.testing.assert_close(segment_box_distance(p, q, frame, half), dense, atol=1e-3,
                               rtol=0)  # fmt: skip
    # a capsule as a box without extent across it measures as the capsule does
    a, b = (
        torch.randn(n, 3, generator=g, dtype=F64) * 30,
        torch.randn(n, 3, generator=g, dtype=F64) * 30,
    )
    r = torch.full((n,), 10.0, dtype=F64)
    cap = GraspObject(a, b, r)
    box = GraspObject(a, b, r, torch.zeros(n, 3, dtype=F64), torch.zeros(n, dtype=F64))
    rr = torch.full((n,), 5.0, dtype=F64)
    torch.testing.assert_close(box.distance(p, q, rr), cap.distance(p, q, rr), atol=1e-6, rtol=0)


def test_boxes_are_grasped_on_their_surface():
    # Packs of 50-70 x 30-50 mm cross-section across the palm, flat side down.
    bones = base_shape("average_adult", F64)
    n = 4
    across = torch.zeros(n, 3, dtype=F64)
    across[:, 1] = torch.linspace(18.0, 30.0, n, dtype=F64)
    thick = torch.linspace(10.0, 20.0, n, dtype=F64)
    a = torch.tensor([[-60.0, -62.0, 0.0]], dtype=F64).expand(n, 3).clone()
    b = a.clone()
    b[:, 0] = 40.0
    pose = pre_shape(n)
    obj = place_on_palm(pose, bones, a, b, torch.full((n,), 4.0, dtype=F64), across, thick)
    assert obj.boxes and float(hand_overlap(pose, bones, obj).max()) <= CONTACT_TOLERANCE_MM
    res = close_grasp(pose, bones, obj)
    assert float(res.overlap_mm.max()) <= CONTACT_TOLERANCE_MM
    assert bool((res.contact[:, 1:].sum(1) >= 3).all()), res.contact
    # a box is not its inscribed capsule: the same grasp goes through a capsule of its width
    fat = GraspObject(obj.a, obj.b, obj.bounding_radius())
    assert float(hand_overlap(res.pose, bones, fat).min()) > 2.0

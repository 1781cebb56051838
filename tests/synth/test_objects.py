"""synth/objects.py: kinds, sizes, placing, grasps; directly or by frames asserting grasps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from handvox.hand.grasp import (
    CONTACT_TOLERANCE_MM,
    GraspObject,
    _chain_capsules,
    hand_overlap,
    hand_self_overlap,
    palm_capsules,
)
from handvox.hand.kinematics import forward_kinematics
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import base_shape
from handvox.synth.hand import bones_from_vector
from handvox.synth.hand_config import SCENE_PARTS, HandSynthConfig, pose_sampler_config
from handvox.synth.objects import (
    OBJECT_BOX_MM,
    OBJECT_KIND_PROBS,
    OBJECT_KINDS,
    OBJECT_LENGTH_MM,
    OBJECT_RADIUS_MM,
    PRECISION_MAX_MM,
    PRECISION_PROB,
    HeldObject,
    box_across,
    clear_of_camera,
    draw_objects,
    grasp_poses,
    object_in_hand,
)
from handvox.synth.primitives import OBJECT
from handvox.synth.raycast import render_depth
from tests.synth.scenes import NYU, content_frames


def test_object_kinds_have_a_chance_and_graspable_sizes_each():
    n = len(OBJECT_KINDS)
    assert len(OBJECT_KIND_PROBS) == len(OBJECT_RADIUS_MM) == len(OBJECT_LENGTH_MM) == n == 4
    assert math.isclose(sum(OBJECT_KIND_PROBS), 1.0) and min(OBJECT_KIND_PROBS) > 0.0
    for lo, hi in (*OBJECT_RADIUS_MM, *OBJECT_LENGTH_MM, *OBJECT_BOX_MM):
        assert 0.0 <= lo <= hi
    assert OBJECT_LENGTH_MM[OBJECT_KINDS.index("sphere")] == (0.0, 0.0)  # no axis
    box = OBJECT_KINDS.index("box")
    round_ = [r for k, r in enumerate(OBJECT_RADIUS_MM) if k != box]
    across = 2.0 * np.asarray(round_)  # from thin handles to balls
    assert across.min() == 15.0 and across.max() == 90.0
    # a box's rounding leaves it a flat side: its core keeps a width and a thickness
    assert 2 * OBJECT_RADIUS_MM[box][1] < OBJECT_BOX_MM[1][0] <= OBJECT_BOX_MM[0][0]
    handle, cylinder = OBJECT_KINDS.index("handle"), OBJECT_KINDS.index("cylinder")
    assert OBJECT_RADIUS_MM[handle][1] <= OBJECT_RADIUS_MM[cylinder][1]


def test_draw_objects_draws_each_kind_at_its_chance_within_its_sizes():
    n = 20000
    draw = draw_objects(np.random.default_rng(0), n)
    assert draw.kind.shape == draw.radius.shape == draw.length.shape == draw.thumb.shape == (n,)
    assert draw.place.shape == (n, 5) and (draw.place >= 0.0).all() and (draw.place < 1.0).all()
    share = np.bincount(draw.kind, minlength=len(OBJECT_KINDS)) / n
    np.testing.assert_allclose(share, OBJECT_KIND_PROBS, atol=0.015)
    for k in range(len(OBJECT_KINDS)):
        for values, (lo, hi) in ((draw.radius, OBJECT_RADIUS_MM[k]),
                                 (draw.length, OBJECT_LENGTH_MM[k])):  # fmt: skip
            v = values[draw.kind == k]
            assert (v >= lo).all() and (v <= hi).all()
            # uniform over the range: both ends nearly reached
            assert v.min() <= lo + 0.01 * (hi - lo) and v.max() >= hi - 0.01 * (hi - lo)
    box = draw.kind == OBJECT_KINDS.index("box")
    assert (draw.width[~box] == 0).all() and (draw.thick[~box] == 0).all()
    width = 2 * (draw.width[box] + draw.radius[box])  # full sizes
    thick = 2 * (draw.thick[box] + draw.radius[box])
    (w0, w1), (t0, t1) = OBJECT_BOX_MM
    assert width.min() >= w0 - 1e-9 and width.max() <= w1 + 1e-9 and np.ptp(width) > 50.0
    assert thick.min() >= t0 - 1e-9 and (thick <= width + 1e-9).all() and thick.max() > 55.0
    # precision grasps for a share of the objects small enough to pinch, none of the rest
    small = (
        draw.radius + draw.thick <= np.array([PRECISION_MAX_MM[k] for k in OBJECT_KINDS])[draw.kind]
    )
    assert not draw.precision[~small].any()
    assert abs(draw.precision[small].mean() - PRECISION_PROB) < 0.02
    for k, kind in enumerate(OBJECT_KINDS):  # every kind has pinchable sizes
        assert draw.precision[draw.kind == k].any(), kind
    thumb = np.degrees(draw.thumb)  # power: swung radially 5-25 degrees; precision: 0-15
    power = thumb[~draw.precision]
    assert (power >= -25.0).all() and (power <= -5.0).all() and np.ptp(power) > 19.0
    pinch = thumb[draw.precision]
    assert (pinch >= -15.0).all() and (pinch <= 0.0).all() and np.ptp(pinch) > 14.0
    again = draw_objects(np.random.default_rng(0), n)
    np.testing.assert_array_equal(again.radius, draw.radius)
    np.testing.assert_array_equal(again.place, draw.place)


def test_object_draw_indexes_like_its_arrays():
    draw = draw_objects(np.random.default_rng(1), 6)
    for one in (draw[2], draw[np.int64(2)]):
        assert one.kind.shape == (1,) and one.place.shape == (1, 5)
        assert one.kind[0] == draw.kind[2] and one.radius[0] == draw.radius[2]
        np.testing.assert_array_equal(one.place[0], draw.place[2])
    some = draw[np.array([4, 0])]
    np.testing.assert_array_equal(some.length, draw.length[[4, 0]])
    np.testing.assert_array_equal(some.thumb, draw.thumb[[4, 0]])
    np.testing.assert_array_equal(draw[1:3].kind, draw.kind[1:3])


def test_objects_lie_across_the_palm_below_the_knuckles():
    bones = base_shape("average_adult")
    draw = draw_objects(np.random.default_rng(2), 400)
    a, b = (x.numpy() for x in object_in_hand(draw, bones))
    assert a.shape == b.shape == (400, 3) and a.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(b - a, axis=1), draw.length, atol=1e-9)
    sphere = draw.kind == OBJECT_KINDS.index("sphere")
    assert sphere.any() and (~sphere).any()
    np.testing.assert_array_equal(a[sphere], b[sphere])
    # where each is gripped: its middle when not shifted along its axis (place[:, 4] = 0.5)
    place = draw.place.copy()
    place[:, 4] = 0.5
    grip = sum(x.numpy() for x in object_in_hand(replace(draw, place=place), bones)) / 2
    mcp = bones.base[0, 1:].double().numpy()  # index..little MCPs, hand frame
    np.testing.assert_allclose(grip[:, 2], 0.0, atol=1e-9)  # in the palm's plane
    way = grip[:, 1] / mcp[:, 1].mean()  # of the way from the wrist to the MCP row
    assert (way[sphere] >= 0.6 - 1e-9).all() and (way[sphere] <= 0.8 + 1e-9).all()
    assert (way[~sphere] >= 0.62 - 1e-9).all() and (way[~sphere] <= 0.85 + 1e-9).all()
    assert np.abs(grip[~sphere, 0] - mcp[:, 0].mean()).max() <= 8.0 + 1e-9
    # capsules: within 25 degrees of the knuckle line (x), 10 of the palm's plane ...
    axis = (b - a)[~sphere] / draw.length[~sphere, None]
    assert np.degrees(np.abs(np.arctan2(axis[:, 1], axis[:, 0]))).max() <= 25.0 + 1e-6
    assert np.degrees(np.abs(np.arcsin(axis[:, 2]))).max() <= 10.0 + 1e-6
    # ... gripped on their axis anywhere but their last 30 mm
    to_a = np.linalg.norm(a - grip, axis=1)[~sphere]
    to_b = np.linalg.norm(b - grip, axis=1)[~sphere]
    np.testing.assert_allclose(to_a + to_b, draw.length[~sphere], atol=1e-6)
    assert np.minimum(to_a, to_b).min() >= 30.0 - 1e-6
    assert np.minimum(to_a, to_b).min() < 31.0  # and the ends are reached
    # a box lies flat side down: its width across its axis in the palm's plane
    box = draw.kind == OBJECT_KINDS.index("box")
    across = box_across(draw, *object_in_hand(draw, bones)).numpy()
    assert box.any() and (across[~box] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(across[box], axis=1), draw.width[box], atol=1e-9)
    np.testing.assert_allclose((across * (b - a)).sum(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(across[:, 2], 0.0, atol=1e-12)


def test_a_box_renders_as_a_box():
    # A 100 x 60 x 30 mm pack 500 mm away, its 30 mm side towards the camera, edges rounded
    # by 4 mm: a flat front at 485 mm whose outline is the box's.
    held = HeldObject(np.array([-50.0 + 4, 0.0, 500.0]), np.array([50.0 - 4, 0.0, 500.0]), 4.0,
                      "box", np.array([0.0, 30.0 - 4, 0.0]), 15.0 - 4)  # fmt: skip
    assert held.box and held.vector().shape == (12,)
    assert held.bounding_radius() == pytest.approx(4.0 + math.hypot(26.0, 11.0))
    depth = render_depth(held.primitives(OBJECT), NYU)
    u, v = np.rint(NYU.xyz_to_uvd(np.array([0.0, 0.0, 500.0]))[:2]).astype(int)
    front = depth[v - 20 : v + 21, u - 30 : u + 31]  # well inside the face
    np.testing.assert_allclose(front, 485.0, atol=0.05)
    hit = np.isfinite(depth) & (depth > 0)
    cols, rows = np.flatnonzero(hit.any(0)), np.flatnonzero(hit.any(1))
    width_px = 100.0 * NYU.fx / 485.0  # the outline at its nearest face ...
    assert abs((cols[-1] - cols[0] + 1) - width_px) < 4
    assert abs((rows[-1] - rows[0] + 1) - 60.0 * NYU.fy / 485.0) < 4
    # ... with square corners, not a capsule's round ends: the corner pixel is the box's
    du, dv = int(45 * NYU.fx / 485.0), int(25 * NYU.fy / 485.0)
    assert hit[v - dv, u - du] and hit[v + dv, u + du]


def test_grasp_poses_close_the_fingers_onto_the_object_and_keep_the_root():
    bones = base_shape("average_adult")
    gen = torch.Generator().manual_seed(0)
    poses = sample_poses(gen, 4, pose_sampler_config(HandSynthConfig())).numpy()
    draw = draw_objects(np.random.default_rng(3), 4)
    out, ends, across, pinched = grasp_poses(poses, bones, draw)
    assert out.shape == (4, 30) and out.dtype == np.float32 and ends.shape == (4, 2, 3)
    assert across.shape == (4, 3)
    np.testing.assert_array_equal(out[:, :6], poses[:, :6])  # the root put back
    assert not np.allclose(out[:, 6:], poses[:, 6:], atol=1e-3)  # the fingers moved
    np.testing.assert_allclose(np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1), draw.length,
                               atol=1e-6)  # fmt: skip
    pose = torch.from_numpy(out.astype(np.float64))
    hands = bones.to(dtype=torch.float64)
    a, b = (torch.from_numpy(np.ascontiguousarray(ends[:, k])) for k in (0, 1))
    obj = GraspObject(a, b, torch.from_numpy(draw.radius), torch.from_numpy(across),
                      torch.from_numpy(draw.thick))  # fmt: skip
    # in the camera frame: no bone inside the object beyond the tolerance ...
    assert (hand_overlap(pose, hands, obj) <= CONTACT_TOLERANCE_MM + 0.05).all()
    # ... and at least three fingers end on its surface
    chains = forward_kinematics(pose, hands).joints[:, 1:].unflatten(1, (5, 4))
    radius = hands.radius[:, :, 1:].flatten(1).expand(4, -1)
    gaps = obj.distance(chains[:, :, :3].flatten(1, 2), chains[:, :, 1:].flatten(1, 2), radius)
    touching = (gaps.view(4, 5, 3).abs() <= CONTACT_TOLERANCE_MM + 0.05).any(dim=2)
    assert (touching.sum(dim=1) >= 3).all(), gaps.view(4, 5, 3)


def test_precision_grasps_hold_the_object_between_the_pads_away_from_the_palm():
    bones = base_shape("average_adult")
    gen = torch.Generator().manual_seed(1)
    n = 96
    poses = sample_poses(gen, n, pose_sampler_config(HandSynthConfig())).numpy()
    poses[:, :6] = 0.0  # the hand frame: the objects come back in it
    draw = draw_objects(np.random.default_rng(4), n)
    small = (
        draw.radius + draw.thick <= np.array([PRECISION_MAX_MM[k] for k in OBJECT_KINDS])[draw.kind]
    )
    draw = replace(draw, precision=small, thumb=np.where(small, -0.1, draw.thumb))
    out, ends, across, pinched = grasp_poses(poses, bones, draw)
    assert not pinched[~small].any()
    # most pinches fit the open hand (0.58 of these 43; until grasp_poses stopped writing into
    # the caller's draw, this mask was the accepted pinches themselves and read 1.0)
    assert pinched[small].mean() > 0.5
    assert np.array_equal(draw.precision, small)  # the draw is left as drawn
    for k in range(len(OBJECT_KINDS)):
        assert pinched[draw.kind == k].any(), OBJECT_KINDS[k]
    pose = torch.from_numpy(out.astype(np.float64))
    hands = bones.to(dtype=torch.float64)
    obj = GraspObject(*(torch.from_numpy(np.ascontiguousarray(x)) for x in (
        ends[:, 0], ends[:, 1], draw.radius, across, draw.thick)))  # fmt: skip
    assert float(hand_overlap(pose, hands, obj).max()) <= CONTACT_TOLERANCE_MM + 1e-6
    assert float(hand_self_overlap(pose, hands).max()) <= CONTACT_TOLERANCE_MM + 1e-6
    p, q, r = _chain_capsules(forward_kinematics(pose, hands), hands)
    gaps = obj.distance(p.flatten(1, 2), q.flatten(1, 2), r.flatten(1)).view(n, 5, 3)
    pin = torch.from_numpy(pinched)
    # the index's pad on the object; the thumb's on it too, or (a few) resting on a finger that
    # wraps it
    assert float(gaps[pin, 1, 2].abs().max()) <= CONTACT_TOLERANCE_MM + 1e-6
    thumb_on_object = gaps[pin, 0].amin(-1) <= CONTACT_TOLERANCE_MM + 1e-6
    thumb_on_finger = -hand_self_overlap(pose, hands)[pin] <= CONTACT_TOLERANCE_MM + 1e-6
    assert bool((thumb_on_object | thumb_on_finger).all())
    assert float(thumb_on_object.double().mean()) > 0.9
    # held by the fingers, not on the palm: every pinched object clear of the palm
    pp, pq, pr = palm_capsules(pose, hands)
    palm = obj.distance(pp, pq, pr).amin(1)
    assert float(palm[torch.from_numpy(pinched)].min()) > 5.0


def test_clear_of_camera_keeps_objects_more_than_30_mm_before_it():
    ends = np.array([
        [[0.0, 0.0, 100.0], [0.0, 0.0, 300.0]],  # 50 mm clear
        [[0.0, 0.0, 400.0], [50.0, 0.0, 75.0]],  # its near end 25 mm from the camera
        [[0.0, 0.0, 80.0], [0.0, 0.0, 80.0]],  # a sphere exactly 30 mm away
        [[0.0, 0.0, 600.0], [0.0, 0.0, 600.0]],  # a sphere 20 mm away
    ])  # fmt: skip
    radius = np.array([50.0, 50.0, 50.0, 580.0])
    np.testing.assert_array_equal(clear_of_camera(ends, radius), [True, False, False, False])


@pytest.mark.slow
def test_held_objects_end_on_the_fingers_and_hide_them():
    frames = content_frames(2, 8, object_prob=1.0, body_prob=0.0, wall_prob=0.0)
    obj_id, occluded = SCENE_PARTS.index("object"), 0
    for f in frames:
        assert list(f.extra["content"]) == [0, 1, 0, 0]
        a, b, r, across, thick = (
            torch.from_numpy(f.extra["objects"][0, k].astype(np.float64)[None])
            for k in (slice(0, 3), slice(3, 6), 6, slice(7, 10), 10)
        )
        obj = GraspObject(a, b, r, across, thick)
        bones = bones_from_vector(f.shape).to(dtype=torch.float64)
        pose = torch.from_numpy(f.pose.astype(np.float64))[None]
        # no bone inside the object by more than the grasp's tolerance (float32 storage aside)
        assert float(hand_overlap(pose, bones, obj)[0]) <= CONTACT_TOLERANCE_MM + 0.05
        fk = forward_kinematics(pose, bones)
        chains = fk.joints[:, 1:].unflatten(1, (5, 4))
        gaps = obj.distance(chains[:, :, :3].flatten(1, 2), chains[:, :, 1:].flatten(1, 2),
                            bones.radius[:, :, 1:].flatten(1))  # fmt: skip
        touching = (gaps.view(5, 3).abs() <= CONTACT_TOLERANCE_MM + 0.05).any(dim=1)
        # fingers end on its surface: a power grasp's three or more, a pinch's thumb and index
        if f.extra["objects"][0, 11]:
            assert bool(touching[0] and touching[1]), gaps.view(5, 3)
        else:
            assert int(touching.sum()) >= 3, gaps.view(5, 3)
        # the labels are the grasped pose's kinematics
        np.testing.assert_allclose(fk.joints[0].numpy(), f.joints_xyz["canonical21"], atol=1e-3)
        part = f.extra["part"]
        assert (part == obj_id).sum() > 300
        uvd = NYU.xyz_to_uvd(f.joints_xyz["canonical21"].astype(np.float64))
        u, v = np.rint(uvd[:, :2]).astype(int).T
        occluded += int(((part[v, u] == obj_id) & (f.clean[v, u] < uvd[:, 2] - 8.0)).sum())
    assert occluded > 0  # the object hides finger joints behind it

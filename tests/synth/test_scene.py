"""synth/scene.py: scene and sensor, rendered directly or by the generator where asserted."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from handvox.camera import Camera
from handvox.geometry import segment_distance
from handvox.hand.kinematics import HandBones, forward_kinematics
from handvox.hand.shapes import base_shape
from handvox.synth import scene as synth_scene
from handvox.synth.frame import frame_rng
from handvox.synth.hand import bones_from_vector, hand_frame_generator
from handvox.synth.hand_config import HAND_PARTS, SCENE_FLAGS, SCENE_PARTS, HandSynthConfig
from handvox.synth.primitives import DEFAULT_RADII, PART_NAMES
from handvox.synth.scene import (
    add_noise,
    in_view,
    joint_radii,
    render_hand_scene,
    thickness_scale,
)
from handvox.synth.skinned import libhand_hand
from tests.synth.scenes import HAND_IDS, NYU, content_frames, open_hand, palm_visibility

ICVL_CAMERA = Camera.preset("icvl")
# The hand alone: no forearm, body or wall.
BARE = HandSynthConfig(forearm_prob=0.0, body_prob=0.0, wall_prob=0.0)


def test_the_hand_is_visible_in_the_clean_depth(frames):
    vis = np.array([palm_visibility(f.clean, f.joints_xyz["canonical21"]) for f in frames])
    # the palm may hide behind curled fingers or be seen edge on, but not everywhere
    assert vis.any(axis=1).all() and vis.mean() > 0.7
    for f in frames:
        part = f.extra["part"]
        hand = np.isin(part, HAND_IDS)
        assert hand.sum() > 500  # even a child's hand seen edge on at 1.1 m
        assert (f.clean[hand] > 0).all() and (f.clean[part == 0] == 0).all()


def test_noise_is_realistic_on_the_hand(frames):
    stds = []
    for f in frames:
        part = f.extra["part"]
        hand = np.isin(part, HAND_IDS)
        assert (f.raw[f.clean == 0] == 0).all()  # nothing measured where nothing is
        assert np.array_equal(f.raw, np.rint(f.raw))  # integer millimetres, as NYU stores
        lost = np.mean(f.raw[hand] == 0)
        assert 0.01 < lost < 0.35  # edges, shadows, holes; most of the hand is measured
        inner = ndimage.binary_erosion(part == HAND_PARTS.index("palm"), iterations=3)
        inner &= f.raw > 0
        if inner.sum() > 100:
            d = f.raw[inner] - f.clean[inner]
            assert np.abs(np.median(d)) < 3.0
            stds.append(np.std(d))
    # Kinect v1 at 0.6-1.1 m: ~1.5-3 mm axial noise plus 2-4 mm disparity steps
    assert len(stds) > 8 and 0.5 < np.median(stds) < 4.0 and max(stds) < 8.0


def test_scene_parts_follow_the_configuration():
    full = replace(HandSynthConfig(), body_prob=1.0, head_prob=1.0, wall_prob=1.0,
                   wall_depth_mm=(1300.0, 1600.0), wall_tilt_deg=0.0)  # fmt: skip
    gen = hand_frame_generator(full)
    for i in range(3):
        f = gen(i, frame_rng(1, i))
        assert list(f.extra["scene"]) == [1, 1, 1, 1]
        part = f.extra["part"]
        for name in ("forearm", "body", "background"):
            assert (part == HAND_PARTS.index(name)).sum() > 500, name
        assert (part > 0).all() and (f.clean > 0).all()  # the wall fills the frame
        hand_z = f.joints_xyz["canonical21"][:, 2].max()
        assert f.clean[part == HAND_PARTS.index("body")].min() > hand_z
        assert np.median(f.clean[part == HAND_PARTS.index("background")]) > 1250
        assert (f.raw[part == HAND_PARTS.index("background")] > 0).mean() > 0.5
    # a wall beyond the sensor's 2 m is not seen, in the clean depth either
    far = hand_frame_generator(replace(full, wall_depth_mm=(2100.0, 2500.0)))(0, frame_rng(1, 0))
    assert far.extra["scene"][3] == 1 and (far.clean <= 2000).all()
    assert not (far.extra["part"] == HAND_PARTS.index("background")).any()
    bare = hand_frame_generator(replace(full, forearm_prob=0.0, body_prob=0.0, wall_prob=0.0))
    f = bare(0, frame_rng(1, 0))
    assert list(f.extra["scene"]) == [0, 0, 0, 0]
    assert set(np.unique(f.extra["part"])) <= {0, *HAND_IDS}
    assert HAND_PARTS[1:] == PART_NAMES and len(SCENE_FLAGS) == 4


def test_sensor_families_per_frame_are_deterministic_and_measure_the_hand():
    cfg = HandSynthConfig(sensor="all", wall_prob=0.0, body_prob=0.0)
    gen = hand_frame_generator(cfg)
    units = set()
    for i in range(8):
        f = gen(i, frame_rng(5, i))
        assert f.raw.shape == (480, 640) and f.raw.dtype == np.float32
        hand = np.isin(f.extra["part"], HAND_IDS)
        assert 0.0 <= np.mean(f.raw[hand] == 0) < 0.5  # most of the hand is measured
        ok = hand & (f.raw > 0)
        assert np.abs(np.median(f.raw[ok] - f.clean[ok])) < 3.0
        units.add(float(np.gcd.reduce(np.rint(f.raw[f.raw > 0] * 8).astype(np.int64))) / 8)
        again = pickle.loads(pickle.dumps(gen))(i, frame_rng(5, i))
        np.testing.assert_array_equal(again.raw, f.raw)
        np.testing.assert_array_equal(again.clean, f.clean)
    assert units & {0.125, 0.25} and 1.0 in units  # coded light's and Kinect's units both drawn
    # the sensor draws after the scene: the same hands and scenes as without one
    plain = hand_frame_generator(HandSynthConfig(wall_prob=0.0, body_prob=0.0))(3, frame_rng(5, 3))
    np.testing.assert_array_equal(plain.clean, gen(3, frame_rng(5, 3)).clean)


def test_sensor_camera_measures_at_the_device_and_regrids():
    gen = hand_frame_generator(HandSynthConfig(sensor=("time_of_flight", "active_stereo"),
                                               sensor_camera=True, wall_prob=1.0))  # fmt: skip
    for i in range(3):
        f = gen(i, frame_rng(2, i))
        assert f.raw.shape == (480, 640)
        hand = np.isin(f.extra["part"], HAND_IDS)
        assert np.mean(f.raw[hand] > 0) > 0.5


def test_close_hands_get_sensors_that_reach_them():
    """ICVL's 200-500 mm and every sensor at its own resolution: without the draw by reach, a
    Kinect (from 400-500 mm) or a D415 at 1280x720 (from ~440 mm) leaves such hands unmeasured."""
    cam = ICVL_CAMERA
    gen = hand_frame_generator(HandSynthConfig.for_camera(cam, sensor="all", sensor_camera=True))
    for i in range(12):
        f = gen(i, frame_rng(9, i))
        hand = np.isin(f.extra["part"], HAND_IDS)
        assert np.mean(f.raw[hand] > 0) > 0.5, i


def test_joint_radii_of_the_average_adult_are_the_primitives_defaults():
    adult = base_shape("average_adult")
    r = joint_radii(adult)
    assert r.shape == (21,)
    np.testing.assert_allclose(r, DEFAULT_RADII, atol=1.0)
    assert r[0] == pytest.approx(20.0)  # the forearm's half-thickness at the wrist
    tips = adult.radius[0, :, 3].double().numpy()
    np.testing.assert_allclose(r[[4, 8, 12, 16, 20]], 0.92 * tips, rtol=1e-6)  # distal phalanx
    thick = HandBones(adult.base, adult.length, 1.5 * adult.radius, adult.cmc)
    np.testing.assert_allclose(joint_radii(thick), 1.5 * r, rtol=1e-6)  # wrist entry included


def test_thickness_scale_is_the_mean_bone_radius_relative_to_the_average_adults():
    adult = base_shape("average_adult")
    assert thickness_scale(adult) == pytest.approx(1.0)
    double = HandBones(adult.base, adult.length, 2.0 * adult.radius, adult.cmc)
    assert thickness_scale(double) == pytest.approx(2.0)
    longer = HandBones(adult.base, 1.5 * adult.length, adult.radius, adult.cmc)
    assert thickness_scale(longer) == pytest.approx(1.0)  # lengths do not count
    child, large = (thickness_scale(base_shape(s)) for s in ("child_7y", "large_male"))
    assert child < 0.8 and large > 1.05


def test_in_view_needs_every_point_inside_the_image_by_the_margins():
    z = 1000.0
    m = 2.0 + 12.0 * NYU.fx / z  # margin_px, and margin_mm seen at z

    def at(u: float, v: float) -> list[float]:
        return [(u - NYU.cx) * z / NYU.fx, (v - NYU.cy) * z / NYU.fy, z]

    inside = np.array([at(320.0, 240.0), at(m + 0.5, m + 0.5), at(639 - m - 0.5, 479 - m - 0.5)])
    assert in_view(inside, NYU, 2.0, 12.0)
    outside = ((m - 0.5, 240.0), (639 - m + 0.5, 240.0), (320.0, m - 0.5), (320.0, 479 - m + 0.5))
    for u, v in outside:
        assert not in_view(np.array([at(320.0, 240.0), at(u, v)]), NYU, 2.0, 12.0), (u, v)
        assert in_view(np.array([at(u, v)]), NYU, 0.0, 0.0), (u, v)  # inside without margins
    assert not in_view(np.array([at(-0.6, 240.0)]), NYU, 0.0, 0.0)
    assert not in_view(np.array([[0.0, 0.0, -500.0]]), NYU, 0.0, 0.0)  # behind the camera
    assert not in_view(np.array([[0.0, 0.0, 0.5]]), NYU, 0.0, 0.0)  # not 1 mm before it
    batch = np.stack([inside, inside, inside])  # (..., M, 3) -> (...)
    batch[1, 2, 0] = -1000.0
    np.testing.assert_array_equal(in_view(batch, NYU, 2.0, 12.0), [True, False, True])
    assert in_view(batch[:, :, None], NYU, 2.0, 12.0).shape == (3, 3)  # point by point


def test_render_hand_scene_draws_the_hand_alone_when_nothing_else_is_drawn():
    j = open_hand()  # palm towards the camera, 500 mm away
    bones = base_shape("average_adult")
    s = render_hand_scene(j, bones, np.random.default_rng(0), BARE)
    assert list(s.flags) == [0, 0, 0, 0] and s.extra == {}
    assert s.clean.shape == (480, 640) and s.clean.dtype == np.float32
    assert s.part.dtype == np.uint8 and set(np.unique(s.part)) == {0, *HAND_IDS}
    hand = s.clean > 0
    np.testing.assert_array_equal(hand, s.part > 0)  # depth exactly where a part is
    assert 470.0 < s.clean[hand].min() and s.clean[hand].max() < 510.0
    np.testing.assert_allclose(np.linalg.norm(s.normals[hand], axis=-1), 1.0, atol=1e-4)
    uvd = NYU.xyz_to_uvd(j)
    u, v = np.rint(uvd[:, :2]).astype(int).T
    # every joint on the hand (a fingertip, the end of its pad, within a pixel of it) ...
    assert np.isin(ndimage.grey_dilation(s.part, size=3)[v, u], HAND_IDS).all()
    on = np.isin(s.part[v, u], HAND_IDS)
    assert on.sum() >= 17
    gap = uvd[on, 2] - s.clean[v[on], u[on]]  # ... its surface before the joint, by its radius
    assert (gap > 0.0).all() and (gap < 20.0).all()
    again = render_hand_scene(j, bones, np.random.default_rng(0), BARE)
    np.testing.assert_array_equal(again.clean, s.clean)
    np.testing.assert_array_equal(again.part, s.part)
    no_part = render_hand_scene(j, bones, np.random.default_rng(0), replace(BARE, part_image=False))
    assert no_part.part is None
    np.testing.assert_array_equal(no_part.clean, s.clean)


def test_render_hand_scene_adds_forearm_body_and_a_wall_within_the_sensors_range():
    j, bones = open_hand(), base_shape("average_adult")
    cfg = replace(BARE, forearm_prob=1.0, body_prob=1.0, head_prob=1.0)
    s = render_hand_scene(j, bones, np.random.default_rng(0), cfg)
    assert list(s.flags) == [1, 1, 1, 0]
    for name in ("forearm", "body"):
        assert (s.part == HAND_PARTS.index(name)).sum() > 1000, name
    assert s.clean[s.part == HAND_PARTS.index("body")].min() > j[:, 2].max()  # behind the hand
    flat = replace(BARE, wall_prob=1.0, wall_depth_mm=(1300.0, 1301.0), wall_tilt_deg=0.0)
    w = render_hand_scene(j, bones, np.random.default_rng(0), flat)
    wall = w.part == HAND_PARTS.index("background")
    assert list(w.flags) == [0, 0, 0, 1] and (w.part > 0).all() and wall.mean() > 0.8
    assert w.clean[wall].min() >= 1300.0 and w.clean[wall].max() <= 1301.0  # facing the camera
    assert (w.normals[wall] == [0.0, 0.0, -1.0]).all()
    # beyond NYU's 2 m (sensor_max_depth_mm) the wall is left out
    beyond = replace(flat, wall_depth_mm=(2500.0, 2501.0))
    far = render_hand_scene(j, bones, np.random.default_rng(0), beyond)
    assert far.flags[3] == 1 and set(np.unique(far.part)) == {0, *HAND_IDS}
    kinect = render_hand_scene(j, bones, np.random.default_rng(0), replace(beyond, noise="kinect"))
    assert (kinect.part == HAND_PARTS.index("background")).mean() > 0.8  # Kinect reaches 4 m


def test_a_hand_raised_by_the_head_has_the_face_beside_it_at_its_depth():
    # The real SR305 frames of a person waving (docs/benchmarks.md): the face as near as the
    # hand, beside it. Before the chest (the default) the body is well behind the hand.
    j, bones = open_hand(), base_shape("average_adult")
    body = HAND_PARTS.index("body")
    cfg = replace(BARE, forearm_prob=1.0, body_prob=1.0, head_prob=1.0, hand_by_head_prob=1.0)
    rows = (j[:, 1].min(), j[:, 1].max())  # the hand's height in the camera frame (y down)
    for seed in range(4):
        s = render_hand_scene(j, bones, np.random.default_rng(seed), cfg)
        v, _ = np.nonzero(s.part == body)
        z = s.clean[s.part == body]
        # the face's front lies within 120 mm behind the hand's farthest joint, never before it
        # by more than the sampled 20 mm
        assert j[:, 2].max() - 21.0 <= z.min() <= j[:, 2].max() + 101.0, seed
        # and it is beside the hand: body pixels at the hand's height (its rows in the image)
        cam_v = (
            NYU.fy * rows[0] / j[:, 2].mean() + NYU.cy,
            NYU.fy * rows[1] / j[:, 2].mean() + NYU.cy,
        )
        assert ((v > cam_v[0]) & (v < cam_v[1])).sum() > 500, seed
        # not in front of it: the hand's own pixels keep their parts
        assert (np.isin(s.part, HAND_IDS)).sum() > 3000, seed
    plain = replace(cfg, hand_by_head_prob=0.0)
    s = render_hand_scene(j, bones, np.random.default_rng(0), plain)
    assert s.clean[s.part == body].min() > j[:, 2].max() + 60.0
    with pytest.raises(ValueError, match="hand_by_head_prob"):
        replace(cfg, hand_by_head_prob=1.5)


def test_a_mesh_hand_needs_the_frames_pose():
    with pytest.raises(ValueError, match="needs the frame's pose"):
        render_hand_scene(open_hand(), base_shape("average_adult"), np.random.default_rng(0),
                          replace(BARE, mesh_prob=1.0))  # fmt: skip


def test_add_noise_measures_the_scene_with_the_configs_noise_or_sensor_family():
    s = render_hand_scene(open_hand(), base_shape("average_adult"), np.random.default_rng(0), BARE)
    hand = s.clean > 0
    # Kinect as NYU stores it (whole mm), and the SR305's 1/8 mm unit (coded light)
    for cfg, unit in ((BARE, 1.0), (replace(BARE, sensor="coded_light"), 0.125)):
        raw = add_noise(s, np.random.default_rng(1), cfg)
        assert raw.shape == s.clean.shape and raw.dtype == np.float32
        assert (raw[~hand] == 0).all()  # nothing measured where nothing is
        assert not (raw == 2001.0).any()  # invalid pixels are 0, not NYU's 2001
        ok = hand & (raw > 0)
        assert ok.sum() > 0.9 * hand.sum()  # most of the hand is measured
        assert abs(np.median(raw[ok] - s.clean[ok])) < 3.0 and not (raw[ok] == s.clean[ok]).all()
        np.testing.assert_array_equal(np.rint(raw / unit) * unit, raw)
        np.testing.assert_array_equal(add_noise(s, np.random.default_rng(1), cfg), raw)
        assert not np.array_equal(add_noise(s, np.random.default_rng(2), cfg), raw)
    assert (raw[ok] != np.rint(raw[ok])).any()  # coded light's finer unit is used


# --- scene content: the mesh hand, objects, a second hand; the egocentric and desk views -------


@pytest.mark.slow
def test_mesh_frames_keep_their_labels_inside_the_mesh():
    frames = content_frames(4, 6, mesh_prob=1.0, body_prob=0.0, wall_prob=0.0)
    hand_or_arm = [*HAND_IDS, HAND_PARTS.index("forearm")]
    for f in frames:
        assert list(f.extra["content"]) == [1, 0, 0, 0]
        pose = torch.from_numpy(f.pose)[None]
        joints = forward_kinematics(pose, bones_from_vector(f.shape)).joints[0].numpy()
        np.testing.assert_allclose(joints, f.joints_xyz["canonical21"], atol=1e-3)
        part = ndimage.grey_dilation(f.extra["part"], size=3)
        uvd = NYU.xyz_to_uvd(f.joints_xyz["canonical21"].astype(np.float64))
        u, v = np.rint(uvd[:, :2]).astype(int).T
        assert np.isin(part[v, u], hand_or_arm).all()  # every joint inside the silhouette
        hand = np.isin(f.extra["part"], HAND_IDS)
        assert hand.sum() > 500 and (f.clean[hand] > 0).all()
        assert (f.extra["part"] == HAND_PARTS.index("forearm")).sum() > 500
        lost = np.mean(f.raw[hand] == 0)
        assert lost < 0.5  # the noise model measures the mesh (normals from its faces)


def test_mesh_forearm_starts_inside_the_stub_with_its_cross_section():
    lh = libhand_hand()
    pose = lh.rest_pose[0].numpy().copy()
    pose[2] = 500.0
    verts = synth_scene._posed_mesh(pose, lh.bones)
    arm = synth_scene._mesh_arm(verts, pose, 220.0)
    stub = verts[synth_scene._stub_end()] - pose[:3]  # hand frame = camera frame here
    lo, hi = stub.min(axis=0), stub.max(axis=0)
    start = arm.start - pose[:3]
    assert lo[1] < start[1] < hi[1]  # starts inside the stub's end: its cap is covered
    assert abs(arm.radius[0] - (hi[2] - lo[2]) / 2) < 1e-6
    assert abs(arm.half_width[0] + arm.radius[0] - (hi[0] - lo[0]) / 2) < 1e-6
    np.testing.assert_allclose(arm.axis, [0.0, 1.0, 0.0], atol=1e-9)


@pytest.mark.slow
def test_egocentric_forearm_enters_from_the_lower_border():
    frames = content_frames(6, 10, view="egocentric", wall_prob=0.0)
    bottom = 0
    for f in frames:
        arm = f.extra["part"] == HAND_PARTS.index("forearm")
        border = np.concatenate([arm[-1], arm[0], arm[:, 0], arm[:, -1]])
        assert border.any()  # it leaves the image
        bottom += bool(arm[-1].any())
        assert f.extra["scene"][1] == 0  # no body before a head-mounted camera
        assert "content" not in f.extra
    assert bottom >= 0.7 * len(frames)


@pytest.mark.slow
def test_desk_table_lies_behind_the_hand():
    frames = content_frames(8, 6, view="desk", near_object_prob=1.0)
    obj_id = SCENE_PARTS.index("object")
    for f in frames:
        part = f.extra["part"]
        table = part == HAND_PARTS.index("background")
        assert f.extra["scene"][3] == 1 and f.extra["scene"][1] == 0 and table.mean() > 0.5
        v, u = np.nonzero(table)
        pts = NYU.uvd_to_xyz(np.stack([u, v, f.clean[v, u]], -1)[::50].astype(np.float64))
        centre = pts.mean(axis=0)
        normal = np.linalg.svd(pts - centre)[2][2]
        normal *= -np.sign(normal @ centre)  # towards the camera
        height = (f.joints_xyz["canonical21"] - centre) @ normal
        assert (height > 3.0).all()  # every joint above the table
        arm = part == HAND_PARTS.index("forearm")
        va, ua = np.nonzero(arm)
        arm_pts = NYU.uvd_to_xyz(np.stack([ua, va, f.clean[va, ua]], -1).astype(np.float64))
        assert ((arm_pts - centre) @ normal > -1.0).all()  # the arm on or above it
        if f.extra["content"][2]:  # a near object rests on the table, in sight
            assert (part == obj_id).sum() > 100
            a, b, r, thick = (f.extra["objects"][1, s] for s in (slice(0, 3), slice(3, 6), 6, 10))
            r = r + thick  # a box lies on a flat side: its axis its half thickness up
            assert abs((a - centre) @ normal - r) < 3.0 and abs((b - centre) @ normal - r) < 3.0


@pytest.mark.slow
def test_second_hands_and_near_objects_are_not_labels():
    frames = content_frames(3, 10, second_hand_prob=1.0, near_object_prob=1.0, mesh_prob=0.5,
                            body_prob=0.0, wall_prob=0.0)  # fmt: skip
    other, seen = SCENE_PARTS.index("other_hand"), 0
    for f in frames:
        flags = f.extra["content"]
        joints = f.joints_xyz["canonical21"]
        second = f.extra["second_hand"]
        if flags[3]:
            seen += 1
            assert (f.extra["part"] == other).sum() > 100
            assert np.linalg.norm(second - joints, axis=1).min() > 10.0  # apart, not touching
        else:
            assert not second.any()
        if flags[2]:
            a, b, r = (f.extra["objects"][1, s] for s in (slice(0, 3), slice(3, 6), 6))
            gap = segment_distance(*(torch.from_numpy(x.astype(np.float64)) for x in (
                np.broadcast_to(a, (21, 3)), np.broadcast_to(b, (21, 3)), joints,
                joints))).numpy() - r  # fmt: skip
            assert gap.min() > 0.0 and gap.min() < 260.0  # near the hand, not in it
    assert seen >= 5

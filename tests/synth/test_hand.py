"""The synthetic hand generator: kinematic hand, rendered scene, sensor noise, the synth CLI."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.geometry import segment_distance
from handvox.hand.grasp import CONTACT_TOLERANCE_MM, GraspObject, hand_overlap
from handvox.hand.kinematics import forward_kinematics, pose_limits
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape
from handvox.io.synthetic import SyntheticDataset
from handvox.synth import hand as synth_hand
from handvox.synth import scene as synth_scene
from handvox.synth.frame import frame_rng
from handvox.synth.hand import bones_from_vector, check_poses, hand_frame_generator
from handvox.synth.hand_config import (
    HAND_PARTS,
    MARKER_SETS,
    SCENE_FLAGS,
    SCENE_PARTS,
    HandSynthConfig,
    part_names,
    pose_sampler_config,
)
from handvox.synth.primitives import PART_NAMES
from handvox.synth.scene import in_view
from handvox.synth.skinned import libhand_hand

NYU = Camera.preset("nyu")
CANON_PALM = [0, 5, 9, 13, 17]  # wrist and the finger MCPs
HAND_IDS = [HAND_PARTS.index(p) for p in ("palm", "thumb", "index", "middle", "ring", "little")]
JOINTS = {"canonical21": 21, "nyu14": 14, "icvl16": 16, "msra21": 21}


@pytest.fixture(scope="module")
def frames():
    gen = hand_frame_generator()
    return [gen(i, frame_rng(7, i)) for i in range(16)]


def palm_visibility(clean: np.ndarray, joints: np.ndarray, camera: Camera = NYU) -> np.ndarray:
    """Whether the clean depth at the projected wrist and MCPs is within 30 mm of the joint."""
    uvd = camera.xyz_to_uvd(joints[CANON_PALM].astype(np.float64))
    u, v = np.rint(uvd[:, 0]).astype(int), np.rint(uvd[:, 1]).astype(int)
    return np.abs(clean[v, u] - uvd[:, 2]) < 30.0


def test_frames_hold_every_joint_set_in_view(frames):
    for f in frames:
        assert sorted(f.joints_xyz) == sorted(MARKER_SETS)
        for name, j in f.joints_xyz.items():
            assert j.shape == (JOINTS[name], 3) and j.dtype == np.float32
            uvd = NYU.xyz_to_uvd(j)
            assert (uvd[:, 0] >= 0).all() and (uvd[:, 0] <= 639).all(), name
            assert (uvd[:, 1] >= 0).all() and (uvd[:, 1] <= 479).all(), name
            assert (j[:, 2] > 400).all() and (j[:, 2] < 1300).all()
        # the kinematic markers agree with the canonical joints where they coincide
        np.testing.assert_allclose(f.joints_xyz["msra21"][0], f.joints_xyz["canonical21"][0])
        assert in_view(f.joints_xyz["canonical21"], NYU, 2.0, 12.0)


def test_labels_are_the_kinematics_of_the_stored_pose_and_shape(frames):
    lo, hi = pose_limits()
    for f in frames:
        assert f.shape_id in SHAPE_NAMES and f.shape.shape == (62,)
        bones = bones_from_vector(f.shape)
        pose = torch.as_tensor(f.pose)[None]
        assert ((pose[0, 6:] >= lo[6:] - 1e-5) & (pose[0, 6:] <= hi[6:] + 1e-5)).all()
        joints = forward_kinematics(pose, bones).joints[0].numpy()
        np.testing.assert_allclose(joints, f.joints_xyz["canonical21"], atol=1e-3)
    # continuous variation around the base shapes: no two hands alike
    assert len({f.shape.tobytes() for f in frames}) == len(frames)


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


def test_generator_is_deterministic_and_picklable(frames):
    gen = pickle.loads(pickle.dumps(hand_frame_generator()))
    again = gen(3, frame_rng(7, 3))
    f = frames[3]
    for key in ("raw", "clean", "pose", "shape"):
        np.testing.assert_array_equal(getattr(again, key), getattr(f, key))
    for key in MARKER_SETS:
        np.testing.assert_array_equal(again.joints_xyz[key], f.joints_xyz[key])
    np.testing.assert_array_equal(again.extra["part"], f.extra["part"])
    other = gen(3, frame_rng(8, 3))
    assert not np.array_equal(other.clean, f.clean)


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


def test_sensor_settings_are_checked_and_default_meta_is_unchanged():
    d = HandSynthConfig().to_dict()
    assert "sensor" not in d and "sensor_camera" not in d  # datasets made before resume
    s = HandSynthConfig(sensor=["coded_light"], sensor_camera=True).to_dict()
    assert s["sensor"] == ["coded_light"] and s["sensor_camera"] is True
    assert HandSynthConfig(sensor="all").sensor == (
        "structured_light", "time_of_flight", "active_stereo", "coded_light")  # fmt: skip
    with pytest.raises(ValueError, match="unknown sensor family"):
        HandSynthConfig(sensor="kinect")
    with pytest.raises(ValueError, match="sensor_camera"):
        HandSynthConfig(sensor_camera=True)


@pytest.mark.slow
@pytest.mark.integration
def test_cli_synth_writes_a_hand_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--frames", "6", "--seed", "4", "--chunk-size", "3",
            "--quiet", "--wall-prob", "0"]  # fmt: skip
    assert main(args + ["--preview"]) == 0
    assert "wrote 6 frames in 2 chunks" in capsys.readouterr().out
    ds = SyntheticDataset(out, require_complete=True)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"]["name"] == "hand" and meta["generator"]["config"]["wall_prob"] == 0
    assert sorted(meta["joint_sets"]) == sorted(MARKER_SETS)
    vis = []
    for i in range(len(ds)):
        rec = ds[i]
        assert rec.depth.shape == (480, 640) and rec.clean_depth is not None
        vis.append(palm_visibility(rec.clean_depth, rec.joints_xyz))
        # the labels project onto measured hand pixels
        u, v = np.rint(rec.joints_uvd[CANON_PALM, :2]).astype(int).T
        assert np.isin(ds.frame_extras(i)["part"][v, u], HAND_IDS).mean() >= 0.4
    assert np.mean(vis) > 0.6
    sheet = np.asarray(Image.open(out / "preview.png"))
    assert sheet.shape == (512, 1024, 3) and sheet[:256, :256].std() > 10

    # same seed, another folder, two worker processes: the same frames
    pool = ["--out", str(tmp_path / "again"), "--workers", "2"]
    assert main(args[:1] + pool + args[3:]) == 0
    again = SyntheticDataset(tmp_path / "again", require_complete=True)
    for i in range(len(ds)):
        for key in ds.images:
            np.testing.assert_array_equal(again.image(i, key), ds.image(i, key))
    np.testing.assert_array_equal(again.joints_xyz, ds.joints_xyz)
    assert main(["synth", "--out", str(out), "--frames", "6", "--seed", "4", "--chunk-size", "3",
                 "--quiet", "--body-prob", "1"]) == 2  # fmt: skip
    assert "another dataset" in capsys.readouterr().err


# --- scene content: the mesh hand, objects, a second hand; the egocentric and desk views -------


def content_frames(seed: int, n: int, **kw) -> list:
    gen = hand_frame_generator(HandSynthConfig(**kw))
    return [gen(i, frame_rng(seed, i)) for i in range(n)]


def test_content_settings_are_checked_and_default_meta_is_unchanged(monkeypatch):
    d = HandSynthConfig().to_dict()
    old = {"camera", "view", "depth_mm", "articulation", "shapes", "shape_variation",
           "forearm_prob", "body_prob", "head_prob", "wall_prob", "wall_depth_mm",
           "wall_tilt_deg", "noise", "margin_px", "margin_mm", "forearm_max_toward_deg",
           "max_tries", "pose_block", "part_image"}  # fmt: skip
    assert set(d) == old  # datasets made before the content options resume
    assert part_names(HandSynthConfig(mesh_prob=0.5)) == HAND_PARTS  # the meta's part list
    assert part_names(HandSynthConfig(object_prob=0.1)) == SCENE_PARTS
    assert SCENE_PARTS[len(HAND_PARTS) :] == ("object", "other_hand")
    assert HandSynthConfig(near_object_prob=0.5).to_dict()["near_object_prob"] == 0.5
    with pytest.raises(ValueError, match="object_prob"):
        HandSynthConfig(object_prob=1.5)
    with pytest.raises(ValueError, match="unknown view"):
        HandSynthConfig(view="overhead")
    # Default frames never enter the new code, and hold the extras they always held.
    monkeypatch.setattr(synth_scene, "_build_content", None)
    f = hand_frame_generator()(0, frame_rng(3, 0))
    assert sorted(f.extra) == ["part", "scene"]


@pytest.mark.slow
def test_held_objects_end_on_the_fingers_and_hide_them():
    frames = content_frames(2, 8, object_prob=1.0, body_prob=0.0, wall_prob=0.0)
    obj_id, occluded = SCENE_PARTS.index("object"), 0
    for f in frames:
        assert list(f.extra["content"]) == [0, 1, 0, 0]
        a, b, r = (torch.from_numpy(f.extra["objects"][0, k].astype(np.float64)[None])
                   for k in (slice(0, 3), slice(3, 6), 6))  # fmt: skip
        obj = GraspObject(a, b, r)
        bones = bones_from_vector(f.shape).to(dtype=torch.float64)
        pose = torch.from_numpy(f.pose.astype(np.float64))[None]
        # no bone inside the object by more than the grasp's tolerance (float32 storage aside)
        assert float(hand_overlap(pose, bones, obj)[0]) <= CONTACT_TOLERANCE_MM + 0.05
        fk = forward_kinematics(pose, bones)
        chains = fk.joints[:, 1:].unflatten(1, (5, 4))
        gaps = obj.distance(chains[:, :, :3].flatten(1, 2), chains[:, :, 1:].flatten(1, 2),
                            bones.radius[:, :, 1:].flatten(1))  # fmt: skip
        touching = (gaps.view(5, 3).abs() <= CONTACT_TOLERANCE_MM + 0.05).any(dim=1)
        assert int(touching.sum()) >= 3, gaps.view(5, 3)  # fingers end on its surface
        # the labels are the grasped pose's kinematics
        np.testing.assert_allclose(fk.joints[0].numpy(), f.joints_xyz["canonical21"], atol=1e-3)
        part = f.extra["part"]
        assert (part == obj_id).sum() > 300
        uvd = NYU.xyz_to_uvd(f.joints_xyz["canonical21"].astype(np.float64))
        u, v = np.rint(uvd[:, :2]).astype(int).T
        occluded += int(((part[v, u] == obj_id) & (f.clean[v, u] < uvd[:, 2] - 8.0)).sum())
    assert occluded > 0  # the object hides finger joints behind it


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


def test_egocentric_views_keep_the_wrist_and_most_joints_in_view():
    ego = HandSynthConfig(view="egocentric")
    third = replace(ego, view="generic")
    g = torch.Generator().manual_seed(0)
    poses = sample_poses(g, 400, pose_sampler_config(ego))
    bones = base_shape("average_adult")
    sets, ok = check_poses(poses, bones, ego)
    j = sets["canonical21"]
    inside = in_view(j[:, :, None], NYU, 0.0, 0.0)
    assert in_view(j[ok, :1], NYU, ego.margin_px, ego.margin_mm).all()
    assert (inside[ok].sum(axis=1) >= 16).all()
    cut = ok & ~inside.all(axis=1)
    assert cut.any()  # hands cut by the image border are kept ...
    assert not check_poses(poses[cut], bones, third)[1].any()  # ... where third person's are not
    # the forearm points at a head-mounted camera: that is no reason to redraw here
    arm = j[ok, 0] - j[ok, 9]
    assert (arm[:, 2] < -np.sin(np.radians(ego.forearm_max_toward_deg)) * np.linalg.norm(
        arm, axis=1)).mean() > 0.5  # fmt: skip


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
        if f.extra["content"][2]:  # a near object rests on the table
            assert (part == obj_id).sum() > 100
            a, b, r = (f.extra["objects"][1, s] for s in (slice(0, 3), slice(3, 6), 6))
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


@pytest.mark.slow
def test_content_frames_are_deterministic_and_picklable():
    cfg = HandSynthConfig(view="egocentric", mesh_prob=0.5, object_prob=0.5,
                          near_object_prob=0.5, second_hand_prob=0.5)  # fmt: skip
    gen = hand_frame_generator(cfg)
    first = [gen(i, frame_rng(12, i)) for i in (5, 70)]  # a block frame and another block's
    synth_hand._BLOCKS.clear()  # and from a cold cache, in another process's order
    again = pickle.loads(pickle.dumps(gen))
    for i, f in zip((70, 5), first[::-1], strict=True):
        g = again(i, frame_rng(12, i))
        for key in ("raw", "clean", "pose", "shape"):
            np.testing.assert_array_equal(getattr(g, key), getattr(f, key))
        for key in f.extra:
            np.testing.assert_array_equal(g.extra[key], f.extra[key])
    # frames drawn one by one (pose_block 1) hold objects too
    one = hand_frame_generator(replace(cfg, pose_block=1, view="nyu", object_prob=1.0))
    f = one(0, frame_rng(1, 0))
    assert f.extra["content"][1] == 1


@pytest.mark.slow
@pytest.mark.integration
def test_cli_synth_takes_the_scene_content_options(tmp_path):
    out = tmp_path / "ds"
    args = ["synth", "--out", str(out), "--frames", "3", "--seed", "2", "--quiet", "--view",
            "desk", "--object-prob", "1", "--near-object-prob", "0.5"]  # fmt: skip
    assert main(args) == 0
    cfg = json.loads((out / "meta.json").read_text())["generator"]["config"]
    assert cfg["view"] == "desk" and cfg["object_prob"] == 1.0 and cfg["near_object_prob"] == 0.5
    assert "mesh_prob" not in cfg and "second_hand_prob" not in cfg
    ds = SyntheticDataset(out, require_complete=True)
    assert (ds.frame_extras(0)["content"][:2] == [0, 1]).all()
    bad = ["transfer", "--from", str(out), "--shapes", "1", "--views", "1", "--out",
           str(tmp_path / "t"), "--camera", "nyu", "--object-prob", "1", "--quiet"]  # fmt: skip
    assert main(bad) == 2  # transfer keeps the labelled articulation

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
from handvox.hand.kinematics import forward_kinematics, pose_limits
from handvox.hand.shapes import SHAPE_NAMES
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.frame import frame_rng
from handvox.synth.hand import (
    HAND_PARTS,
    MARKER_SETS,
    SCENE_FLAGS,
    HandSynthConfig,
    bones_from_vector,
    hand_frame_generator,
    in_view,
)
from handvox.synth.primitives import PART_NAMES

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

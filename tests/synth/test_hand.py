"""synth/hand.py, the generator end to end: tests asserting labels, determinism, the CLI."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from handvox.cli.main import main
from handvox.hand.kinematics import forward_kinematics, pose_limits
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape
from handvox.io.synthetic import SyntheticDataset
from handvox.synth import hand as synth_hand
from handvox.synth.frame import frame_rng
from handvox.synth.hand import bones_from_vector, check_poses, hand_frame_generator
from handvox.synth.hand_config import (
    MARKER_SETS,
    SCENE_PARTS,
    HandSynthConfig,
    pose_sampler_config,
)
from handvox.synth.scene import in_view
from tests.synth.scenes import CANON_PALM, HAND_IDS, NYU, palm_visibility

JOINTS = {"canonical21": 21, "nyu14": 14, "icvl16": 16, "msra21": 21}


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


# --- scene content: the views' pose checks, content frames' determinism, the CLI's options ------


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


def test_wave_views_raise_the_hand_beside_the_face_and_hang_the_arm_out_of_the_image():
    cfg = HandSynthConfig(view="wave", body_prob=1.0, head_prob=1.0, hand_by_head_prob=1.0)
    gen = hand_frame_generator(cfg)
    forearm = SCENE_PARTS.index("forearm")
    to_border = 0
    for i in range(8):
        f = gen(i, frame_rng(7, i))
        uv = NYU.xyz_to_uvd(f.joints_xyz["canonical21"])[:, :2]
        d = uv[9] - uv[0]  # wrist to middle MCP: fingers up the image, within 50 degrees
        assert -d[1] / np.linalg.norm(d) >= np.cos(np.radians(50.0)) - 1e-6
        assert f.extra["scene"].tolist()[:3] == [1, 1, 1]  # forearm, body, head
        rows, cols = np.nonzero(f.extra["part"] == forearm)
        assert rows.mean() > uv[0, 1]  # the arm hangs below the wrist
        to_border += int(rows.max() == 479 or cols.min() == 0 or cols.max() == 639)
    assert to_border >= 7  # out of the image (at most an arm's 700 mm when the hand is far)


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


def test_a_grasp_without_its_object_keeps_the_pose_and_leaves_the_object_out():
    shown = HandSynthConfig(view="egocentric", object_prob=1.0)
    hidden = replace(shown, held_object_shown=False)
    obj = SCENE_PARTS.index("object")
    seen = 0
    for i in range(4):
        a = hand_frame_generator(shown)(i, frame_rng(5, i))
        b = hand_frame_generator(hidden)(i, frame_rng(5, i))
        np.testing.assert_array_equal(a.pose, b.pose)  # the same grasp ...
        assert a.extra["content"][1] == 1
        seen += int((a.extra["part"] == obj).any())
        assert b.extra["content"][1] == 0 and not (b.extra["part"] == obj).any()  # ... no object
        assert not b.extra["objects"][0].any()
        hand = np.isin(b.extra["part"], HAND_IDS)
        assert hand.sum() >= np.isin(a.extra["part"], HAND_IDS).sum()  # nothing hides the hand
    assert seen >= 2
    assert "held_object_shown" not in shown.to_dict() and not hidden.to_dict()["held_object_shown"]


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
    assert "held_object_shown" not in cfg
    hide = tmp_path / "hidden"
    assert main(["synth", "--out", str(hide), "--frames", "1", "--seed", "2", "--quiet",
                 "--object-prob", "1", "--hide-held-object"]) == 0  # fmt: skip
    meta = json.loads((hide / "meta.json").read_text())["generator"]["config"]
    assert meta["object_prob"] == 1.0 and meta["held_object_shown"] is False
    ds = SyntheticDataset(out, require_complete=True)
    assert (ds.frame_extras(0)["content"][:2] == [0, 1]).all()
    bad = ["transfer", "--from", str(out), "--shapes", "1", "--views", "1", "--out",
           str(tmp_path / "t"), "--camera", "nyu", "--object-prob", "1", "--quiet"]  # fmt: skip
    assert main(bad) == 2  # transfer keeps the labelled articulation

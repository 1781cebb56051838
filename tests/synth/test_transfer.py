"""Pose transfer (the paper's augmentation) on real NYU test labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.errors import DataError
from handvox.hand.bvh import read_bvh
from handvox.hand.hand_bvh import bvh_to_pose
from handvox.hand.kinematics import forward_kinematics
from handvox.io.labels import read_labels, write_labels
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.hand import bones_from_vector
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.transfer import (
    POSES_NAME,
    RecoveredPoses,
    TransferGenerator,
    load_source,
    run_transfer,
)

SOURCE_FRAMES, K, V, SEED = 20, 2, 2, 5
FAST_FIT = {"rounds": 1, "steps": 60}  # a quick subject fit; the test checks the transfer


def labels(shared):
    return shared / "data/nyu/nyu_test_groundtruth_label.txt"


@pytest.fixture(scope="module")
def transferred(shared, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    res = run_transfer(labels(shared), out, K, V, dataset="nyu", seed=SEED,
                       frames_limit=SOURCE_FRAMES, fit_options=FAST_FIT, chunk_size=32,
                       progress=False)  # fmt: skip
    assert res.frames_written == SOURCE_FRAMES * K * V
    return out, SyntheticDataset(out, require_complete=True)


def pairwise(joints: np.ndarray) -> np.ndarray:
    """``(..., 21, 3)`` -> ``(..., 21, 21)`` distances between all joints."""
    return np.linalg.norm(joints[..., :, None, :] - joints[..., None, :, :], axis=-1)


def test_source_labels_are_read_in_the_camera_frame(shared):
    src = load_source(labels(shared), "nyu", frames_limit=5)
    raw = read_labels(labels(shared)).joints[:5]
    assert src.joint_set == "nyu14" and src.camera == Camera.preset("nyu")
    np.testing.assert_allclose(Camera.preset("nyu").xyz_to_uvd(src.joints_xyz), raw, atol=1e-6)
    assert load_source(labels(shared), None, frames_limit=5).info["dataset"] == "nyu"


@pytest.mark.slow
def test_frames_map_to_source_shape_and_view(transferred):
    out, ds = transferred
    assert len(ds) == SOURCE_FRAMES * K * V and ds.meta["generator"]["name"] == "transfer"
    idx = ds.frame_indices
    expected = np.stack([idx // (K * V), (idx // V) % K, idx % V], 1)
    np.testing.assert_array_equal(ds.extras["transfer"], expected)
    poses = RecoveredPoses.load(out / POSES_NAME)
    assert len(poses.pose) == SOURCE_FRAMES and poses.frame_ids[0].endswith(":0")
    np.testing.assert_allclose(ds.extras["ik_residual_mm"], poses.residual[expected[:, 0]])
    assert poses.residual.mean() < 8.0  # the IK explains the labels


@pytest.mark.slow
def test_articulation_is_kept_and_the_view_replaced(transferred):
    out, ds = transferred
    src = ds.extras["transfer"][:, 0]
    poses = RecoveredPoses.load(out / POSES_NAME)
    # every frame carries its source frame's joint angles exactly ...
    np.testing.assert_allclose(ds.poses[:, 6:], poses.pose[src, 6:], atol=1e-6)
    # ... with a new global rotation and position for every view
    for s in range(SOURCE_FRAMES):
        roots = ds.poses[src == s, :6]
        assert len(np.unique(roots.round(3), axis=0)) == K * V
    # canonical joints: the same shape seen from two views differs by a rigid motion only
    joints = SyntheticDataset(out, joint_set="canonical21").joints_xyz.reshape(
        SOURCE_FRAMES, K, V, 21, 3
    )
    d = pairwise(joints.astype(np.float64))
    np.testing.assert_allclose(d[:, :, 0], d[:, :, 1], atol=0.01)
    assert not np.allclose(joints[:, :, 0], joints[:, :, 1], atol=1.0)


@pytest.mark.slow
def test_shapes_differ_across_slots_and_not_across_views(transferred):
    out, ds = transferred
    shapes = ds.shapes.reshape(SOURCE_FRAMES, K, V, -1)
    np.testing.assert_array_equal(shapes[:, :, 0], shapes[:, :, 1])
    length = bones_from_vector(ds.shapes).length.reshape(SOURCE_FRAMES, K, V, 5, 3)
    diff = (length[:, 0, 0] - length[:, 1, 0]).abs().amax(dim=(1, 2))
    assert (diff > 1.0).all()  # every source frame gets two clearly different hands
    ids = ds.shape_ids.reshape(SOURCE_FRAMES, K, V)
    assert (ids[:, 0, 0] != ids[:, 1, 0]).all()  # distinct base shapes per slot
    # same articulation + different bones: different distances, same joint angles (FK)
    pose = torch.as_tensor(ds.poses[::V])
    bones = bones_from_vector(ds.shapes[::V])
    np.testing.assert_allclose(
        forward_kinematics(pose, bones).joints.numpy(),
        SyntheticDataset(out, joint_set="canonical21").joints_xyz[::V],
        atol=1e-3,
    )


@pytest.mark.slow
def test_transferred_frames_show_the_hand(transferred):
    _, ds = transferred
    near = []
    for i in range(0, len(ds), 7):
        rec = ds[i]
        uvd = rec.joints_uvd[[0, 5, 9, 13, 17]]
        u, v = np.rint(uvd[:, :2]).astype(int).T
        near.append(np.abs(rec.clean_depth[v, u] - uvd[:, 2]) < 30)
        assert (rec.depth > 0).sum() > 1000
    assert np.mean(near) > 0.7


def test_generator_is_a_function_of_the_frame_index():
    art = np.zeros((3, 24), np.float32)
    config = HandSynthConfig(body_prob=0.0, wall_prob=0.0)
    gen = TransferGenerator(art, np.zeros(3, np.float32), 2, 3, 1, config)
    assert len(gen) == 18 and gen.locate(13) == (2, 0, 1)
    a = gen(13, np.random.default_rng([1, 13]))
    b = gen(13, np.random.default_rng([1, 13]))
    np.testing.assert_array_equal(a.raw, b.raw)
    np.testing.assert_array_equal(a.shape, gen(12, np.random.default_rng([1, 12])).shape)


@pytest.mark.slow
@pytest.mark.integration
def test_cli_resumes_from_stored_poses_and_writes_bvh(transferred, shared, tmp_path, capsys):
    out, ds = transferred
    args = ["transfer", "--from", str(labels(shared)), "--dataset", "nyu", "--shapes", str(K),
            "--views", str(V), "--out", str(out), "--seed", str(SEED), "--frames-limit",
            str(SOURCE_FRAMES), "--chunk-size", "32", "--quiet"]  # fmt: skip
    bvh_dir = tmp_path / "bvh"
    assert main(args + ["--bvh", str(bvh_dir)]) == 0
    assert "wrote 0 frames in 0 chunks" in capsys.readouterr().out  # all chunks complete
    files = sorted(bvh_dir.glob("*.bvh"))
    assert [f.name for f in files] == [f"s0_000000-{SOURCE_FRAMES - 1:06d}.bvh"]
    poses = RecoveredPoses.load(out / POSES_NAME)
    back = bvh_to_pose(read_bvh(files[0]), poses.subjects[0].bones)
    np.testing.assert_allclose(back, poses.pose, atol=1e-3)
    # other IK settings on the same folder: refused, not silently mixed
    assert main(args + ["--subjects", "2"]) == 2
    assert "other labels or IK settings" in capsys.readouterr().err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator"]["source"]["frames"] == SOURCE_FRAMES


def test_bad_sources(tmp_path, shared):
    with pytest.raises(DataError, match="joints a line"):
        load_source(labels(shared), "icvl", frames_limit=2)
    bad = tmp_path / "bad.txt"
    write_labels(bad, np.zeros((2, 5, 3)))
    with pytest.raises(DataError, match="name the dataset"):
        load_source(bad)
    with pytest.raises(DataError, match="no such file"):
        load_source(tmp_path / "missing.txt", "nyu")


@pytest.mark.slow
@pytest.mark.integration
def test_cli_camera_and_hand_shapes(shared, tmp_path, capsys):
    # NYU labels rendered through the ICVL camera, from one base shape only
    out = tmp_path / "icvlcam"
    args = ["transfer", "--from", str(labels(shared)), "--dataset", "nyu", "--shapes", "2",
            "--views", "1", "--out", str(out), "--frames-limit", "3", "--chunk-size", "8",
            "--camera", "icvl", "--hand-shapes", "broad", "--quiet"]  # fmt: skip
    assert main(args) == 0
    ds = SyntheticDataset(out, require_complete=True)
    assert ds.camera == Camera.preset("icvl") and ds[0].depth.shape == (240, 320)
    assert set(ds.shape_ids) == {"broad"} and len(ds) == 6
    assert main([*args[:-3], "--hand-shapes", "broad,huge", "--quiet"]) == 2
    assert "choose among" in capsys.readouterr().err

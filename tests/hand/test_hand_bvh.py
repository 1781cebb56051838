"""The kinematic hand as BVH (handvox.hand.hand_bvh): skeleton, round trips, retargeting."""

import numpy as np
import pytest
import torch

from handvox.hand.bvh import BVH, bvh_positions, decode_motion, read_bvh, write_bvh
from handvox.hand.hand_bvh import (
    BVH_NAMES,
    bones_from_bvh,
    bvh_offsets,
    bvh_to_hand,
    bvh_to_pose,
    hand_to_bvh,
    retarget,
)
from handvox.hand.kinematics import HandBones, forward_kinematics, random_pose, zero_pose
from handvox.hand.shapes import SHAPE_NAMES, base_shape, sample_shape
from handvox.joints import CANONICAL21

F64 = torch.float64


def _poses(n: int, seed: int) -> torch.Tensor:
    """Random in-limit articulations with roots in front of a camera, any orientation."""
    gen = torch.Generator().manual_seed(seed)
    pose = random_pose(n, gen, F64)
    pose[:, :3] = torch.randn(n, 3, generator=gen, dtype=F64) * 80 + torch.tensor([0, 0, 600.0])
    pose[:, 3:6] = torch.randn(n, 3, generator=gen, dtype=F64)
    return pose


@pytest.fixture(scope="module")
def avg():
    return base_shape("average_adult", F64)


def test_skeleton_layout(avg, tmp_path):
    bvh = hand_to_bvh(zero_pose(2, F64), avg)
    assert bvh.names == list(BVH_NAMES) and len(bvh.joints) == 20
    assert bvh.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert np.all(bvh.joints[0].offset == 0) and bvh.motion.shape == (2, 6 + 19 * 3)
    assert [bvh.names[i] for i in bvh.end_site_joints()] == [
        "thumb_ip", "index_dip", "middle_dip", "ring_dip", "little_dip"
    ]  # fmt: skip
    # the rest pose is all-zero channels, and OFFSETs are the rest bone vectors (hand frame)
    np.testing.assert_allclose(bvh.motion, 0.0, atol=1e-9)
    rest = forward_kinematics(zero_pose(1, F64), avg).joints[0].numpy()
    np.testing.assert_allclose(bvh_to_hand(bvh)[0], rest, atol=1e-9)
    offsets, ends = bvh_offsets(avg)
    thumb_mcp = BVH_NAMES.index("thumb_mcp")
    np.testing.assert_allclose(offsets[thumb_mcp], rest[2] - rest[1], atol=1e-12)
    np.testing.assert_allclose(ends[2], rest[12] - rest[11], atol=1e-12)  # middle DIP -> tip
    write_bvh(tmp_path / "rest.bvh", bvh)
    text = (tmp_path / "rest.bvh").read_text()
    assert "ROOT wrist" in text and "JOINT index_cmc" in text and text.count("End Site") == 5


def test_round_trip_through_file(avg, tmp_path):
    pose = _poses(40, seed=1)
    bvh = hand_to_bvh(pose.float(), avg, frame_time=0.02)  # float32 input is accepted
    path = tmp_path / "hand.bvh"
    write_bvh(path, hand_to_bvh(pose, avg, frame_time=0.02))
    back = read_bvh(path)
    assert back.frame_time == pytest.approx(0.02) and back.num_frames == 40
    want = forward_kinematics(pose, avg).joints.numpy()
    np.testing.assert_allclose(bvh_to_hand(back), want, rtol=0, atol=1e-4)
    assert np.abs(bvh_to_hand(bvh) - want).max() < 0.05  # float32 pose: float32 accuracy
    # the 30 DOF come back, with the bones given or read from the OFFSETs
    got = bvh_to_pose(back, avg)
    np.testing.assert_allclose(got[:, :3], pose[:, :3].numpy(), atol=1e-5)
    np.testing.assert_allclose(got[:, 6:], pose[:, 6:].numpy(), atol=1e-6)
    again = forward_kinematics(torch.from_numpy(got), avg).joints.numpy()
    np.testing.assert_allclose(again, want, atol=1e-4)
    np.testing.assert_allclose(bvh_to_pose(back)[:, 6:], pose[:, 6:].numpy(), atol=1e-6)
    # numpy input, one frame
    one = hand_to_bvh(pose[0].numpy(), avg)
    np.testing.assert_allclose(bvh_to_hand(one)[0], want[0], atol=1e-9)


def test_bones_from_offsets(avg):
    hand = sample_shape(torch.Generator().manual_seed(4), 1, "broad", dtype=F64)
    bvh = hand_to_bvh(_poses(3, seed=2), hand)
    got = bones_from_bvh(bvh)
    for name in ("base", "length", "cmc"):
        np.testing.assert_allclose(getattr(got, name), getattr(hand, name), atol=1e-9)
    assert got.radius.shape == (1, 5, 4)


def test_scale_bones_keeps_the_pose(avg):
    """Per-bone OFFSET factors change only lengths: the 30-DOF pose stays exact."""
    pose = _poses(10, seed=3)
    bvh = hand_to_bvh(pose, avg)
    factors = np.random.default_rng(0).uniform(0.8, 1.25, size=len(bvh.joints))
    scaled = bvh.scale_bones(factors)
    np.testing.assert_array_equal(scaled.motion, bvh.motion)
    np.testing.assert_allclose(bvh_to_pose(scaled)[:, 6:], pose[:, 6:].numpy(), atol=1e-9)
    # a uniform factor is the same hand scaled about the wrist
    twice = bvh_to_hand(bvh.scale_bones(1.3))
    want = forward_kinematics(pose, avg.scaled(1.3)).joints.numpy()
    np.testing.assert_allclose(twice, want, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPE_NAMES)
def test_retarget_to_base_shapes(avg, shape, tmp_path):
    pose = _poses(12, seed=5)
    bvh = hand_to_bvh(pose, avg)
    new = base_shape(shape, F64)
    out = retarget(bvh, new)
    write_bvh(tmp_path / "new.bvh", out)
    out = read_bvh(tmp_path / "new.bvh")
    # joint rotations (every channel) kept, bone lengths the new hand's
    np.testing.assert_allclose(out.motion, bvh.motion, atol=5e-7)
    offsets, ends = bvh_offsets(new)
    pos = bvh_positions(out, end_sites=True)
    parents = np.concatenate([out.parents, out.end_site_joints()])
    want = np.linalg.norm(np.concatenate([offsets, ends]), axis=-1)
    got = np.linalg.norm(pos[:, 1:] - pos[:, parents[1:]], axis=-1)
    np.testing.assert_allclose(got, np.broadcast_to(want[1:], got.shape), atol=1e-4)
    assert (bones_from_bvh(out).length - new.length).abs().max() < 1e-5
    # the wrist stays; the 30-DOF pose moves only by the metacarpals' change of direction
    got = bvh_to_hand(out)
    np.testing.assert_allclose(got[:, 0], pose[:, :3].numpy(), atol=1e-5)
    fk = forward_kinematics(pose, new).joints.numpy()
    assert np.abs(got - fk).max() < 2.5
    assert np.degrees(np.abs(bvh_to_pose(out, new)[:, 6:] - pose[:, 6:].numpy())).max() < 2.0
    # re-exporting the recovered pose is the exact retarget
    exact = hand_to_bvh(bvh_to_pose(bvh, avg), new)
    np.testing.assert_allclose(bvh_to_hand(exact), fk, atol=1e-6)


def test_bad_input(avg):
    with pytest.raises(ValueError, match="batch 1"):
        hand_to_bvh(zero_pose(1, F64), HandBones.cat([avg, avg]))
    with pytest.raises(ValueError, match=r"\(F, 30\)"):
        hand_to_bvh(torch.zeros(30, 29), avg)
    bad = zero_pose(2, F64)
    bad[1, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        hand_to_bvh(bad, avg)
    bvh = hand_to_bvh(zero_pose(1, F64), avg)
    joints = list(bvh.joints)
    joints[7].end_site = None  # index_dip's End Site removed: no index tip
    broken = BVH(joints, bvh.frame_time, bvh.motion)
    with pytest.raises(ValueError, match="End Site under index_dip"):
        bvh_to_hand(broken)


def test_independent_parser_reads_our_hand(avg, tmp_path):
    bvhio = pytest.importorskip(
        "bvhio", reason="bvhio (independent BVH parser, a dev dependency) is not installed"
    )
    glm = pytest.importorskip("glm", reason="pyglm (bvhio's maths) is not installed")
    pose = _poses(4, seed=9)
    path = tmp_path / "hand.bvh"
    write_bvh(path, hand_to_bvh(pose, avg))
    ours = read_bvh(path)
    flat = bvhio.readAsBvh(str(path))
    layout = [j for j, _, _ in flat.Root.layout()]
    assert [j.Name for j in layout] == list(BVH_NAMES)
    assert flat.FrameCount == 4
    ends = [list(layout[i].EndSite) for i in ours.end_site_joints()]
    np.testing.assert_allclose(ends, bvh_offsets(avg)[1], atol=1e-5)
    rotations, _ = decode_motion(ours)
    for f in range(4):
        got = [np.array(glm.mat3_cast(j.Keyframes[f].Rotation).to_list()).T for j in layout]
        np.testing.assert_allclose(got, rotations[f], atol=1e-6)
    # world positions of bvhio's hierarchy are the kinematic hand's joints
    root = bvhio.readAsHierarchy(str(path))
    want = forward_kinematics(pose, avg).joints.numpy()
    in_bvh = [(i, BVH_NAMES.index(n)) for i, n in enumerate(CANONICAL21.names) if n in BVH_NAMES]
    canon, mine = (list(x) for x in zip(*in_bvh, strict=True))
    positions = bvh_positions(ours)
    for f in range(4):
        root.loadPose(f)
        got = np.array([list(j.PositionWorld) for j, _, _ in root.layout()])
        # pyglm is float32: ~1e-7 relative to ~700 mm
        np.testing.assert_allclose(got, positions[f], atol=1e-3)
        np.testing.assert_allclose(got[mine], want[f, canon], atol=1e-3)

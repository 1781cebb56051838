"""BVH files (handvox.hand.bvh): round trips, layout, Euler channels, kinematics, bad files."""

import os

import numpy as np
import pytest

from handvox.errors import DataError
from handvox.hand.bvh import (
    BVH,
    BVHJoint,
    bvh_positions,
    channels_from_matrices,
    decode_motion,
    encode_motion,
    global_transforms,
    matrices_from_channels,
    read_bvh,
    write_bvh,
)

ROOT_CHANNELS = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
ORDERS = ("ZXY", "XYZ", "YZX", "ZYX", "XZY", "YXZ")


def _elementary(axis: str, deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return {
        "X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def hand_bvh(frames: int = 6, seed: int = 0, root_z: float = 400.0) -> BVH:
    """21 joints: a wrist root with 6 channels, 5 chains of 4 joints with 3 rotation channels
    each (a different order per finger), End Sites at the fingertips, random angles."""
    rng = np.random.default_rng(seed)
    joints = [BVHJoint("wrist", -1, [0, 0, 0], ROOT_CHANNELS)]
    for f, finger in enumerate(("thumb", "index", "middle", "ring", "little")):
        parent = 0
        for k in range(4):
            base = [0, 0, 30] if k else [20 * f - 40, 0, 70]
            offset = rng.normal(size=3) * 8 + base
            tip = rng.normal(size=3) * 3 + [0, 0, 20] if k == 3 else None
            channels = tuple(a + "rotation" for a in ORDERS[f])
            joints.append(BVHJoint(f"{finger}{k}", parent, offset, channels, tip))
            parent = len(joints) - 1
    root = rng.normal(size=(frames, 3)) * 60 + [0, 0, root_z]
    angles = rng.uniform(-180, 180, size=(frames, 3 + 60))
    return BVH(joints, 1 / 30, np.concatenate([root, angles], axis=1))


def test_write_read_round_trip(tmp_path):
    bvh = hand_bvh()
    path = tmp_path / "hand.bvh"
    write_bvh(path, bvh, precision=6)
    back = read_bvh(path)
    assert back.names == bvh.names
    np.testing.assert_array_equal(back.parents, bvh.parents)
    assert [j.channels for j in back.joints] == [j.channels for j in bvh.joints]
    np.testing.assert_allclose(back.offsets, bvh.offsets, atol=5e-7)
    np.testing.assert_array_equal(back.end_site_joints(), [4, 8, 12, 16, 20])
    for a, b in zip(back.joints, bvh.joints, strict=True):
        assert (a.end_site is None) == (b.end_site is None)
        if a.end_site is not None:
            np.testing.assert_allclose(a.end_site, b.end_site, atol=5e-7)
    assert back.motion.shape == (6, 66) and back.num_channels == 66
    np.testing.assert_allclose(back.motion, bvh.motion, atol=5e-7)
    assert back.frame_time == pytest.approx(1 / 30, abs=1e-8)
    pos, pos_back = bvh_positions(bvh, end_sites=True), bvh_positions(back, end_sites=True)
    assert pos.shape == (6, 26, 3)
    np.testing.assert_allclose(pos_back, pos, atol=1e-4)
    # a second write of what was read is byte-identical: nothing drifts through a cycle
    write_bvh(tmp_path / "again.bvh", back, precision=6)
    assert (tmp_path / "again.bvh").read_bytes() == path.read_bytes()


def test_file_layout(tmp_path):
    bvh = hand_bvh(frames=2)
    write_bvh(tmp_path / "tab.bvh", bvh)
    write_bvh(tmp_path / "sp.bvh", bvh, precision=3, indent="  ")
    tab = (tmp_path / "tab.bvh").read_text().splitlines()
    assert tab[:5] == [
        "HIERARCHY",
        "ROOT wrist",
        "{",
        "\tOFFSET 0.000000 0.000000 0.000000",
        "\tCHANNELS 6 " + " ".join(ROOT_CHANNELS),
    ]
    assert "\t\t\t\t\tEnd Site" in tab and tab[-5:-2] == [
        "MOTION",
        "Frames: 2",
        "Frame Time: 0.03333333",
    ]
    assert len(tab[-1].split()) == 66
    sp = (tmp_path / "sp.bvh").read_text().splitlines()
    assert sp[5] == "  JOINT thumb0" and sp[-1].split()[0] == f"{bvh.motion[1, 0]:.3f}"
    np.testing.assert_allclose(read_bvh(tmp_path / "sp.bvh").motion, bvh.motion, atol=5e-4)


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "hand.bvh"
    write_bvh(path, hand_bvh(frames=1))
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savetxt", broken)
    with pytest.raises(OSError, match="disk full"):
        write_bvh(path, hand_bvh(frames=3, seed=1))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["hand.bvh"]
    # the file gets the usual permissions, not those of a private temporary file
    (tmp_path / "plain").write_text("")
    assert path.stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_channel_order_is_intrinsic_and_positions_add_to_offset():
    channels = ("Xposition", "Zrotation", "Xrotation", "Yrotation", "Yposition", "Zposition")
    joints = [
        BVHJoint("root", -1, [1, 2, 3], channels),
        BVHJoint("child", 0, [10, -4, 7], ("Yrotation", "Xrotation"), end_site=[0, 5, 1]),
    ]
    motion = np.array([[5, 30, -50, 70, 6, 7, 25, -35]], dtype=float)
    pos = bvh_positions(BVH(joints, 0.01, motion), end_sites=True)[0]
    r_root = _elementary("Z", 30) @ _elementary("X", -50) @ _elementary("Y", 70)
    r_child = _elementary("Y", 25) @ _elementary("X", -35)
    root = np.array([1 + 5, 2 + 6, 3 + 7])
    child = root + r_root @ [10, -4, 7]
    tip = child + r_root @ r_child @ [0, 5, 1]
    np.testing.assert_allclose(pos, [root, child, tip], atol=1e-12)


@pytest.mark.parametrize("order", ORDERS)
def test_euler_matrix_round_trip(order):
    rng = np.random.default_rng(3)
    q = rng.normal(size=(50, 21, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rot = np.stack(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    ).transpose(2, 3, 0, 1)
    # gimbal lock (middle angle +-90) still reproduces the matrix
    locked = matrices_from_channels(np.array([[40.0, 90.0, -20.0], [10.0, -90.0, 75.0]]), order)
    rot[0, :2] = locked
    names = tuple(a + "rotation" for a in order)
    angles = channels_from_matrices(rot, names)
    assert angles.shape == (50, 21, 3) and np.abs(angles).max() <= 180
    np.testing.assert_allclose(matrices_from_channels(angles, order), rot, atol=1e-9, rtol=0)
    # the matrices are exactly the products of the elementary rotations, in channel order
    a = angles[7, 3]
    expected = (
        _elementary(order[0], a[0]) @ _elementary(order[1], a[1]) @ _elementary(order[2], a[2])
    )
    np.testing.assert_allclose(rot[7, 3], expected, atol=1e-12)


def test_fewer_rotation_channels():
    hinge = matrices_from_channels(np.array([[35.0], [-120.0]]), "X")
    np.testing.assert_allclose(channels_from_matrices(hinge, ["Xrotation"]), [[35.0], [-120.0]])
    two = matrices_from_channels(np.array([[20.0, -60.0]]), "ZX")
    np.testing.assert_allclose(channels_from_matrices(two, "ZX"), [[20.0, -60.0]], atol=1e-9)
    with pytest.raises(ValueError, match="not expressible"):
        channels_from_matrices(matrices_from_channels(np.array([10.0]), "Y"), "X")
    with pytest.raises(ValueError, match="distinct axes"):
        channels_from_matrices(np.eye(3), "XX")


def test_encode_decode_motion_and_global_transforms():
    bvh = hand_bvh(frames=4, seed=5)
    rotations, translations = decode_motion(bvh)
    assert rotations.shape == (4, 21, 3, 3) and translations.shape == (4, 21, 3)
    np.testing.assert_allclose(translations[:, 0], bvh.motion[:, :3])
    assert not translations[:, 1:].any()
    motion = encode_motion(bvh.joints, rotations, translations)
    np.testing.assert_allclose(
        matrices_from_channels(motion[:, 3:].reshape(4, 21, 3)[:, 1:2], "ZXY"),
        rotations[:, 1:2],
        atol=1e-9,
    )
    again = BVH(bvh.joints, bvh.frame_time, motion)
    np.testing.assert_allclose(decode_motion(again)[0], rotations, atol=1e-9)
    np.testing.assert_allclose(bvh_positions(again), bvh_positions(bvh), atol=1e-9)
    # world transforms are the product along the chain wrist -> index0 -> index1
    world_r, world_p = global_transforms(bvh)
    off = bvh.offsets
    i0, i1 = bvh.joint_index("index0"), bvh.joint_index("index1")
    p_i1 = translations[:, 0] + np.einsum(
        "fab,fb->fa", rotations[:, 0], off[i0] + np.einsum("fab,b->fa", rotations[:, i0], off[i1])
    )
    np.testing.assert_allclose(world_p[:, i1], p_i1, atol=1e-9)
    np.testing.assert_allclose(
        world_r[:, i1], rotations[:, 0] @ rotations[:, i0] @ rotations[:, i1]
    )
    # a translation on a joint without position channels cannot be written
    translations[:, 3, 0] = 1.0
    with pytest.raises(ValueError, match="thumb2 lacks position channels"):
        encode_motion(bvh.joints, rotations, translations)


def test_changing_offsets_changes_bone_lengths_exactly():
    bvh = hand_bvh(frames=5, seed=2)
    factors = np.random.default_rng(2).uniform(0.7, 1.3, size=21)
    scaled = bvh.scale_bones(factors)
    np.testing.assert_array_equal(scaled.motion, bvh.motion)
    pos = bvh_positions(scaled, end_sites=True)
    lengths = np.linalg.norm(bvh.offsets, axis=1) * factors
    for j in range(1, 21):
        bone = np.linalg.norm(pos[:, j] - pos[:, bvh.parents[j]], axis=-1)
        np.testing.assert_allclose(bone, lengths[j], rtol=0, atol=1e-9)
    for e, j in enumerate(bvh.end_site_joints()):
        tip = np.linalg.norm(pos[:, 21 + e] - pos[:, j], axis=-1)
        np.testing.assert_allclose(
            tip, np.linalg.norm(bvh.joints[j].end_site) * factors[j], atol=1e-9
        )
    # the wrist (zero OFFSET) stays where its channels put it
    np.testing.assert_allclose(pos[:, 0], bvh_positions(bvh)[:, 0])
    # a uniform factor scales the skeleton about the root
    twice = bvh_positions(bvh.scale_bones(2.0), end_sites=True)
    base = bvh_positions(bvh, end_sites=True)
    np.testing.assert_allclose(twice - twice[:, :1], 2 * (base - base[:, :1]), atol=1e-9)
    # with_offsets sets OFFSETs and End Sites directly
    new = bvh.with_offsets(np.ones((21, 3)), end_sites=np.zeros((5, 3)))
    assert np.all(new.offsets == 1) and all(np.all(j.end_site == 0) for j in new.joints[4::4])
    with pytest.raises(ValueError, match=r"\(21, 3\)"):
        bvh.with_offsets(np.ones((20, 3)))


def test_skeleton_validation():
    root = BVHJoint("root", -1, [0, 0, 0], ("Zrotation",))
    a, a1 = BVHJoint("a", 0, [1, 0, 0]), BVHJoint("a1", 1, [1, 0, 0])
    b = BVHJoint("b", 0, [0, 1, 0])
    assert BVH([root, a, a1, b]).motion.shape == (1, 1)
    with pytest.raises(ValueError, match="depth-first"):
        BVH([root, a, b, BVHJoint("a1", 1, [1, 0, 0])])
    with pytest.raises(ValueError, match="unique"):
        BVH([root, a, BVHJoint("a", 0, [1, 0, 0])])
    with pytest.raises(ValueError, match=r"\(F, 1\)"):
        BVH([root, a], motion=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="distinct"):
        BVHJoint("x", 0, [0, 0, 0], ("Xrotation", "Xrotation"))
    with pytest.raises(ValueError, match="one token"):
        BVHJoint("left hand", 0, [0, 0, 0])
    assert BVH([root, a, a1, b]).joint_index("a1") == 2
    with pytest.raises(KeyError, match="no joint named 'c'"):
        BVH([root, a]).joint_index("c")


MESSY = (
    "\ufeffHIERARCHY\r\n"
    "ROOT Hips {\r\n"
    "    offset 1 2 3\r\n"
    "  CHANNELS 6 Xposition Yposition Zposition zrotation Yrotation Xrotation\r\n"
    "\r\n"
    "\tJOINT Chest\r\n"
    "\t{   OFFSET 0 10.5 0\r\n"
    "\t\tCHANNELS 1 Xrotation\r\n"
    "\t\tEnd Site\r\n"
    "\t\t{\r\n"
    "\t\t\tOFFSET 0 4 0\r\n"
    "\t\t}\r\n"
    "\t}\r\n"
    "}\r\n"
    "MOTION\r\n"
    "Frames:\t2\r\n"
    "Frame Time:   0.04\r\n"
    "0 0 0 0 0 0 90\r\n"
    "\r\n"
    " 1 2 3  90 0 0 -90  \r\n"
)


def test_read_tolerates_layout_variations(tmp_path):
    path = tmp_path / "messy.bvh"
    path.write_bytes(MESSY.encode())
    bvh = read_bvh(path)
    assert bvh.names == ["Hips", "Chest"]
    assert bvh.joints[0].channels == ROOT_CHANNELS[:3] + ("Zrotation", "Yrotation", "Xrotation")
    assert bvh.joints[0].rotation_order == "ZYX" and bvh.frame_time == 0.04
    np.testing.assert_array_equal(bvh.motion[1], [1, 2, 3, 90, 0, 0, -90])
    pos = bvh_positions(bvh, end_sites=True)
    # frame 0: chest bends 90 deg about x, so its End Site (0, 4, 0) points along +z
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [1, 12.5, 3], [1, 12.5, 7]], atol=1e-12)
    # frame 1: hips yaw 90 deg about z maps the chest's +y offset onto -x
    np.testing.assert_allclose(pos[1, :2], [[2, 4, 6], [-8.5, 4, 6]], atol=1e-12)


def _corrupt(old: str, new: str) -> str:
    assert old in MESSY
    return MESSY.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "problem", "line"),
    [
        (MESSY.split("MOTION")[0], "missing MOTION", 14),
        (_corrupt(" 1 2 3  90 0 0 -90", "1 2 3 90 0 0"), "6 values, the hierarchy has 7", 20),
        (_corrupt(" 1 2 3  90", "1 2 x 90"), "'x' is not a number", 20),
        (_corrupt("0 0 0 0 0 0 90", "0 0 0 nan 0 0 90"), "NaN", 18),
        (_corrupt("zrotation", "Wrotation"), "unknown channel 'Wrotation'", 4),
        (_corrupt("\t}\r\n}\r\n", "\t}\r\n"), "unbalanced braces", 14),
        (_corrupt("\t}\r\n}\r\n", "\t}\r\n}\r\n}\r\n"), "unbalanced braces", 15),
        (_corrupt("OFFSET 0 4 0", "OFFSET 0 4"), "OFFSET value '}' is not a number", 12),
        (_corrupt("offset 1 2 3", "offset 1 inf 3"), "OFFSET value is inf", 3),
        (_corrupt("Frames:\t2", "Frames: 3"), "Frames: 3 but 2 frame lines", 20),
        (_corrupt("Frames:\t2", "Frames: two"), "not a whole number", 16),
        ("", "file ends where HIERARCHY was expected", 1),
    ],
)
def test_read_errors_name_file_and_line(tmp_path, text, problem, line):
    path = tmp_path / "bad.bvh"
    path.write_bytes(text.encode())
    with pytest.raises(DataError, match=problem) as info:
        read_bvh(path)
    assert info.value.path == path
    assert f"line {line}:" in str(info.value)


def test_read_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found") as info:
        read_bvh(tmp_path / "none.bvh")
    assert info.value.path == tmp_path / "none.bvh"


def test_independent_parser_reads_our_file(tmp_path):
    bvhio = pytest.importorskip(
        "bvhio", reason="bvhio (independent BVH parser, a dev dependency) is not installed"
    )
    glm = pytest.importorskip("glm", reason="pyglm (bvhio's maths) is not installed")
    bvh = hand_bvh(frames=5, seed=7)
    path = tmp_path / "hand.bvh"
    write_bvh(path, bvh, precision=6)
    ours = read_bvh(path)
    theirs = bvhio.readAsBvh(str(path))
    layout = [j for j, _, _ in theirs.Root.layout()]
    assert [j.Name for j in layout] == bvh.names
    assert [tuple(j.Channels) for j in layout] == [j.channels for j in bvh.joints]
    assert theirs.FrameCount == 5 and theirs.FrameTime == pytest.approx(bvh.frame_time)
    # pyglm stores float32: compare at its resolution
    np.testing.assert_allclose([list(j.Offset) for j in layout], ours.offsets, rtol=1e-6, atol=1e-5)
    ends = [list(layout[i].EndSite) for i in ours.end_site_joints()]
    np.testing.assert_allclose(
        ends, [ours.joints[i].end_site for i in ours.end_site_joints()], atol=1e-5
    )
    # frame values, through bvhio's own Euler conversion: root position and every rotation
    rotations, translations = decode_motion(ours)
    for f in range(5):
        np.testing.assert_allclose(
            list(layout[0].Keyframes[f].Position), translations[f, 0], atol=1e-4
        )
        got = [np.array(glm.mat3_cast(j.Keyframes[f].Rotation).to_list()).T for j in layout]
        np.testing.assert_allclose(got, rotations[f], atol=1e-6)
    # world positions from bvhio's hierarchy; float32 gives ~1e-7 relative error
    root = bvhio.readAsHierarchy(str(path))
    positions = bvh_positions(ours)
    for f in range(5):
        root.loadPose(f)
        got = np.array([list(j.PositionWorld) for j, _, _ in root.layout()])
        np.testing.assert_allclose(got, positions[f], atol=1e-6 * np.abs(positions).max())

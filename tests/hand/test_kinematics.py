"""Kinematic hand (handvox.hand.kinematics): DOFs, limits, forward kinematics, markers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.geometry import axis_angle_to_matrix
from handvox.hand.kinematics import (
    DOF_NAMES,
    LIMITS_DEG,
    MARKER_SETS,
    NUM_DOF,
    HandBones,
    clamp_to_limits,
    dof_index,
    forward_kinematics,
    get_marker_set,
    markers,
    pose_limits,
    random_pose,
    zero_pose,
)
from handvox.hand.shapes import (
    SHAPE_NAMES,
    base_shape,
    base_shapes,
    sample_shape,
)
from handvox.joints import CANONICAL21, FINGERS, ICVL16, MSRA21, NYU14, convert_joints

F64 = torch.float64
CHAIN_BONES = [(1 + 4 * c + k, 2 + 4 * c + k) for c in range(5) for k in range(3)]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_root(n: int, gen: torch.Generator) -> torch.Tensor:
    """``(n, 6)`` root: translation around 500 mm ahead, any rotation (|angle| < pi)."""
    t = torch.randn(n, 3, generator=gen, dtype=F64) * 50 + torch.tensor(
        [0.0, 0.0, 500.0], dtype=F64
    )
    axis = torch.randn(n, 3, generator=gen, dtype=F64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.rand(n, 1, generator=gen, dtype=F64) * 3.0
    return torch.cat([t, axis * angle], 1)


def _pose_deg(**angles: float) -> torch.Tensor:
    """``(1, 30)`` float64 pose from DOF names in degrees (the rest zero)."""
    p = zero_pose(1, F64)
    for name, v in angles.items():
        p[0, dof_index(name)] = math.radians(v)
    return p


@pytest.fixture(scope="module")
def avg() -> HandBones:
    return base_shape("average_adult", F64)


# --- parametrisation ------------------------------------------------------------------------
def test_dof_table_and_limits():
    assert NUM_DOF == len(DOF_NAMES) == len(set(DOF_NAMES)) == 30
    assert sum(n.startswith("thumb_") for n in DOF_NAMES) == 4
    for f in FINGERS[1:]:
        assert sum(n.startswith(f + "_") for n in DOF_NAMES) == 5
    lo, hi = pose_limits()
    assert lo.shape == hi.shape == (30,) and lo.dtype == torch.float32
    assert torch.isinf(lo[:6]).all() and torch.isinf(hi[:6]).all()
    assert (lo[6:] < hi[6:]).all()
    # the zero pose (flat hand) is inside the limits
    assert (lo[6:] <= 0).all() and (hi[6:] >= 0).all()
    lo_deg, hi_deg = pose_limits(degrees=True, dtype=F64)
    assert hi_deg[dof_index("index_pip_flex")] == LIMITS_DEG["index_pip_flex"][1] == 110.0
    assert torch.allclose(torch.deg2rad(lo_deg[6:]), pose_limits(dtype=F64)[0][6:])


def test_clamp_to_limits():
    gen = _gen(1)
    lo, hi = pose_limits(dtype=F64)
    wild = torch.randn(200, 30, generator=gen, dtype=F64) * 3.0
    clamped = clamp_to_limits(wild)
    assert (clamped[:, 6:] >= lo[6:]).all() and (clamped[:, 6:] <= hi[6:]).all()
    assert torch.equal(clamped[:, :6], wild[:, :6])  # root unbounded
    inside = random_pose(50, gen, F64)
    assert torch.equal(clamp_to_limits(inside), inside)
    # something was actually out of range and got moved onto a bound
    moved = clamped != wild
    assert moved.any()
    assert torch.all(
        (clamped[moved] == lo.expand_as(wild)[moved])
        | (clamped[moved] == hi.expand_as(wild)[moved])
    )


# --- geometry -------------------------------------------------------------------------------
def test_zero_pose_is_flat_open_hand(avg):
    fk = forward_kinematics(zero_pose(1, F64), avg)
    j = fk.joints[0]
    name = CANONICAL21.index
    assert torch.equal(j[0], torch.zeros(3, dtype=F64))  # wrist at the root translation
    for f in FINGERS[1:]:
        pts = j[[name(f"{f}_{s}") for s in ("mcp", "pip", "dip", "tip")]]
        d = pts[1:] - pts[:-1]
        d = d / d.norm(dim=-1, keepdim=True)
        assert (d @ d.T).min() > 1 - 1e-9  # straight
        assert d[0, 1] < -0.9  # pointing distally (-y), within the rest spread
        assert abs(float(pts[3, 2])) < 15  # near the palm plane
    # thumb on the radial (+x) side, little finger on the ulnar side, fingers spread in order
    tips_x = [float(j[name(f"{f}_tip"), 0]) for f in FINGERS]
    assert tips_x == sorted(tips_x, reverse=True)
    assert float(j[name("thumb_tip"), 2]) < 0  # thumb lies a little palmar
    # frames are rotations and the wrist's is the hand frame (root rotation zero)
    r = fk.rotations[0]
    assert torch.allclose(
        r.transpose(-1, -2) @ r, torch.eye(3, dtype=F64).expand(21, 3, 3), atol=1e-12
    )
    assert torch.allclose(torch.linalg.det(r), torch.ones(21, dtype=F64))
    assert torch.equal(fk.frames[0, 0], torch.eye(4, dtype=F64))
    assert torch.allclose(fk.frames[0, :, :3, 3], j)


def test_bone_lengths_preserved_for_random_poses():
    gen = _gen(3)
    n = 256
    bones = sample_shape(gen, n, dtype=F64)
    pose = torch.cat([_random_root(n, gen), random_pose(n, gen, F64)[:, 6:]], 1)
    fk = forward_kinematics(pose, bones)
    j = fk.joints
    for k, (a, b) in enumerate(CHAIN_BONES):
        got = (j[:, b] - j[:, a]).norm(dim=-1)
        assert torch.allclose(got, bones.length.reshape(n, 15)[:, k], atol=1e-4, rtol=0)
    # carpal segments: wrist -> thumb CMC rigid; each finger MCP stays on its metacarpal
    assert torch.allclose(
        (j[:, 1] - j[:, 0]).norm(dim=-1), bones.base[:, 0].norm(dim=-1), atol=1e-4
    )
    mc = (j[:, [5, 9, 13, 17]] - fk.metacarpal_origins[:, 1:]).norm(dim=-1)
    assert torch.allclose(mc, (bones.base[:, 1:] - bones.cmc).norm(dim=-1), atol=1e-4)
    cmc_dist = (fk.metacarpal_origins[:, 1:] - j[:, :1]).norm(dim=-1)
    assert torch.allclose(cmc_dist, bones.cmc.norm(dim=-1), atol=1e-4)
    # the joint frame's -y axis runs along the bone leaving the joint
    for a, b in CHAIN_BONES:
        d = j[:, b] - j[:, a]
        d = d / d.norm(dim=-1, keepdim=True)
        assert torch.allclose(d, -fk.rotations[:, a, :, 1], atol=1e-9)


@pytest.mark.parametrize("finger", FINGERS[1:])
@pytest.mark.parametrize("joint", ["mcp_flex", "pip_flex", "dip_flex", "cmc_flex"])
def test_flexion_bends_towards_the_palm(avg, finger, joint):
    gen = _gen(4)
    root = _random_root(1, gen)
    base = zero_pose(1, F64)
    base[:, :6] = root
    tip = CANONICAL21.index(f"{finger}_tip")
    palm_normal = -axis_angle_to_matrix(root[:, 3:6])[0, :, 2]  # hand -z in the camera frame
    deg = 10.0 if joint == "cmc_flex" else 30.0
    moves = []
    for sign in (1.0, -1.0):
        p = base.clone()
        p[0, dof_index(f"{finger}_{joint}")] = sign * math.radians(deg)
        moved = (
            forward_kinematics(p, avg).joints[0, tip] - forward_kinematics(base, avg).joints[0, tip]
        )
        moves.append(float(moved @ palm_normal))
    assert moves[0] > 3.0 and moves[1] < -1.0


def test_abduction_is_radial_positive(avg):
    base_tips = forward_kinematics(zero_pose(1, F64), avg).joints[0, [8, 12, 16, 20]]
    for k, f in enumerate(FINGERS[1:]):
        tips = forward_kinematics(_pose_deg(**{f"{f}_mcp_abd": 10.0}), avg).joints[
            0, [8, 12, 16, 20]
        ]
        assert tips[k, 0] - base_tips[k, 0] > 5.0  # towards +x (thumb side)
        assert abs(float(tips[k, 2] - base_tips[k, 2])) < 1.0  # stays in the palm plane


# Opposition poses within limits (found by optimising pad contact, rounded to degrees).
OPPOSE_INDEX = {
    "thumb_cmc_flex": 23, "thumb_cmc_abd": 38, "thumb_mcp_flex": -3, "thumb_ip_flex": -20,
    "index_mcp_flex": 59, "index_mcp_abd": 2, "index_pip_flex": 35, "index_dip_flex": 4,
}  # fmt: skip
OPPOSE_LITTLE = {
    "thumb_cmc_flex": 36, "thumb_cmc_abd": 60, "thumb_mcp_flex": 9, "thumb_ip_flex": -20,
    "little_cmc_flex": 8, "little_mcp_flex": 67, "little_mcp_abd": 15, "little_pip_flex": 22,
    "little_dip_flex": -15,
}  # fmt: skip


def _pad(fk, joint: int, radius: float):
    """Pulp point (7 mm proximal of the tip, on the palmar skin) and pulp normal."""
    f = fk.frames[0, joint]
    point = (f @ torch.tensor([0.0, 7.0, -radius, 1.0], dtype=F64))[:3]
    return point, -f[:3, 2]


@pytest.mark.parametrize(
    "pose_deg, finger, min_facing", [(OPPOSE_INDEX, "index", 0.4), (OPPOSE_LITTLE, "little", 0.6)]
)
def test_thumb_opposes(avg, pose_deg, finger, min_facing):
    pose = _pose_deg(**pose_deg)
    assert torch.equal(clamp_to_limits(pose), pose)
    tip = CANONICAL21.index(f"{finger}_tip")
    r_thumb, r_finger = float(avg.radius[0, 0, 3]), float(avg.radius[0, FINGERS.index(finger), 3])
    fk = forward_kinematics(pose, avg)
    tp, tn = _pad(fk, 4, r_thumb)
    fp, fn = _pad(fk, tip, r_finger)
    assert (tp - fp).norm() < 5.0  # pads touch
    assert tn @ fn < -min_facing  # pulp to pulp
    assert fk.joints[0, 4, 2] < -30  # in front of the palm
    rest = forward_kinematics(zero_pose(1, F64), avg)
    assert (_pad(rest, 4, r_thumb)[0] - _pad(rest, tip, r_finger)[0]).norm() > 50


def test_root_acts_rigidly(avg):
    gen = _gen(5)
    n = 64
    art = random_pose(n, gen, F64)
    root = _random_root(n, gen)
    local = forward_kinematics(art, avg)
    posed = forward_kinematics(torch.cat([root, art[:, 6:]], 1), avg)
    r = axis_angle_to_matrix(root[:, 3:6])
    want = local.joints @ r.transpose(1, 2) + root[:, None, :3]
    assert torch.allclose(posed.joints, want, atol=1e-9)
    assert torch.allclose(posed.rotations, r[:, None] @ local.rotations, atol=1e-12)
    assert torch.allclose(
        posed.metacarpal_frames[:, :, :3, 3], fk_origin(local, r, root), atol=1e-9
    )
    # pairwise distances unchanged
    assert torch.allclose(
        torch.cdist(posed.joints, posed.joints), torch.cdist(local.joints, local.joints), atol=1e-9
    )


def fk_origin(local, r, root):
    return local.metacarpal_origins @ r.transpose(1, 2) + root[:, None, :3]


def test_bones_scale_the_hand(avg):
    gen = _gen(6)
    pose = random_pose(8, gen, F64)
    a = forward_kinematics(pose, avg).joints
    b = forward_kinematics(pose, avg.scaled(1.3)).joints
    assert torch.allclose(b, 1.3 * a, atol=1e-9)


def test_batch_of_1000_and_dtypes():
    gen = _gen(7)
    pose = random_pose(1000, gen)
    fk = forward_kinematics(pose, base_shape("average_adult"))  # one shape broadcast to all
    assert fk.joints.shape == (1000, 21, 3) and fk.joints.dtype == torch.float32
    assert fk.frames.shape == (1000, 21, 4, 4) and fk.rotations.shape == (1000, 21, 3, 3)
    assert fk.metacarpal_frames.shape == (1000, 5, 4, 4)
    assert torch.isfinite(fk.frames).all()
    assert torch.equal(fk.frames[:, :, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(1000, 21, 4))
    # per-pose shapes; float32 agrees with float64
    bones = sample_shape(gen, 1000)
    fk32 = forward_kinematics(pose, bones)
    fk64 = forward_kinematics(pose.double(), bones.to(F64))
    assert (fk32.joints.double() - fk64.joints).abs().max() < 1e-3
    with pytest.raises(ValueError, match="pose"):
        forward_kinematics(pose[:, :29], bones)
    with pytest.raises(ValueError, match="expand"):
        forward_kinematics(pose[:10], bones[:3])


@pytest.mark.slow
def test_gradcheck():
    gen = _gen(8)
    pose = torch.cat([_random_root(2, gen), random_pose(2, gen, F64)[:, 6:]], 1)
    pose[1, 3:6] = 0.0  # the zero-rotation branch of Rodrigues' formula too
    bones = sample_shape(gen, 2, base="average_adult", dtype=F64)

    def f(p, length, base, cmc, off):
        b = HandBones(base=base, length=length, radius=bones.radius, cmc=cmc)
        fk = forward_kinematics(p, b)
        return fk.joints, fk.rotations, markers(fk, "nyu14", off)

    off = torch.tensor(get_marker_set("nyu14").offsets, dtype=F64)
    inputs = [
        t.clone().requires_grad_(True) for t in (pose, bones.length, bones.base, bones.cmc, off)
    ]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)


def test_hand_bones_container():
    bones = base_shapes()
    assert bones.batch_size == len(SHAPE_NAMES)
    two = HandBones.cat([bones[0], bones[-1]])
    assert two.batch_size == 2 and torch.equal(two.length[1], bones.length[-1])
    again = HandBones.from_dict(bones.to_dict())
    assert torch.equal(again.base, bones.base)
    with pytest.raises(ValueError, match="radius"):
        HandBones(
            base=bones.base, length=bones.length, radius=bones.radius[:, :, :3], cmc=bones.cmc
        )
    with pytest.raises(ValueError, match="unknown hand shape"):
        base_shape("giant")


# --- markers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, joint_set",
    [("canonical21", CANONICAL21), ("nyu", NYU14), ("icvl16", ICVL16), ("msra", MSRA21)],
)
def test_marker_counts(avg, name, joint_set):
    gen = _gen(11)
    fk = forward_kinematics(random_pose(5, gen, F64), avg)
    m = markers(fk, name)
    assert m.shape == (5, len(joint_set), 3)
    assert get_marker_set(name).joint_set is joint_set
    zero = torch.zeros(len(joint_set), 3, dtype=F64)
    at_parents = markers(fk, name, zero)
    assert torch.equal(at_parents, fk.joints[:, list(get_marker_set(name).parents)])
    assert torch.allclose(markers(fk, name, zero.expand(5, -1, -1)), at_parents)
    with pytest.raises(ValueError, match="offsets"):
        markers(fk, name, torch.zeros(len(joint_set) + 1, 3, dtype=F64))


def test_identity_and_exact_marker_sets(avg):
    gen = _gen(12)
    fk = forward_kinematics(
        torch.cat([_random_root(20, gen), random_pose(20, gen, F64)[:, 6:]], 1), avg
    )
    assert torch.equal(markers(fk, "canonical21"), fk.joints)
    assert torch.equal(markers(fk, "msra21"), convert_joints(fk.joints, CANONICAL21, MSRA21))
    assert set(MARKER_SETS) == {"canonical21", "nyu14", "icvl16", "msra21"}


def test_marker_offsets_ride_with_the_bone(avg):
    """An offset in a joint's frame keeps its distance to that joint and follows its rotation."""
    gen = _gen(13)
    off = torch.randn(1, 14, 3, generator=gen, dtype=F64).expand(30, -1, -1) * 10
    fk = forward_kinematics(
        torch.cat([_random_root(30, gen), random_pose(30, gen, F64)[:, 6:]], 1), avg
    )
    m = markers(fk, "nyu14", off)
    parents = list(get_marker_set("nyu14").parents)
    assert torch.allclose((m - fk.joints[:, parents]).norm(dim=-1), off.norm(dim=-1), atol=1e-9)
    assert torch.allclose(fk.to_local(m, torch.tensor(parents)), off, atol=1e-9)
    # default offsets scale with the hand
    big = forward_kinematics(zero_pose(1, F64), avg.scaled(1.2))
    small = forward_kinematics(zero_pose(1, F64), avg)
    assert torch.allclose(markers(big, "nyu14"), 1.2 * markers(small, "nyu14"), atol=1e-9)


def _nyu_label_xyz(shared) -> np.ndarray:
    uvd = np.loadtxt(shared / "data" / "nyu" / "nyu_test_groundtruth_label.txt").reshape(-1, 14, 3)
    return Camera.preset("nyu").uvd_to_xyz(uvd)


NYU_PAIRS = [(f"{f}_tip", f"{f}_root") for f in FINGERS[1:]] + [
    ("thumb_tip", "thumb_root2"), ("thumb_root2", "thumb_root1"), ("thumb_root1", "palm"),
    ("wrist1", "palm"), ("wrist2", "palm"), ("wrist1", "wrist2"), ("middle_root", "palm"),
    ("little_root", "palm"), ("index_root", "palm"),
]  # fmt: skip


def test_nyu_markers_match_real_labels(shared, avg):
    """NYU-14 markers of the average hand at rest vs median distances on the NYU test labels."""
    real = _nyu_label_xyz(shared)
    ours = markers(forward_kinematics(zero_pose(1, F64), avg), "nyu14")[0].numpy()
    idx = NYU14.index
    for a, b in NYU_PAIRS:
        median = np.median(np.linalg.norm(real[:, idx(a)] - real[:, idx(b)], axis=-1))
        model = np.linalg.norm(ours[idx(a)] - ours[idx(b)])
        assert abs(model / median - 1) < 0.3, f"{a}-{b}: model {model:.1f} mm, labels {median:.1f}"


def test_device_agnostic():
    """Everything runs where its inputs live: on the shape-only 'meta' device no CPU tensor may
    sneak in (mixing devices raises)."""
    bones = sample_shape(None, 3, device="meta")
    fk = forward_kinematics(clamp_to_limits(zero_pose(3, device="meta")), bones)
    assert fk.frames.device.type == "meta" and fk.metacarpal_frames.shape == (3, 5, 4, 4)
    for name in MARKER_SETS:
        assert markers(fk, name).device.type == "meta"

"""The LibHand skinned hand: binding to the kinematic hand, posing, girth, rendering; and the
mesh tools it needs (welding, decimation, winding numbers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from handvox.camera import Camera
from handvox.geometry import matrix_to_axis_angle
from handvox.hand.kinematics import clamp_to_limits, forward_kinematics
from handvox.hand.poses import articulation_to_pose, sample_articulation, sample_poses
from handvox.hand.shapes import measure, sample_shape
from handvox.io.ogre import read_skeleton
from handvox.synth import mesh as hm
from handvox.synth import skinned as sk
from handvox.synth.primitives import PART_NAMES

pytestmark = pytest.mark.usefixtures("one_thread")
CAM = Camera.preset("nyu")


@pytest.fixture(scope="module")
def hand() -> sk.SkinnedHand:
    return sk.libhand_hand()


def inside(hand: sk.SkinnedHand, verts: np.ndarray, points: np.ndarray) -> np.ndarray:
    return hm.winding_numbers(verts, hand.mesh.faces, points)


def root_pose(art: torch.Tensor, seed: int) -> torch.Tensor:
    """Articulations with a random rotation and a translation ~500 mm ahead."""
    rot = torch.from_numpy(Rotation.random(len(art), random_state=seed).as_matrix())
    t = torch.tensor([[20.0, -30.0, 500.0]]).double().expand(len(art), 3)
    return articulation_to_pose(art.double(), torch.cat([t, matrix_to_axis_angle(rot)], 1))


# --- the binding --------------------------------------------------------------------------------


def test_fingers_and_side_come_from_the_geometry(hand):
    skeleton = read_skeleton(sk.LIBHAND_DIR / "hand.skeleton")
    assert sk.libhand_chains(skeleton) == sk.LIBHAND_CHAINS
    assert sk.handedness(hand.joints) == "right"
    assert sk.handedness(hand.joints * [-1.0, 1.0, 1.0]) == "left"
    # The landmarks read off LibHand: index MCP radial of the middle's, little ulnar, thumb
    # CMC palmar; the middle finger's tip farthest from the wrist (hand frame: x radial, z dorsal).
    lm = hand.landmarks
    assert lm[5, 0] > lm[9, 0] > lm[13, 0] > lm[17, 0]
    assert lm[1, 2] < -5.0
    assert np.argmax(np.linalg.norm(lm[[4, 8, 12, 16, 20]], axis=1)) in (1, 2)  # index or middle


def test_scale_bones_and_rest_pose(hand):
    assert 40.0 < hand.mm_per_unit < 55.0  # LibHand's ~4.3 units: a ~200 mm hand and stub
    m = {k: float(v) for k, v in measure(hand.bones).items()}
    assert 165.0 < m["hand_length"] < 195.0 and 70.0 < m["hand_breadth"] < 90.0
    assert 80.0 < m["palm_length"] < 100.0
    residual = np.linalg.norm(hand.joints - hand.landmarks, axis=1)
    assert residual.max() < 4.0 and residual.mean() < 1.5
    assert np.allclose(residual[[0, 1, 5, 9, 13, 17]], 0.0, atol=1e-6)  # bases exact
    rest = hand.rest_pose
    assert torch.equal(clamp_to_limits(rest), rest) and not rest[0, :6].any()
    assert (rest[0, 6:].abs() < np.deg2rad(45)).all()  # relaxed: slightly curled, not a fist
    np.testing.assert_allclose(
        forward_kinematics(rest, hand.bones).joints[0].numpy(), hand.joints, atol=1e-9
    )


def test_weights_come_from_libhand(hand):
    w = hand.mesh.weights
    assert w.shape == (len(hand.mesh.vertices), len(sk.FRAME_NAMES))
    assert np.allclose(w.sum(axis=1), 1.0) and ((w > 0).sum(axis=1) <= sk.MAX_INFLUENCES).all()
    np.testing.assert_array_equal(np.take_along_axis(w, hand.influence, 1) > 0,
                                  hand.influence_weight > 0)  # fmt: skip
    # Every frame that carries a segment has skin; tips carry none.
    carried = w.sum(axis=0) > 0
    tips = [4, 8, 12, 16, 20]
    assert not carried[tips].any() and carried[np.setdiff1d(np.arange(25), tips)].all()
    # Faces nearest each fingertip belong to that finger; the forearm's end to the forearm.
    centres = hand.mesh.vertices[hand.mesh.faces].mean(axis=1)
    for k in range(5):
        near = np.argsort(np.linalg.norm(centres - hand.joints[4 + 4 * k], axis=1))[:20]
        assert (hand.face_part[near] == 1 + k).all()
    far = np.argmax(centres[:, 1])  # most proximal
    assert PART_NAMES[hand.face_part[far]] == "forearm"


@pytest.mark.slow
def test_joints_lie_inside_the_skin(hand):
    """Rest pose, then natural poses on LibHand's bones and on random hand shapes."""
    assert (inside(hand, hand.mesh.vertices, hand.joints) > 0.5).all()
    g = torch.Generator().manual_seed(3)
    art = sample_articulation(g, 24)
    for bones in (hand.bones, sample_shape(g, 24, dtype=torch.float64)):
        verts, joints = hand.posed(root_pose(art, 1), bones)
        for v, j in zip(verts, joints, strict=True):
            w = inside(hand, v, j)
            assert (w > 0.5).all(), f"joints outside the skin: {np.nonzero(w <= 0.5)[0]}"


def test_tips_sit_a_few_mm_inside_the_fingertips(hand):
    frames = forward_kinematics(hand.rest_pose, hand.bones).rotations[0].numpy()
    for tip in (4, 8, 12, 16, 20):
        d = -frames[tip][:, 1]  # along the distal phalanx
        out = sk._ray_exit(hand.mesh.vertices, hand.mesh.faces, hand.joints[tip], d)
        assert 1.5 < out < 5.0, (tip, out)
        back = sk._ray_exit(hand.mesh.vertices, hand.mesh.faces, hand.joints[tip], -d)
        assert back > 8.0  # the rest of the finger behind it


# --- posing -------------------------------------------------------------------------------------


def test_rest_pose_gives_the_rest_mesh(hand):
    verts, joints = hand.posed(hand.rest_pose)
    np.testing.assert_allclose(verts[0], hand.mesh.vertices, atol=1e-9)
    np.testing.assert_allclose(joints[0], hand.joints, atol=1e-9)


def test_root_moves_the_hand_rigidly(hand):
    art = sample_articulation(torch.Generator().manual_seed(0), 3)
    pose = root_pose(art, 7)
    local = pose.clone()
    local[:, :6] = 0.0
    moved, _ = hand.posed(pose)
    still, _ = hand.posed(local)
    rot = Rotation.from_rotvec(pose[:, 3:6].numpy()).as_matrix()
    expect = np.einsum("bij,bvj->bvi", rot, still) + pose[:, None, :3].numpy()
    np.testing.assert_allclose(moved, expect, atol=1e-8)


def test_bigger_bones_scale_the_whole_hand(hand):
    """All lengths and radii times 1.25: the palm map, each segment's stretch and girth make
    exactly the similar hand."""
    verts, joints = hand.posed(hand.rest_pose, hand.bones.scaled(1.25))
    np.testing.assert_allclose(verts[0], 1.25 * hand.mesh.vertices, atol=1e-8)
    np.testing.assert_allclose(joints[0], 1.25 * hand.joints, atol=1e-8)


def test_girth_scales_one_segment_about_its_axis(hand):
    girth = np.ones((5, 4))
    girth[1, 1] = 1.3  # index proximal phalanx
    verts, _ = hand.posed(hand.rest_pose, girth=girth)
    v0, v1 = hand.mesh.vertices, verts[0]
    w = hand.mesh.weights
    own = w[:, 5] == 1.0
    assert own.sum() > 20
    frame = hand.mesh.rest_transforms[5]
    axis, origin = frame[:3, 1], frame[:3, 3]

    def split(v):
        s = (v - origin) @ axis
        return s, np.linalg.norm(v - origin - np.outer(s, axis), axis=1)

    s0, r0 = split(v0[own])
    s1, r1 = split(v1[own])
    np.testing.assert_allclose(s1, s0, atol=1e-9)
    np.testing.assert_allclose(r1, 1.3 * r0, atol=1e-9)
    untouched = w[:, 5] == 0.0
    np.testing.assert_allclose(v1[untouched], v0[untouched], atol=1e-9)


def test_longer_bone_carries_the_finger_beyond_it(hand):
    bones = hand.bones.to(torch.float64)
    longer = type(bones)(bones.base, bones.length.clone(), bones.radius, bones.cmc)
    longer.length[0, 2, 1] += 8.0  # middle finger's middle phalanx
    v0, j0 = hand.posed(hand.rest_pose, bones)
    v1, j1 = hand.posed(hand.rest_pose, longer)
    shift = j1[0, 11] - j0[0, 11]  # middle DIP
    assert np.linalg.norm(shift) == pytest.approx(8.0)
    distal = hand.mesh.weights[:, 11] == 1.0
    np.testing.assert_allclose(v1[0, distal] - v0[0, distal], np.broadcast_to(shift, (
        distal.sum(), 3)), atol=1e-9)  # fmt: skip
    np.testing.assert_allclose(j1[0, :10], j0[0, :10], atol=1e-9)


def test_matches_dense_skinning_on_its_own_bones(hand):
    """On LibHand's bones nothing stretches, so the sparse kernel and the palm's and
    metacarpals' maps (arch undone, then redone) must equal plain linear blend skinning with
    the posed frames (handvox.synth.mesh.skin), palm cupping included."""
    g = torch.Generator().manual_seed(4)
    pose = root_pose(sample_articulation(g, 6), 2)
    pose[:, [20, 25]] = torch.deg2rad(torch.tensor([12.0, 22.0])).double()  # ring, little CMC
    fk = forward_kinematics(pose, hand.bones)
    frames = torch.cat([fk.frames, fk.metacarpal_frames[:, 1:]], 1).numpy()
    verts, _ = hand.posed(pose)
    np.testing.assert_allclose(verts, hm.skin(hand.mesh, frames), atol=1e-8)


# --- rendering ----------------------------------------------------------------------------------


def test_render_depth_with_joints(hand):
    g = torch.Generator().manual_seed(5)
    poses = sample_poses(g, 3).double()
    bones = sample_shape(g, 3, dtype=torch.float64)
    frames = hand.render(poses, CAM, bones, return_ids=True)
    assert frames.depth.shape == (3, CAM.height, CAM.width) and frames.depth.dtype == np.float32
    np.testing.assert_allclose(frames.joints, forward_kinematics(poses, bones).joints.numpy(),
                               atol=1e-3)  # fmt: skip
    for depth, ids, joints in zip(frames.depth, frames.ids, frames.joints, strict=True):
        hit = depth > 0
        assert hit.sum() > 1500 and ((ids >= 0) == hit).all()
        z = joints[:, 2]
        # Skin within a finger's thickness of the joints' depths; the forearm's stub reaches
        # further.
        assert z.min() - 80 < depth[hit].min() and depth[hit].max() < z.max() + 80
        # The joints project onto the hand's silhouette (they are inside it).
        uv = np.rint(CAM.xyz_to_uvd(joints)[:, :2]).astype(int)
        assert hit[uv[:, 1], uv[:, 0]].mean() > 0.9
        parts = set(np.unique(hand.face_part[ids[hit]]))
        assert {0, 1, 2, 3}.issubset(parts) or len(parts) >= 4


def test_decimated_mesh_renders_like_the_full_one():
    full, light = sk.libhand_hand(10**6), sk.libhand_hand()
    assert len(full.mesh.faces) == full.source_faces == 70_298
    assert len(light.mesh.faces) <= sk.DEFAULT_FACES
    poses = sample_poses(torch.Generator().manual_seed(2), 4).double()
    a, b = full.render(poses, CAM).depth, light.render(poses, CAM).depth
    both = (a > 0) & (b > 0)
    assert np.abs(a - b)[both].mean() < 0.3
    assert ((a > 0) ^ (b > 0)).sum() < 0.01 * (a > 0).sum()


def test_bad_input(hand):
    with pytest.raises(ValueError, match="pose"):
        hand.posed(torch.zeros(2, 29))
    with pytest.raises(ValueError, match="matrices"):
        hand.skin(np.zeros((21, 3, 4)))


# --- mesh tools ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def capsules() -> hm.RiggedMesh:
    joints, radii = hm.example_hand()
    return hm.mesh_from_capsules(joints, radii)


def directed_edges(faces: np.ndarray) -> np.ndarray:
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def test_weld_joins_split_seams(capsules):
    v, f, _ = hm.weld_vertices(capsules.vertices, capsules.faces)  # capsules touch at joints
    split = v[f.ravel()]  # every corner its own vertex
    welded, faces, first = hm.weld_vertices(split, np.arange(len(split)).reshape(-1, 3))
    assert len(welded) == len(v) and len(faces) == len(f)
    np.testing.assert_array_equal(welded, split[first])
    np.testing.assert_allclose(welded[faces], v[f])


def test_decimate_keeps_a_closed_surface(capsules):
    """Each closed capsule of the capsule hand stays closed and near its original surface."""
    v, f = capsules.vertices, capsules.faces
    faces, kept = hm.decimate(v, f, len(f) // 4)
    assert len(faces) <= len(f) // 4 + 2 and len(kept) < len(v)
    e = directed_edges(faces)
    assert len(np.unique(e, axis=0)) == len(e)  # manifold, consistently wound
    assert {tuple(x) for x in e} == {tuple(x) for x in e[:, ::-1]}  # closed
    joints, radii = hm.example_hand()
    w = hm.winding_numbers(v[kept], faces, joints[1:])
    np.testing.assert_allclose(w[w > 0.5], np.round(w[w > 0.5]), atol=0.05)
    assert (w > 0.5).all()
    # Seen by a camera, the surface barely moves (fingers are 13-20 mm thick).
    a = hm.rasterize_depth(v, f, CAM)
    b = hm.rasterize_depth(v[kept], faces, CAM)
    both = (a > 0) & (b > 0)
    assert np.abs(a - b)[both].mean() < 0.5 and ((a > 0) ^ (b > 0)).mean() < 0.003


def test_winding_numbers(capsules):
    v, f = capsules.vertices, capsules.faces
    joints, _ = hm.example_hand()
    far = joints + [0.0, 0.0, 300.0]
    np.testing.assert_allclose(hm.winding_numbers(v, f, far), 0.0, atol=1e-9)
    centre = 0.5 * (joints[10] + joints[11])  # mid-phalanx: inside one capsule only
    assert hm.winding_numbers(v, f, centre[None])[0] == pytest.approx(1.0, abs=1e-6)
    assert hm.winding_numbers(v, f[:, ::-1], centre[None])[0] == pytest.approx(-1.0, abs=1e-6)

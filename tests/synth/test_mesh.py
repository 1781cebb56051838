"""Rigged meshes: skinning, the capsule hand, the z-buffer rasteriser and glTF files."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_fill_holes
from scipy.spatial import Delaunay
from scipy.spatial.transform import Rotation

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.synth import mesh as hm
from tests.synth import oracles

CAM = Camera.preset("nyu")


def rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@pytest.fixture(scope="module")
def hand() -> hm.RiggedMesh:
    joints, radii = hm.example_hand()
    return hm.mesh_from_capsules(joints, radii)


def flexed(hand: hm.RiggedMesh) -> np.ndarray:
    """Fingers flexed 30-60 degrees at every joint, thumb 30-40."""
    rot = np.tile(np.eye(3), (21, 1, 1))
    for base, deg in zip((5, 9, 13, 17), (30, 45, 55, 60), strict=True):
        rot[base : base + 3] = rot_x(deg)
    rot[2], rot[3] = rot_x(30), rot_x(40)
    return hm.pose_transforms(hand.rest_transforms, hand.parents, rot)


def rigid(seed: int) -> np.ndarray:
    g = np.eye(4)
    g[:3, :3] = Rotation.random(random_state=seed).as_matrix()
    g[:3, 3] = np.random.default_rng(seed).normal(0, 50, 3)
    return g


# --- skinning -------------------------------------------------------------------------------------


def test_capsule_hand_is_closed_and_sparse(hand):
    assert hand.weights.shape == (len(hand.vertices), 21)
    assert ((hand.weights > 0).sum(axis=1) <= hm.MAX_INFLUENCES).all()
    assert (hand.weights >= 0).all() and np.allclose(hand.weights.sum(axis=1), 1.0)
    # Closed and consistently wound: every directed edge once, and its reverse once.
    f = hand.faces
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)
    assert {tuple(e) for e in directed} == {tuple(e) for e in directed[:, ::-1]}
    tri = hand.vertices[f] - hand.vertices.mean(axis=0)
    volume = np.einsum("fk,fk->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6
    assert volume > 2e5  # mm^3, outward winding (a hand is a few hundred cm^3)
    # Frames: -y along each bone, right-handed, on the joints.
    joints, _ = hm.example_hand()
    rest = hand.rest_transforms
    assert np.allclose(rest[:, :3, 3], joints)
    assert np.allclose(np.linalg.det(rest[:, :3, :3]), 1.0)
    bone = joints[6] - joints[5]
    assert np.allclose(-rest[5, :3, 1], bone / np.linalg.norm(bone))


def test_skin_identity_and_batching(hand):
    assert np.abs(hm.skin(hand, hand.rest_transforms) - hand.vertices).max() < 1e-9
    batch = np.stack([hand.rest_transforms, flexed(hand)])
    out = hm.skin(hand, batch)
    assert out.shape == (2, len(hand.vertices), 3)
    assert np.abs(out[0] - hand.vertices).max() < 1e-9
    assert np.abs(out[1] - hm.skin(hand, batch[1])).max() < 1e-9
    assert np.abs(out[1] - hand.vertices).max() > 10.0


def test_skin_rigid_whole_hand(hand):
    g = rigid(3)
    out = hm.skin(hand, g @ flexed(hand))
    ref = hm.skin(hand, flexed(hand)) @ g[:3, :3].T + g[:3, 3]
    assert np.abs(out - ref).max() < 1e-9


def test_skin_torch_matches_numpy(hand):
    posed = np.stack([flexed(hand), rigid(1) @ hand.rest_transforms])
    ref = hm.skin(hand, posed)
    out64 = hm.skin(hand, torch.from_numpy(posed))
    out32 = hm.skin(hand, torch.from_numpy(posed).float())
    assert out64.dtype == torch.float64 and out32.dtype == torch.float32
    assert np.abs(out64.numpy() - ref).max() < 1e-9
    assert np.abs(out32.numpy() - ref).max() < 1e-3


def test_single_bone_rotation_moves_only_its_subtree(hand):
    rot = np.tile(np.eye(3), (21, 1, 1))
    rot[6] = rot_x(50)  # index PIP
    posed = hm.pose_transforms(hand.rest_transforms, hand.parents, rot)
    assert np.allclose(posed[:6], hand.rest_transforms[:6])  # FK leaves the rest alone
    moved = np.linalg.norm(hm.skin(hand, posed) - hand.vertices, axis=1)
    w_sub = hand.weights[:, [6, 7, 8]].sum(axis=1)
    assert moved[w_sub == 0].max() < 1e-9
    # Everything weighted to the subtree moves, but points on the flexion axis itself.
    frame = hand.rest_transforms[6]
    rel = hand.vertices - frame[:3, 3]
    off_axis = np.linalg.norm(rel - np.outer(rel @ frame[:3, 0], frame[:3, 0]), axis=1)
    assert (moved[(w_sub > 0.05) & (off_axis > 1.0)] > 0.01).all()
    # Vertices wholly on the middle phalanx rotate rigidly about the PIP.
    rigid_part = hand.weights[:, 6] == 1.0
    assert rigid_part.sum() > 20
    world_rot = frame[:3, :3] @ rot_x(50) @ frame[:3, :3].T
    expect = (hand.vertices[rigid_part] - frame[:3, 3]) @ world_rot.T + frame[:3, 3]
    assert np.abs(hm.skin(hand, posed)[rigid_part] - expect).max() < 1e-9


def test_retarget_drives_a_mesh_with_other_frames(hand):
    # A skeleton whose frames differ from the mesh's by a fixed rotation per joint.
    offset = np.tile(np.eye(4), (21, 1, 1))
    offset[:, :3, :3] = Rotation.random(21, random_state=4).as_matrix()
    posed = rigid(6) @ flexed(hand)
    out = hm.retarget(hand.rest_transforms, hand.rest_transforms @ offset, posed @ offset)
    assert np.abs(out - posed).max() < 1e-9
    out_t = hm.retarget(
        hand.rest_transforms, hand.rest_transforms @ offset, torch.from_numpy(posed @ offset)
    )
    assert np.abs(hm.skin(hand, out_t).numpy() - hm.skin(hand, posed)).max() < 1e-9
    with pytest.raises(ValueError, match="21, 4, 4"):
        hm.skin(hand, posed[:20])


# --- rasteriser -----------------------------------------------------------------------------------


def plane_triangle() -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A triangle on the plane z = a x + b y + c, given by its pixels at known depths."""
    a, b, c = 0.3, -0.2, 500.0
    uv = np.array([[250.3, 180.7], [410.9, 220.2], [300.4, 330.6]])
    ray = np.c_[(uv[:, 0] - CAM.cx) / CAM.fx, (uv[:, 1] - CAM.cy) / CAM.fy, np.ones(3)]
    z = c / (1 - a * ray[:, 0] - b * ray[:, 1])
    return ray * z[:, None], uv, (a, b, c)


def test_triangle_depth_and_coverage():
    verts, uv, (a, b, c) = plane_triangle()
    for faces in ([[0, 1, 2]], [[0, 2, 1]]):  # either winding
        depth = hm.rasterize_depth(verts, np.array(faces), CAM, background=-1.0)
        assert depth.dtype == np.float32 and depth.shape == (480, 640)
        v, u = np.mgrid[0:480, 0:640].astype(float)
        expect = c / (1 - a * (u - CAM.cx) / CAM.fx - b * (v - CAM.cy) / CAM.fy)
        # Signed distance (px) of every pixel centre to each edge, positive inside.
        dist = []
        for i in range(3):
            p, q = uv[i], uv[(i + 1) % 3]
            n = np.array([q[1] - p[1], p[0] - q[0]]) / np.linalg.norm(q - p)
            n *= np.sign(n @ (uv[(i + 2) % 3] - p))
            dist.append((u - p[0]) * n[0] + (v - p[1]) * n[1])
        inside = np.min(dist, axis=0)
        covered = depth != -1.0
        assert covered[inside > 0.01].all() and not covered[inside < -0.01].any()
        assert covered.sum() > 5000
        assert np.abs(depth[covered] - expect[covered]).max() < 1e-4  # float32 at 500 mm


def test_shared_edges_cover_each_pixel_once():
    # A fan around a centre on a pixel centre, edges through pixel centres and at odd angles.
    centre = np.array([320.0, 240.0])
    ring = centre + np.array(
        [[60, 0], [40, 40], [0, 50], [-37, 23], [-60, 0], [-20, -45], [30, -60]]
    )
    uv = np.vstack([centre, ring])
    z = np.full(len(uv), 400.0)
    verts = np.c_[(uv[:, 0] - CAM.cx) / CAM.fx * z, (uv[:, 1] - CAM.cy) / CAM.fy * z, z]
    n = len(ring)
    faces = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)])
    count = sum((hm.rasterize_depth(verts, f[None], CAM) > 0).astype(int) for f in faces)
    assert count.max() == 1
    whole = hm.rasterize_depth(verts, faces, CAM) > 0
    assert (whole == (count == 1)).all() and not (binary_fill_holes(whole) & ~whole).any()


def test_occlusion_and_near_culling():
    verts, _, _ = plane_triangle()
    far = verts * 1.5  # the same triangle's image, 1.5 times as far away
    for order in ((0, 1), (1, 0)):
        both = np.concatenate([[verts, far][order[0]], [verts, far][order[1]]])
        depth, ids = hm.rasterize_depth(
            both, np.array([[0, 1, 2], [3, 4, 5]]), CAM, return_ids=True
        )
        near_id = order.index(0)
        covered = ids >= 0
        assert (ids[covered] == near_id).all()
        assert (
            np.abs(depth[covered] - hm.rasterize_depth(verts, [[0, 1, 2]], CAM)[covered]).max() == 0
        )
    behind = verts * np.array([1.0, 1.0, -1.0])
    straddling = verts.copy()
    straddling[0, 2] = 0.5
    for tri in (behind, straddling):
        assert not hm.rasterize_depth(tri, [[0, 1, 2]], CAM).any()


def test_kernel_matches_the_numpy_twin(hand):
    rng = np.random.default_rng(0)
    soup = rng.uniform([-150, -150, 300], [150, 150, 700], (300, 3))
    faces = rng.integers(0, len(soup), (100, 3))
    for verts, f in (
        (hm.skin(hand, rigid(5) @ flexed(hand)) + [0, 0, 50], hand.faces),
        (hm.skin(hand, flexed(hand)), hand.faces),
        (soup, faces),
    ):
        d_nb, id_nb = hm.rasterize_depth(verts, f, CAM, return_ids=True)
        d_np, id_np = oracles.rasterize_depth(verts, f, CAM)
        assert (id_nb >= 0).sum() > 1000
        assert ((id_nb >= 0) != (id_np >= 0)).sum() <= 3
        both = (id_nb >= 0) & (id_np >= 0)
        assert np.abs(d_nb[both] - d_np[both]).max() < 1e-3


@pytest.mark.parametrize("pose", ["rest", "flexed"])
def test_capsule_hand_renders_without_holes(hand, pose):
    posed = hand.rest_transforms if pose == "rest" else flexed(hand)
    depth = hm.rasterize_depth(hm.skin(hand, posed), hand.faces, CAM)
    palm_px = CAM.project(posed[[0, 1, 5, 9, 13, 17], :3, 3])
    v, u = np.mgrid[0:480, 0:640]
    in_palm = Delaunay(palm_px).find_simplex(np.c_[u.ravel(), v.ravel()]).reshape(u.shape) >= 0
    assert in_palm.sum() > 3000
    assert (depth[in_palm] > 0).mean() > 0.98
    hit = depth > 0
    assert 480.0 > depth[hit].min() > 380.0 and depth[hit].max() < 520.0
    if pose == "rest":  # open hand: no background enclosed by the silhouette
        assert not (binary_fill_holes(hit) & ~hit).any()


# --- glTF -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_round_trip(hand, tmp_path, suffix):
    path = tmp_path / f"hand{suffix}"
    hm.save_gltf_rigged(path, hand)
    back = hm.load_gltf_rigged(path)
    assert back.joint_names == hand.joint_names and back.parents == hand.parents
    assert (back.faces == hand.faces).all()
    assert np.abs(back.weights - hand.weights).max() < 1e-6
    rot = Rotation.from_rotvec(np.random.default_rng(2).normal(0, 0.4, (21, 3))).as_matrix()
    posed = rigid(7) @ hm.pose_transforms(hand.rest_transforms, hand.parents, rot)
    assert np.abs(hm.skin(back, posed) - hm.skin(hand, posed)).max() < 1e-4
    # As a glTF viewer sees it: joint nodes' world matrices times inverse bind matrices = I,
    # so the file shows the mesh undeformed.
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(path))
    parent_of = {c: i for i, n in enumerate(gltf.nodes) for c in n.children}
    local = {i: np.array(n.matrix).reshape(4, 4).T for i, n in enumerate(gltf.nodes) if n.matrix}

    def world(i):
        return world(parent_of[i]) @ local[i] if i in parent_of else local[i]

    ibm = hm._accessor(gltf, gltf.skins[0].inverseBindMatrices, path, {})
    ibm = ibm.reshape(-1, 4, 4).transpose(0, 2, 1)
    for k, node in enumerate(gltf.skins[0].joints):
        assert np.abs(world(node) @ ibm[k] - np.eye(4)).max() < 1e-5
    # A joint map re-orders joints; skinning follows.
    perm = np.random.default_rng(3).permutation(21)
    mapped = hm.load_gltf_rigged(path, {n: int(perm[k]) for k, n in enumerate(hand.joint_names)})
    inv_posed = np.empty_like(posed)
    inv_posed[perm] = posed
    assert mapped.joint_names[perm[9]] == "middle_mcp"
    assert np.abs(hm.skin(mapped, inv_posed) - hm.skin(hand, posed)).max() < 1e-4


def _edit_gltf(src, dst, edit):
    import pygltflib

    gltf = pygltflib.GLTF2().load(str(src))
    edit(gltf)
    gltf.save(str(dst))


def _double_weights(gltf):
    acc = gltf.accessors[gltf.meshes[0].primitives[0].attributes.WEIGHTS_0]
    view = gltf.bufferViews[acc.bufferView]
    header, payload = gltf.buffers[0].uri.split(",", 1)
    blob = bytearray(base64.b64decode(payload))
    start = view.byteOffset + acc.byteOffset
    w = np.frombuffer(blob, "<f4", acc.count * 4, start) * 2
    blob[start : start + w.nbytes] = w.astype("<f4").tobytes()
    gltf.buffers[0].uri = header + "," + base64.b64encode(bytes(blob)).decode()


def test_gltf_errors_name_the_file(hand, tmp_path):
    good = tmp_path / "hand.gltf"
    hm.save_gltf_rigged(good, hand)
    cases = {
        "no_skin": (lambda g: setattr(g.nodes[-1], "skin", None), "no skinned mesh"),
        "no_joints": (
            lambda g: setattr(g.meshes[0].primitives[0].attributes, "JOINTS_0", None),
            "JOINTS_0",
        ),
        "bad_weights": (_double_weights, "don't sum to 1"),
    }
    for name, (edit, message) in cases.items():
        path = tmp_path / f"{name}.gltf"
        _edit_gltf(good, path, edit)
        with pytest.raises(DataError, match=message) as err:
            hm.load_gltf_rigged(path)
        assert err.value.path == path
    with pytest.raises(DataError, match="lacks.*'pinky'"):
        hm.load_gltf_rigged(good, {"wrist": 0, "pinky": 1})
    with pytest.raises(DataError, match="missing from joint_map"):
        hm.load_gltf_rigged(good, {"wrist": 0})
    (tmp_path / "junk.glb").write_bytes(b"not a glb at all")
    for path in (tmp_path / "junk.glb", tmp_path / "absent.glb"):
        with pytest.raises(DataError) as err:
            hm.load_gltf_rigged(path)
        assert err.value.path == path

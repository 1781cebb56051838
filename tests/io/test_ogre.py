"""OGRE binary meshes and skeletons: LibHand's files field by field, and broken copies."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

import handvox
from handvox.errors import DataError
from handvox.io.ogre import read_mesh, read_skeleton

# The copy of LibHand's files shipped in the package (handvox.synth.skinned reads it).
LIBHAND_DIR = Path(handvox.__file__).resolve().parent / "data" / "libhand"

MESH = LIBHAND_DIR / "hand.mesh"
SKELETON = LIBHAND_DIR / "hand.skeleton"
BONES = ("root", "carpals", "metacarpals", "finger5joint1", "finger5joint2", "finger5joint3",
         "Bone", "finger1joint1", "finger1joint2", "finger1joint3",
         "Bone.001", "finger2joint1", "finger2joint2", "finger2joint3",
         "Bone.002", "finger3joint1", "finger3joint2", "finger3joint3",
         "Bone.003", "finger4joint1", "finger4joint2", "finger4joint3")  # fmt: skip


@pytest.fixture(scope="module")
def mesh():
    return read_mesh(MESH)


@pytest.fixture(scope="module")
def skeleton():
    return read_skeleton(SKELETON)


def test_libhand_mesh_counts(mesh):
    assert mesh.vertices.shape == (37_047, 3) and mesh.normals.shape == (37_047, 3)
    assert [s.material for s in mesh.submeshes] == ["skin", "blackness"]
    assert [len(s.faces) * 3 for s in mesh.submeshes] == [209_655, 1_239]
    assert all(s.shared_vertices for s in mesh.submeshes)
    assert len(mesh.bone_vertex) == len(mesh.bone_index) == len(mesh.bone_weight) == 97_070
    assert mesh.skeleton == "hand.skeleton"
    # The file's own bounding box is the vertices' (a check on positions read at the right
    # offset and stride), ~4.3 units long.
    np.testing.assert_allclose(mesh.bounds, [mesh.vertices.min(0), mesh.vertices.max(0)],
                               atol=1e-6)  # fmt: skip
    assert 4.2 < np.ptp(mesh.vertices[:, 0]) < 4.4
    np.testing.assert_allclose(np.linalg.norm(mesh.normals, axis=1), 1.0, atol=1e-3)
    assert mesh.bone_index.max() == 21 and (mesh.bone_weight > 0).all()
    assert mesh.faces(("skin",)).shape == (69_885, 3) and mesh.faces().shape == (70_298, 3)
    w = mesh.weights(22)
    assert w.shape == (37_047, 22) and (w.sum(axis=1) > 0).all()


def test_libhand_skeleton(skeleton):
    assert skeleton.names == BONES
    parents = dict(zip(skeleton.names, (skeleton.names[p] if p >= 0 else None
                                        for p in skeleton.parents), strict=True))  # fmt: skip
    assert parents["root"] is None and parents["carpals"] == "root"
    assert parents["finger5joint1"] == "metacarpals"  # the thumb hangs off the palm bone
    for k, mc in zip((1, 2, 3, 4), ("Bone", "Bone.001", "Bone.002", "Bone.003"), strict=True):
        assert parents[mc] == "metacarpals" and parents[f"finger{k}joint1"] == mc
        assert parents[f"finger{k}joint3"] == f"finger{k}joint2"
    np.testing.assert_allclose(np.linalg.norm(skeleton.orientations, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(skeleton.scales, 1.0)
    assert skeleton.animations == ("my_animation",)
    # Stored as (x, y, z, w): the root turns 90 degrees about x; a Blender bone's child sits
    # along its +y, so world frames put each child on its parent's y axis.
    np.testing.assert_allclose(skeleton.orientations[0], [0.5**0.5, 0, 0, 0.5**0.5], atol=1e-6)
    world = skeleton.world_transforms()
    for c, p in enumerate(skeleton.parents):
        if p >= 0 and np.linalg.norm(skeleton.positions[c][[0, 2]]) < 1e-6:
            along = (world[c, :3, 3] - world[p, :3, 3]) @ world[p, :3, 1]
            assert along == pytest.approx(np.linalg.norm(world[c, :3, 3] - world[p, :3, 3]))


@pytest.mark.parametrize("cut", [1, 20, 40, 200, 1_000_000, 3_901_600, -3])
def test_truncated_mesh_names_file_and_offset(tmp_path, cut):
    data = MESH.read_bytes()
    path = tmp_path / "cut.mesh"
    path.write_bytes(data[:cut])
    with pytest.raises(DataError) as e:
        read_mesh(path)
    assert e.value.path == path
    assert "offset" in e.value.problem or "header" in e.value.problem


@pytest.mark.parametrize("cut", [2, 30, 300, 1000, -2])
def test_truncated_skeleton(tmp_path, cut):
    path = tmp_path / "cut.skeleton"
    path.write_bytes(SKELETON.read_bytes()[:cut])
    with pytest.raises(DataError, match="cut.skeleton"):
        read_skeleton(path)


def test_wrong_header_and_kind(tmp_path):
    data = MESH.read_bytes()
    bad = tmp_path / "v9.mesh"
    bad.write_bytes(data.replace(b"[MeshSerializer_v1.41]", b"[MeshSerializer_v9.99]", 1))
    with pytest.raises(DataError, match=r"v9\.mesh.*unsupported header"):
        read_mesh(bad)
    with pytest.raises(DataError, match="unsupported header"):
        read_mesh(SKELETON)  # a skeleton is not a mesh
    with pytest.raises(DataError, match="unsupported header"):
        read_skeleton(MESH)
    png = tmp_path / "image.mesh"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    with pytest.raises(DataError, match="not an OGRE mesh"):
        read_mesh(png)
    with pytest.raises(DataError, match="no such file"):
        read_mesh(tmp_path / "missing.mesh")


def test_corrupt_fields(tmp_path):
    data = bytearray(MESH.read_bytes())
    # A chunk id nobody knows where M_MESH's first sub-chunk starts.
    at = data.index(b"[MeshSerializer_v1.41]\n") + 23 + 6 + 1
    bad = data.copy()
    bad[at : at + 2] = struct.pack("<H", 0x1234)
    path = tmp_path / "id.mesh"
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match=f"offset {at}: unexpected chunk id 0x1234"):
        read_mesh(path)
    # A triangle index past the vertices.
    skin = data.index(b"skin\n") + 5
    bad = data.copy()
    bad[skin + 6 : skin + 8] = struct.pack(
        "<H", 40_000
    )  # the first index (after flag, count, flag)
    path.write_bytes(bytes(bad))
    with pytest.raises(DataError, match="vertex index 40000 out of range"):
        read_mesh(path)
    # A bone parent that does not exist.
    sk = bytearray(SKELETON.read_bytes())
    first_parent = sk.index(struct.pack("<HI", 0x3000, 10))
    sk[first_parent + 8 : first_parent + 10] = struct.pack("<H", 99)
    path = tmp_path / "parent.skeleton"
    path.write_bytes(bytes(sk))
    with pytest.raises(DataError, match="parents out of range"):
        read_skeleton(path)


def chunk(cid: int, body: bytes) -> bytes:
    return struct.pack("<HI", cid, 6 + len(body)) + body


def test_own_geometry_32bit_indices_and_skipped_sections(tmp_path):
    """A small mesh unlike LibHand's: a submesh with its own vertices and 32-bit indices, an
    edge-list section the reader skips by its length, a submesh name table."""
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], "<f4")
    element = chunk(0x5110, struct.pack("<5H", 0, 2, 1, 0, 0))  # source 0, FLOAT3, POSITION
    data = chunk(0x5210, verts.tobytes())
    geometry = chunk(0x5000, struct.pack("<I", 4) + chunk(0x5100, element)
                     + chunk(0x5200, struct.pack("<HH", 0, 12) + data))  # fmt: skip
    faces = np.array([[0, 1, 2], [0, 3, 1]], "<u4")
    submesh = chunk(0x4000, b"stone\n" + struct.pack("<?I?", False, 6, True) + faces.tobytes()
                    + geometry + chunk(0x4010, struct.pack("<H", 4)))  # fmt: skip
    edges = chunk(0xB000, bytes(20))
    names = chunk(0xA000, chunk(0xA100, struct.pack("<h", 0) + b"rock\n"))
    body = b"\x00" + submesh + edges + names
    path = tmp_path / "small.mesh"
    path.write_bytes(struct.pack("<H", 0x1000) + b"[MeshSerializer_v1.40]\n" + chunk(0x3000, body))
    m = read_mesh(path)
    assert len(m.vertices) == 0 and m.faces().shape == (0, 3)
    (sub,) = m.submeshes
    assert (sub.material, sub.name, sub.shared_vertices) == ("stone", "rock", False)
    np.testing.assert_array_equal(sub.faces, faces)
    np.testing.assert_array_equal(sub.vertices, verts)
    # A skipped section whose length leads nowhere is an error, not a guess.
    path.write_bytes(path.read_bytes().replace(edges, chunk(0xB000, bytes(20))[:2]
                                               + struct.pack("<I", 9) + bytes(20)))  # fmt: skip
    with pytest.raises(DataError, match="cannot skip chunk 0xB000"):
        read_mesh(path)

"""OGRE binary ``.mesh`` and ``.skeleton`` files (the format LibHand ships its hand in).

Both are little-endian chunk streams: a chunk is ``uint16 id, uint32 length, fields...``, chunks
nest, strings end in ``\\n`` and bools are one byte. The ids and field layouts are OGRE's
(``OgreMeshFileFormat.h``, ``OgreSkeletonFileFormat.h``); this reader is our own. Old exporters
wrote lengths that do not match the data (LibHand's ``M_MESH`` chunk claims 2.3 MB of a 3.9 MB
file, its bone chunks 36 bytes of 41), so every chunk this reader knows is read field by field
and lengths are only used to skip chunks it does not need (level-of-detail, edge lists, poses,
vertex animations), and only when the length lands on another chunk or the end of the file.

Read: mesh versions ``[MeshSerializer_v1.30]``, ``v1.40`` and ``v1.41`` (one shared or
per-submesh geometry, triangle-list submeshes with 16- or 32-bit indices, bone assignments,
the skeleton link, bounds, submesh names), skeletons ``[Serializer_v1.10]`` and ``v1.80``
(bones, parents, animations; keyframes are read past, not kept). Units and axes are the file's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from handvox.errors import DataError

MESH_VERSIONS = ("[MeshSerializer_v1.30]", "[MeshSerializer_v1.40]", "[MeshSerializer_v1.41]")
SKELETON_VERSIONS = ("[Serializer_v1.10]", "[Serializer_v1.80]")

# Mesh chunk ids (OgreMeshFileFormat.h).
_HEADER = 0x1000
_MESH = 0x3000
_SUBMESH = 0x4000
_SUBMESH_OPERATION = 0x4010
_SUBMESH_BONE_ASSIGNMENT = 0x4100
_SUBMESH_TEXTURE_ALIAS = 0x4200
_GEOMETRY = 0x5000
_VERTEX_DECLARATION = 0x5100
_VERTEX_ELEMENT = 0x5110
_VERTEX_BUFFER = 0x5200
_VERTEX_BUFFER_DATA = 0x5210
_SKELETON_LINK = 0x6000
_BONE_ASSIGNMENT = 0x7000
_BOUNDS = 0x9000
_NAME_TABLE = 0xA000
_NAME_TABLE_ELEMENT = 0xA100
# Mesh chunks read past by their length: LOD, edge lists, poses, animations, extremes.
_MESH_SKIPPED = (0x8000, 0xB000, 0xC000, 0xD000, 0xE000)
_MESH_TOP = (_GEOMETRY, _SUBMESH, _SKELETON_LINK, _BONE_ASSIGNMENT, _BOUNDS, _NAME_TABLE,
             *_MESH_SKIPPED)  # fmt: skip

# Skeleton chunk ids (OgreSkeletonFileFormat.h; 0x1010 blend mode came with v1.80).
_BLEND_MODE = 0x1010
_BONE = 0x2000
_BONE_PARENT = 0x3000
_ANIMATION = 0x4000
_ANIMATION_BASEINFO = 0x4010
_TRACK = 0x4100
_KEYFRAME = 0x4110
_ANIMATION_LINK = 0x5000
_SKELETON_TOP = (_BLEND_MODE, _BONE, _BONE_PARENT, _ANIMATION, _ANIMATION_LINK)

_CHUNK = 6  # uint16 id + uint32 length
_TRIANGLE_LIST = 4  # RenderOperation::OT_TRIANGLE_LIST
_POSITION, _NORMAL = 1, 4  # VertexElementSemantic
_FLOAT3 = 2  # VertexElementType VET_FLOAT3
# One bone assignment chunk: id, length, vertex, bone, weight (16 bytes, packed).
_ASSIGNMENT = np.dtype([("id", "<u2"), ("len", "<u4"), ("vertex", "<u4"), ("bone", "<u2"),
                        ("weight", "<f4")])  # fmt: skip


@dataclass
class OgreSubMesh:
    """One submesh: a material and its triangles.

    Attributes:
        material: the material name (LibHand: ``skin``, ``blackness``).
        name: the name from the submesh name table, or None.
        faces: ``(F, 3)`` int64 vertex indices into its geometry.
        shared_vertices: True when ``faces`` index the mesh's shared geometry.
        vertices: ``(V, 3)`` float64 its own positions when not shared, else None.
    """

    material: str
    name: str | None
    faces: np.ndarray
    shared_vertices: bool
    vertices: np.ndarray | None = None


@dataclass
class OgreMesh:
    """A mesh file's shared geometry, submeshes and skinning (file units and axes).

    Attributes:
        vertices: ``(V, 3)`` float64 shared positions.
        normals: ``(V, 3)`` float64 shared normals, or None when the file has none.
        submeshes: the submeshes in file order.
        bone_vertex, bone_index: ``(N,)`` int64 vertex-bone assignments of the shared geometry
            (vertex index, bone handle in the skeleton) ...
        bone_weight: ``(N,)`` float64 ... and their weights.
        skeleton: the linked ``.skeleton`` file's name, or None.
        bounds: ``(2, 3)`` float64 the file's bounding box (min, max), or None.
    """

    vertices: np.ndarray
    normals: np.ndarray | None
    submeshes: tuple[OgreSubMesh, ...]
    bone_vertex: np.ndarray
    bone_index: np.ndarray
    bone_weight: np.ndarray
    skeleton: str | None = None
    bounds: np.ndarray | None = None

    def faces(self, materials: tuple[str, ...] | None = None) -> np.ndarray:
        """``(F, 3)`` int64 shared-geometry triangles of the submeshes with these materials
        (None: every shared submesh)."""
        parts = [
            s.faces
            for s in self.submeshes
            if s.shared_vertices and (materials is None or s.material in materials)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)  # fmt: skip

    def weights(self, n_bones: int) -> np.ndarray:
        """``(V, n_bones)`` float64 dense skinning weights of the shared geometry, as assigned
        (rows are not renormalised; a vertex with no assignment has a zero row)."""
        if len(self.bone_index) and self.bone_index.max() >= n_bones:
            raise ValueError(f"bone {self.bone_index.max()} assigned but {n_bones} bones given")
        w = np.zeros((len(self.vertices), n_bones))
        np.add.at(w, (self.bone_vertex, self.bone_index), self.bone_weight)
        return w


@dataclass
class OgreSkeleton:
    """A skeleton file's bones in their binding pose (file units and axes).

    Attributes:
        names: ``B`` bone names; index = bone handle.
        parents: parent handle of each bone, -1 for roots.
        positions: ``(B, 3)`` float64 each bone's origin in its parent's frame.
        orientations: ``(B, 4)`` float64 each bone's rotation relative to its parent, unit
            quaternions ``(x, y, z, w)`` as OGRE stores them.
        scales: ``(B, 3)`` float64 each bone's scale relative to its parent (ones when the file
            has none).
        animations: names of the file's animations (their tracks are not kept).
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    positions: np.ndarray
    orientations: np.ndarray
    scales: np.ndarray
    animations: tuple[str, ...] = ()

    def index(self, name: str) -> int:
        """The handle of the bone called ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"no bone {name!r}; bones: {list(self.names)}") from None

    def world_transforms(self) -> np.ndarray:
        """``(B, 4, 4)`` each bone's binding-pose frame in skeleton (= mesh) space:
        ``W_j = W_parent T(p_j) R(q_j) S(s_j)``."""
        local = np.zeros((len(self.names), 4, 4))
        local[:, :3, :3] = Rotation.from_quat(self.orientations).as_matrix() * self.scales[:, None]
        local[:, :3, 3] = self.positions
        local[:, 3, 3] = 1.0
        world: list[np.ndarray | None] = [None] * len(self.names)

        def solve(j: int) -> np.ndarray:
            if world[j] is None:
                p = self.parents[j]
                world[j] = local[j] if p < 0 else solve(p) @ local[j]
            return world[j]

        return np.stack([solve(j) for j in range(len(self.names))])


class _Stream:
    """Little-endian fields read one by one from a file's bytes; running out of bytes or
    meeting a bad value raises DataError with the file and the offset."""

    def __init__(self, data: bytes, path: Path):
        self.data, self.path, self.pos = data, path, 0

    def fail(self, problem: str, at: int | None = None) -> DataError:
        return DataError(self.path, f"offset {self.pos if at is None else at}: {problem}")

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise self.fail(f"truncated: {what} needs {n} bytes, the file ends at {len(self.data)}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        dt = np.dtype(dtype)
        return np.frombuffer(self.take(dt.itemsize * count, what), dt).copy()

    def u16(self, what: str) -> int:
        return int(self.array("<u2", 1, what)[0])

    def u32(self, what: str) -> int:
        return int(self.array("<u4", 1, what)[0])

    def f32(self, count: int, what: str) -> np.ndarray:
        values = self.array("<f4", count, what).astype(np.float64)
        if not np.isfinite(values).all():
            raise self.fail(f"{what}: NaN or infinite value", self.pos - 4 * count)
        return values

    def boolean(self, what: str) -> bool:
        b = self.take(1, what)[0]
        if b > 1:
            raise self.fail(
                f"{what}: bool byte is {b}, not 0 or 1 (misread or corrupt)", self.pos - 1
            )
        return bool(b)

    def string(self, what: str, limit: int = 4096) -> str:
        end = self.data.find(b"\n", self.pos, self.pos + limit)
        if end < 0:
            if self.pos + limit >= len(self.data):
                raise self.fail(f"truncated: {what} (a string) has no end-of-line")
            raise self.fail(f"{what}: no end-of-line within {limit} bytes (not a string)")
        raw = self.data[self.pos : end]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what}: not UTF-8 text") from None
        self.pos = end + 1
        return text

    def peek_id(self) -> int | None:
        """The next chunk's id, or None at the end (a lone trailing byte is an error)."""
        if self.at_end():
            return None
        if self.pos + 2 > len(self.data):
            raise self.fail("truncated: a chunk id needs 2 bytes")
        return int.from_bytes(self.data[self.pos : self.pos + 2], "little")

    def chunk(self, expected: int | tuple[int, ...], what: str) -> tuple[int, int, int]:
        """Read a chunk header: ``(id, stated length, start offset)``."""
        start = self.pos
        cid = self.u16(f"{what} chunk id")
        length = self.u32(f"{what} chunk length")
        want = (expected,) if isinstance(expected, int) else expected
        if cid not in want:
            names = " or ".join(f"0x{w:04X}" for w in want)
            raise self.fail(f"expected a {what} chunk ({names}), found id 0x{cid:04X}", start)
        return cid, length, start

    def skip_chunk(self, known: tuple[int, ...], what: str) -> None:
        """Skip a chunk we do not parse by its stated length, which must land on a known chunk
        id or the end of the file (lengths of old exporters are not to be trusted blindly)."""
        cid, length, start = self.chunk(known, what)
        end = start + length
        after = (
            int.from_bytes(self.data[end : end + 2], "little") if end + 2 <= len(self.data) else -1
        )
        if length < _CHUNK or end > len(self.data) or (end < len(self.data) and after not in known):
            raise self.fail(
                f"cannot skip chunk 0x{cid:04X} ({what}): its length {length} does not lead to "
                "another chunk or the end of the file", start,
            )  # fmt: skip
        self.pos = end


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except OSError as e:
        raise DataError(path, f"unreadable ({e.strerror or e})") from None


def _header(s: _Stream, versions: tuple[str, ...], kind: str) -> str:
    if len(s.data) < 3 or s.data[:2] != _HEADER.to_bytes(2, "little") or s.data[2:3] != b"[":
        raise s.fail(f"not an OGRE {kind} file (no [..._vX.YY] header)", 0)
    s.pos = 2
    version = s.string("header", limit=64)
    if version not in versions:
        raise s.fail(f"unsupported header {version!r}; this reader knows {list(versions)}", 2)
    return version


# --- mesh ---------------------------------------------------------------------------------------


def read_mesh(path: str | Path) -> OgreMesh:
    """Read an OGRE binary ``.mesh`` file (see the module docstring for what is read).

    Raises:
        DataError: naming the file and the byte offset, when the file is missing, is not an
            OGRE mesh of a known version, is truncated, or holds inconsistent data (indices or
            assignments out of range, a submesh that is not a triangle list, no positions).
    """
    path = Path(path)
    s = _Stream(_read_bytes(path), path)
    _header(s, MESH_VERSIONS, "mesh")
    s.chunk(_MESH, "M_MESH")
    s.boolean("M_MESH skeletally animated flag")
    shared: tuple[np.ndarray, np.ndarray | None] | None = None
    submeshes: list[dict] = []
    assignments: list[np.ndarray] = []
    skeleton, bounds, names = None, None, {}
    while (cid := s.peek_id()) is not None:
        if cid == _GEOMETRY:
            if shared is not None:
                raise s.fail("a second shared geometry chunk")
            shared = _read_geometry(s)
        elif cid == _SUBMESH:
            submeshes.append(_read_submesh(s))
        elif cid == _SKELETON_LINK:
            s.chunk(_SKELETON_LINK, "M_MESH_SKELETON_LINK")
            skeleton = s.string("skeleton name")
        elif cid == _BONE_ASSIGNMENT:
            assignments.append(_read_assignments(s, _BONE_ASSIGNMENT))
        elif cid == _BOUNDS:
            s.chunk(_BOUNDS, "M_MESH_BOUNDS")
            b = s.f32(7, "bounds")
            bounds = b[:6].reshape(2, 3)
        elif cid == _NAME_TABLE:
            s.chunk(_NAME_TABLE, "M_SUBMESH_NAME_TABLE")
            while s.peek_id() == _NAME_TABLE_ELEMENT:
                s.chunk(_NAME_TABLE_ELEMENT, "M_SUBMESH_NAME_TABLE_ELEMENT")
                k = int(s.array("<i2", 1, "submesh index")[0])
                names[k] = s.string("submesh name")
        elif cid in _MESH_SKIPPED:
            s.skip_chunk(_MESH_TOP, "mesh section")
        else:
            raise s.fail(f"unexpected chunk id 0x{cid:04X} in M_MESH (misread or corrupt)")

    if shared is None and any(m["shared"] for m in submeshes):
        raise DataError(path, "submeshes use shared vertices but the mesh has no shared geometry")
    verts, normals = shared if shared is not None else (np.zeros((0, 3)), None)
    subs = []
    for k, m in enumerate(submeshes):
        n_v = len(verts) if m["shared"] else len(m["geometry"][0])
        if len(m["faces"]) and m["faces"].max() >= n_v:
            raise DataError(
                path, f"submesh {k} ({m['material']!r}): vertex index {m['faces'].max()} out of "
                f"range for {n_v} vertices",
            )  # fmt: skip
        subs.append(OgreSubMesh(m["material"], names.get(k), m["faces"], m["shared"],
                                None if m["shared"] else m["geometry"][0]))  # fmt: skip
    a = np.concatenate(assignments) if assignments else np.zeros(0, _ASSIGNMENT)
    if len(a) and a["vertex"].max() >= len(verts):
        raise DataError(path, f"bone assignment to vertex {a['vertex'].max()} of {len(verts)}")
    if len(a) and not (np.isfinite(a["weight"]).all() and (a["weight"] >= 0).all()):
        raise DataError(path, "bone assignment weights must be finite and non-negative")
    return OgreMesh(
        vertices=verts, normals=normals, submeshes=tuple(subs),
        bone_vertex=a["vertex"].astype(np.int64), bone_index=a["bone"].astype(np.int64),
        bone_weight=a["weight"].astype(np.float64), skeleton=skeleton, bounds=bounds,
    )  # fmt: skip


def _read_geometry(s: _Stream) -> tuple[np.ndarray, np.ndarray | None]:
    """An M_GEOMETRY chunk -> ``(V, 3)`` positions and ``(V, 3)`` normals (or None)."""
    s.chunk(_GEOMETRY, "M_GEOMETRY")
    n_vertices = s.u32("vertex count")
    elements, buffers = [], {}
    while (cid := s.peek_id()) in (_VERTEX_DECLARATION, _VERTEX_BUFFER):
        if cid == _VERTEX_DECLARATION:
            s.chunk(_VERTEX_DECLARATION, "M_GEOMETRY_VERTEX_DECLARATION")
            while s.peek_id() == _VERTEX_ELEMENT:
                s.chunk(_VERTEX_ELEMENT, "M_GEOMETRY_VERTEX_ELEMENT")
                # source, type, semantic, offset, index
                elements.append(tuple(int(x) for x in s.array("<u2", 5, "vertex element")))
        else:
            s.chunk(_VERTEX_BUFFER, "M_GEOMETRY_VERTEX_BUFFER")
            bind, size = s.u16("buffer bind index"), s.u16("vertex size")
            s.chunk(_VERTEX_BUFFER_DATA, "M_GEOMETRY_VERTEX_BUFFER_DATA")
            start = s.pos
            raw = s.take(n_vertices * size, f"vertex buffer {bind} ({n_vertices} x {size} bytes)")
            if bind in buffers:
                raise s.fail(f"vertex buffer {bind} given twice", start)
            buffers[bind] = (np.frombuffer(raw, np.uint8).reshape(n_vertices, size), start)

    def attribute(semantic: int, what: str) -> np.ndarray | None:
        found = [e for e in elements if e[2] == semantic and e[4] == 0]
        if not found:
            return None
        source, vtype, _, offset, _ = found[0]
        if vtype != _FLOAT3:
            raise s.fail(f"{what} has vertex element type {vtype}, not FLOAT3 (2)")
        if source not in buffers:
            raise s.fail(f"{what} lives in vertex buffer {source}, which the geometry lacks")
        buf, start = buffers[source]
        if offset + 12 > buf.shape[1]:
            raise s.fail(f"{what} at byte {offset} overruns the {buf.shape[1]}-byte vertex", start)
        values = buf[:, offset : offset + 12].copy().view("<f4").astype(np.float64)
        if not np.isfinite(values).all():
            raise s.fail(f"{what}: NaN or infinite values in vertex buffer {source}", start)
        return values

    positions = attribute(_POSITION, "position")
    if positions is None:
        raise s.fail("geometry without a position element")
    return positions, attribute(_NORMAL, "normal")


def _read_submesh(s: _Stream) -> dict:
    s.chunk(_SUBMESH, "M_SUBMESH")
    material = s.string("submesh material")
    shared = s.boolean("submesh uses shared vertices")
    n_index = s.u32("submesh index count")
    wide = s.boolean("submesh 32-bit indices flag")
    at = s.pos
    idx = s.array("<u4" if wide else "<u2", n_index, f"submesh {material!r} indices")
    if n_index % 3:
        raise s.fail(f"submesh {material!r}: {n_index} indices, not whole triangles", at)
    geometry = None if shared else _read_geometry(s)
    operation = _TRIANGLE_LIST  # OGRE assumes a triangle list when the chunk is missing
    while (cid := s.peek_id()) in (_SUBMESH_OPERATION, _SUBMESH_BONE_ASSIGNMENT,
                                   _SUBMESH_TEXTURE_ALIAS):  # fmt: skip
        if cid == _SUBMESH_OPERATION:
            s.chunk(cid, "M_SUBMESH_OPERATION")
            operation = s.u16("operation type")
        elif cid == _SUBMESH_BONE_ASSIGNMENT:
            if shared:
                raise s.fail(f"submesh {material!r} shares vertices but has bone assignments")
            _read_assignments(s, _SUBMESH_BONE_ASSIGNMENT)  # only shared geometry is skinned here
        else:
            s.chunk(cid, "M_SUBMESH_TEXTURE_ALIAS")
            s.string("alias name"), s.string("texture name")
    if operation != _TRIANGLE_LIST:
        raise s.fail(f"submesh {material!r}: operation type {operation} is not a triangle list")
    return {"material": material, "shared": shared, "geometry": geometry,
            "faces": idx.astype(np.int64).reshape(-1, 3)}  # fmt: skip


def _read_assignments(s: _Stream, cid: int) -> np.ndarray:
    """A run of consecutive bone-assignment chunks (one assignment each, 16 bytes)."""
    n_max = (len(s.data) - s.pos) // _ASSIGNMENT.itemsize
    run = np.frombuffer(s.data, _ASSIGNMENT, count=n_max, offset=s.pos)
    other = np.nonzero(run["id"] != cid)[0]
    n = int(other[0]) if len(other) else n_max
    if n == 0:  # too short for even one: let the field reader name the truncation
        s.chunk(cid, "bone assignment")
        s.take(10, "bone assignment")
    s.pos += n * _ASSIGNMENT.itemsize
    return run[:n].copy()


# --- skeleton -----------------------------------------------------------------------------------


def read_skeleton(path: str | Path) -> OgreSkeleton:
    """Read an OGRE binary ``.skeleton`` file (see the module docstring for what is read).

    Raises:
        DataError: naming the file and the byte offset, when the file is missing, is not an
            OGRE skeleton of a known version, is truncated, or its bone handles or parents are
            inconsistent.
    """
    path = Path(path)
    s = _Stream(_read_bytes(path), path)
    _header(s, SKELETON_VERSIONS, "skeleton")
    bones: dict[int, tuple] = {}
    parents: dict[int, int] = {}
    animations = []
    while (cid := s.peek_id()) is not None:
        if cid == _BLEND_MODE:
            s.chunk(cid, "SKELETON_BLENDMODE")
            s.u16("blend mode")
        elif cid == _BONE:
            _, length, start = s.chunk(cid, "SKELETON_BONE")
            name = s.string("bone name")
            handle = s.u16("bone handle")
            pos = s.f32(3, f"bone {name!r} position")
            quat = s.f32(4, f"bone {name!r} orientation")
            # OGRE's own rule: a scale follows when the chunk's stated length has room for it.
            scale = s.f32(3, f"bone {name!r} scale") if length >= s.pos - start + 12 else np.ones(3)
            if handle in bones:
                raise s.fail(f"bone handle {handle} ({name!r}) given twice", start)
            norm = np.linalg.norm(quat)
            if not 0.99 < norm < 1.01:
                raise s.fail(f"bone {name!r}: orientation quaternion of norm {norm:.3g}", start)
            bones[handle] = (name, pos, quat / norm, scale)
        elif cid == _BONE_PARENT:
            start = s.pos
            s.chunk(cid, "SKELETON_BONE_PARENT")
            child, parent = s.u16("child handle"), s.u16("parent handle")
            if child in parents:
                raise s.fail(f"bone {child} given two parents", start)
            parents[child] = parent
        elif cid == _ANIMATION:
            animations.append(_read_animation(s))
        elif cid == _ANIMATION_LINK:
            s.chunk(cid, "SKELETON_ANIMATION_LINK")
            s.string("linked skeleton"), s.f32(1, "link scale")
        else:
            raise s.fail(f"unexpected chunk id 0x{cid:04X} in a skeleton (misread or corrupt)")

    n = len(bones)
    if sorted(bones) != list(range(n)):
        raise DataError(path, f"bone handles are not 0..{n - 1}: {sorted(bones)}")
    bad = {c: p for c, p in parents.items() if c >= n or p >= n or c == p}
    if bad:
        raise DataError(path, f"bone parents out of range or self-referencing: {bad}")
    parent_of = tuple(parents.get(j, -1) for j in range(n))
    for j in range(n):  # every chain must reach a root
        seen, k = set(), j
        while k >= 0:
            if k in seen:
                raise DataError(path, f"bone parents form a cycle through bone {k}")
            seen.add(k)
            k = parent_of[k]
    return OgreSkeleton(
        names=tuple(bones[j][0] for j in range(n)), parents=parent_of,
        positions=np.array([bones[j][1] for j in range(n)]).reshape(n, 3),
        orientations=np.array([bones[j][2] for j in range(n)]).reshape(n, 4),
        scales=np.array([bones[j][3] for j in range(n)]).reshape(n, 3),
        animations=tuple(animations),
    )  # fmt: skip


def _read_animation(s: _Stream) -> str:
    s.chunk(_ANIMATION, "SKELETON_ANIMATION")
    name = s.string("animation name")
    s.f32(1, "animation length")
    if s.peek_id() == _ANIMATION_BASEINFO:
        s.chunk(_ANIMATION_BASEINFO, "SKELETON_ANIMATION_BASEINFO")
        s.string("base animation"), s.f32(1, "base key time")
    while s.peek_id() == _TRACK:
        s.chunk(_TRACK, "SKELETON_ANIMATION_TRACK")
        s.u16("track bone")
        while s.peek_id() == _KEYFRAME:
            _, length, start = s.chunk(_KEYFRAME, "SKELETON_ANIMATION_TRACK_KEYFRAME")
            s.f32(8, "keyframe time, rotation and translation")
            if length >= s.pos - start + 12:
                s.f32(3, "keyframe scale")
    return name

"""Biovision Hierarchy (BVH) files: skeleton, motion, forward kinematics.

The paper stores the hand poses recovered by inverse kinematics as BVH and changes bone lengths by
editing OFFSETs; this module is the generic layer under that (any skeleton, any channel layout).

Convention (the usual reading of the format): joint ``j``'s local transform is a translation by
``OFFSET + (Xposition, Yposition, Zposition)`` followed by its rotation channels applied
intrinsically in the order listed ("Zrotation Xrotation Yrotation" gives ``R = Rz @ Rx @ Ry``),
angles in degrees; ``world_j = world_parent @ local_j`` with column vectors. Some tools read
position channels as replacing the OFFSET instead of adding to it; both readings agree when the
joints with position channels have a zero OFFSET, which is how the root is usually written.

Joints are kept in the file's depth-first order, which is also the order of their channels in a
MOTION line, so ``parent[j] < j`` always holds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from handvox.atomic import atomic_path
from handvox.errors import DataError

POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
CHANNELS = POSITION_CHANNELS + ROTATION_CHANNELS
_CANONICAL = {c.lower(): c for c in CHANNELS}


def _vec3(value, what: str) -> np.ndarray:
    v = np.array(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise ValueError(f"{what} must be 3 finite numbers, got {value!r}")
    return v


@dataclass(eq=False)
class BVHJoint:
    """One joint of a BVH skeleton.

    Attributes:
        name: unique name, one token (no whitespace or braces).
        parent: index of the parent joint in :attr:`BVH.joints`, -1 for the root.
        offset: (3,) position in the parent's frame at rest, in mm.
        channels: motion channels of this joint, any subset and order of :data:`CHANNELS`.
        end_site: (3,) offset of an End Site in this joint's frame, or None.
    """

    name: str
    parent: int
    offset: np.ndarray
    channels: tuple[str, ...] = ()
    end_site: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() or c in "{}" for c in self.name):
            raise ValueError(f"joint name {self.name!r} must be one token without braces")
        self.offset = _vec3(self.offset, f"OFFSET of {self.name}")
        self.channels = tuple(self.channels)
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown or len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channels of {self.name} {self.channels} must be distinct {CHANNELS}")
        if self.end_site is not None:
            self.end_site = _vec3(self.end_site, f"End Site of {self.name}")

    @property
    def rotation_order(self) -> str:
        """Axes of the rotation channels in order, e.g. ``"ZXY"`` ('' when there are none)."""
        return "".join(c[0] for c in self.channels if c in ROTATION_CHANNELS)


@dataclass(eq=False)
class BVH:
    """A skeleton and its motion.

    Attributes:
        joints: joints in depth-first order (the order of the file), root first.
        frame_time: seconds per frame.
        motion: (F, C) channel values per frame, joint by joint in the order of
            :meth:`channel_slices`; degrees for rotations, mm for positions.
            Defaults to one frame of zeros (the rest pose).
    """

    joints: list[BVHJoint]
    frame_time: float = 1.0 / 30.0
    motion: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        self.joints = list(self.joints)
        if not self.joints or self.joints[0].parent != -1:
            raise ValueError("a BVH needs a root joint (parent -1) first")
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise ValueError(f"joint names must be unique: {names}")
        path = [0]  # ancestors of the previous joint: a depth-first order continues from them
        for i, joint in enumerate(self.joints[1:], start=1):
            while path and path[-1] != joint.parent:
                path.pop()
            if not path:
                raise ValueError(
                    f"joint {i} ({joint.name}) has parent {joint.parent}: joints must be in "
                    "depth-first order (each parent is the previous joint or one of its ancestors)"
                )
            path.append(i)
        if not (np.isfinite(self.frame_time) and self.frame_time > 0):
            raise ValueError(f"frame_time must be positive, got {self.frame_time}")
        self.frame_time = float(self.frame_time)
        if self.motion is None:
            self.motion = np.zeros((1, self.num_channels))
        self.motion = np.array(self.motion, dtype=np.float64)
        if self.motion.ndim != 2 or self.motion.shape[1] != self.num_channels:
            raise ValueError(f"motion must be (F, {self.num_channels}), got {self.motion.shape}")
        if not np.isfinite(self.motion).all():
            raise ValueError("motion holds NaN or infinite values")

    @property
    def num_channels(self) -> int:
        return sum(len(j.channels) for j in self.joints)

    @property
    def num_frames(self) -> int:
        return self.motion.shape[0]

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def parents(self) -> np.ndarray:
        """(J,) parent index of each joint, -1 for the root."""
        return np.array([j.parent for j in self.joints], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        """(J, 3) OFFSET of each joint."""
        return np.stack([j.offset for j in self.joints])

    def end_site_joints(self) -> np.ndarray:
        """(E,) indices of the joints that have an End Site, in order."""
        return np.array([i for i, j in enumerate(self.joints) if j.end_site is not None], np.int64)

    def channel_slices(self) -> list[slice]:
        """Columns of :attr:`motion` that belong to each joint."""
        out, start = [], 0
        for j in self.joints:
            out.append(slice(start, start + len(j.channels)))
            start += len(j.channels)
        return out

    def joint_index(self, name: str) -> int:
        for i, j in enumerate(self.joints):
            if j.name == name:
                return i
        raise KeyError(f"no joint named {name!r} (joints: {', '.join(self.names)})")

    def with_offsets(self, offsets: np.ndarray, end_sites: np.ndarray | None = None) -> BVH:
        """A copy with new OFFSETs (J, 3) and, optionally, new End Sites (E, 3) in the order of
        :meth:`end_site_joints`; the motion is unchanged, so only bone lengths change."""
        offsets = np.asarray(offsets, dtype=np.float64)
        if offsets.shape != (len(self.joints), 3):
            raise ValueError(f"offsets must be ({len(self.joints)}, 3), got {offsets.shape}")
        ends = self.end_site_joints()
        if end_sites is not None:
            end_sites = np.asarray(end_sites, dtype=np.float64)
            if end_sites.shape != (len(ends), 3):
                raise ValueError(f"end_sites must be ({len(ends)}, 3), got {end_sites.shape}")
        new_ends = {} if end_sites is None else dict(zip(ends.tolist(), end_sites, strict=True))
        joints = [
            BVHJoint(j.name, j.parent, offsets[i], j.channels, new_ends.get(i, j.end_site))
            for i, j in enumerate(self.joints)
        ]
        return BVH(joints, self.frame_time, self.motion.copy())

    def scale_bones(
        self, factors: float | np.ndarray, end_site_factors: float | np.ndarray | None = None
    ) -> BVH:
        """A copy whose OFFSET of joint ``j`` (the bone from its parent to it) is multiplied by
        ``factors[j]`` (a scalar scales the whole skeleton), root included: with a zero root OFFSET
        that only changes bone lengths. End Site of joint ``j`` is multiplied by
        ``end_site_factors[j]``, by default by ``factors[j]`` (the last bone of a chain follows
        the one before it)."""
        n = len(self.joints)
        f = np.broadcast_to(np.asarray(factors, dtype=np.float64), (n,))
        fe = f if end_site_factors is None else np.asarray(end_site_factors, dtype=np.float64)
        fe = np.broadcast_to(fe, (n,))
        ends = self.end_site_joints()
        end_sites = np.array([self.joints[i].end_site * fe[i] for i in ends]).reshape(-1, 3)
        return self.with_offsets(self.offsets * f[:, None], end_sites)


# --- rotations ------------------------------------------------------------------------------


def _axes(order: str | Sequence[str]) -> str:
    """``"ZXY"``, ``"zxy"`` or channel names -> ``"ZXY"`` (position channels ignored)."""
    if isinstance(order, str) and not order.lower().endswith(("rotation", "position")):
        axes = order.upper()
    else:
        names = [order] if isinstance(order, str) else list(order)
        axes = "".join(c[0].upper() for c in names if c.lower().endswith("rotation"))
    if not (1 <= len(axes) <= 3) or set(axes) - set("XYZ") or len(set(axes)) != len(axes):
        raise ValueError(f"rotation order {order!r} must be 1 to 3 distinct axes of X, Y, Z")
    return axes


def matrices_from_channels(angles: np.ndarray, order: str | Sequence[str]) -> np.ndarray:
    """Rotation matrices of intrinsic Euler angles in degrees, as BVH rotation channels.

    Args:
        angles: (..., K) one angle per axis of ``order``.
        order: K axes (``"ZXY"``) or channel names (``("Zrotation", "Xrotation", "Yrotation")``).

    Returns:
        (..., 3, 3) ``R = R_axis0 @ R_axis1 @ ...``.
    """
    axes = _axes(order)
    angles = np.asarray(angles, dtype=np.float64)
    if angles.shape[-1:] != (len(axes),):
        raise ValueError(f"angles must be (..., {len(axes)}) for order {axes}, got {angles.shape}")
    flat = angles.reshape(-1, len(axes))
    mats = Rotation.from_euler(axes, flat, degrees=True).as_matrix()
    return mats.reshape(*angles.shape[:-1], 3, 3)


def channels_from_matrices(
    rotations: np.ndarray, order: str | Sequence[str], atol: float = 1e-6
) -> np.ndarray:
    """Intrinsic Euler angles in degrees that reproduce rotation matrices, for BVH channels.

    Inverse of :func:`matrices_from_channels` up to rounding. With fewer than 3 axes the rotation
    must be one those axes can express (e.g. a hinge about X for "Xrotation").

    Args:
        rotations: (..., 3, 3) rotation matrices (orthonormalised first).
        order: K axes (``"ZXY"``) or channel names.
        atol: largest matrix difference accepted when K < 3.

    Returns:
        (..., K) angles in (-180, 180].

    Raises:
        ValueError: a rotation is not expressible by K < 3 axes.
    """
    axes = _axes(order)
    rotations = np.asarray(rotations, dtype=np.float64)
    if rotations.shape[-2:] != (3, 3):
        raise ValueError(f"rotations must be (..., 3, 3), got {rotations.shape}")
    lead = rotations.shape[:-2]
    flat = rotations.reshape(-1, 3, 3)
    full = axes + "".join(a for a in "XYZ" if a not in axes)
    with warnings.catch_warnings():
        # at gimbal lock scipy zeroes the third angle; the angles still reproduce the matrix
        warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
        angles = Rotation.from_matrix(flat).as_euler(full, degrees=True)[:, : len(axes)]
    if len(axes) < 3:
        err = np.abs(matrices_from_channels(angles, axes) - flat).max(initial=0.0)
        if err > atol:
            raise ValueError(f"a rotation is not expressible by axes {axes} (error {err:.3g})")
    return angles.reshape(*lead, len(axes))


# --- motion <-> local transforms ------------------------------------------------------------


def decode_motion(bvh: BVH) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations and position channel values of every joint.

    Returns:
        rotations: (F, J, 3, 3), identity for joints without rotation channels.
        translations: (F, J, 3) position channel values (zero where a joint has none); the
            local translation of a joint is ``offset + translations``.
    """
    f, n = bvh.num_frames, len(bvh.joints)
    rotations = np.broadcast_to(np.eye(3), (f, n, 3, 3)).copy()
    translations = np.zeros((f, n, 3))
    for j, (joint, cols) in enumerate(zip(bvh.joints, bvh.channel_slices(), strict=True)):
        values = bvh.motion[:, cols]
        rot = [k for k, c in enumerate(joint.channels) if c in ROTATION_CHANNELS]
        if rot:
            rotations[:, j] = matrices_from_channels(values[:, rot], joint.rotation_order)
        for k, c in enumerate(joint.channels):
            if c in POSITION_CHANNELS:
                translations[:, j, POSITION_CHANNELS.index(c)] = values[:, k]
    return rotations, translations


def encode_motion(
    joints: Sequence[BVHJoint],
    rotations: np.ndarray,
    translations: np.ndarray | None = None,
    atol: float = 1e-6,
) -> np.ndarray:
    """Channel values for local rotations and translations (what a kinematic model produces).

    Args:
        joints: the skeleton (J joints), for their channels.
        rotations: (F, J, 3, 3) local rotation of each joint.
        translations: (F, J, 3) position channel values (added to OFFSETs), zero if None.
        atol: largest rotation-matrix or translation residual a joint's channels may leave.

    Returns:
        (F, C) motion for :class:`BVH`.

    Raises:
        ValueError: a joint's channels cannot express its rotation or translation.
    """
    rotations = np.asarray(rotations, dtype=np.float64)
    n = len(joints)
    if rotations.ndim != 4 or rotations.shape[1:] != (n, 3, 3):
        raise ValueError(f"rotations must be (F, {n}, 3, 3), got {rotations.shape}")
    f = rotations.shape[0]
    if translations is None:
        translations = np.zeros((f, n, 3))
    translations = np.asarray(translations, dtype=np.float64)
    if translations.shape != (f, n, 3):
        raise ValueError(f"translations must be ({f}, {n}, 3), got {translations.shape}")
    columns = []
    for j, joint in enumerate(joints):
        order = joint.rotation_order
        if order:
            try:
                angles = channels_from_matrices(rotations[:, j], order, atol)
            except ValueError as e:
                raise ValueError(f"joint {joint.name}: {e}") from None
        elif np.abs(rotations[:, j] - np.eye(3)).max(initial=0.0) > atol:
            raise ValueError(f"joint {joint.name} has no rotation channels but is rotated")
        free = [a for a in range(3) if POSITION_CHANNELS[a] not in joint.channels]
        if free and np.abs(translations[:, j, free]).max(initial=0.0) > atol:
            raise ValueError(f"joint {joint.name} lacks position channels for its translation")
        for c in joint.channels:
            if c in POSITION_CHANNELS:
                columns.append(translations[:, j, POSITION_CHANNELS.index(c)])
            else:
                columns.append(angles[:, order.index(c[0])])
    return np.stack(columns, axis=1) if columns else np.zeros((f, 0))


# --- forward kinematics ---------------------------------------------------------------------


def global_transforms(bvh: BVH) -> tuple[np.ndarray, np.ndarray]:
    """World rotation and position of every joint in every frame.

    Returns:
        rotations: (F, J, 3, 3) world orientation of each joint's frame.
        positions: (F, J, 3) world position of each joint, in mm.
    """
    local_r, trans = decode_motion(bvh)
    local_t = trans + bvh.offsets
    world_r, world_t = np.empty_like(local_r), np.empty_like(local_t)
    for j, p in enumerate(bvh.parents):
        if p < 0:
            world_r[:, j], world_t[:, j] = local_r[:, j], local_t[:, j]
        else:
            world_r[:, j] = world_r[:, p] @ local_r[:, j]
            world_t[:, j] = world_t[:, p] + np.einsum("fab,fb->fa", world_r[:, p], local_t[:, j])
    return world_r, world_t


def bvh_positions(bvh: BVH, end_sites: bool = False) -> np.ndarray:
    """World positions of the joints, in mm.

    Args:
        end_sites: append the End Sites after the joints, in the order of
            :meth:`BVH.end_site_joints`.

    Returns:
        (F, J, 3), or (F, J + E, 3) with ``end_sites``.
    """
    world_r, world_t = global_transforms(bvh)
    if not end_sites:
        return world_t
    ends = bvh.end_site_joints()
    local = np.array([bvh.joints[i].end_site for i in ends]).reshape(-1, 3)
    tips = world_t[:, ends] + np.einsum("fjab,jb->fja", world_r[:, ends], local)
    return np.concatenate([world_t, tips], axis=1)


# --- files ----------------------------------------------------------------------------------


def write_bvh(path: str | Path, bvh: BVH, precision: int = 6, indent: str = "\t") -> None:
    """Write ``bvh`` as a standard BVH text file, atomically (a reader never sees half a file).

    Args:
        precision: decimals of every number; 6 keeps positions within ~1e-5 mm of the data.
        indent: one level of indentation (tab, as most tools write, or spaces).
    """
    BVH(bvh.joints, bvh.frame_time, bvh.motion)  # re-validate: fields may have been reassigned
    num = f"{{:.{precision}f}}".format
    children: dict[int, list[int]] = {}
    for i, j in enumerate(bvh.joints):
        children.setdefault(j.parent, []).append(i)
    lines = ["HIERARCHY"]

    def emit(i: int, depth: int) -> None:
        j, pad, inner = bvh.joints[i], indent * depth, indent * (depth + 1)
        lines.append(f"{pad}{'ROOT' if j.parent < 0 else 'JOINT'} {j.name}")
        lines.append(f"{pad}{{")
        lines.append(f"{inner}OFFSET {' '.join(num(v) for v in j.offset)}")
        lines.append(f"{inner}CHANNELS {len(j.channels)} {' '.join(j.channels)}".rstrip())
        for c in children.get(i, []):
            emit(c, depth + 1)
        if j.end_site is not None:
            lines.extend([f"{inner}End Site", f"{inner}{{"])
            lines.append(f"{inner}{indent}OFFSET {' '.join(num(v) for v in j.end_site)}")
            lines.append(f"{inner}}}")
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {bvh.num_frames}", f"Frame Time: {bvh.frame_time:.8f}"]
    # not mkstemp: its 0600 mode would outlive the rename; open() honours the umask
    with atomic_path(path, mkdir=False) as tmp, open(tmp, "x", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")
        if bvh.num_channels:
            np.savetxt(f, bvh.motion, fmt=f"%.{precision}f", delimiter=" ")


class _Tokens:
    """Whitespace-separated tokens of the header with their 1-based line numbers."""

    def __init__(self, path: Path, lines: list[str]):
        self.path, self.lines = path, lines
        self.toks = [(t, n) for n, line in enumerate(lines, 1) for t in line.split()]
        self.pos = 0

    def fail(self, problem: str, line: int | None = None) -> DataError:
        if line is None:
            line = self.toks[self.pos][1] if self.pos < len(self.toks) else len(self.lines) or 1
        return DataError(self.path, f"line {line}: {problem}")

    def next(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.toks):
            raise self.fail(f"file ends where {what} was expected")
        self.pos += 1
        return self.toks[self.pos - 1]

    def peek(self) -> str:
        return self.toks[self.pos][0].upper() if self.pos < len(self.toks) else ""

    def expect(self, *words: str) -> int:
        line = 0
        for w in words:
            tok, line = self.next(w)
            if tok.upper() != w.upper():
                raise self.fail(f"expected {w!r}, found {tok!r}", line)
        return line

    def number(self, what: str) -> float:
        tok, line = self.next(what)
        try:
            value = float(tok)
        except ValueError:
            raise self.fail(f"{what} {tok!r} is not a number", line) from None
        if not np.isfinite(value):
            raise self.fail(f"{what} is {tok}", line)
        return value

    def offset(self) -> np.ndarray:
        self.expect("OFFSET")
        return np.array([self.number("OFFSET value") for _ in range(3)])


def _parse_joint(t: _Tokens, joints: list[BVHJoint], parent: int) -> None:
    name, name_line = t.next("joint name")
    if name in "{}":
        raise t.fail(f"joint name expected, found {name!r}", name_line)
    t.expect("{")
    offset = t.offset()
    channels: list[str] = []
    if t.peek() == "CHANNELS":
        t.expect("CHANNELS")
        count, line = t.next("channel count")
        if not count.isdigit():
            raise t.fail(f"channel count {count!r} is not a whole number", line)
        for _ in range(int(count)):
            tok, line = t.next("channel name")
            if tok.lower() not in _CANONICAL:
                raise t.fail(f"unknown channel {tok!r} (known: {' '.join(CHANNELS)})", line)
            if _CANONICAL[tok.lower()] in channels:
                raise t.fail(f"channel {tok!r} repeated", line)
            channels.append(_CANONICAL[tok.lower()])
    index = len(joints)
    try:
        joints.append(BVHJoint(name, parent, offset, tuple(channels)))
    except ValueError as e:
        raise t.fail(str(e), name_line) from None
    while True:
        word = t.peek()
        if word == "JOINT":
            t.expect("JOINT")
            _parse_joint(t, joints, index)
        elif word == "END":
            line = t.expect("End", "Site", "{")
            if joints[index].end_site is not None:
                raise t.fail(f"second End Site in joint {name}", line)
            joints[index].end_site = t.offset()
            t.expect("}")
        elif word == "}":
            t.expect("}")
            return
        elif word in ("", "MOTION"):
            raise t.fail(f"unbalanced braces: joint {name} is not closed")
        else:
            raise t.fail(f"unexpected {t.toks[t.pos][0]!r} in joint {name}")


def read_bvh(path: str | Path) -> BVH:
    """Read a BVH file (any whitespace and line endings, End Sites, any channel order).

    Raises:
        DataError: the file is missing or malformed; the message names the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"cannot read as text: {e}") from None
    lines = text.splitlines()
    t = _Tokens(path, lines)
    t.expect("HIERARCHY")
    t.expect("ROOT")
    joints: list[BVHJoint] = []
    _parse_joint(t, joints, -1)
    word = t.peek()
    if word == "}":
        raise t.fail("unbalanced braces: '}' without an open joint")
    if word == "ROOT":
        raise t.fail("several ROOT skeletons in one file are not supported")
    if word != "MOTION":
        raise t.fail("missing MOTION section after the hierarchy")
    t.expect("MOTION", "Frames:")
    tok, line = t.next("frame count")
    if not tok.isdigit():
        raise t.fail(f"frame count {tok!r} is not a whole number", line)
    t.expect("Frame", "Time:")
    frame_time = t.number("Frame Time")
    if frame_time <= 0:
        raise t.fail(f"Frame Time {frame_time} is not positive")
    header_end = t.toks[t.pos - 1][1]  # frames start on the line after "Frame Time: x"
    if t.pos < len(t.toks) and t.toks[t.pos][1] == header_end:
        raise t.fail(f"unexpected {t.toks[t.pos][0]!r} after Frame Time", header_end)
    width = sum(len(j.channels) for j in joints)
    motion = _parse_frames(t, header_end, int(tok), width)
    try:
        return BVH(joints, frame_time, motion)
    except ValueError as e:  # e.g. two joints with one name
        raise DataError(path, str(e)) from None


def _parse_frames(t: _Tokens, header_end: int, count: int, width: int) -> np.ndarray:
    rows = [(n, line.split()) for n, line in enumerate(t.lines[header_end:], header_end + 1)]
    rows = [(n, r) for n, r in rows if r]
    if width == 0:
        return np.zeros((count, 0))
    if len(rows) != count:
        last = rows[-1][0] if rows else header_end
        raise t.fail(f"Frames: {count} but {len(rows)} frame lines (truncated?)", last)
    for n, r in rows:
        if len(r) != width:
            raise t.fail(f"frame has {len(r)} values, the hierarchy has {width} channels", n)
    try:
        motion = np.array([r for _, r in rows], dtype=np.float64).reshape(count, width)
    except ValueError:
        for n, r in rows:
            for tok in r:
                try:
                    float(tok)
                except ValueError:
                    raise t.fail(f"frame value {tok!r} is not a number", n) from None
        raise
    bad = ~np.isfinite(motion)
    if bad.any():
        k = int(np.argwhere(bad)[0, 0])
        raise t.fail("frame holds NaN or infinite values", rows[k][0])
    return motion

"""MSRA 2015 hand gesture dataset (Sun et al., CVPR 2015) as distributed.

Layout: ``root/P0..P8/<gesture>/NNNNNN_depth.bin`` with ``joint.txt`` beside them: a first line
holding the frame count, then one line per frame of 21 x (x y z) mm in the order of
:data:`~handvox.joints.MSRA21`. Depth files are the ``msra`` encoding of :mod:`handvox.io.depth`.

Sign convention of ``joint.txt``: y points up and z is negated (points in front of the camera have
z < 0). Both loaders the community's MSRA results come from read it so: DeepPrior++'s
``MSRA15Importer.loadSequence`` negates z only and then projects with ``v = cy - y fy / z``
(y up), and V2V-PoseNet-pytorch's ``datasets/msra_hand.py`` stores ``(x, y, -z)`` in a world frame
whose ``pixel2world`` has ``y = (cy - v) z / fy``. In handvox's OpenCV frame (y down) that is
``(x, -y, -z)`` of the file's values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.frames import FrameDataset, read_frame
from handvox.io.record import HandRecord
from handvox.joints import MSRA21, convert_joints, get_joint_set

_FILE_SIGNS = np.array([1.0, -1.0, -1.0], np.float32)  # file (x, y, z) <-> OpenCV (x, y, z)


def read_msra_joints(path: str | Path) -> np.ndarray:
    """Read a ``joint.txt`` as ``(N, 21, 3)`` float32 xyz mm in handvox's frame (y down, z > 0)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable ({e})") from None
    lines = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    try:
        count = int(lines[0][1])
    except (IndexError, ValueError):
        raise DataError(path, "line 1 must hold the number of frames") from None
    if count != len(lines) - 1:
        raise DataError(path, f"line 1 says {count} frames, the file has {len(lines) - 1}")
    joints = np.empty((count, len(MSRA21) * 3), np.float32)
    for row, (lineno, line) in enumerate(lines[1:]):
        try:
            values = [float(t) for t in line.split()]
        except ValueError as e:
            raise DataError(path, f"line {lineno}: not a number ({e})") from None
        if len(values) != joints.shape[1]:
            raise DataError(path, f"line {lineno}: {len(values)} numbers, expected 63")
        joints[row] = values
    if not np.isfinite(joints).all():
        raise DataError(path, "NaN or infinite joint coordinates")
    return joints.reshape(count, len(MSRA21), 3) * _FILE_SIGNS


def _subject_name(s: int | str) -> str:
    return str(s) if str(s).startswith("P") else f"P{s}"


def _comma_list(text: str) -> list[str]:
    return [s for s in text.split(",") if s]


class MSRADataset(FrameDataset):
    """Frames of chosen subjects and gestures of MSRA 2015, read lazily.

    Args:
        root: the folder holding ``P0`` .. ``P8``.
        subjects: subjects to include, as ``0..8`` or ``"P0".."P8"``; default all found.
        gestures: gesture folders to include (``"1"``.. ``"9"``, ``"I"``, ``"IP"``, ...); default
            all found (the 17 of the release).
        joint_set: ``"msra21"`` or ``"canonical21"`` (an exact re-ordering).
    Frame ids are ``P0/1/000000``.
    """

    OPTIONS = {"subjects": _comma_list, "gestures": _comma_list}

    def __init__(
        self,
        root: str | Path,
        subjects: list[int | str] | None = None,
        gestures: list[str] | None = None,
        joint_set: str = "msra21",
    ):
        self.root = Path(root)
        self.camera = Camera.preset("msra")
        self.joint_set = get_joint_set(joint_set)
        if subjects is None:
            subjects = sorted(p.name for p in self.root.glob("P*") if p.is_dir())
        xyz, self.frame_ids = [], []
        for subject in map(_subject_name, subjects):
            if not (self.root / subject).is_dir():
                raise DataError(self.root / subject, "no such subject folder")
            names = gestures or sorted(
                p.parent.name for p in (self.root / subject).glob("*/joint.txt")
            )
            for gesture in names:
                joints = read_msra_joints(self.root / subject / gesture / "joint.txt")
                xyz.append(joints)
                self.frame_ids += [f"{subject}/{gesture}/{i:06d}" for i in range(len(joints))]
        if not self.frame_ids:
            raise DataError(self.root, "no MSRA frames found (expected P*/<gesture>/joint.txt)")
        self.joints_xyz = convert_joints(
            np.concatenate(xyz), MSRA21, self.joint_set, exact_only=True
        )
        self.joints_uvd = self.camera.xyz_to_uvd(self.joints_xyz)

    def image_path(self, i: int) -> Path:
        return self.root / f"{self.frame_ids[i]}_depth.bin"

    def _load(self, i: int) -> HandRecord:
        return HandRecord(
            depth=read_frame(self.image_path(i), "msra", self.camera),
            camera=self.camera,
            joints_xyz=self.joints_xyz[i].copy(),
            joints_uvd=self.joints_uvd[i].copy(),
            joint_set=self.joint_set,
            frame_id=self.frame_ids[i],
        )

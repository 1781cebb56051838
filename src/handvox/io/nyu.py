"""NYU hand pose dataset (Tompson et al. 2014) as distributed.

Layout: ``root/{train,test}/`` each holding ``depth_K_NNNNNNN.png`` (kinect K = 1..3, frames from
1), the paired noise-free ``synthdepth_K_NNNNNNN.png`` (same RGB encoding) and ``joint_data.mat``
with ``joint_xyz`` and ``joint_uvd`` (kinects x frames x 36 x 3) and ``joint_names``.
``joint_xyz`` is y-up; it is flipped to handvox's y-down frame here, at the boundary.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from handvox.camera import Camera, flip_y
from handvox.errors import DataError
from handvox.io.frames import FrameDataset, read_frame
from handvox.io.record import HandRecord
from handvox.joints import NYU36, convert_joints, get_joint_set

SPLITS = ("train", "test")
JOINT_SETS = ("nyu14", "nyu36")


def _load_joint_data(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():  # scipy reports a missing file as a generic OSError
        raise DataError(path, "no such file")
    try:
        # joint_names is not read: the 36 slots are always in NYU36's order.
        mat = scipy.io.loadmat(path, variable_names=("joint_xyz", "joint_uvd"))
    except NotImplementedError:
        raise DataError(
            path, "MATLAB v7.3 (HDF5) file: h5py is needed to read it (or re-save it with save -v7)"
        ) from None
    except Exception as e:  # scipy's parser raises many types on corrupt data; all mean the same
        raise DataError(path, f"unreadable or corrupt MATLAB file ({type(e).__name__}: {e})") from e
    for key in ("joint_xyz", "joint_uvd"):
        if key not in mat:
            raise DataError(path, f"no variable {key!r}")
        a = mat[key]
        if a.ndim != 4 or a.shape[2:] != (36, 3) or a.dtype.kind not in "fiu":
            raise DataError(path, f"{key} must be numeric kinects x frames x 36 x 3, got {a.shape}")
    if mat["joint_xyz"].shape != mat["joint_uvd"].shape:
        raise DataError(path, "joint_xyz and joint_uvd differ in shape")
    return mat


class NYUDataset(FrameDataset):
    """Frames of one split and one kinect of the NYU dataset, read lazily.

    Args:
        root: the folder holding ``train/`` and ``test/``.
        split: ``"train"`` (72,757 frames) or ``"test"`` (8,252).
        kinect: camera 1, 2 or 3 (the community evaluates camera 1).
        joint_set: ``"nyu14"`` (the evaluation subset) or ``"nyu36"`` (all labelled points).
        load_clean: also read the ``synthdepth`` image into ``clean_depth``.
    """

    OPTIONS = {"split": str, "kinect": int}

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        kinect: int = 1,
        joint_set: str = "nyu14",
        load_clean: bool = False,
    ):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if joint_set not in JOINT_SETS:
            raise ValueError(f"joint_set must be one of {JOINT_SETS}, got {joint_set!r}")
        self.folder = Path(root) / split
        self.split, self.kinect, self.load_clean = split, kinect, load_clean
        self.joint_set = get_joint_set(joint_set)
        self.camera = Camera.preset("nyu")

        label_path = self.folder / "joint_data.mat"
        mat = _load_joint_data(label_path)
        n_kinects = mat["joint_xyz"].shape[0]
        if not 1 <= kinect <= n_kinects:
            raise DataError(label_path, f"kinect {kinect} requested, file has 1..{n_kinects}")
        # Keep only this kinect's joints in the chosen set: small to copy to DataLoader workers.
        xyz, uvd = (mat[k][kinect - 1].astype(np.float32) for k in ("joint_xyz", "joint_uvd"))
        if not (np.isfinite(xyz).all() and np.isfinite(uvd).all()):
            raise DataError(label_path, "joint labels hold NaN or infinite values")
        self.joints_xyz = convert_joints(flip_y(xyz), NYU36, self.joint_set)
        self.joints_uvd = convert_joints(uvd, NYU36, self.joint_set)
        self.frame_ids = [f"{split}/{kinect}/{i:07d}" for i in range(1, len(xyz) + 1)]

    def image_path(self, i: int, clean: bool = False) -> Path:
        """The depth (or ``synthdepth``) PNG of frame index ``i`` (0-based)."""
        prefix = "synthdepth" if clean else "depth"
        return self.folder / f"{prefix}_{self.kinect}_{i + 1:07d}.png"

    def _load(self, i: int) -> HandRecord:
        clean = (
            read_frame(self.image_path(i, True), "nyu", self.camera) if self.load_clean else None
        )
        return HandRecord(
            depth=read_frame(self.image_path(i), "nyu", self.camera),
            camera=self.camera,
            joints_xyz=self.joints_xyz[i].copy(),
            joints_uvd=self.joints_uvd[i].copy(),
            joint_set=self.joint_set,
            frame_id=self.frame_ids[i],
            clean_depth=clean,
        )

"""ICVL hand posture dataset (Tang et al. 2014) as distributed.

Layout: ``root/Training/labels.txt`` (images under ``root/Training/Depth/``) and
``root/Testing/test_seq_1.txt``, ``test_seq_2.txt`` (images under ``root/Testing/Depth/``). Each
label line is ``<relative image path> u1 v1 d1 ... u16 v16 d16``; images are 16-bit PNGs in mm,
320x240. Labels are uvd (v down), so xyz follows from the camera directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.frames import FrameDataset, read_frame
from handvox.io.labels import read_labels
from handvox.io.record import HandRecord
from handvox.joints import ICVL16

LABEL_FILES = {
    "train": ("Training", ["labels.txt"]),
    "test": ("Testing", ["test_seq_1.txt", "test_seq_2.txt"]),
}


class ICVLDataset(FrameDataset):
    """Frames of the ICVL training or test set, read lazily.

    Args:
        root: the folder holding ``Training/`` and ``Testing/``.
        split: ``"train"`` or ``"test"`` (1596 frames: 702 in test_seq_1, 894 in test_seq_2).
    Frame ids are the image paths as the label files give them (``test_seq_1/image_0000.png``).
    """

    OPTIONS = {"split": str}

    def __init__(self, root: str | Path, split: str = "test"):
        if split not in LABEL_FILES:
            raise ValueError(f"split must be one of {sorted(LABEL_FILES)}, got {split!r}")
        folder, label_names = LABEL_FILES[split]
        self.depth_dir = Path(root) / folder / "Depth"
        self.camera = Camera.preset("icvl")
        self.joint_set = ICVL16

        uvd, self.frame_ids = [], []
        for name in label_names:
            labels = read_labels(Path(root) / folder / name, num_joints=len(ICVL16))
            if labels.names is None:
                raise DataError(labels.path, "lines lack the image path as first token")
            uvd.append(labels.joints)
            self.frame_ids += labels.names
        self.joints_uvd = np.concatenate(uvd).astype(np.float32)
        self.joints_xyz = self.camera.uvd_to_xyz(self.joints_uvd)

    def image_path(self, i: int) -> Path:
        return self.depth_dir / self.frame_ids[i]

    def _load(self, i: int) -> HandRecord:
        return HandRecord(
            depth=read_frame(self.image_path(i), "png16", self.camera),
            camera=self.camera,
            joints_xyz=self.joints_xyz[i].copy(),
            joints_uvd=self.joints_uvd[i].copy(),
            joint_set=self.joint_set,
            frame_id=self.frame_ids[i],
        )

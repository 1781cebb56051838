"""What the dataset readers share: lazy frame access and a DataLoader collate.

Every reader parses its labels when constructed and reads a depth image only when a frame is
indexed, so a dataset object is cheap to build and to send to DataLoader workers. Frames are
:class:`~handvox.io.record.HandRecord` objects; to batch them keep a list::

    DataLoader(dataset, batch_size=8, collate_fn=collate_records)  # batches are lists
    DataLoader(dataset, batch_size=None)                           # one record at a time
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from handvox.camera import Camera
from handvox.io.depth import read_depth
from handvox.io.record import HandRecord


class FrameDataset(Dataset):
    """Base class: subclasses fill ``frame_ids`` and implement ``_load(i)`` for ``0 <= i < len``."""

    frame_ids: list[str]
    # Options a dataset spec (handvox.io.datasets.DatasetSpec) may give the reader's constructor:
    # name -> how its text is read.
    OPTIONS: ClassVar[dict[str, Callable[[str], Any]]] = {}
    # True for frames made when they are read (handvox.synth.stream.RenderedFrames): training
    # segments them as it reads them instead of scanning them all first.
    RENDERED: ClassVar[bool] = False

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __getitem__(self, index: int) -> HandRecord:
        i = operator.index(index)
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"frame index {i} out of range for {n} frames")
        return self._load(i % n)

    def _load(self, i: int) -> HandRecord:
        raise NotImplementedError


def read_frame(path: Path, encoding: str, camera: Camera) -> np.ndarray:
    """Read a depth image and check that it has the camera's size."""
    depth = read_depth(path, encoding)
    camera.check_depth(depth, path)
    return depth


def collate_records(records: list[HandRecord]) -> list[HandRecord]:
    """DataLoader ``collate_fn`` that keeps a batch as a list of records (frames differ in size)."""
    return list(records)

"""Real NYU test labels and the subject fitted to them, shared by the IK test modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.hand import ik


@pytest.fixture(scope="session")
def nyu_xyz(shared) -> np.ndarray:
    uvd = np.loadtxt(shared / "data" / "nyu" / "nyu_test_groundtruth_label.txt")
    return Camera.preset("nyu").uvd_to_xyz(uvd.reshape(-1, 14, 3))


@pytest.fixture(scope="session")
def nyu_subject(nyu_xyz) -> ik.SubjectModel:
    """Subject 1 of the NYU test set (frames 0-2439), fitted on 300 of its frames: seconds of
    small tensor ops, faster on one torch thread (a session fixture runs before, and outside,
    the function-scoped ``one_thread``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return ik.fit_subject(nyu_xyz[:2440], "nyu14", frames=300)
    finally:
        torch.set_num_threads(threads)

"""The live window's picture, drawn without a screen (OpenCV's headless build draws the same)."""

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.joints import CANONICAL21

CAM = Camera(300.0, 300.0, 160.0, 120.0, 320, 240)


def _hand():
    rng = np.random.default_rng(0)
    return np.c_[rng.uniform(-60, 60, (21, 2)), rng.uniform(480, 520, 21)]


def test_skeleton_drawn_where_the_joints_project():
    pytest.importorskip("cv2", reason="OpenCV (handvox[viewer]) is not installed")
    from handvox.viz.live import live_image

    depth = np.full((240, 320), 800.0, np.float32)
    depth[:, :20] = 0  # no reading: black
    joints = _hand()
    img = live_image(depth, CAM, joints, "canonical21", "frame 0")
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert (img[100:, :20] == 0).all()
    background = img[230, 300].copy()
    uv = np.rint(CAM.xyz_to_uvd(joints)[:, :2]).astype(int)
    # every joint's pixel is painted (a disc of its finger's colour), unlike the background
    for (u, v), g in zip(uv, CANONICAL21.groups, strict=True):
        assert not np.array_equal(img[v, u], background), (u, v, g)
    # no hand: the depth alone
    plain = live_image(depth, CAM, None, "canonical21", "")
    assert (plain[40:, 20:] == background).all()


def test_the_window_without_opencv_names_the_extra(monkeypatch):
    import importlib

    from handvox.viz import live

    real = importlib.import_module

    def no_cv2(name, *a, **k):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_cv2)
    with pytest.raises(
        HandvoxError, match=r"pip install 'handvox\[viewer\]', or run with --headless"
    ):
        live.OpenCVViewer(CAM, "canonical21")

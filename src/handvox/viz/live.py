"""What a person watching ``handvox live`` sees: an OpenCV window or rerun's 3D viewer.

Both are optional extras (``pip install 'handvox[viewer]'`` for OpenCV with its window,
``'handvox[rerun]'`` for rerun); :func:`live_image` draws the window's picture with NumPy and
OpenCV's line drawing, so what the window shows is testable without a screen.
"""

from __future__ import annotations

import importlib

import numpy as np

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.joints import FINGERS, get_joint_set

# BGR colours of the skeleton by finger group (the palm white), as OpenCV draws.
_GROUP_BGR = {
    "palm": (255, 255, 255),
    "thumb": (60, 60, 230),
    "index": (60, 200, 60),
    "middle": (230, 160, 40),
    "ring": (40, 200, 230),
    "little": (200, 60, 200),
}
assert set(_GROUP_BGR) == {"palm", *FINGERS}


def _module(name: str, extra: str, what: str):
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise HandvoxError(
            f"{what} needs the {name} package ({e}); install it with: pip install "
            f"'handvox[{extra}]', or run with --headless"
        ) from None


def live_image(
    depth: np.ndarray,
    camera: Camera,
    joints: np.ndarray | None,
    joint_set: str,
    text: str,
    near_mm: float = 200.0,
    far_mm: float = 1200.0,
) -> np.ndarray:
    """The window's ``(H, W, 3)`` uint8 BGR picture: ``depth`` (mm) shaded near bright to far
    dark between ``near_mm`` and ``far_mm`` (no reading black), the ``(J, 3)`` ``joints``
    (camera frame, mm; None: none) drawn as the joint set's skeleton, ``text`` at the top."""
    cv2 = _module("cv2", "viewer", "the OpenCV window")
    valid = depth > 0
    shade = np.clip((far_mm - depth) / (far_mm - near_mm), 0.0, 1.0)
    grey = np.where(valid, 40 + 215 * shade, 0).astype(np.uint8)
    img = np.repeat(grey[..., None], 3, axis=-1)
    if joints is not None and np.isfinite(joints).all():
        js = get_joint_set(joint_set)
        uv = camera.xyz_to_uvd(np.asarray(joints, np.float64))[:, :2]
        pts = [tuple(int(round(c)) for c in p) for p in uv]
        for a, b in js.bones:
            cv2.line(img, pts[a], pts[b], _GROUP_BGR[js.groups[b]], 2, cv2.LINE_AA)
        for p, g in zip(pts, js.groups, strict=True):
            cv2.circle(img, p, 3, _GROUP_BGR[g], -1, cv2.LINE_AA)
    cv2.putText(img, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 1, cv2.LINE_AA)
    return img


class OpenCVViewer:
    """A window with :func:`live_image` of each frame; Esc or q closes it (ends the run)."""

    def __init__(self, camera: Camera, joint_set: str):
        self.cv2 = _module("cv2", "viewer", "the OpenCV window")
        self.camera, self.joint_set = camera, joint_set
        self.name = "handvox live"
        try:
            self.cv2.namedWindow(self.name, self.cv2.WINDOW_AUTOSIZE)
        except self.cv2.error as e:  # a headless OpenCV build or no display
            raise HandvoxError(
                f"the OpenCV window cannot open ({str(e).strip().splitlines()[-1]}); install "
                "'handvox[viewer]' (opencv-python, not -headless) on a machine with a screen, "
                "or run with --headless"
            ) from None

    def show(self, frame, joints: np.ndarray | None, latencies: list[float]) -> bool:
        """Draw; False once the person closed the window."""
        recent = latencies[-30:]
        fps = 1000.0 / float(np.mean(recent)) if recent else 0.0
        text = f"frame {frame.index}  {fps:.0f} frames/s  " + (
            "" if joints is not None else "no hand"
        )
        img = live_image(frame.depth, self.camera, joints, self.joint_set, text)
        self.cv2.imshow(self.name, img)
        key = self.cv2.waitKey(1) & 0xFF
        return key not in (27, ord("q"))

    def close(self) -> None:
        self.cv2.destroyWindow(self.name)


class RerunViewer:
    """The depth image under its pinhole camera and the joints as 3D points and bones in rerun's
    viewer (spawned), on a timeline of the frames' time stamps."""

    def __init__(self, camera: Camera, joint_set: str, save: str | None = None):
        self.rr = _module("rerun", "rerun", "the rerun viewer")
        rr = self.rr
        rr.init("handvox live", spawn=save is None)
        if save is not None:
            rr.save(save)
        self.js = get_joint_set(joint_set)
        rr.log(
            "camera",
            rr.Pinhole(
                focal_length=[camera.fx, camera.fy],
                principal_point=[camera.cx, camera.cy],
                width=camera.width,
                height=camera.height,
            ),
            static=True,
        )

    def show(self, frame, joints: np.ndarray | None, latencies: list[float]) -> bool:
        rr = self.rr
        rr.set_time("frame", sequence=frame.index)
        rr.log("camera/depth", rr.DepthImage(frame.depth, meter=1000.0))
        if joints is not None:
            rr.log("hand/joints", rr.Points3D(joints, radii=4.0))
            rr.log(
                "hand/bones", rr.LineStrips3D([[joints[a], joints[b]] for a, b in self.js.bones])
            )
        else:
            rr.log("hand", rr.Clear(recursive=True))
        return True

    def close(self) -> None:
        pass

"""Pinhole depth camera and uvd <-> xyz conversions.

Internal frame: OpenCV (x right, y down, z forward), millimetres. u, v are pixel coordinates
(column, row) and d is depth along z in mm, so uvd and xyz share the same z.

Every function works on NumPy arrays and torch tensors alike, batched over leading dimensions:
shapes are ``(..., 3)`` for points and ``(..., 2)`` for pixels. This module does not import torch
itself (a tensor argument means it is loaded already), so that ``import handvox`` leaves the
process free to configure OpenMP before torch starts (see :mod:`handvox.cli`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from handvox.errors import HandvoxError, SizeMismatch

if TYPE_CHECKING:  # annotations only: see the module docstring
    import torch

Array = TypeVar("Array", np.ndarray, "torch.Tensor")


def is_tensor(x: object) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch."""
    return type(x).__module__.partition(".")[0] == "torch"


def _stack(parts: list, like: Array) -> Array:
    if is_tensor(like):
        import torch  # loaded already (a tensor exists); not at the top: see the module docstring

        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def uvd_to_xyz(uvd: Array, fx: float, fy: float, cx: float, cy: float) -> Array:
    """Back-project pixels with depth to camera-frame points.

    Args:
        uvd: ``(..., 3)`` u (px), v (px), d (mm).
    Returns:
        ``(..., 3)`` x, y, z in mm, OpenCV frame (y down).
    """
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return _stack([(u - cx) * d / fx, (v - cy) * d / fy, d], uvd)


def xyz_to_uvd(xyz: Array, fx: float, fy: float, cx: float, cy: float) -> Array:
    """Project camera-frame points to pixels, keeping depth.

    Args:
        xyz: ``(..., 3)`` mm, OpenCV frame.
    Returns:
        ``(..., 3)`` u (px), v (px), d (mm). Points at z <= 0 give inf/nan pixels.
    """
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return _stack([x * fx / z + cx, y * fy / z + cy, z], xyz)


def flip_y(xyz: Array) -> Array:
    """Convert between our y-down frame and the y-up frame of NYU's files and scorer.

    The conversion is its own inverse. ``(..., 3) -> (..., 3)``.
    """
    return _stack([xyz[..., 0], -xyz[..., 1], xyz[..., 2]], xyz)


@dataclass(frozen=True)
class Camera:
    """Pinhole intrinsics (pixels) and image size of a depth camera."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def preset(cls, name: str) -> Camera:
        """The camera of a public dataset or sensor: ``nyu``, ``icvl``, ``msra``, ``sr305`` or
        ``hands17``."""
        try:
            return PRESETS[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown camera preset {name!r}; choose one of {sorted(PRESETS)}"
            ) from None

    @classmethod
    def from_string(cls, spec: str) -> Camera:
        """A preset name, or ``fx,fy,cx,cy,width,height``."""
        if "," not in spec:
            return cls.preset(spec)
        parts = spec.split(",")
        if len(parts) != 6:
            raise ValueError(f"camera {spec!r}: expected a preset or fx,fy,cx,cy,width,height")
        fx, fy, cx, cy = (float(p) for p in parts[:4])
        return cls(fx, fy, cx, cy, int(parts[4]), int(parts[5]))

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        return self.fx, self.fy, self.cx, self.cy

    def uvd_to_xyz(self, uvd: Array) -> Array:
        """``(..., 3)`` uvd -> ``(..., 3)`` xyz mm (OpenCV)."""
        return uvd_to_xyz(uvd, *self.intrinsics)

    def mirrored(self) -> Camera:
        """The camera of this camera's images flipped left to right (``u -> width - 1 - u``):
        they show the scene mirrored (``x -> -x``), a left hand as a right one."""
        return Camera(self.fx, self.fy, self.width - 1 - self.cx, self.cy, self.width,
                      self.height)  # fmt: skip

    def xyz_to_uvd(self, xyz: Array) -> Array:
        """``(..., 3)`` xyz mm (OpenCV) -> ``(..., 3)`` uvd."""
        return xyz_to_uvd(xyz, *self.intrinsics)

    def project(self, xyz: Array) -> Array:
        """``(..., 3)`` xyz mm -> ``(..., 2)`` pixel coordinates u, v."""
        return self.xyz_to_uvd(xyz)[..., :2]

    def check_depth(
        self, depth: np.ndarray | torch.Tensor, source: str | Path | None = None, hint: str = ""
    ) -> None:
        """Raise :class:`~handvox.errors.DataError` (naming ``source``) unless the image size of
        ``depth`` (``(..., H, W)``) is this camera's: other intrinsics would not apply to it.
        ``hint`` ends the message (e.g. which option gives the camera)."""
        shape = tuple(depth.shape)
        if len(shape) < 2 or shape[-2:] != (self.height, self.width):
            size = f"{shape[-1]}x{shape[-2]}" if len(shape) >= 2 else f"of shape {shape}"
            raise SizeMismatch(
                source,
                f"depth is {size} but the camera is {self.width}x{self.height}: its intrinsics "
                "do not apply" + (f" ({hint})" if hint else ""),
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        return cls(**{k: d[k] for k in ("fx", "fy", "cx", "cy", "width", "height")})


PRESETS: dict[str, Camera] = {
    # NYU: Kinect v1 at 640x480; values are the ones the community scorer uses.
    "nyu": Camera(588.03, 587.07, 320.0, 240.0, 640, 480),
    # ICVL: the scorer's values (another release uses 241.42; published numbers use these).
    "icvl": Camera(240.99, 240.96, 160.0, 120.0, 320, 240),
    # MSRA 2015: from the dataset's own readme.
    "msra": Camera(241.42, 241.42, 160.0, 120.0, 320, 240),
    # Intel RealSense SR305 (short-range coded light, 640x480): the values the SR305 recordings in
    # ../shared/data/sr305 state in their readme (focal length, principal point).
    "sr305": Camera(476.007, 476.007, 313.683, 242.755, 640, 480),
    # HANDS 2017 (BigHand2.2M's RealSense SR300-class camera, 640x480): the challenge release's
    # published intrinsics.
    "hands17": Camera(475.065948, 475.065857, 315.944855, 245.287079, 640, 480),
}


def as_camera(camera: Camera | str) -> Camera:
    """A Camera, or a preset name / ``fx,fy,cx,cy,w,h`` string (HandvoxError if invalid)."""
    if isinstance(camera, Camera):
        return camera
    try:
        return Camera.from_string(camera)
    except ValueError as e:
        raise HandvoxError(str(e)) from None

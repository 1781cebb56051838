"""Pinhole depth camera and uvd <-> xyz conversions; lens distortion undone at the boundary.

Internal frame: OpenCV (x right, y down, z forward), millimetres. u, v are pixel coordinates
(column, row) and d is depth along z in mm, so uvd and xyz share the same z.

Everything inside handvox is pinhole. A camera whose calibration has lens distortion (an
SR300/SR305's depth, an Azure Kinect's) has its frames remapped once, where they are read, onto
the pinhole image of the same intrinsics (:class:`LensDistortion`, :func:`undistortion_index`,
:func:`remap`): a depth value is the point's z, which no remapping of pixels changes.

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


# Lens models of depth cameras' calibrations, by their SDKs' names, and how many coefficients
# each takes (in the SDK's order).
LENS_MODELS = {
    # OpenCV's and librealsense's Brown-Conrady: k1, k2, p1, p2, k3.
    "brown_conrady": 5,
    # librealsense's modified and inverse Brown-Conrady (an SR300/SR305's depth: inverse): the
    # same coefficients, the tangential terms taken on the radially scaled point; librealsense
    # projects both alike (rs2_project_point_to_pixel, the SDK since 2.5x).
    "modified_brown_conrady": 5,
    "inverse_brown_conrady": 5,
    # OpenCV's rational model, an Azure Kinect's (pyk4a's get_distortion_coefficients order):
    # k1, k2, p1, p2, k3, k4, k5, k6.
    "rational": 8,
}


@dataclass(frozen=True)
class LensDistortion:
    """A depth camera's lens distortion: a model of :data:`LENS_MODELS` and its coefficients, in
    its SDK's order. ValueError for another model or another number of coefficients."""

    model: str
    coeffs: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.model not in LENS_MODELS:
            raise ValueError(f"lens model {self.model!r}: handvox undoes {', '.join(LENS_MODELS)}")
        n = LENS_MODELS[self.model]
        if len(self.coeffs) != n or not all(np.isfinite(c) for c in self.coeffs):
            raise ValueError(
                f"lens model {self.model!r} takes {n} finite coefficients, got {self.coeffs!r}"
            )
        object.__setattr__(self, "coeffs", tuple(float(c) for c in self.coeffs))

    @property
    def is_none(self) -> bool:
        """Whether every coefficient is 0 (the image is pinhole already)."""
        return not any(self.coeffs)

    def to_dict(self) -> dict:
        return {"model": self.model, "coeffs": list(self.coeffs)}


def distort(xy: Array, lens: LensDistortion) -> Array:
    """Where the lens puts each ray: ``(..., 2)`` ideal normalised image coordinates
    (``x / z``, ``y / z``) -> ``(..., 2)`` distorted ones (pixels are ``f * x + c`` of them),
    by ``lens``'s model as its SDK projects a point."""
    x, y = xy[..., 0], xy[..., 1]
    k1, k2, p1, p2, k3 = lens.coeffs[:5]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    if lens.model == "rational":
        k4, k5, k6 = lens.coeffs[5:]
        radial = radial / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    sx, sy = x * radial, y * radial
    if lens.model in ("modified_brown_conrady", "inverse_brown_conrady"):
        x, y = sx, sy  # librealsense: the tangential terms of the scaled point (and the ray's r2)
    return _stack([sx + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                   sy + 2 * p2 * x * y + p1 * (r2 + 2 * y * y)], xy)  # fmt: skip


def undistort(xy: Array, lens: LensDistortion, iterations: int = 20) -> Array:
    """The inverse of :func:`distort`: ``(..., 2)`` distorted normalised coordinates -> the
    ideal ones, by fixed-point iteration (``x <- x + (x_d - distort(x))``, which converges
    while the distortion's derivative stays within a factor of two of the identity, as a depth
    camera's lens does over its image). NaN where it has not converged to 1e-6 (past the
    polynomial's fold, beyond any image)."""
    ideal = xy
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging ray is NaN below
        for _ in range(iterations):
            ideal = ideal + (xy - distort(ideal, lens))
        miss = ~(abs(distort(ideal, lens) - xy) <= 1e-6).all(-1)[..., None]
    if is_tensor(xy):
        import torch  # loaded already (a tensor exists); not at the top: see the module docstring

        return torch.where(miss, torch.nan, ideal)
    return np.where(miss, np.nan, ideal)


def _nearest_index(camera: Camera, uv: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` pixel coordinates -> ``(H, W)`` int64 flat index of the nearest pixel of an
    image of ``camera``'s size, -1 where that lies outside it (or the coordinate is NaN)."""
    with np.errstate(invalid="ignore"):
        col, row = np.rint(uv[..., 0]), np.rint(uv[..., 1])
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    index = np.where(inside, row, 0).astype(np.int64) * camera.width
    index += np.where(inside, col, 0).astype(np.int64)
    return np.where(inside, index, -1)


def _remap_index(camera: Camera, lens_map) -> np.ndarray:
    """The :func:`remap` index that takes each pixel of an image of ``camera`` from where
    ``lens_map`` (:func:`distort` or :func:`undistort`) sends its normalised coordinates."""
    v, u = np.mgrid[0 : camera.height, 0 : camera.width].astype(np.float64)
    xy = camera.uvd_to_xyz(np.stack([u, v, np.ones_like(u)], -1))[..., :2]  # z = 1
    moved = lens_map(xy)
    return _nearest_index(
        camera, camera.project(np.concatenate([moved, np.ones_like(u)[..., None]], -1))
    )


def undistortion_index(camera: Camera, lens: LensDistortion) -> np.ndarray:
    """``(H, W)`` int64: for each pixel of the pinhole image of ``camera`` (its intrinsics and
    size), the flat index of the pixel of the distorted image (``camera``'s intrinsics under
    ``lens``) that its ray falls in; -1 where that is outside the image. For :func:`remap`."""
    return _remap_index(camera, lambda xy: distort(xy, lens))


def distortion_index(camera: Camera, lens: LensDistortion) -> np.ndarray:
    """The other way (:func:`undistortion_index`): for each pixel of the distorted image, the
    pinhole image's pixel its ray falls in; to make a camera's distorted frames from pinhole
    renders."""
    return _remap_index(camera, lambda xy: undistort(xy, lens))


def remap(image: np.ndarray, index: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """``(..., H, W)`` image -> ``(..., h, w)``: pixel ``index[i, j]`` of its flattened image at
    ``(i, j)``, ``fill`` where the index is -1 (depth: no reading). Nearest pixel, no blending:
    depth across an edge must not average a finger with the wall behind it."""
    flat = image.reshape(*image.shape[:-2], -1)
    # -1 takes the last element: the fill appended (a masked write after the gather cost 4x)
    padded = np.concatenate([flat, np.full((*flat.shape[:-1], 1), fill, flat.dtype)], -1)
    return np.take(padded, index, axis=-1)


def as_camera(camera: Camera | str) -> Camera:
    """A Camera, or a preset name / ``fx,fy,cx,cy,w,h`` string (HandvoxError if invalid)."""
    if isinstance(camera, Camera):
        return camera
    try:
        return Camera.from_string(camera)
    except ValueError as e:
        raise HandvoxError(str(e)) from None

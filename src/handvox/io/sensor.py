"""A user's own recording: its camera and its depth unit, read or checked at the boundary.

Depth files carry neither intrinsics nor a unit, and both change the answer: the same frame with
NYU's intrinsics instead of a RealSense's moves the joints by ~40 mm, and millimetres read as
metres find no hand at all. So nothing here is guessed: the camera comes from the user
(``--camera``) or from a ``camera.json`` beside the frames (:func:`find_camera_file`), the unit
from ``--depth-unit`` or that file, and :func:`check_depth_scale` refuses depth whose nearest
surface is implausible for a hand in front of a depth sensor, naming the unit that would fit.

``camera.json`` (what ``../shared/data/sr305/camera.json`` holds)::

    {"fx": 476.007, "fy": 476.007, "cx": 313.683, "cy": 242.755,
     "width": 640, "height": 480, "depth_unit_mm": 0.125}

``depth_unit_mm`` (millimetres per stored unit) is optional, and so is ``distortion``, the depth
camera's lens distortion as its SDK reports it, for frames that are not pinhole (an
SR300/SR305's depth): ``{"model": "inverse_brown_conrady", "coeffs": [k1, k2, p1, p2, k3]}``
(models: :data:`handvox.camera.LENS_MODELS`); the frames are then remapped onto the pinhole image
of the same intrinsics as they are read (:meth:`SensorSpec.read`). Other keys are ignored.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from handvox.camera import Camera, LensDistortion, remap, undistortion_index
from handvox.errors import DataError
from handvox.io.depth import read_depth

CAMERA_FILE = "camera.json"
# Millimetres per unit of the unit names --depth-unit takes.
UNITS_MM = {"um": 1e-3, "mm": 1.0, "cm": 10.0, "m": 1000.0}
# The nearest surface of a frame holding a hand before a depth sensor lies in this range (mm):
# depth sensors start measuring at 100 mm or beyond (SR300/SR305 200, Kinect 400-500; only
# close-range stereo such as the D405 reaches 70) and the segmentation's reach ends at 2 m
# (SegmentConfig.max_depth_mm). Outside it the values are in another unit.
NEAREST_MM = (100.0, 2000.0)
# Fewer valid pixels than this say nothing about the unit (segmentation reports the frame).
_MIN_PIXELS = 50


@dataclass(frozen=True)
class SensorSpec:
    """The camera of some frames, their depth unit and where both came from (for messages and
    outputs: ``--camera nyu``, ``/data/rec/camera.json``); ``lens``: the lens distortion of the
    frames as stored (None: pinhole), undone by :meth:`undistort` onto ``camera``'s pinhole
    image."""

    camera: Camera
    unit_mm: float
    origin: str
    lens: LensDistortion | None = None

    def __post_init__(self) -> None:
        if self.lens is not None and self.lens.is_none:
            object.__setattr__(self, "lens", None)  # all-zero coefficients: pinhole already

    @cached_property
    def _index(self) -> np.ndarray:
        return undistortion_index(self.camera, self.lens)

    def undistort(self, depth: np.ndarray) -> np.ndarray:
        """``(H, W)`` depth as stored -> on ``camera``'s pinhole image (the same array when the
        frames have no lens distortion; 0 where no pixel of the frame sees)."""
        return depth if self.lens is None else remap(depth, self._index)

    def read(self, path: str | Path) -> np.ndarray:
        """The depth file ``path`` as ``(H, W)`` float32 mm (:func:`handvox.io.depth.read_depth`
        in this unit, :meth:`undistort`-ed), checked: a plausible nearest surface
        (:func:`check_depth_scale`) and this camera's image size. DataError naming the file
        otherwise."""
        depth = read_depth(path)
        if self.unit_mm != 1.0:
            depth = depth * np.float32(self.unit_mm)
        check_depth_scale(depth, path, self.unit_mm)
        self.camera.check_depth(depth, path, f"the camera from {self.origin}")
        return self.undistort(depth)

    def describe(self) -> str:
        c = self.camera
        unit = "mm" if self.unit_mm == 1.0 else f"{self.unit_mm:g} mm"
        lens = "" if self.lens is None else f", {self.lens.model} lens distortion undone"
        return (
            f"camera fx={c.fx:g} fy={c.fy:g} cx={c.cx:g} cy={c.cy:g} {c.width}x{c.height}{lens}, "
            f"depth unit {unit} (from {self.origin})"
        )


def parse_depth_unit(text: str) -> float:
    """Millimetres per stored unit of ``mm``, ``m``, ``cm``, ``um`` with an optional factor
    (``0.125mm``, ``0.25 mm``, ``1e-3m``); ValueError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)?\s*(um|mm|cm|m)\s*", text)
    if m is None:
        raise ValueError(
            f"depth unit {text!r}: expected a unit of {', '.join(UNITS_MM)} with an optional "
            "factor, e.g. mm, m, 0.125mm (RealSense SR300/SR305), 0.25mm (L515)"
        )
    factor = float(m.group(1)) if m.group(1) else 1.0
    value = factor * UNITS_MM[m.group(2)]
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"depth unit {text!r}: must be a positive size")
    return value


def read_camera_file(path: str | Path) -> tuple[Camera, float | None, LensDistortion | None]:
    """The camera of a ``camera.json`` (module docstring), its ``depth_unit_mm`` and its lens
    ``distortion`` (None for either it has not). DataError naming the file for anything else."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"not a readable camera file ({e})") from None
    if not isinstance(d, dict):
        raise DataError(path, "a camera file holds one JSON object")
    missing = [k for k in ("fx", "fy", "cx", "cy", "width", "height") if k not in d]
    if missing:
        raise DataError(path, f"camera file lacks {', '.join(missing)}")
    try:
        fx, fy, cx, cy = (float(d[k]) for k in ("fx", "fy", "cx", "cy"))
        width, height = (int(d[k]) for k in ("width", "height"))
        unit = None if d.get("depth_unit_mm") is None else float(d["depth_unit_mm"])
    except (TypeError, ValueError) as e:
        raise DataError(path, f"camera file values must be numbers ({e})") from None
    values = (fx, fy, cx, cy, unit if unit is not None else 1.0)
    if not all(math.isfinite(v) for v in values) or min(fx, fy, width, height) <= 0:
        raise DataError(path, "camera file: focal lengths and size must be positive numbers")
    if unit is not None and unit <= 0:
        raise DataError(path, "camera file: depth_unit_mm must be positive")
    lens = d.get("distortion")
    if lens is not None:
        try:
            lens = LensDistortion(str(lens["model"]), tuple(float(c) for c in lens["coeffs"]))
        except (TypeError, KeyError, ValueError) as e:
            raise DataError(
                path, f'camera file: distortion must be {{"model": ..., "coeffs": [...]}} ({e})'
            ) from None
    return Camera(fx, fy, cx, cy, width, height), unit, lens


def find_camera_file(path: str | Path) -> Path | None:
    """The ``camera.json`` for a depth file or folder ``path``: in the folder (a file's own
    folder), else in the folder above it (a recording's sequences share one); None if neither."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for where in (folder, folder.parent):
        f = where / CAMERA_FILE
        if f.is_file():
            return f
    return None


def sensor_for(
    path: str | Path, camera: Camera | None, camera_origin: str, unit_mm: float | None
) -> SensorSpec:
    """Camera and unit of the depth file or folder ``path``: ``camera`` when given (its
    ``camera_origin`` names the flag), else its ``camera.json``'s; ``unit_mm`` when given, else
    the file's ``depth_unit_mm``, else millimetres (which :func:`check_depth_scale` checks).

    Raises:
        DataError: no camera given and no ``camera.json`` found, naming ``path`` and both ways.
    """
    file_unit = lens = None
    origin = camera_origin
    if camera is None:
        f = find_camera_file(path)
        if f is None:
            raise DataError(
                path,
                "no camera: give --camera (a preset: nyu, icvl, msra, sr305, hands17; or "
                f"fx,fy,cx,cy,width,height) or put a {CAMERA_FILE} beside the frames "
                "(README, 'Your own camera'); the intrinsics change every joint",
            )
        camera, file_unit, lens = read_camera_file(f)
        origin = str(f)
    if unit_mm is None:
        unit_mm = 1.0 if file_unit is None else file_unit
    return SensorSpec(camera, unit_mm, origin, lens)


def check_depth_scale(depth_mm: np.ndarray, path: str | Path | None, unit_mm: float) -> bool:
    """Raise :class:`DataError` (naming ``path`` and the unit that would fit) when the nearest
    surface of ``depth_mm`` (``(H, W)`` mm, read with ``unit_mm`` mm per stored unit; the 1st
    percentile of its valid pixels) lies outside :data:`NEAREST_MM`. Frames with fewer than 50
    valid pixels pass: whether they hold a hand is for segmentation to say. Returns whether the
    frame had the pixels to judge by."""
    valid = depth_mm[np.isfinite(depth_mm) & (depth_mm > 0)]
    if valid.size < _MIN_PIXELS:
        return False
    near = float(np.percentile(valid, 1))
    lo, hi = NEAREST_MM
    if lo <= near <= hi:
        return True
    stored = near / unit_mm  # the nearest value as the file stores it
    used = "mm" if unit_mm == 1.0 else f"{unit_mm:g} mm"
    if near < lo:
        hint = "--depth-unit m" if stored < 10 else "--depth-unit cm" if stored < 150 else ""
        what = "metres or centimetres"
    else:
        # the factor that puts the nearest surface at a typical 500 mm
        hint = "--depth-unit 0.125mm (RealSense SR300/SR305) or 0.25mm (L515)"
        what = "sub-millimetre units"
    raise DataError(
        path,
        f"the nearest surface is {near:.4g} mm with a depth unit of {used} (stored value "
        f"{stored:.4g}), outside the {lo:g}-{hi:g} mm of a hand before a depth sensor: the "
        f"values look like {what}" + (f"; give {hint}" if hint else "; give --depth-unit"),
    )

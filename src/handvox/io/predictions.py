"""Prediction files, each format's writer beside its reader.

Text joints (:func:`save_xyz` / :func:`load_xyz`)
    One frame a line, J x 3 numbers (:mod:`handvox.io.labels` does the text): the community's
    uvd (px, px, mm; no header: the published methods' files, the datasets' test labels) or
    handvox's xyz (mm, OpenCV frame), which a ``# handvox labels kind=xyz`` header tells apart.
    Joints are xyz in memory; the camera converts uvd.

``predictions.txt`` (:func:`write_txt` / :func:`read_txt`)
    What ``handvox predict`` writes for community tools: the uvd text format without a header.
    It cannot hold NaN or a flag, so a frame without a hand is written as ``0 0 0`` for every
    joint: a point at the camera centre that every scorer counts as a failure, and that handvox's
    readers accept. :func:`read_txt` turns such frames back into NaN.

``predictions.json`` (:func:`write_json` / :func:`read_json`)
    ``{"model", "joint_set", "joint_names", "units", "frames": [{"id", "source", "camera",
    "found", "reason", "com_xyz", "com_uvd", "joints_xyz", "joints_uvd", "overlay"}]}``; xyz in
    mm (OpenCV: y down), uvd in px, px, mm, rounded to 0.001; ``null`` where no hand was found.

``predictions.csv`` (:func:`write_csv` / :func:`read_csv`)
    One row a frame: id, source, found, reason, com_x..com_d, then per joint
    ``<name>_x, _y, _z, _u, _v, _d`` (3 decimals); empty cells where no hand was found. It holds
    no camera and no model name.

In memory a prediction file is :class:`Predictions`: one :class:`FramePrediction` a frame, NaN
joints and COM where no hand was found. Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handvox.atomic import write_text
from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.labels import LabelFile, read_labels, write_labels
from handvox.joints import JOINT_SETS, JointSet, get_joint_set

FILE_NAMES = {"json": "predictions.json", "csv": "predictions.csv", "txt": "predictions.txt"}
"""The file each format of ``handvox predict`` goes to, in the order they are written."""
FORMATS = tuple(FILE_NAMES)
UNITS = {"xyz": "mm, camera frame, x right, y down, z forward", "uvd": "px, px, mm"}
_COORDS = "xyzuvd"


# --- in memory ----------------------------------------------------------------------------------
@dataclass
class FramePrediction:
    """The prediction of one frame.

    Attributes:
        id: the frame's name (unique within a file).
        source: where the frame came from (a file, ``DATASET#i``).
        camera: its camera; None where the file does not hold it (CSV).
        found: whether a hand was found; when not, the joints and COM are NaN.
        reason: why not ("" where found).
        com_xyz, com_uvd: ``(3,)`` the centre of the volume the networks saw.
        joints_xyz, joints_uvd: ``(J, 3)``.
        overlay: the overlay image, relative to the predictions' folder, if one was drawn.
        hand: which hand the joints are of, ``"right"`` or ``"left"`` (``predict --hand``).
        confidence: in [0, 1], of the frame's estimate (``Prediction.confidence``); NaN where
            there is none (no hand segmented, files before confidences).
        joint_confidence: ``(J,)`` the same per joint; NaN likewise.
        p_hand, p_left: the hand check's probabilities (``Prediction.p_hand``, ``p_left``).
    """

    id: str
    source: str
    camera: Camera | None
    found: bool
    reason: str
    com_xyz: np.ndarray
    com_uvd: np.ndarray
    joints_xyz: np.ndarray
    joints_uvd: np.ndarray
    overlay: str | None = None
    hand: str = "right"
    confidence: float = float("nan")
    joint_confidence: np.ndarray | None = None
    p_hand: float = float("nan")
    p_left: float = float("nan")

    @classmethod
    def missing(
        cls, id: str, source: str, camera: Camera | None, reason: str, joints: int
    ) -> FramePrediction:
        """A frame without a prediction: NaN joints and COM, ``found=False``."""
        nan3, nanj = np.full(3, np.nan), np.full((joints, 3), np.nan)
        return cls(id, source, camera, False, reason, nan3, nan3.copy(), nanj, nanj.copy())


@dataclass
class Predictions:
    """The content of a prediction file: frames in order, joints of ``joint_set``."""

    joint_set: str
    frames: list[FramePrediction]
    model: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    def _stack(self, attr: str) -> np.ndarray:
        j = len(get_joint_set(self.joint_set))
        return np.array([getattr(f, attr) for f in self.frames], np.float64).reshape(-1, j, 3)

    @property
    def joints_xyz(self) -> np.ndarray:
        """``(N, J, 3)`` mm, NaN where no hand was found."""
        return self._stack("joints_xyz")

    @property
    def joints_uvd(self) -> np.ndarray:
        """``(N, J, 3)``, NaN where no hand was found."""
        return self._stack("joints_uvd")

    @property
    def found(self) -> np.ndarray:
        """``(N,)`` bool."""
        return np.array([f.found for f in self.frames], dtype=bool)


def write_predictions(
    folder: str | Path, preds: Predictions, formats: tuple[str, ...] = FORMATS
) -> list[Path]:
    """Write ``preds`` in each of ``formats`` (``json``, ``csv``, ``txt``) into ``folder``, under
    :data:`FILE_NAMES`; returns the files written, in :data:`FORMATS` order."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {sorted(unknown)}; choose from {FORMATS}")
    folder = Path(folder)
    writers = {"json": write_json, "csv": write_csv}
    written = []
    for fmt in FORMATS:
        if fmt not in formats:
            continue
        path = folder / FILE_NAMES[fmt]
        if fmt == "txt":
            written.append(write_txt(path, preds.joints_uvd))
        else:
            written.append(writers[fmt](path, preds))
    return written


# --- text joints: community uvd or handvox xyz --------------------------------------------------
def save_xyz(
    path: str | Path,
    xyz: np.ndarray,
    camera: Camera,
    fmt: str = "xyz",
    joint_set: str | None = None,
) -> Path:
    """Write ``(N, J, 3)`` xyz joints (mm) as a text joint file, the inverse of :func:`load_xyz`.

    Args:
        fmt: ``"xyz"`` (with the handvox header, naming ``joint_set`` when given) or ``"uvd"``
            (projected with ``camera``; no header, as community tools read it).
    """
    if fmt not in ("uvd", "xyz"):
        raise ValueError(f"format must be uvd or xyz, got {fmt!r}")
    joints = np.asarray(xyz, np.float64)
    if fmt == "uvd":
        joints = camera.xyz_to_uvd(joints)
    write_labels(path, joints, kind=fmt, joint_set=joint_set)
    return Path(path)


def load_xyz(
    path: str | Path, camera: Camera, joint_set: JointSet | str, fmt: str = "auto"
) -> tuple[np.ndarray, LabelFile, str]:
    """Read a label/prediction file as ``(N, J, 3)`` xyz mm (OpenCV frame): community text
    (uvd, or xyz by handvox's header) or ``handvox predict``'s ``predictions.json`` (its xyz;
    NaN for the frames without a hand).

    Args:
        fmt: ``"uvd"``, ``"xyz"``, or ``"auto"`` (the handvox header's kind, else uvd; a
            ``.json`` file is always xyz).
    Returns:
        the joints, the raw file, and the format used.
    Raises:
        DataError: unreadable file, or a joint count other than ``len(joint_set)``.
    """
    path = Path(path)
    joint_set = get_joint_set(joint_set)
    if path.is_dir():
        raise DataError(path, "is a folder, expected a label file")
    if path.suffix.lower() == ".json":
        preds = read_json(path)
        xyz = np.stack([f.joints_xyz for f in preds.frames])
        lf = LabelFile(xyz, "xyz", None, path)
        fmt = "xyz"
    else:
        lf = read_labels(path)
    if lf.joints.shape[1] != len(joint_set):
        raise DataError(
            path,
            f"{lf.joints.shape[1]} joints per line, but this dataset is scored on "
            f"{len(joint_set)} ({joint_set.name}); handvox predict writes that set with "
            f"--joint-set {joint_set.name}",
        )
    if fmt not in ("auto", "uvd", "xyz"):
        raise ValueError(f"format must be auto, uvd or xyz, got {fmt!r}")
    kind = (lf.kind or "uvd") if fmt == "auto" else fmt
    xyz = lf.joints if kind == "xyz" else camera.uvd_to_xyz(lf.joints)
    return xyz, lf, kind


# --- predictions.txt ----------------------------------------------------------------------------
def write_txt(path: str | Path, joints_uvd: np.ndarray) -> Path:
    """Write ``(N, J, 3)`` uvd joints in the community format; a frame with any non-finite value
    (no hand found) becomes all zeros."""
    uvd = np.asarray(joints_uvd, np.float64)
    uvd = np.where(np.isfinite(uvd).all(axis=(1, 2), keepdims=True), uvd, 0.0)
    write_labels(path, uvd, kind="uvd")
    return Path(path)


def read_txt(path: str | Path, num_joints: int | None = None) -> np.ndarray:
    """``(N, J, 3)`` uvd joints of a :func:`write_txt` file, NaN for the frames written as all
    zeros (no hand found).

    Raises:
        DataError: see :func:`handvox.io.labels.read_labels`.
    """
    uvd = read_labels(path, num_joints).joints
    missing = (uvd == 0).all(axis=(1, 2))
    uvd[missing] = np.nan
    return uvd


# --- predictions.json ---------------------------------------------------------------------------
def _list(a: np.ndarray) -> list | None:
    """Rounded nested list, or None when anything is NaN (no hand)."""
    if not np.isfinite(a).all():
        return None
    return np.round(a, 3).tolist()


def _number(x: float) -> float | None:
    return round(float(x), 4) if np.isfinite(x) else None


_TYPES = {"id": str, "source": str, "found": bool, "reason": str}


def _types(f: dict, path: Path, where: str) -> None:
    """A predictions.json frame's scalar fields of the right types (a ``found`` of ``"x"``
    would read as true)."""
    for key, kind in _TYPES.items():
        if not isinstance(f[key], kind):
            raise DataError(path, f"{where}: {key} is {f[key]!r}, expected a {kind.__name__}")
    if f.get("hand", "right") not in ("right", "left"):
        raise DataError(path, f"{where}: hand is {f['hand']!r}, expected right or left")
    if f.get("overlay") is not None and not isinstance(f["overlay"], str):
        raise DataError(path, f"{where}: overlay is {f['overlay']!r}, expected a path")


def _float(value, path: Path, where: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(path, f"{where}: {value!r} is not a number")
    return float(value)


def write_json(path: str | Path, preds: Predictions) -> Path:
    """Write :class:`Predictions` as ``predictions.json`` (see the module docstring)."""
    js = get_joint_set(preds.joint_set)
    doc = {
        "model": preds.model,
        "joint_set": js.name,
        "joint_names": list(js.names),
        "units": UNITS,
        "frames": [
            {
                "id": f.id,
                "source": f.source,
                "camera": None if f.camera is None else f.camera.to_dict(),
                "found": f.found,
                "reason": f.reason,
                "com_xyz": _list(f.com_xyz),
                "com_uvd": _list(f.com_uvd),
                "joints_xyz": _list(f.joints_xyz),
                "joints_uvd": _list(f.joints_uvd),
                "overlay": f.overlay,
                "hand": f.hand,
                "confidence": _number(f.confidence),
                "joint_confidence": None
                if f.joint_confidence is None
                else _list(np.asarray(f.joint_confidence)),
                "p_hand": _number(f.p_hand),
                "p_left": _number(f.p_left),
            }
            for f in preds.frames
        ],
    }
    return write_text(path, json.dumps(doc, indent=1) + "\n")


def _array(value: list | None, shape: tuple[int, ...], path: Path, where: str) -> np.ndarray:
    if value is None:
        return np.full(shape, np.nan)
    flat = np.asarray(value, dtype=object).reshape(-1)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
        raise DataError(path, f"{where}: values that are not numbers")
    a = np.asarray(value, np.float64)
    if a.shape != shape:
        raise DataError(path, f"{where}: shape {a.shape}, expected {shape}")
    return a


def read_json(path: str | Path) -> Predictions:
    """Read a ``predictions.json`` file (NaN joints and COM where they are ``null``).

    Raises:
        DataError: missing or unreadable file, not JSON, fields missing or of the wrong shape,
            an unknown joint set.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(path, f"unreadable as a predictions.json file ({e})") from None
    try:
        js = get_joint_set(doc["joint_set"])
        j = len(js)
        frames = []
        for i, f in enumerate(doc["frames"]):
            where = f"frame {i} ({f['id']})"
            _types(f, path, where)
            frame = FramePrediction(
                id=f["id"],
                source=f["source"],
                camera=None if f["camera"] is None else Camera.from_dict(f["camera"]),
                found=f["found"],
                reason=f["reason"],
                com_xyz=_array(f["com_xyz"], (3,), path, where),
                com_uvd=_array(f["com_uvd"], (3,), path, where),
                joints_xyz=_array(f["joints_xyz"], (j, 3), path, where),
                joints_uvd=_array(f["joints_uvd"], (j, 3), path, where),
                overlay=f.get("overlay"),
                hand=f.get("hand", "right"),  # files before handedness: right hands
                confidence=_float(f.get("confidence"), path, where),
                joint_confidence=None
                if f.get("joint_confidence") is None
                else _array(f["joint_confidence"], (j,), path, where),
                p_hand=_float(f.get("p_hand"), path, where),
                p_left=_float(f.get("p_left"), path, where),
            )
            found_ok = np.isfinite(frame.joints_xyz).all() and np.isfinite(frame.com_xyz).all()
            if frame.found != found_ok:
                what = "no joints" if frame.found else "joints"
                raise DataError(path, f"{where}: found is {frame.found} but it has {what}")
            frames.append(frame)
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(path, f"not a predictions.json file ({type(e).__name__}: {e})") from None
    return Predictions(js.name, frames, doc.get("model", ""))


# --- predictions.csv ----------------------------------------------------------------------------
def _csv_header(js: JointSet) -> list[str]:
    head = ["id", "source", "found", "reason"]
    head += [f"com_{c}" for c in _COORDS]
    return head + [f"{n}_{c}" for n in js.names for c in _COORDS]


def _cells(a: np.ndarray) -> list[str]:
    return ["" if not math.isfinite(v) else f"{v:.3f}" for v in a.reshape(-1)]


def write_csv(path: str | Path, preds: Predictions) -> Path:
    """Write :class:`Predictions` as ``predictions.csv`` (see the module docstring)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_csv_header(get_joint_set(preds.joint_set)))
    for f in preds.frames:
        joints = np.concatenate([f.joints_xyz, f.joints_uvd], axis=1)  # (J, 6): x y z u v d
        com = np.concatenate([f.com_xyz, f.com_uvd])
        w.writerow([f.id, f.source, int(f.found), f.reason, *_cells(com), *_cells(joints)])
    return write_text(path, buf.getvalue())


def _floats(cells: list[str]) -> np.ndarray:
    return np.array([float(c) if c else np.nan for c in cells], np.float64)


def read_csv(path: str | Path) -> Predictions:
    """Read a ``predictions.csv`` file; the joint set is the one whose joint names the header
    lists. Frames have no camera and the model name is "" (the CSV holds neither).

    Raises:
        DataError: missing or unreadable file, a header of no known joint set, a row of the
            wrong length or with a non-number.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(path, f"unreadable as a predictions.csv file ({e})") from None
    if not rows:
        raise DataError(path, "empty file: no header")
    js = next((s for s in JOINT_SETS.values() if _csv_header(s) == rows[0]), None)
    if js is None:
        raise DataError(path, "the header is not that of a predictions.csv of a known joint set")
    j, frames = len(js), []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != len(rows[0]):
            raise DataError(path, f"line {lineno}: {len(row)} cells, the header has {len(rows[0])}")
        try:
            com, joints = _floats(row[4:10]), _floats(row[10:]).reshape(j, 6)
        except ValueError as e:
            raise DataError(path, f"line {lineno}: not a number ({e})") from None
        frames.append(
            FramePrediction(
                id=row[0],
                source=row[1],
                camera=None,
                found=row[2] == "1",
                reason=row[3],
                com_xyz=com[:3],
                com_uvd=com[3:],
                joints_xyz=joints[:, :3].copy(),
                joints_uvd=joints[:, 3:].copy(),
            )
        )
    return Predictions(js.name, frames)

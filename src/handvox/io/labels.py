"""The community's text format for hand joints: one frame a line, J x (u v d) numbers.

Variants read here:
- plain: ``u1 v1 d1 ... uJ vJ dJ`` (the published methods' files, NYU/ICVL test labels);
- named: a first token that is not a number, e.g. ICVL's ``test_seq_1/image_0000.png u1 v1 d1 ...``;
- lines ending in ``\\r\\r\\n``, trailing spaces, blank lines (skipped; but the frames must
  follow one another with the same number of blank lines between them, so that a frame blanked,
  which would shift every later frame onto the wrong label, is an error);
- handvox's own files, which start with a ``# handvox labels kind=xyz ...`` header so that xyz
  predictions (mm, OpenCV frame) are not mistaken for uvd. Other ``#`` lines are comments.

This module is the text, as it is on disk (uvd or xyz as the file says);
:mod:`handvox.io.predictions` reads and writes prediction files on top of it (joints as xyz with
a camera, ``handvox predict``'s files).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handvox.atomic import write_text
from handvox.errors import DataError

HEADER_PREFIX = "# handvox labels"


@dataclass
class LabelFile:
    """Joints read from a label file.

    Attributes:
        joints: ``(N, J, 3)`` float64, uvd or xyz as ``kind`` says.
        kind: ``"uvd"``, ``"xyz"``, or ``None`` when the file does not say (community files: uvd).
        names: the per-line frame names where the file has them, else None.
        path: where it was read from.
    """

    joints: np.ndarray
    kind: str | None
    names: list[str] | None
    path: Path


def _parse_header(line: str) -> dict[str, str]:
    fields = line[len(HEADER_PREFIX) :].split()
    return dict(f.split("=", 1) for f in fields if "=" in f)


# A label value: a plain ASCII decimal, optionally signed, with an optional exponent.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Pixels and millimetres of hands before a camera: nothing near a kilometre.
_MAX_VALUE = 1e6


def read_labels(path: str | Path, num_joints: int | None = None) -> LabelFile:
    """Read a label file in any of the variants above.

    Args:
        path: the file.
        num_joints: expected joints per line; checked when given.
    Raises:
        DataError: missing/unreadable file, no frames, non-numeric values, NaN/inf, a line whose
            count is not 3 x J, or lines with different joint counts. The message names the file
            and the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable as a text label file ({e})") from None

    if text.strip() and not text.endswith(("\n", "\r")):
        # Every label and prediction file of the datasets and papers ends its last line; one
        # that does not may have been cut inside its last number, which still reads as a number.
        last = len(text.splitlines())
        raise DataError(
            path,
            f"line {last}: no line break after the last line: the file may be cut short inside "
            "its last number; if it is complete, end it with a line break",
        )
    kind = None
    rows: list[list[float]] = []
    names: list[str] = []
    gaps: list[tuple[int, int]] = []  # (blank lines before a frame after the first, its line)
    blank = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            blank += 1
            continue
        if line.startswith("#"):
            if line.startswith(HEADER_PREFIX):
                kind = _parse_header(line).get("kind")
            continue
        if rows:
            gaps.append((blank, lineno))
        blank = 0
        tokens = line.split()
        name = None
        if not _NUMBER.fullmatch(tokens[0]):
            name, tokens = tokens[0], tokens[1:]
        # Plain ASCII decimals only: Python's float() also takes "1_000", "inf" and other
        # scripts' digits, none of which a label file holds.
        bad = next((t for t in tokens if not _NUMBER.fullmatch(t)), None)
        if bad is not None:
            raise DataError(path, f"line {lineno}: not a number ({bad!r})")
        values = [float(t) for t in tokens]
        if not values or len(values) % 3:
            raise DataError(
                path, f"line {lineno}: {len(values)} numbers, not a multiple of 3 (u v d per joint)"
            )
        if not all(abs(v) <= _MAX_VALUE for v in values):
            raise DataError(
                path, f"line {lineno}: a value beyond {_MAX_VALUE:g} (pixels or mm): corrupt"
            )
        if rows and len(values) != len(rows[0]):
            raise DataError(
                path,
                f"line {lineno}: {len(values) // 3} joints, but earlier lines have "
                f"{len(rows[0]) // 3}",
            )
        rows.append(values)
        if name is not None:
            names.append(name)
    if not rows:
        raise DataError(path, "no frames in label file (empty or only comments)")
    if gaps:
        # Frames follow one another with the same number of blank lines between them (none;
        # ICVL's \r\r\n line ends read as one), so one gap unlike the rest is a frame blanked,
        # and every frame after it would be scored against the wrong label.
        counts = [g for g, _ in gaps]
        usual = min(set(counts), key=lambda g: (-counts.count(g), g))  # ties: the fewer
        odd = next(((g, n) for g, n in gaps if g != usual), None)
        if odd is not None:
            raise DataError(
                path,
                f"line {odd[1]}: {odd[0]} blank line(s) before this frame where the others have "
                f"{usual}: a frame blanked or missing?",
            )
    if names and len(names) != len(rows):
        raise DataError(path, "some lines have a frame name and others do not")
    joints = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1, 3)
    if num_joints is not None and joints.shape[1] != num_joints:
        raise DataError(path, f"{joints.shape[1]} joints per line, expected {num_joints}")
    if kind not in (None, "uvd", "xyz"):
        raise DataError(path, f"unknown label kind {kind!r} in header")
    return LabelFile(joints, kind, names or None, path)


def write_labels(
    path: str | Path,
    joints: np.ndarray,
    kind: str = "uvd",
    names: list[str] | None = None,
    joint_set: str | None = None,
    header: bool | None = None,
) -> None:
    """Write ``(N, J, 3)`` joints one frame a line, atomically (temp file, then rename).

    Args:
        kind: ``"uvd"`` (community) or ``"xyz"`` (mm, OpenCV frame).
        names: optional frame name written as each line's first token.
        header: write the ``# handvox labels`` header line. Defaults to True for xyz (which must
            be told apart from uvd) and False for uvd (so community tools read the file).
    """
    path = Path(path)
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[2] != 3:
        raise ValueError(f"joints must be (N, J, 3), got {joints.shape}")
    if kind not in ("uvd", "xyz"):
        raise ValueError(f"kind must be 'uvd' or 'xyz', got {kind!r}")
    if names is not None and len(names) != len(joints):
        raise ValueError(f"{len(names)} names for {len(joints)} frames")
    if header is None:
        header = kind == "xyz"
    lines = []
    if header:
        extra = f" joint_set={joint_set}" if joint_set else ""
        units = "mm" if kind == "xyz" else "px,px,mm"
        lines.append(f"{HEADER_PREFIX} kind={kind}{extra} units={units}")
    for i, frame in enumerate(joints):
        nums = " ".join(f"{v:.3f}" for v in frame.reshape(-1))
        lines.append(f"{names[i]} {nums}" if names is not None else nums)
    write_text(path, "\n".join(lines) + "\n")

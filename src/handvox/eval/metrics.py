"""Hand pose metrics as the community scorer computes them: pure, batched NumPy functions.

The scorer (xinghaochen/awesome-hand-pose-estimation, ``evaluation/``) converts labels and
predictions from uvd to xyz with the dataset's intrinsics, takes the Euclidean error of every joint
in mm, and reports the mean over all joints and frames plus the fraction of frames whose *worst*
joint is within D mm (``max_j err <= D``). Its NYU conversion is y-up and ours is y-down; a sign
flip of y leaves every distance unchanged, so the numbers are identical.

The bottom layer of :mod:`handvox.eval`: arrays in, numbers out; no files (:mod:`.files`), no
reports (:mod:`.report`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handvox.errors import DataError

CURVE_THRESHOLDS_MM = np.arange(0, 81, dtype=np.float64)
"""D = 0, 1, ..., 80 mm: the success curve's x axis, as the scorer plots it."""
TABLE_THRESHOLDS_MM = (20, 40, 50)

PROTOCOL = (
    "Community scorer protocol (xinghaochen/awesome-hand-pose-estimation): uvd converted to xyz "
    "with the dataset's intrinsics; per-joint Euclidean error in mm; mean error over all joints "
    "and frames; success = fraction of frames whose maximum joint error is <= D mm."
)
SYNTHETIC_PROTOCOL = (
    "handvox synthetic protocol (handvox.eval.protocol): labels and predictions in xyz mm, camera "
    "frame; hand centre found in the noisy depth by the model (no labels); per-joint Euclidean "
    "error; mean error over all joints and frames; success = fraction of frames whose maximum "
    "joint error is <= D mm; a frame without a hand found counts as a failure."
)

# A missed frame's joints are moved by this much along each axis (sqrt(3) x 1000 = 1732 mm from
# the truth), so it fails every threshold and weighs on the mean as a gross error would.
MISSED_MM = 1000.0


def failures_as_far(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``pred`` ``(N, J, 3)`` with frames without a prediction (any NaN) moved
    :data:`MISSED_MM` along each axis from the truth ``gt`` (each joint ``sqrt(3) * MISSED_MM``
    away)."""
    out = pred.copy()
    missed = np.isnan(out).any(axis=(1, 2))
    out[missed] = gt[missed] + MISSED_MM
    return out


# --- metrics ----------------------------------------------------------------------------------
def joint_errors(pred_xyz: np.ndarray, gt_xyz: np.ndarray) -> np.ndarray:
    """Euclidean distance of every joint to its ground truth.

    Args:
        pred_xyz: ``(N, J, 3)`` mm.
        gt_xyz: ``(N, J, 3)`` mm, same frame as ``pred_xyz``.
    Returns:
        ``(N, J)`` errors in mm.
    """
    pred_xyz, gt_xyz = np.asarray(pred_xyz, np.float64), np.asarray(gt_xyz, np.float64)
    if pred_xyz.shape != gt_xyz.shape:
        raise ValueError(f"prediction {pred_xyz.shape} and ground truth {gt_xyz.shape} differ")
    return np.linalg.norm(pred_xyz - gt_xyz, axis=-1)


def mean_error(errors: np.ndarray) -> float:
    """Mean over all joints and frames of ``(N, J)`` errors, mm."""
    return float(np.mean(errors))


def per_joint_error(errors: np.ndarray) -> np.ndarray:
    """``(N, J)`` errors -> ``(J,)`` mean error of each joint over frames, mm."""
    return np.mean(errors, axis=0)


def fraction_within(errors: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """Fraction of frames whose worst joint error is within each threshold.

    A frame counts at threshold D when ``max_j errors[n, j] <= D`` (the scorer's ``<=``).

    Args:
        errors: ``(N, J)`` mm.
        thresholds: ``(T,)`` mm (a scalar gives ``(1,)``).
    Returns:
        ``(T,)`` fractions in [0, 1].
    """
    worst = np.max(errors, axis=1)
    t = np.atleast_1d(np.asarray(thresholds, np.float64))
    return np.mean(worst[None, :] <= t[:, None], axis=1)


# --- one method -------------------------------------------------------------------------------
@dataclass
class MethodResult:
    """Scores of one prediction file.

    Attributes:
        name: display name.
        file: the prediction file (None for in-memory predictions).
        errors: ``(N, J)`` per-joint errors in mm over the scored frames.
        frames_total: frames in the labels; ``N < frames_total`` when the file covers only the
            first N frames.
        pred_format: ``"uvd"`` or ``"xyz"``.
    """

    name: str
    file: Path | None
    errors: np.ndarray
    frames_total: int
    pred_format: str = "uvd"
    thresholds_mm: np.ndarray = field(default_factory=lambda: CURVE_THRESHOLDS_MM.copy())

    @property
    def frames_scored(self) -> int:
        return int(self.errors.shape[0])

    @property
    def partial(self) -> bool:
        return self.frames_scored < self.frames_total

    @property
    def mean_error(self) -> float:
        return mean_error(self.errors)

    @property
    def per_joint(self) -> np.ndarray:
        """``(J,)`` mm."""
        return per_joint_error(self.errors)

    @property
    def curve(self) -> np.ndarray:
        """``(T,)`` fraction of frames within each of :attr:`thresholds_mm`."""
        return fraction_within(self.errors, self.thresholds_mm)

    def table(self) -> dict[int, float]:
        """Percent of frames within 20 / 40 / 50 mm."""
        fr = fraction_within(self.errors, np.asarray(TABLE_THRESHOLDS_MM))
        return {t: float(100.0 * f) for t, f in zip(TABLE_THRESHOLDS_MM, fr, strict=True)}

    @property
    def coverage_note(self) -> str | None:
        if not self.partial:
            return None
        return (
            f"scored on {self.frames_scored} of {self.frames_total} frames (the file covers only "
            f"the first {self.frames_scored}); not directly comparable with full-test-set numbers"
        )


# --- sequences ---------------------------------------------------------------------------------


def jitter_mm(joints: np.ndarray) -> float:
    """Frame-to-frame jitter of a sequence: the root mean square over joints and consecutive
    frame pairs of how far a joint moves, ``(T, J, 3)`` mm -> mm (pairs with a NaN frame left
    out). Of a still hand, what noise alone moves the joints."""
    step = np.linalg.norm(np.diff(np.asarray(joints, np.float64), axis=0), axis=-1)
    return float(np.sqrt(np.nanmean(step**2)))


def lag_frames(
    late: np.ndarray, early: np.ndarray, max_lag: float = 5.0, step: float = 0.05
) -> float:
    """How many frames ``late`` trails ``early`` (both ``(T, J, 3)``; e.g. filtered and raw
    joints of a moving hand): the shift ``k`` in ``[0, max_lag]`` (fractional, ``early``
    interpolated linearly in time) minimising the mean joint distance between ``late[t]`` and
    ``early[t - k]`` over the frames where both exist."""
    late = np.asarray(late, np.float64)
    early = np.asarray(early, np.float64)
    t = np.arange(len(early), dtype=np.float64)
    flat = early.reshape(len(early), -1)
    first = int(np.ceil(max_lag))  # frames before the largest shift have no past to compare
    best, best_err = 0.0, np.inf
    for k in np.arange(0.0, max_lag + step / 2, step):
        shifted = np.stack([np.interp(t - k, t, flat[:, c]) for c in range(flat.shape[1])], -1)
        d = np.linalg.norm(late[first:] - shifted[first:].reshape(late[first:].shape), axis=-1)
        err = float(np.nanmean(d))
        if err < best_err:
            best, best_err = float(k), err
    return best


def score(
    pred_xyz: np.ndarray,
    gt_xyz: np.ndarray,
    name: str,
    file: Path | None = None,
    pred_format: str = "uvd",
) -> MethodResult:
    """Score predictions against labels; fewer predicted frames score the first N labels.

    Args:
        pred_xyz: ``(N, J, 3)`` mm.
        gt_xyz: ``(M, J, 3)`` mm with ``M >= N``.
    Raises:
        DataError: more frames than labels, or a different joint count (names ``file``).
    """
    n, m = len(pred_xyz), len(gt_xyz)
    if n > m:
        raise DataError(file, f"{n} frames, but the ground truth has only {m}")
    if pred_xyz.shape[1:] != gt_xyz.shape[1:]:
        raise DataError(
            file,
            f"{pred_xyz.shape[1]} joints per frame, but the ground truth has {gt_xyz.shape[1]}",
        )
    return MethodResult(name, file, joint_errors(pred_xyz, gt_xyz[:n]), m, pred_format)

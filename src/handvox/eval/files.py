"""Score hand pose predictions the way the community scorer does.

The scorer (xinghaochen/awesome-hand-pose-estimation, ``evaluation/``) converts labels and
predictions from uvd to xyz with the dataset's intrinsics, takes the Euclidean error of every joint
in mm, and reports the mean over all joints and frames plus the fraction of frames whose *worst*
joint is within D mm (``max_j err <= D``). Its NYU conversion is y-up and ours is y-down; a sign
flip of y leaves every distance unchanged, so the numbers are identical.

Metrics are pure, batched NumPy functions; :func:`evaluate_files` is the file-level entry point
behind ``handvox evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.io.labels import LabelFile, read_labels
from handvox.joints import DATASET_JOINT_SETS, JointSet

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
    "frame; hand centre from segmenting the noisy depth; per-joint Euclidean error; mean error "
    "over all joints and frames; success = fraction of frames whose maximum joint error is <= D "
    "mm; a frame without a hand found counts as a failure."
)


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


# --- files ------------------------------------------------------------------------------------
def load_xyz(
    path: str | Path, camera: Camera, joint_set: JointSet, fmt: str = "auto"
) -> tuple[np.ndarray, LabelFile, str]:
    """Read a label/prediction file as ``(N, J, 3)`` xyz mm (OpenCV frame).

    Args:
        fmt: ``"uvd"``, ``"xyz"``, or ``"auto"`` (the handvox header's kind, else uvd).
    Returns:
        the joints, the raw file, and the format used.
    Raises:
        DataError: unreadable file, or a joint count other than ``len(joint_set)``.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, expected a label file")
    lf = read_labels(path)
    if lf.joints.shape[1] != len(joint_set):
        raise DataError(
            path,
            f"{lf.joints.shape[1]} joints per line, but this dataset is scored on "
            f"{len(joint_set)} ({joint_set.name})",
        )
    if fmt not in ("auto", "uvd", "xyz"):
        raise ValueError(f"format must be auto, uvd or xyz, got {fmt!r}")
    kind = (lf.kind or "uvd") if fmt == "auto" else fmt
    xyz = lf.joints if kind == "xyz" else camera.uvd_to_xyz(lf.joints)
    return xyz, lf, kind


def default_gt_path(dataset: str, cwd: Path | None = None) -> Path:
    """The shared test labels ``../shared/data/<dataset>/<dataset>_test_groundtruth_label.txt``.

    Raises:
        HandvoxError: when that file is absent (always for msra, which has no shared labels).
    """
    cwd = Path.cwd() if cwd is None else cwd
    path = cwd / ".." / "shared" / "data" / dataset / f"{dataset}_test_groundtruth_label.txt"
    if not path.is_file():
        raise HandvoxError(
            f"no ground truth given and {path} does not exist; pass the test labels with --gt"
        )
    return path


def _check_names(gt: LabelFile, pred: LabelFile) -> None:
    # Only files that carry frame names (ICVL's originals) can be checked for frame order.
    if gt.names is None or pred.names is None:
        return
    for i, (a, b) in enumerate(zip(gt.names, pred.names, strict=False)):
        if a != b:
            raise DataError(pred.path, f"frame {i + 1} is {b!r}, but the ground truth has {a!r}")


@dataclass
class EvaluationReport:
    """What :func:`evaluate_files` produced.

    Attributes:
        markdown: the report (also written to ``report.md``).
        metrics: the content of ``metrics.json``.
        results: one :class:`MethodResult` per file, prediction first.
        files: the files written.
    """

    markdown: str
    metrics: dict
    results: list[MethodResult]
    files: list[Path]


def evaluate_files(
    dataset: str,
    pred: Path,
    gt: Path | None = None,
    compare: list[Path] | None = None,
    out: Path | None = None,
    pred_format: str = "auto",
    names: list[str] | None = None,
) -> EvaluationReport:
    """Score a prediction file (and others to compare with) against a dataset's test labels.

    Args:
        dataset: ``nyu``, ``icvl`` or ``msra`` (camera and joint set), or ``synthetic``: then
            ``gt`` is a ``handvox synth`` folder, whose camera and canonical-21 labels are used.
        pred: the prediction file, uvd or xyz (``pred_format``).
        gt: ground-truth labels in community uvd; default :func:`default_gt_path`.
        compare: other methods' files, scored the same way (their format is auto-detected).
        out: folder for ``metrics.json``, ``report.md``, ``curve.png``, ``per_joint.png``;
            None writes nothing.
        names: display names for ``pred`` then each ``compare`` file (default: file stem).
    Raises:
        HandvoxError / DataError: bad arguments, missing or malformed files.
    """
    from handvox.eval.report import build_metrics, render_markdown, write_report

    dataset = dataset.lower()
    if dataset not in (*DATASET_JOINT_SETS, "synthetic"):
        raise HandvoxError(
            f"unknown dataset {dataset!r}; choose one of {sorted(DATASET_JOINT_SETS)} or synthetic"
        )
    files = [Path(pred), *(Path(p) for p in (compare or []))]
    names = list(names or [])
    if len(names) > len(files):
        raise HandvoxError(f"{len(names)} names given for {len(files)} prediction files")
    names += [f.stem for f in files[len(names) :]]

    gt_file = None
    if dataset == "synthetic":
        # The labels are the dataset folder's own (canonical 21 joints, its camera).
        from handvox.io.synthetic import SyntheticDataset

        if gt is None or not Path(gt).is_dir():
            raise HandvoxError("--dataset synthetic needs --gt DIR: the handvox synth folder")
        gt_path = Path(gt)
        ds = SyntheticDataset(gt_path, joint_set="canonical21", load_clean=False)
        camera, joint_set, gt_xyz = ds.camera, ds.joint_set, np.asarray(ds.joints_xyz)
    else:
        camera, joint_set = Camera.preset(dataset), DATASET_JOINT_SETS[dataset]
        gt_path = Path(gt) if gt is not None else default_gt_path(dataset)
        gt_xyz, gt_file, _ = load_xyz(gt_path, camera, joint_set, fmt="auto")
    results = []
    for i, (path, name) in enumerate(zip(files, names, strict=True)):
        xyz, lf, kind = load_xyz(path, camera, joint_set, pred_format if i == 0 else "auto")
        if gt_file is not None:
            _check_names(gt_file, lf)
        results.append(score(xyz, gt_xyz, name, path, kind))

    metrics = build_metrics(dataset, joint_set, camera, gt_path, results)
    markdown = render_markdown(metrics)
    written = [] if out is None else write_report(Path(out), metrics, markdown, results, joint_set)
    return EvaluationReport(markdown, metrics, results, written)

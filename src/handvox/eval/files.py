"""Score prediction files against a dataset's test labels: ``handvox evaluate``.

The top layer of :mod:`handvox.eval`: reads the prediction and label files
(:func:`handvox.io.predictions.load_xyz`), checks that their frames line up, scores them
(:mod:`handvox.eval.metrics`) and hands the scores to :mod:`handvox.eval.report`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.eval.metrics import (
    MethodResult,
    failures_as_far,
    score,
)
from handvox.eval.report import build_metrics, render_markdown, write_report
from handvox.io.labels import LabelFile
from handvox.io.predictions import load_xyz
from handvox.joints import DATASET_JOINT_SETS


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


def check_frame_names(gt: LabelFile, pred: LabelFile) -> None:
    """Raise :class:`DataError` (naming ``pred``) where both files name their frames (ICVL's
    originals) and a prediction line's name is not the label line's."""
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
    partial: bool = False,
) -> EvaluationReport:
    """Score a prediction file (and others to compare with) against a dataset's test labels.

    Args:
        dataset: ``nyu``, ``icvl`` or ``msra`` (camera and joint set), or ``synthetic``: then
            ``gt`` is a ``handvox synth`` folder, whose camera and canonical-21 labels are used.
        pred: the prediction file, uvd or xyz (``pred_format``), or ``handvox predict``'s
            ``predictions.json`` (in the dataset's joint set: ``predict --joint-set``), whose
            frames without a hand count as failures (:data:`~handvox.eval.metrics.MISSED_MM`).
        gt: ground-truth labels in community uvd; default :func:`default_gt_path`.
        compare: other methods' files, scored the same way (their format is auto-detected).
        out: folder for ``metrics.json``, ``report.md``, ``curve.png``, ``per_joint.png``;
            None writes nothing.
        names: display names for ``pred`` then each ``compare`` file (default: file stem).
        partial: score files with fewer frames than the labels on the frames they cover (the
            first ones, as DeepPrior's 702 ICVL frames); without it such a file is refused: a
            deleted line would pair every later frame with the wrong label.
    Raises:
        HandvoxError / DataError: bad arguments, missing or malformed files.
    """
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
        # The dataset reader loads torch (seconds); scoring community files never needs it.
        from handvox.io.synthetic import SyntheticDataset

        if gt is None or not Path(gt).is_dir():
            raise HandvoxError("--dataset synthetic needs --gt DIR: the handvox synth folder")
        gt_path = Path(gt)
        # The labels are the dataset folder's own (canonical 21 joints, its camera).
        ds = SyntheticDataset(gt_path, joint_set="canonical21", load_clean=False)
        camera, joint_set, gt_xyz = ds.camera, ds.joint_set, np.asarray(ds.joints_xyz)
    else:
        camera, joint_set = Camera.preset(dataset), DATASET_JOINT_SETS[dataset]
        gt_path = Path(gt) if gt is not None else default_gt_path(dataset)
        gt_xyz, gt_file, _ = load_xyz(gt_path, camera, joint_set, fmt="auto")
    results = []
    for i, (path, name) in enumerate(zip(files, names, strict=True)):
        xyz, lf, kind = load_xyz(path, camera, joint_set, pred_format if i == 0 else "auto")
        if len(xyz) < len(gt_xyz) and not partial:
            raise DataError(
                path,
                f"{len(xyz)} frames for {len(gt_xyz)} labels: a file that covers only the first "
                "frames is scored with --partial (a deleted line would misalign every frame "
                "after it)",
            )
        if gt_file is not None:
            check_frame_names(gt_file, lf)
        if len(xyz) <= len(gt_xyz):  # predictions.json: its frames without a hand are NaN
            xyz = failures_as_far(xyz, gt_xyz[: len(xyz)])
        results.append(score(xyz, gt_xyz, name, path, kind))

    metrics = build_metrics(dataset, joint_set, camera, gt_path, results)
    markdown = render_markdown(metrics)
    written = [] if out is None else write_report(Path(out), metrics, markdown, results, joint_set)
    return EvaluationReport(markdown, metrics, results, written)

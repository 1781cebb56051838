"""Calibrating the pose model's per-joint confidence on validation frames.

The dense head's heatmaps say how sure the network is of each joint
(:func:`handvox.estimator.networks.heatmap_moments`), with one cube and at no extra cost. A
spread alone means different things at different joints (the MCPs, inside the palm, spread
about 1.6x as wide as the fingertips on every frame, and the fingertips' errors run larger), so
each joint's spread is read as an expected error: times that joint's median error over its
median spread on validation hand frames. The confidence is ``2^-(expected error / the median
error over all joints)``: 0.5 for a typical joint, halving at every further multiple; stored as
the spread at which each joint's confidence halves (``EstimatorConfig.joint_spread_mm``).
Measured against spread alone and against each joint's spread over its median:
docs/benchmarks.md, "Confidence from one view".
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from handvox.atomic import write_text
from handvox.errors import HandvoxError
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.weights import EstimatorConfig
from handvox.io.synthetic import SyntheticDataset
from handvox.train.logs import progress_bar


def spreads_and_errors(
    est: HandPoseEstimator, roots: list[Path], frames: int, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, J)`` heatmap spreads and joint errors (mm) of ``est`` (its own views and passes) on
    up to ``frames`` hand frames of the synthetic folders ``roots``, shared evenly, where a hand
    was found."""
    if est.config.pose.head != "dense":
        raise HandvoxError("only the dense head has heatmaps to spread: this model's pose head "
                           f"is {est.config.pose.head!r}")  # fmt: skip
    # A unit scale per joint turns joint_confidence back into the spread (2^-spread), on a copy:
    # the caller's estimator keeps its own calibration.
    est = copy.copy(est)
    est.config = replace(est.config, joint_spread_mm=(1.0,) * est.config.pose.num_joints)
    spreads, errors = [], []
    per_root = max(1, frames // len(roots))
    for root in roots:
        ds = SyntheticDataset(root, load_clean=False)
        shown = ds.extras.get("hand_shown")
        keep = [i for i in range(len(ds)) if shown is None or shown[i].all()][:per_root]
        for s in progress_bar(range(0, len(keep), 16), show=progress, desc=f"spread {root.name}",
                             unit="batch"):  # fmt: skip
            idx = keep[s : s + 16]
            pred = est(np.stack([ds.depth_mm(i, "raw") for i in idx]), ds.camera)
            f = pred.found
            spreads.append(-np.log2(pred.joint_confidence[f]))
            errors.append(np.linalg.norm(pred.joints_xyz[f] - ds.joints_xyz[idx][f], axis=-1))
    j = est.config.pose.num_joints
    if not spreads:
        return np.zeros((0, j)), np.zeros((0, j))
    return np.concatenate(spreads), np.concatenate(errors)


def halving_spreads(spreads: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """``(J,)`` per joint, the spread (mm) where its confidence halves, from ``(N, J)``
    validation ``spreads`` and ``errors``: its median spread times the median error over all
    joints over its own median error (module docstring)."""
    return np.median(spreads, 0) * np.median(errors) / np.median(errors, 0)


def calibrate_joint_spread(
    model: str | Path, roots: list[Path], frames: int = 600, progress: bool = True
) -> tuple[float, ...]:
    """Set ``model``'s ``EstimatorConfig.joint_spread_mm`` (:func:`halving_spreads`) from up to
    ``frames`` hand frames of the validation folders ``roots`` (never test frames); rewrites
    ``model/config.json`` (atomically), recording where the figures came from in
    ``meta.joint_spread_from``; returns them."""
    model = Path(model)
    est = HandPoseEstimator.from_folder(model, hand_check=False)
    spreads, errors = spreads_and_errors(est, [Path(r) for r in roots], frames, progress)
    if len(spreads) < 20:
        raise HandvoxError(f"{', '.join(map(str, roots))}: {len(spreads)} frames with a hand "
                           "found; calibrating needs at least 20")  # fmt: skip
    value = tuple(round(float(v), 3) for v in halving_spreads(spreads, errors))
    doc = json.loads((model / "config.json").read_text())
    doc["estimator"] = EstimatorConfig.from_dict(
        {**doc["estimator"], "joint_spread_mm": list(value)}
    ).to_dict()
    doc.setdefault("meta", {})["joint_spread_from"] = {
        "sets": [str(r) for r in roots],
        "frames": len(spreads),
        "median_spread_mm": [round(float(v), 3) for v in np.median(spreads, 0)],
        "median_error_mm": [round(float(v), 3) for v in np.median(errors, 0)],
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }
    write_text(model / "config.json", json.dumps(doc, indent=2) + "\n")
    return value


__all__ = ["calibrate_joint_spread", "halving_spreads", "spreads_and_errors"]

"""handvox.eval.metrics: the community scorer's metrics on arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handvox.camera import Camera, flip_y
from handvox.errors import DataError
from handvox.eval.metrics import (
    CURVE_THRESHOLDS_MM,
    TABLE_THRESHOLDS_MM,
    fraction_within,
    joint_errors,
    mean_error,
    per_joint_error,
    score,
)
from handvox.io.labels import read_labels


def test_fraction_within_counts_worst_joint_with_le():
    errors = np.array([[1.0, 5.0], [3.0, 2.0], [10.0, 0.0]])  # worst joints: 5, 3, 10
    got = fraction_within(errors, np.array([0.0, 2.9, 3.0, 4.0, 5.0, 9.99, 10.0, 80.0]))
    np.testing.assert_allclose(got, [0, 0, 1 / 3, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    assert fraction_within(errors, 5.0).shape == (1,)


def test_joint_errors_mean_and_per_joint():
    gt = np.zeros((2, 3, 3))
    pred = gt.copy()
    pred[0, 0] = [3, 4, 0]  # 5 mm
    pred[1, 2] = [0, 6, 8]  # 10 mm
    err = joint_errors(pred, gt)
    np.testing.assert_allclose(err, [[5, 0, 0], [0, 0, 10]])
    np.testing.assert_allclose(per_joint_error(err), [2.5, 0, 5])
    assert mean_error(err) == pytest.approx(15 / 6)
    with pytest.raises(ValueError):
        joint_errors(pred[:1], gt)


def test_score_scores_first_frames_and_rejects_extra_frames():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(5, 4, 3)) * 50
    res = score(gt[:3] + [1.0, 0, 0], gt, "m", Path("p.txt"))
    assert (res.frames_scored, res.frames_total, res.partial) == (3, 5, True)
    assert res.mean_error == pytest.approx(1.0)
    np.testing.assert_allclose(res.curve, (CURVE_THRESHOLDS_MM >= 1.0).astype(float))
    assert list(res.table()) == list(TABLE_THRESHOLDS_MM) == [20, 40, 50]
    assert res.table()[20] == 100.0
    assert "scored on 3 of 5 frames" in res.coverage_note
    full = score(gt, gt, "gt")
    assert not full.partial and full.coverage_note is None and full.mean_error == 0.0
    with pytest.raises(DataError, match="p.txt"):
        score(np.concatenate([gt, gt[:1]]), gt, "m", Path("p.txt"))
    with pytest.raises(DataError, match="joints"):
        score(gt[:, :3], gt, "m", Path("p.txt"))


def test_y_down_frame_gives_the_scorers_y_up_errors(shared):
    cam = Camera.preset("nyu")
    gt_uvd = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints[:500]
    pred_uvd = read_labels(shared / "data/published/nyu/CVPR18_NYU_V2V_PoseNet.txt").joints[:500]
    ours = joint_errors(cam.uvd_to_xyz(pred_uvd), cam.uvd_to_xyz(gt_uvd))
    flipped = joint_errors(flip_y(cam.uvd_to_xyz(pred_uvd)), flip_y(cam.uvd_to_xyz(gt_uvd)))
    np.testing.assert_allclose(flipped, ours, rtol=0, atol=1e-9)

    def scorer_xyz(uvd):  # the scorer's own NYU conversion, y up
        u, v, d = np.moveaxis(uvd, -1, 0)
        return np.stack([(u - 320) * d / 588.03, (240 - v) * d / 587.07, d], axis=-1)

    scorer = joint_errors(scorer_xyz(pred_uvd), scorer_xyz(gt_uvd))
    np.testing.assert_allclose(scorer, ours, rtol=0, atol=1e-9)
    assert ours.mean() > 1.0  # a real, non-trivial comparison

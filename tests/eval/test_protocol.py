"""handvox.eval.protocol: the test and validation sets, running an estimator over a labelled
dataset, missed frames as failures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.eval.metrics import MISSED_MM, failures_as_far, fraction_within, joint_errors
from handvox.eval.protocol import (
    TEST_SEED,
    TEST_SHAPES,
    TRAIN_SHAPES,
    VALIDATION_SEED,
    make_test_set,
    predict_dataset,
)

pytestmark = pytest.mark.usefixtures("one_thread")

NYU = Camera.preset("nyu")


def test_failures_as_far_fail_every_threshold():
    gt = np.random.default_rng(0).normal(500.0, 50.0, (3, 14, 3))
    pred = gt + 1.0
    pred[1] = np.nan
    out = failures_as_far(pred, gt)
    assert np.isnan(pred[1]).all()  # the input is left alone
    np.testing.assert_array_equal(out[[0, 2]], pred[[0, 2]])
    err = joint_errors(out, gt)
    np.testing.assert_allclose(err[1], np.sqrt(3) * MISSED_MM)
    assert fraction_within(err, 80.0)[0] == pytest.approx(2 / 3)


def test_predict_dataset_runs_the_estimator_frame_by_frame(tiny_model):
    hand = np.rint(synthetic_frame(NYU)).astype(np.float32)
    rng = np.random.default_rng(0)
    ds = [
        SimpleNamespace(depth=d, camera=NYU, joints_xyz=rng.normal(500.0, 50.0, (14, 3)))
        for d in (hand, np.zeros_like(hand), hand)
    ]
    est = HandPoseEstimator.from_folder(tiny_model, fast=False)
    timings: dict[str, float] = {}
    pred, gt, found = predict_dataset(est, ds, batch=2, progress=False, timings=timings)
    assert pred.shape == gt.shape == (3, 14, 3)
    np.testing.assert_array_equal(found, [True, False, True])
    np.testing.assert_array_equal(gt, np.stack([r.joints_xyz for r in ds]))
    assert np.isnan(pred[1]).all() and np.isfinite(pred[[0, 2]]).all()
    np.testing.assert_allclose(pred[0], est(hand, NYU).joints_xyz[0], atol=1e-3)
    np.testing.assert_allclose(pred[2], pred[0], atol=1e-3)
    assert timings and all(t >= 0 for t in timings.values())


@pytest.mark.slow
def test_validation_and_test_sets_are_disjoint_by_seed_and_shape(tmp_path):
    assert not set(TEST_SHAPES) & set(TRAIN_SHAPES) and VALIDATION_SEED != TEST_SEED
    val = make_test_set(tmp_path / "val", 4, workers=1, progress=False, validation=True)
    test = make_test_set(tmp_path / "test", 4, workers=1, progress=False)
    assert val.meta["seed"] == VALIDATION_SEED and test.meta["seed"] == TEST_SEED
    assert set(val.shape_ids) <= set(TRAIN_SHAPES) and set(test.shape_ids) == set(TEST_SHAPES)
    assert not np.array_equal(val[0].depth, test[0].depth)


def test_the_cross_domain_sets_are_held_out_and_distinct():
    from handvox.eval.protocol import DOMAIN_SETS, domain_set

    names = [d.name for d in DOMAIN_SETS]
    seeds = [d.seed for d in DOMAIN_SETS]
    assert len(set(names)) == len(names) and len(set(seeds)) == len(seeds)
    # no seed of the test, validation or the shipped model's training data (11 and 5)
    assert not set(seeds) & {TEST_SEED, VALIDATION_SEED, 11, 5}
    # every factor the suite exists for is there
    settings = [d.settings for d in DOMAIN_SETS]
    assert any(s.get("mesh_prob") == 1.0 for s in settings)
    assert {s.get("sensor") for s in settings} >= {None, "time_of_flight", "active_stereo"}
    assert any(s.get("view") == "egocentric" and s.get("object_prob") for s in settings)
    with pytest.raises(ValueError, match="unknown domain set"):
        domain_set("mesh-kinect3")


@pytest.mark.slow
def test_a_domain_set_renders_with_its_settings(tmp_path):
    from handvox.eval.protocol import make_domain_set

    ds = make_domain_set("capsule-tof", tmp_path / "tof", 3, workers=1, progress=False)
    assert len(ds) == 3 and ds.meta["seed"] == 203
    config = ds.meta["generator"]["config"]
    assert config["sensor"] == ["time_of_flight"] and config["shapes"] == list(TEST_SHAPES)

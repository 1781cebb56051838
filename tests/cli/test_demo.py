import json
from pathlib import Path

import numpy as np
import pytest
import torch

from handvox.cli import demo
from handvox.estimator.networks import PoseNetConfig
from handvox.estimator.volume import VolumeConfig
from handvox.estimator.weights import EstimatorConfig, build_networks, save_model

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    # Untrained weights: the demo's plumbing, not its accuracy, is under test here.
    torch.manual_seed(0)
    cfg = EstimatorConfig(
        volume=VolumeConfig(size=16, voxel_mm=18.75),
        pose=PoseNetConfig(input_size=16, channels=(4, 4), fc=(32,), num_joints=21),
        recentre=1,
        test_rotations_deg=(-20.0, 20.0),
        test_scales=(1.1,),
    )
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, cfg, *build_networks(cfg))
    return folder


def test_demo_writes_the_report(shared, tiny_model, tmp_path, monkeypatch, capsys):
    # `make demo` runs in the checkout and finds ../shared beside it
    monkeypatch.chdir(REPO)
    assert demo.find_shared() == shared.resolve()
    out = tmp_path / "demo"
    args = ["--out", str(out), "--model", str(tiny_model), "--frames", "12", "--quiet"]
    assert demo.main([*args, "--workers", "1"]) == 0

    # held-out synthetic test set: scored, drawn, timed
    metrics = json.loads((out / "synthetic" / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    m = metrics["methods"][0]
    assert metrics["frames_in_labels"] == 12 and m["frames_scored"] == 12
    assert metrics["protocol"].startswith("handvox synthetic protocol")
    assert metrics["joint_set"] == "canonical21"
    assert summary["mean_error_mm"] == m["mean_error_mm"] > 0
    assert set(summary["timings_ms_per_frame"]) == set(demo.STAGES)
    for png in ("curve.png", "per_joint.png", "overlays.png"):
        assert (out / "synthetic" / png).stat().st_size > 10_000
    from PIL import Image

    w, h = Image.open(out / "synthetic" / "overlays.png").size
    assert w > h > 0  # 3 rows (best, median, worst) of 4

    # the test set is the protocol's: seed and held-out shape
    from handvox.eval.protocol import TEST_SEED, TEST_SHAPES
    from handvox.io.synthetic import SyntheticDataset

    ds = SyntheticDataset(out / "testset", load_clean=False)
    assert ds.meta["seed"] == TEST_SEED and len(ds) == 12
    assert tuple(ds.meta["generator"]["config"]["shapes"]) == TEST_SHAPES

    # the real NYU frame went through the model; the published methods were scored
    assert summary["nyu_frame"]["found"] is True
    assert np.isfinite(summary["nyu_frame"]["mean_error_nyu14_mm"])
    assert (out / "nyu_frame_model.png").stat().st_size > 10_000
    for ds_name, first, mean in (("nyu", "V2V-PoseNet", 8.419), ("icvl", "V2V-PoseNet", 6.284)):
        pub = json.loads((out / ds_name / "metrics.json").read_text())["methods"][0]
        assert pub["name"] == first and abs(pub["mean_error_mm"] - mean) < 0.01
    report = (out / "report.md").read_text()
    for heading in ("Held-out synthetic test set", "Time per stage", "real NYU test frame",
                    "Published methods"):  # fmt: skip
        assert heading in report
    assert "DeepPrior++" in report and "report.md" in capsys.readouterr().out
    # (1 + 1 re-centring) x (1 + 2 rotations + 1 scale) passes, said next to the timings
    assert "8 TSDF and network passes a frame" in report and "-20°, 20°" in report
    assert "scales of 1.1" in report


def test_demo_without_shared_says_so(tiny_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    args = ["--out", str(out), "--model", str(tiny_model), "--frames", "4", "--quiet"]
    assert demo.main([*args, "--workers", "1"]) == 0
    assert "not found" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert "Held-out synthetic test set" in report and "Published methods" not in report


def test_validation_and_test_sets_are_disjoint_by_seed_and_shape(tmp_path):
    from handvox.eval.protocol import (
        TEST_SEED,
        TEST_SHAPES,
        TRAIN_SHAPES,
        VALIDATION_SEED,
        make_test_set,
    )

    assert not set(TEST_SHAPES) & set(TRAIN_SHAPES) and VALIDATION_SEED != TEST_SEED
    val = make_test_set(tmp_path / "val", 4, workers=1, progress=False, validation=True)
    test = make_test_set(tmp_path / "test", 4, workers=1, progress=False)
    assert val.meta["seed"] == VALIDATION_SEED and test.meta["seed"] == TEST_SEED
    assert set(val.shape_ids) <= set(TRAIN_SHAPES) and set(test.shape_ids) == set(TEST_SHAPES)
    assert not np.array_equal(val[0].depth, test[0].depth)


def test_demo_scores_a_model_of_another_joint_set(tmp_path, monkeypatch):
    # An NYU-14 model is scored on the test set's NYU-14 marker labels.
    torch.manual_seed(0)
    cfg = EstimatorConfig(joint_set="nyu14", volume=VolumeConfig(size=16, voxel_mm=18.75),
                          pose=PoseNetConfig(input_size=16, channels=(4, 4), fc=(32,),
                                             num_joints=14))  # fmt: skip
    save_model(tmp_path / "m14", cfg, *build_networks(cfg))
    monkeypatch.chdir(tmp_path)  # no ../shared here: the synthetic part only
    out = tmp_path / "o"
    args = ["--out", str(out), "--model", str(tmp_path / "m14"), "--frames", "4", "--quiet"]
    assert demo.main([*args, "--workers", "1"]) == 0
    metrics = json.loads((out / "synthetic" / "metrics.json").read_text())
    assert metrics["joint_set"] == "nyu14" and len(metrics["joints"]) == 14

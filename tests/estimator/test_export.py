"""ONNX export of refinement + pose (handvox.estimator.export): ONNX Runtime matches torch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.cli.main import main
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.weights import build_networks, save_model
from tests.tiny import tiny_config

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from handvox.estimator.export import export_onnx, run_onnx  # noqa: E402

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config(refine=True, size=24)
    pose, refine = build_networks(cfg)
    # Non-trivial output: scale the last layer so joints spread over tens of millimetres.
    with torch.no_grad():
        pose.head[-1].weight.mul_(20.0)
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, cfg, pose, refine)
    return folder


@pytest.fixture(scope="module")
def hand_tsdf(model_dir):
    """Volumes of a rendered hand and of the same hand shifted: what the estimator feeds in."""
    est = HandPoseEstimator.from_folder(model_dir, fast=False)
    frame = synthetic_frame(NYU)
    frames = np.stack([frame, np.roll(frame, 20, axis=0), np.roll(frame, -15, axis=1)])
    segs = est.segment(frames, NYU)
    assert all(s.found for s in segs)
    return est, est.volumes(frames, segs, NYU)


def test_onnx_runtime_matches_torch(tmp_path, model_dir, hand_tsdf):
    est, tsdf = hand_tsdf
    res = export_onnx(model_dir, tmp_path / "m.onnx", check_tsdf=tsdf)
    assert res.max_diff_mm is not None and res.max_diff_mm < 0.01 and res.batch == 3
    want = est.relative_joints(tsdf, exact=True).numpy()
    assert np.abs(want).max() > 10.0  # the comparison is not between near-zero outputs
    for batch in (tsdf[:1], tsdf):  # the batch axis is dynamic
        got = run_onnx(res.path, batch.numpy())
        assert got.shape == (len(batch), 14, 3)
        np.testing.assert_allclose(got, want[: len(batch)], atol=0.01, rtol=0)
    # The whole estimator: ONNX output + COM = the estimator's joints.
    pred = est(synthetic_frame(NYU), NYU)
    np.testing.assert_allclose(
        run_onnx(res.path, tsdf[:1].numpy())[0] + pred.com_xyz[0], pred.joints_xyz[0], atol=0.01
    )


def test_metadata_and_pose_only_model(tmp_path):
    import onnx

    cfg = tiny_config(size=24)
    save_model(tmp_path / "model", cfg, *build_networks(cfg))
    res = export_onnx(tmp_path / "model", tmp_path / "pose.onnx")
    assert res.max_diff_mm < 0.01
    meta = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert meta["joint_set"] == "nyu14" and meta["joint_names"].startswith("little_tip,")
    assert json.loads(meta["handvox_config"])["volume"]["size"] == 24
    assert "minus the COM" in meta["output"]


def test_dense_head_exports_and_onnx_runtime_agrees(tmp_path):
    """The soft-argmax (softmax, sums over axes) goes through the exporter as the FC head does."""
    import onnx

    from handvox.estimator.presets import dense_estimator

    torch.manual_seed(0)
    cfg = dense_estimator("nyu14")
    pose, _ = build_networks(cfg)
    with torch.no_grad():
        pose.features.heatmaps.weight.normal_(std=3.0)  # peaked heatmaps, joints off-centre
    save_model(tmp_path / "model", cfg, pose)
    res = export_onnx(tmp_path / "model", tmp_path / "dense.onnx")
    assert res.max_diff_mm < 0.01
    meta = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert json.loads(meta["handvox_config"])["pose"]["head"] == "dense"
    tsdf = torch.rand(1, 1, 32, 32, 32) * 2 - 1
    out = run_onnx(res.path, tsdf.numpy())[0]
    assert out.shape == (14, 3) and np.abs(out).max() > 1.0  # mm: not all at the centre


def test_cli_export(tmp_path, model_dir, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main(["export", "--model", str(model_dir), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "max joint difference" in text
    assert main(["export", "--model", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "config.json" in capsys.readouterr().err

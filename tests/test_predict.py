"""`handvox predict` over files, folders and datasets (handvox.cli.predict, handvox.cli.main)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.cli.main import main
from handvox.estimator.networks import PoseNetConfig
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.estimator.volume import VolumeConfig
from handvox.estimator.weights import EstimatorConfig, build_networks, save_model
from handvox.io.depth import write_nyu_depth, write_png16
from handvox.io.labels import read_labels

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = EstimatorConfig(
        joint_set="nyu14",
        volume=VolumeConfig(size=16, voxel_mm=18.75),
        pose=PoseNetConfig(input_size=16, channels=(4, 4), fc=(32, 32), num_joints=14),
    )
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, cfg, *build_networks(cfg))
    return folder


@pytest.fixture(scope="module")
def frame():
    return np.rint(synthetic_frame(NYU)).astype(np.float32)  # whole mm, as the files hold


@pytest.fixture()
def mixed_folder(tmp_path, frame):
    """The same hand as NYU RGB PNG, 16-bit PNG and .npy, plus an empty frame."""
    folder = tmp_path / "frames"
    write_nyu_depth(folder / "a_nyu.png", frame)
    write_png16(folder / "b_png16.png", frame)
    np.save(folder / "c_array.npy", frame)
    np.save(folder / "d_empty.npy", np.zeros_like(frame))
    (folder / "notes.txt").write_text("not a depth file: ignored")
    return folder


def test_folder_all_formats_and_overlays(tmp_path, model_dir, mixed_folder, frame, capsys):
    out = tmp_path / "out"
    args = ["predict", str(mixed_folder), "--model", str(model_dir), "--camera", "nyu",
            "--out", str(out), "--overlay", "--quiet", "--exact"]  # fmt: skip
    assert main(args) == 0
    assert "4 frames, hand found in 3" in capsys.readouterr().out

    doc = json.loads((out / "predictions.json").read_text())
    frames = doc["frames"]
    assert [f["id"] for f in frames] == [
        "frames/a_nyu.png", "frames/b_png16.png", "frames/c_array.npy", "frames/d_empty.npy"
    ]  # fmt: skip
    assert [f["found"] for f in frames] == [True, True, True, False]
    assert doc["joint_set"] == "nyu14" and len(doc["joint_names"]) == 14
    want = HandPoseEstimator.from_folder(model_dir, fast=False)(frame, NYU)
    for f in frames[:3]:  # three encodings of one frame: one answer, the library's
        np.testing.assert_allclose(f["joints_xyz"], want.joints_xyz[0], atol=2e-3)
        np.testing.assert_allclose(f["com_xyz"], want.com_xyz[0], atol=2e-3)
        np.testing.assert_allclose(f["joints_uvd"], want.joints_uvd[0], atol=2e-3)
    empty = frames[3]
    assert empty["joints_xyz"] is None and empty["com_xyz"] is None
    assert empty["reason"].startswith("no hand found")

    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and rows[0]["found"] == "1" and rows[3]["found"] == "0"
    assert float(rows[0]["com_z"]) == pytest.approx(want.com_xyz[0, 2], abs=1e-3)
    assert rows[3]["little_tip_x"] == "" and rows[3]["reason"]
    assert len(rows[0]) == 4 + 6 + 14 * 6

    labels = read_labels(out / "predictions.txt", num_joints=14)  # community format: NaN-free
    assert labels.kind is None and labels.joints.shape == (4, 14, 3)
    np.testing.assert_allclose(labels.joints[0], want.joints_uvd[0], atol=1e-3)
    assert (labels.joints[3] == 0).all()

    pngs = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(pngs) == 4 and pngs[0].startswith("00000_a_nyu")
    assert [f["overlay"] for f in frames] == [f"overlays/{p}" for p in pngs]
    with Image.open(out / "overlays" / pngs[0]) as im:
        assert im.mode == "RGB" and max(im.size) == 512


def test_unreadable_file_is_named(tmp_path, model_dir, mixed_folder, capsys):
    (mixed_folder / "e_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    args = ["predict", str(mixed_folder), "--model", str(model_dir), "--out",
            str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    assert "e_broken.png" in capsys.readouterr().err
    # --skip-errors: the file becomes a frame without a hand, the reason says why.
    assert main([*args, "--skip-errors"]) == 0
    frames = json.loads((tmp_path / "out/predictions.json").read_text())["frames"]
    broken = frames[-1]
    assert broken["id"].endswith("e_broken.png") and not broken["found"]
    assert broken["reason"].startswith("unreadable:") and "e_broken.png" in broken["reason"]


def test_wrong_size_for_camera_is_named(tmp_path, model_dir, mixed_folder, capsys):
    args = ["predict", str(mixed_folder / "a_nyu.png"), "--model", str(model_dir),
            "--camera", "icvl", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a_nyu.png" in err and "640x480" in err and "320x240" in err


def test_synthetic_dataset_and_joint_set_conversion(tmp_path, model_dir, capsys):
    from handvox.synth.generators import make_generator
    from handvox.synth.job import synthesize

    cam = Camera.preset("icvl")
    generator, info = make_generator("hand", cam)
    root = tmp_path / "synth"
    synthesize(root, generator, cam, frames=3, seed=1, chunk_size=8, generator_info=info,
               progress=False)  # fmt: skip
    out = tmp_path / "out"
    args = ["predict", "--dataset", f"synthetic:{root}", "--limit", "2", "--model",
            str(model_dir), "--out", str(out), "--format", "json,txt", "--quiet",
            "--joint-set", "nyu14"]  # fmt: skip
    assert main(args) == 0
    doc = json.loads((out / "predictions.json").read_text())
    assert len(doc["frames"]) == 2 and doc["frames"][0]["camera"]["width"] == 320
    assert all(f["found"] for f in doc["frames"])
    assert not (out / "predictions.csv").exists()
    # A model's joints in a set that has no mapping from them: a clear error.
    bad = [*args[:-2], "--joint-set", "msra21"]
    assert main(bad) == 2
    assert "no mapping from nyu14 to msra21" in capsys.readouterr().err


def test_real_frames(tmp_path, model_dir, shared):
    out = tmp_path / "out"
    nyu = shared / "data/nyu/depth_1_0000001.png"
    assert main(["predict", str(nyu), "--model", str(model_dir), "--out", str(out), "--quiet",
                 "--overlay"]) == 0  # fmt: skip
    assert json.loads((out / "predictions.json").read_text())["frames"][0]["found"]
    hands17 = shared / "data/hands17/image_D00000030.png"
    cam = "475.065948,475.065948,315.944855,245.287079,640,480"
    assert main(["predict", str(hands17), "--model", str(model_dir), "--camera", cam,
                 "--out", str(out), "--quiet", "--overlay"]) == 0  # fmt: skip
    frame = json.loads((out / "predictions.json").read_text())["frames"][0]
    assert frame["found"] and np.isfinite(frame["joints_xyz"]).all()
    assert (out / frame["overlay"]).is_file()


def test_no_inputs_no_hand_and_no_default_model(tmp_path, capsys, monkeypatch):
    assert main(["predict", "--out", str(tmp_path)]) == 2
    assert "give depth files" in capsys.readouterr().err
    # an empty frame through the shipped model: a clear "no hand found", not a crash or zeros
    np.save(tmp_path / "x.npy", np.zeros((480, 640), np.float32))
    assert main(["predict", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o")]) == 0
    frame = json.loads((tmp_path / "o" / "predictions.json").read_text())["frames"][0]
    assert frame["found"] is False and "no hand found" in frame["reason"]
    assert frame["joints_xyz"] is None
    # without a shipped model the error says what to do
    import handvox.estimator.pipeline

    monkeypatch.setattr(handvox.estimator.pipeline, "DEFAULT_MODEL_DIR", tmp_path / "none")
    assert main(["predict", str(tmp_path / "x.npy"), "--out", str(tmp_path / "o2")]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_dataset_specs_take_reader_options():
    from handvox.io.datasets import DatasetSpec

    s = DatasetSpec.parse("nyu:/d/nyu?kinect=2&split=train")
    assert (s.kind, s.root, s.reader_options()) == (
        "nyu",
        "/d/nyu",
        {"kinect": 2, "split": "train"},
    )
    assert DatasetSpec.parse("msra:/m?subjects=P0,P1").reader_options() == {
        "subjects": ["P0", "P1"]
    }
    assert DatasetSpec.parse("icvl:/i").reader_options() == {}
    s = DatasetSpec.parse("nyu:/data/nyu?kinect=2@0.5")
    assert (s.weight, DatasetSpec.parse(s.spec)) == (0.5, s)
    assert DatasetSpec.parse("synthetic:/a@b/c").root == "/a@b/c"
    for bad in ("nyu:/d?camera=2", "nyu", "icvl:/i?split", "hands17:/h", "/just/a/path"):
        with pytest.raises(ValueError):
            DatasetSpec.parse(bad)
    with pytest.raises(ValueError, match="kinect=two"):
        DatasetSpec.parse("nyu:/d?kinect=two").reader_options()
    for bad in ("nyu:/d?camera=2", "nyu:/d?kinect=two", "nyu", "synthetic:/s@2"):
        assert main(["predict", "--dataset", bad, "--out", "/tmp/never-written"]) == 2


def test_rotations_flag_overrides_the_models_setting(tmp_path, model_dir, frame, capsys):
    np.save(tmp_path / "f.npy", frame)
    runs = {}
    for flag in ("none", "-20,20"):
        out = tmp_path / flag
        args = ["predict", str(tmp_path / "f.npy"), "--model", str(model_dir), "--exact",
                f"--rotations={flag}", "--out", str(out), "--quiet"]  # fmt: skip
        assert main(args) == 0
        runs[flag] = np.array(json.loads((out / "predictions.json").read_text())["frames"][0]
                              ["joints_xyz"])  # fmt: skip
    est = HandPoseEstimator.from_folder(model_dir, fast=False)
    np.testing.assert_allclose(runs["none"], est(frame, NYU).joints_xyz[0], atol=1e-3)
    est = HandPoseEstimator.from_folder(model_dir, fast=False, test_rotations_deg=(-20, 20))
    np.testing.assert_allclose(runs["-20,20"], est(frame, NYU).joints_xyz[0], atol=1e-3)
    assert np.abs(runs["none"] - runs["-20,20"]).max() > 1e-2
    for bad in ("0", "a,b"):
        assert main(["predict", str(tmp_path / "f.npy"), "--model", str(model_dir),
                     f"--rotations={bad}", "--out", str(tmp_path / "x")]) == 2  # fmt: skip
        assert "--rotations" in capsys.readouterr().err
    # --scales likewise
    out = tmp_path / "scales"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "f.npy"),
                "--model",
                str(model_dir),
                "--exact",
                "--rotations=none",
                "--scales=0.9,1.1",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    got = np.array(json.loads((out / "predictions.json").read_text())["frames"][0]["joints_xyz"])
    est = HandPoseEstimator.from_folder(model_dir, fast=False, test_scales=(0.9, 1.1))
    np.testing.assert_allclose(got, est(frame, NYU).joints_xyz[0], atol=1e-3)
    assert np.abs(got - runs["none"]).max() > 1e-2
    for bad in ("1", "x"):
        assert main(["predict", str(tmp_path / "f.npy"), "--model", str(model_dir),
                     f"--scales={bad}", "--out", str(tmp_path / "x")]) == 2  # fmt: skip
        assert "--scales" in capsys.readouterr().err

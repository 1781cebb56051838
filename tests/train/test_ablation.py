"""Smoke tests of the training benchmarks on tiny generated data: benchmarks/ablation.py (the
Hand3D Fig. 9 ablation) and benchmarks/architectures.py (the paper's pose net against the
compact one)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.estimator.weights import load_model
from handvox.eval.protocol import TRAIN_SHAPES
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.job import synthesize
from handvox.synth.transfer import run_transfer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "ablation.py"
VARIANTS = ("base", "aug", "refine", "both")
STEPS, REFINE_STEPS = 6, 2


def load_script():
    spec = importlib.util.spec_from_file_location("handvox_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(shared, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ablation_data")
    camera = Camera.preset("nyu")
    config = HandSynthConfig.for_camera(camera, shapes=TRAIN_SHAPES)
    gen, info = make_generator("hand", camera, config)
    synthesize(root / "sampler", gen, camera, 40, seed=1, chunk_size=40, generator_info=info,
               progress=False)  # fmt: skip
    run_transfer(shared / "data/nyu/nyu_test_groundtruth_label.txt", root / "transfer", 2, 2,
                 dataset="nyu", seed=5, frames_limit=5, fit_options={"rounds": 1, "steps": 60},
                 chunk_size=32, progress=False)  # fmt: skip
    return {"sampler": root / "sampler", "transfer": root / "transfer", "test": root / "test"}


def read_last_lr(log: Path) -> float:
    head, *rows = log.read_text().splitlines()
    return float(rows[-1].split(",")[head.split(",").index("lr")])


def model_files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.glob("*/*/*/model.safetensors")}


@pytest.mark.slow
@pytest.mark.integration
def test_ablation_trains_scores_and_resumes(data, tmp_path):
    ablation = load_script()
    out = tmp_path / "out"
    argv = ["--sampler", str(data["sampler"]), "--transfer", str(data["transfer"]),
            "--test", str(data["test"]), "--test-frames", "12", "--out", str(out),
            "--steps", str(STEPS), "--refine-steps", str(REFINE_STEPS), "--volume-size", "16",
            "--batch-size", "4", "--workers", "0", "--amp", "none"]  # fmt: skip
    metrics = ablation.main(argv)

    rows = {r["variant"]: r for r in metrics["ablation"]["variants"]}
    assert list(rows) == list(VARIANTS)
    for key, row in rows.items():
        assert row["steps"] == STEPS
        assert math.isfinite(row["test_mean_mm"]) and math.isfinite(row["val_mm"])
        assert 0 <= row["test_pct"]["50"] <= 100
        model = load_model(ablation.model_dir(out, key, STEPS, REFINE_STEPS))
        assert model.meta["step"] == (STEPS - REFINE_STEPS if row["refined"] else STEPS)
        assert (model.refine_net is not None) == (key in ("refine", "both"))
        assert model.config.volume.size == 16
    # the refinement variants pre-trained their refinement net within the budget
    pre = json.loads((out / "both" / "pretrain" / "stage.json").read_text())
    assert pre["step"] == REFINE_STEPS and "val_tsdf" in pre["final"]
    # only the augmented variants read the transfer data and augment it
    for key in VARIANTS:
        for cfg_path in (out / key).glob("*/train_config.json"):
            cfg = json.loads(cfg_path.read_text())
            assert len(cfg["data"]) == (2 if rows[key]["augmented"] else 1)
            assert cfg["augment"]["enabled"] == rows[key]["augmented"]

    # one learning-rate schedule over the budget, whatever the size of an epoch (35 training
    # frames in base, 51 in aug): cosine, 1e-3 -> its value at the last of 6 steps
    last_lr = [read_last_lr(out / key / "pose" / "log.csv") for key in ("base", "aug")]
    assert last_lr == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 6))] * 2)

    saved = json.loads((out / "metrics.json").read_text())
    assert {m["name"] for m in saved["methods"]} == {r["label"] for r in rows.values()}
    assert all(math.isfinite(m["mean_error_mm"]) for m in saved["methods"])
    assert saved["methods"][0]["name"] == rows["both"]["label"]
    assert (out / "curve.png").stat().st_size > 0 and (out / "per_joint.png").is_file()
    report = (out / "report.md").read_text()
    assert "16^3" in report and f"{STEPS} optimiser steps" in report
    for row in rows.values():
        assert f"| {row['label']} |" in report
    assert metrics["ablation"]["test_frames"] == 12  # the test set was rendered

    # a rerun retrains nothing, re-scores nothing and reports the same numbers
    before = model_files(out)
    assert len(before) >= 2 * len(VARIANTS)
    again = ablation.main(argv)
    assert model_files(out) == before
    assert again["ablation"]["variants"] == metrics["ablation"]["variants"]

    with pytest.raises(HandvoxError, match="other settings"):
        ablation.main([*argv[:-6], "--batch-size", "2", "--workers", "0", "--amp", "none"])


@pytest.mark.slow
@pytest.mark.integration
def test_architectures_compares_paper_and_compact_under_one_config(data, tmp_path):
    spec = importlib.util.spec_from_file_location(
        "handvox_architectures", SCRIPT.with_name("architectures.py")
    )
    arch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(arch)
    # The shipped model's stage-1 config, made cheap: a TOML file over it.
    (tmp_path / "cfg.toml").write_text(
        f'base = "{ROOT / "configs" / "default_model.toml"}"\n'
        'batch_size = 2\nnum_workers = 0\namp = "none"\nval_block = 4\nprogress = false\n'
    )
    out = tmp_path / "arch"
    argv = ["--config", str(tmp_path / "cfg.toml"), "--data", f"synthetic:{data['sampler']}",
            "--steps", "compact=3,dense=3,paper=2", "--test", str(data["test"]),
            "--val", str(tmp_path / "val"), "--frames", "12", "--out", str(out),
            "--domain-frames", "2", "--workers", "1"]  # fmt: skip
    metrics = arch.main(argv)
    rows = {r["name"]: r for r in metrics["architectures"]["rows"]}
    assert rows["paper"]["params"] == 59_632_503 and rows["paper"]["volume"] == "60^3 x 5 mm"
    assert rows["compact"]["params"] == 2_593_423 and rows["compact"]["steps"] == 3
    assert rows["dense"]["params"] == 579_109 and rows["dense"]["volume"] == "32^3 x 9.375 mm"
    assert rows["paper"]["steps"] == 2
    for r in rows.values():
        assert math.isfinite(r["test_mm"]) and math.isfinite(r["val_mm"])
        assert len(r["domains"]) == 7
        assert all(d["frames"] == 2 for d in r["domains"].values())
        assert r["spread"]["size_ratio"] > 0 and math.isfinite(r["spread"]["tips_mm"])
    # only the estimator differs between the runs, and between compact and dense only the head
    a, b, c = (json.loads((out / n / "train_config.json").read_text())
               for n in ("compact", "paper", "dense"))  # fmt: skip
    differ = {k for k in a if a[k] != b[k]}
    assert {"estimator", "total_steps"} <= differ <= {"estimator", "total_steps", "epochs",
                                                      "warmup_steps"}  # fmt: skip
    assert a["estimator"]["segment"] == b["estimator"]["segment"]
    pose_a, pose_c = a["estimator"].pop("pose"), c["estimator"].pop("pose")
    assert a["estimator"] == c["estimator"] and pose_c["head"] == "dense"
    assert {k for k in pose_a if pose_a[k] != pose_c[k]} == {"head", "fc", "decoder"}
    report = (out / "report.md").read_text()
    assert "paper's pose net" in report and "dense head" in report
    assert "cross-domain suite" in report and "egocentric-object" in report
    assert (out / "networks.png").read_bytes()[:4] == b"\x89PNG" and "networks.png" in report
    # a rerun reuses every run and its scores
    before = {p: p.stat().st_mtime_ns for p in out.glob("*/last/model.safetensors")}
    before_domains = {p: p.stat().st_mtime_ns for p in out.glob("*/domains.json")}
    assert len(before) == len(before_domains) == 3
    arch.main(argv)
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/last/model.safetensors")} == before
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/domains.json")} == before_domains

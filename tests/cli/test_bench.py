"""`handvox bench` runs end to end and reports every stage (no timing asserts)."""

from __future__ import annotations

import json

import pytest
import torch

from handvox.cli.bench import STAGES, format_markdown, measure_peak
from handvox.cli.main import main
from tests.tiny import save_tiny_model, tiny_config


@pytest.mark.slow
@pytest.mark.integration
def test_bench_cli_writes_all_stages(tmp_path, capsys):
    torch.manual_seed(0)
    save_tiny_model(tmp_path / "model", tiny_config(refine=True))
    out = tmp_path / "bench.json"
    args = ["bench", "--model", str(tmp_path / "model"), "--frames", "2", "--refine-frames", "1",
            "--batch", "1,2", "--threads", "1", "--no-peak", "--quiet",
            "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert [(r["variant"], r["batch"]) for r in runs] == [
        ("fp32", 1), ("fast", 1), ("fp32", 2), ("fast", 2)
    ]  # fmt: skip
    for r in runs:
        assert set(r["stages"]) == set(STAGES)
        for stage in STAGES:
            t = r["stages"][stage]
            assert 0 < t["best_ms"] <= t["median_ms"]
        for key in ("pose_path", "end_to_end"):
            assert 0 < r[key]["median_fps"] <= r[key]["best_fps"]
        assert r["refine_gflops"] > 0
        assert r["max_joint_diff_vs_fp32_mm"] < 1.0
    assert runs[0]["max_joint_diff_vs_fp32_mm"] == 0.0
    assert runs[1]["networks"]["pose"] != "fp32"
    assert result["model"]["refine_gflop_per_frame"] > 0
    assert result["machine"]["threads"] == 1 and result["machine"]["torch"] == torch.__version__
    assert "| fast (" in printed and "end-to-end fps" in printed
    assert "| carried |" in printed and "a tracked stream (handvox live" in printed
    assert format_markdown(result) in printed
    assert "hand finding: the depth rule" in printed  # the tiny model's
    # the shipped model's locator, its phases as asked and said (they change what is timed)
    from handvox.estimator.pipeline import DEFAULT_MODEL_DIR

    for n in (1, 4):
        assert main(["bench", "--model", str(DEFAULT_MODEL_DIR), "--frames", "1", "--batch", "1",
                     "--threads", "1", "--no-peak", "--quiet", "--locator-phases", str(n),
                     "--json", str(out)]) == 0  # fmt: skip
        assert f"read at {n} grid phase(s)" in capsys.readouterr().out
        assert json.loads(out.read_text())["settings"]["locator_phases"] == n


def test_bench_needs_a_model(capsys):
    assert main(["bench"]) == 2
    assert "--paper-arch" in capsys.readouterr().err


@pytest.mark.slow
def test_peak_measurements_are_positive():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        peak = measure_peak(1)
    finally:
        torch.set_num_threads(threads)
    for key in ("matmul_fp32", "matmul_bf16", "conv3d_fp32", "conv3d_bf16"):
        assert peak[key] > 0
    if peak["fma_fp32"] is not None:  # a C compiler was there to build the loop
        assert peak["fma_lanes"] in (8, 16) and peak["fma_fp32"] > 0

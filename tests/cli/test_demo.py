"""``handvox demo`` (what ``make demo`` runs): the report's files and numbers, with and without
the reference data beside the checkout."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handvox.cli.demo import STAGES, find_shared
from handvox.cli.main import main
from handvox.eval.protocol import DOMAIN_SETS, TEST_SEED, TEST_SHAPES
from handvox.io.synthetic import SyntheticDataset
from tests.tiny import save_tiny_model, tiny_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def tta_model(tmp_path_factory) -> Path:
    """Canonical 21 joints, a re-centring pass, test-time rotations and a scale (untrained: the
    demo's plumbing, not its accuracy, is under test)."""
    cfg = tiny_config("canonical21", fc=(32,), recentre=1, test_rotations_deg=(-20.0, 20.0),
                      test_scales=(1.1,))  # fmt: skip
    return save_tiny_model(tmp_path_factory.mktemp("model"), cfg)


def demo(out: Path, model: Path, frames: int, domain_frames: int = 0) -> int:
    args = ["demo", "--out", str(out), "--model", str(model), "--frames", str(frames)]
    return main([*args, "--quiet", "--workers", "1", "--domain-frames", str(domain_frames)])


def test_demo_writes_the_report(shared, tta_model, tmp_path, monkeypatch, capsys):
    # `make demo` runs in the checkout and finds ../shared beside it
    monkeypatch.chdir(REPO)
    assert find_shared() == shared.resolve()
    out = tmp_path / "demo"
    assert demo(out, tta_model, 12, domain_frames=2) == 0

    # held-out synthetic test set: scored, drawn, timed
    metrics = json.loads((out / "synthetic" / "metrics.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    m = metrics["methods"][0]
    assert metrics["frames_in_labels"] == 12 and m["frames_scored"] == 12
    assert metrics["protocol"].startswith("handvox synthetic protocol")
    assert metrics["joint_set"] == "canonical21"
    assert summary["mean_error_mm"] == m["mean_error_mm"] > 0
    assert set(summary["timings_ms_per_frame"]) == set(STAGES)
    # (1 + 1 re-centring) x (1 + 2 rotations + 1 scale) passes
    assert summary["passes_per_frame"] == 8
    for png in ("curve.png", "per_joint.png", "overlays.png"):
        assert (out / "synthetic" / png).stat().st_size > 10_000
    w, h = Image.open(out / "synthetic" / "overlays.png").size
    assert w > h > 0  # 3 rows (best, median, worst) of 4

    # the test set is the protocol's: seed and held-out shape
    ds = SyntheticDataset(out / "testset", load_clean=False)
    assert ds.meta["seed"] == TEST_SEED and len(ds) == 12
    assert tuple(ds.meta["generator"]["config"]["shapes"]) == TEST_SHAPES

    # the real frames went through the model, drawn as contact sheets: the 19 SR305 frames, the
    # NYU frame (scored on its labels) and the HANDS 2017 frame
    assert summary["nyu_frame"]["found"] is True
    assert np.isfinite(summary["nyu_frame"]["mean_error_nyu14_mm"])
    assert summary["real_frames"]["sr305_frames"] == 19
    for png in ("sr305.png", "others.png"):
        assert (out / "real" / png).stat().st_size > 10_000
    w, h = Image.open(out / "real" / "sr305.png").size
    assert w > h > 0  # 4 rows of 5
    # the published methods were scored
    for ds_name, first, mean in (("nyu", "V2V-PoseNet", 8.419), ("icvl", "V2V-PoseNet", 6.284)):
        pub = json.loads((out / ds_name / "metrics.json").read_text())["methods"][0]
        assert pub["name"] == first and abs(pub["mean_error_mm"] - mean) < 0.01
    # the cross-domain suite: every set scored on its own held-out frames
    assert set(summary["domains"]) == {d.name for d in DOMAIN_SETS}
    assert all(r["frames"] == 2 and r["mean_error_mm"] > 0 for r in summary["domains"].values())
    assert (out / "domains" / "matrix.png").stat().st_size > 10_000
    # the skinned-hand contact sheet: 20 gestures, mesh and capsules, 4 a row
    w, h = Image.open(out / "skinned" / "sheet.png").size
    assert (w, h) == (8 * 260 + 4, 5 * 260 + 4)
    assert 0 < summary["skinned_sheet_seconds"] < 60
    # the report shows every picture it made
    report = (out / "report.md").read_text()
    for link in ("synthetic/curve.png", "synthetic/overlays.png", "real/sr305.png",
                 "real/others.png", "nyu/curve.png", "icvl/curve.png",
                 "domains/matrix.png", "domains/leave-one-out.png",
                 "skinned/sheet.png"):  # fmt: skip
        assert f"]({link})" in report
    # the recorded leave-one-out runs: one row per run, the ratio of each factor
    loo = report.split("### Leave-one-out", 1)[1].split("\n## ", 1)[0]
    for run in ("all", "no-mesh", "no-tof", "no-objects"):
        assert f"| {run} |" in loo
    assert "without tof:" in loo and "recorded" in loo.lower()
    # after the cross-domain suite, before the real frames
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    i = sections.index("## The skinned hand")
    assert sections[i - 1] == "## Cross-domain suite" and sections[i + 1] == "## Real frames"
    skinned = report.split("## The skinned hand\n", 1)[1].split("\n## ", 1)[0]
    assert "LibHand" in skinned and "CC BY 3.0" in skinned and "20" in skinned
    assert "](skinned/sheet.png)" in skinned
    real = report.split("## Real frames\n", 1)[1].split("\n## ", 1)[0]
    assert "SR305" in real and "MIT" in real and "NYU" in real and "HANDS 2017" in real
    assert f"{summary['nyu_frame']['mean_error_nyu14_mm']:.1f} mm" in real
    assert "report.md" in capsys.readouterr().out


def test_demo_without_shared_says_so(tta_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "o"
    assert demo(out, tta_model, 4) == 0
    assert "not found" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert "nyu_frame" not in summary and not (out / "nyu").exists()
    # no real frames: the report says why instead of the section
    report = (out / "report.md").read_text()
    assert "## Real frames" not in report and not (out / "real").exists()
    assert "not found" in report and "real frames" in report


def test_demo_scores_a_model_of_another_joint_set(tiny_model, tmp_path, monkeypatch):
    # An NYU-14 model is scored on the test set's NYU-14 marker labels.
    monkeypatch.chdir(tmp_path)  # no ../shared here: the synthetic part only
    out = tmp_path / "o"
    assert demo(out, tiny_model, 4) == 0
    metrics = json.loads((out / "synthetic" / "metrics.json").read_text())
    assert metrics["joint_set"] == "nyu14" and len(metrics["joints"]) == 14
    # a model of the user's: the report does not claim the test set was held out from it
    report = (out / "report.md").read_text()
    assert "neither used in training" not in report and "held out by the protocol" in report


def test_a_model_folder_that_is_not_one_fails_clearly(tmp_path, capsys):
    assert demo(tmp_path / "o", tmp_path / "nothing", 4) == 2
    assert "nothing" in capsys.readouterr().err

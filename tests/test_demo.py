import json
from pathlib import Path

from handvox import demo

REPO = Path(__file__).resolve().parents[1]


def test_demo_writes_reports_and_frame(shared, tmp_path, monkeypatch, capsys):
    # `make demo` runs in the checkout and finds ../shared beside it
    monkeypatch.chdir(REPO)
    assert demo.find_shared() == shared.resolve()
    assert demo.main(["--out", str(tmp_path)]) == 0
    for ds, first, mean in (("nyu", "V2V-PoseNet", 8.419), ("icvl", "V2V-PoseNet", 6.284)):
        metrics = json.loads((tmp_path / ds / "metrics.json").read_text())
        m = metrics["methods"][0]
        assert m["name"] == first and abs(m["mean_error_mm"] - mean) < 0.01
        assert (tmp_path / ds / "curve.png").stat().st_size > 10_000
    assert (tmp_path / "nyu_frame.png").stat().st_size > 10_000
    assert "DeepPrior++" in capsys.readouterr().out


def test_demo_without_shared_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main(["--out", str(tmp_path / "o")]) == 0
    assert "not found" in capsys.readouterr().out

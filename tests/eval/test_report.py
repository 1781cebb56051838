"""handvox.eval.report: metrics.json content, report.md, figures, writing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.patches import Rectangle
from PIL import Image

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.eval.metrics import PROTOCOL, SYNTHETIC_PROTOCOL, score
from handvox.eval.report import (
    build_metrics,
    joint_label,
    plot_domain_matrix,
    plot_leave_one_out,
    render_markdown,
    write_report,
)
from handvox.joints import ICVL16

ICVL = Camera.preset("icvl")


@pytest.fixture(scope="module")
def results():
    """A method 2 mm off on every joint of 4 frames, and one covering only the first 3 frames
    exactly."""
    rng = np.random.default_rng(1)
    gt = rng.normal(300.0, 40.0, (4, 16, 3))
    return [score(gt + [2.0, 0, 0], gt, "P", Path("p.txt")), score(gt[:3], gt, "Partial")]


def test_joint_labels_are_readable():
    assert joint_label("thumb_root2") == "Thumb root 2"
    assert joint_label("index_mcp") == "Index MCP"
    assert joint_label("wrist1") == "Wrist 1"
    assert joint_label("palm") == "Palm"


def test_build_metrics(results):
    m = build_metrics("icvl", ICVL16, ICVL, Path("gt.txt"), results)
    assert (m["dataset"], m["joint_set"], m["ground_truth"]) == ("icvl", "icvl16", "gt.txt")
    assert m["joints"] == list(ICVL16.names) and m["joint_labels"][0] == joint_label("palm")
    assert m["frames_in_labels"] == 4 and m["camera"] == ICVL.to_dict()
    assert m["protocol"] == PROTOCOL
    assert m["thresholds_mm"] == list(range(81)) and m["table_thresholds_mm"] == [20, 40, 50]
    p, partial = m["methods"]
    assert (p["name"], p["file"], p["format"], p["coverage"]) == ("P", "p.txt", "uvd", "full")
    assert p["mean_error_mm"] == 2.0 and set(p["per_joint_mean_error_mm"].values()) == {2.0}
    assert p["fraction_of_frames_within_mm"][:3] == [0.0, 0.0, 1.0]
    assert p["percent_of_frames_within_mm"] == {"20": 100.0, "40": 100.0, "50": 100.0}
    assert (partial["file"], partial["frames_scored"], partial["coverage"]) == (None, 3, "partial")
    assert partial["coverage_note"].startswith("scored on 3 of 4 frames")
    assert p["coverage_note"] == "scored on all 4 frames"
    json.dumps(m)  # plain data
    synthetic = build_metrics("synthetic", ICVL16, ICVL, Path("d"), results)
    assert synthetic["protocol"] == SYNTHETIC_PROTOCOL


def test_markdown_lists_methods_in_order_with_notes(results):
    md = render_markdown(build_metrics("icvl", ICVL16, ICVL, Path("gt.txt"), results))
    assert md.index("| P | 4/4 | 2.000 |") < md.index("| Partial | 3/4 | 0.000 |")
    assert "scored on 3 of 4 frames" in md
    assert "(curve.png)" in md and "(per_joint.png)" in md
    metrics = build_metrics("icvl", ICVL16, ICVL, Path("gt.txt"), results)
    assert "curve.png" not in render_markdown(metrics, images=False)


def _assert_png_figure(path: Path, min_w: int, min_h: int) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_w and im.height >= min_h
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # not a blank canvas
    rgb = px.astype(np.int32)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert len(colours) > 20  # several colours: lines, text, bars


def test_write_report_writes_all_outputs(tmp_path, results):
    metrics = build_metrics("icvl", ICVL16, ICVL, Path("gt.txt"), results)
    out = tmp_path / "o"
    paths = write_report(out, metrics, render_markdown(metrics), results, ICVL16)
    assert [p.name for p in paths] == ["metrics.json", "report.md", "curve.png", "per_joint.png"]
    assert json.loads(paths[0].read_text()) == metrics
    assert paths[1].read_text() == render_markdown(metrics)
    _assert_png_figure(paths[2], 600, 450)
    _assert_png_figure(paths[3], 900, 450)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in paths)  # no temp files
    with pytest.raises(HandvoxError, match="not a folder"):
        write_report(paths[0], metrics, "", results, ICVL16)


def _scores(errors: dict[str, float]) -> dict[str, dict]:
    return {s: {"mean_error_mm": e, "percent_within_mm": {"40": 50.0}} for s, e in errors.items()}


def test_domain_matrix_has_a_bar_per_set():
    fig = plot_domain_matrix(_scores({"a": 12.0, "b": 30.0, "c": 8.0}), "t")
    mean, p40 = fig.axes
    assert [round(p.get_height(), 3) for p in mean.patches] == [12.0, 30.0, 8.0]
    assert len(p40.patches) == 3 and mean.get_title() == "t"


def test_leave_one_out_matrix_frames_the_held_out_sets():
    runs = {"all": _scores({"x": 10.0, "y": 20.0}), "no-y": _scores({"x": 11.0, "y": 40.0})}
    fig = plot_leave_one_out(runs, {"no-y": ["y"]}, "loo")
    ax = fig.axes[0]
    texts = sorted(t.get_text() for t in ax.texts)
    assert texts == ["10.0", "11.0", "20.0", "40.0"]
    framed = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(framed) == 1 and framed[0].get_xy() == (1 - 0.48, 1 - 0.48)  # row no-y, set y
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all", "no-y"]

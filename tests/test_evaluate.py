"""handvox.eval.files / handvox.eval.report: metrics, reproduction of the community scorer, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera, flip_y
from handvox.cli.main import main
from handvox.errors import DataError, HandvoxError
from handvox.eval.files import (
    CURVE_THRESHOLDS_MM,
    evaluate_files,
    fraction_within,
    joint_errors,
    mean_error,
    per_joint_error,
    score,
)
from handvox.eval.report import joint_label
from handvox.io.labels import read_labels, write_labels

REPO = Path(__file__).resolve().parents[1]

# The community scorer's numbers on the shared files (shared/README.md).
NYU_FILES = {
    "CVPR18_NYU_V2V_PoseNet.txt": 8.419,
    "ICCVW17_NYU_DeepPrior++.txt": 12.238,
    "CVPR17_NYU_3DCNN.txt": 14.113,
    "ICCV15_NYU_Feedback.txt": 15.973,
    "IJCAI16_NYU_DeepModel.txt": 17.036,
    "CVWW15_NYU_Prior.txt": 20.750,
}
ICVL_FILES = {
    "CVPR18_ICVL_V2V_PoseNet.txt": 6.284,
    "IJCAI16_ICVL_DeepModel.txt": 11.561,
    "CVPR14_LRF_Results.txt": 12.578,
    "CVWW15_ICVL_Prior.txt": None,  # covers only the first 702 frames; no published number
}


def _gt(shared: Path, dataset: str) -> Path:
    return shared / "data" / dataset / f"{dataset}_test_groundtruth_label.txt"


def _published(shared: Path, dataset: str, name: str) -> Path:
    return shared / "data" / "published" / dataset / name


@pytest.fixture(scope="module")
def nyu_report(shared):
    files = [_published(shared, "nyu", f) for f in NYU_FILES]
    return evaluate_files("nyu", files[0], _gt(shared, "nyu"), files[1:], out=None)


@pytest.fixture(scope="module")
def icvl_report(shared):
    files = [_published(shared, "icvl", f) for f in ICVL_FILES]
    return evaluate_files("icvl", files[0], _gt(shared, "icvl"), files[1:], out=None)


# --- metrics on hand-made arrays --------------------------------------------------------------
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
    assert "scored on 3 of 5 frames" in res.coverage_note
    with pytest.raises(DataError, match="p.txt"):
        score(np.concatenate([gt, gt[:1]]), gt, "m", Path("p.txt"))
    with pytest.raises(DataError, match="joints"):
        score(gt[:, :3], gt, "m", Path("p.txt"))


def test_joint_labels_are_readable():
    assert joint_label("thumb_root2") == "Thumb root 2"
    assert joint_label("index_mcp") == "Index MCP"
    assert joint_label("wrist1") == "Wrist 1"
    assert joint_label("palm") == "Palm"


# --- the community scorer's conventions -------------------------------------------------------
def test_y_down_frame_gives_the_scorers_y_up_errors(shared):
    cam = Camera.preset("nyu")
    gt_uvd = read_labels(_gt(shared, "nyu")).joints[:500]
    pred_uvd = read_labels(_published(shared, "nyu", "CVPR18_NYU_V2V_PoseNet.txt")).joints[:500]
    ours = joint_errors(cam.uvd_to_xyz(pred_uvd), cam.uvd_to_xyz(gt_uvd))
    flipped = joint_errors(flip_y(cam.uvd_to_xyz(pred_uvd)), flip_y(cam.uvd_to_xyz(gt_uvd)))
    np.testing.assert_allclose(flipped, ours, rtol=0, atol=1e-9)

    def scorer_xyz(uvd):  # the scorer's own NYU conversion, y up
        u, v, d = np.moveaxis(uvd, -1, 0)
        return np.stack([(u - 320) * d / 588.03, (240 - v) * d / 587.07, d], axis=-1)

    scorer = joint_errors(scorer_xyz(pred_uvd), scorer_xyz(gt_uvd))
    np.testing.assert_allclose(scorer, ours, rtol=0, atol=1e-9)
    assert ours.mean() > 1.0  # a real, non-trivial comparison


# --- reproduction of published numbers --------------------------------------------------------
@pytest.mark.parametrize("i, name", list(enumerate(NYU_FILES)))
def test_reproduces_nyu_mean_errors(nyu_report, i, name):
    res = nyu_report.results[i]
    assert res.file.name == name
    assert res.frames_scored == res.frames_total == 8252
    assert abs(res.mean_error - NYU_FILES[name]) <= 0.01


def test_reproduces_nyu_v2v_fractions(nyu_report):
    table = nyu_report.results[0].table()
    for t, listed in ((20, 71.2), (40, 88.1), (50, 92.0)):
        assert abs(table[t] - listed) <= 0.1, (t, table[t])
    m = nyu_report.metrics["methods"][0]
    assert m["percent_of_frames_within_mm"]["20"] == pytest.approx(table[20], abs=1e-5)
    assert m["fraction_of_frames_within_mm"][20] == pytest.approx(table[20] / 100, abs=1e-5)
    assert len(m["fraction_of_frames_within_mm"]) == 81


@pytest.mark.parametrize("i, name", [(i, n) for i, n in enumerate(ICVL_FILES) if ICVL_FILES[n]])
def test_reproduces_icvl_mean_errors(icvl_report, i, name):
    res = icvl_report.results[i]
    assert res.file.name == name
    assert res.frames_scored == 1596
    assert abs(res.mean_error - ICVL_FILES[name]) <= 0.01


def test_partial_coverage_is_scored_on_covered_frames_and_stated(shared, icvl_report):
    res = icvl_report.results[3]
    assert (res.frames_scored, res.frames_total, res.partial) == (702, 1596, True)
    cam = Camera.preset("icvl")
    pred = cam.uvd_to_xyz(read_labels(res.file).joints)
    gt = cam.uvd_to_xyz(read_labels(_gt(shared, "icvl")).joints[:702])
    assert res.mean_error == pytest.approx(joint_errors(pred, gt).mean(), abs=1e-9)
    m = icvl_report.metrics["methods"][3]
    assert (m["frames_scored"], m["frames_in_labels"], m["coverage"]) == (702, 1596, "partial")
    assert "scored on 702 of 1596 frames" in m["coverage_note"]
    assert "scored on 702 of 1596 frames" in icvl_report.markdown
    assert icvl_report.metrics["methods"][0]["coverage"] == "full"


def test_xyz_predictions_score_like_uvd(shared, tmp_path):
    cam = Camera.preset("nyu")
    uvd_file = _published(shared, "nyu", "CVPR18_NYU_V2V_PoseNet.txt")
    xyz_file = tmp_path / "v2v_xyz.txt"
    write_labels(xyz_file, cam.uvd_to_xyz(read_labels(uvd_file).joints), kind="xyz")
    rep = evaluate_files("nyu", xyz_file, _gt(shared, "nyu"), [], out=None)
    assert rep.results[0].pred_format == "xyz"
    assert abs(rep.results[0].mean_error - 8.419) <= 0.01
    # Read as uvd, the same numbers would be nonsense: the header must be what decides.
    wrong = evaluate_files("nyu", xyz_file, _gt(shared, "nyu"), [], None, pred_format="uvd")
    assert wrong.results[0].mean_error > 100


# --- files, CLI, errors -----------------------------------------------------------------------
def _assert_png_figure(path: Path, min_w: int, min_h: int) -> None:
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width >= min_w and im.height >= min_h
        px = np.asarray(im.convert("RGB"))
    assert px.std() > 10  # not a blank canvas
    assert len(np.unique(px.reshape(-1, 3), axis=0)) > 20  # several colours: lines, text, bars


def test_cli_end_to_end(shared, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", "--dataset", "icvl", "--gt", str(_gt(shared, "icvl")), "--out", str(out)]
    argv += ["--pred", str(_published(shared, "icvl", "CVPR18_ICVL_V2V_PoseNet.txt"))]
    argv += ["--compare", str(_published(shared, "icvl", "CVWW15_ICVL_Prior.txt"))]
    argv += ["--name", "V2V", "--name", "Prior"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| V2V | 1596/1596 | 6.284 |" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "curve.png", "metrics.json", "per_joint.png", "report.md",
    ]  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "icvl" and metrics["joint_set"] == "icvl16"
    assert [m["name"] for m in metrics["methods"]] == ["V2V", "Prior"]
    assert metrics["methods"][0]["mean_error_mm"] == pytest.approx(6.284, abs=0.01)
    per_joint = metrics["methods"][0]["per_joint_mean_error_mm"]
    assert list(per_joint) == metrics["joints"] and len(per_joint) == 16
    assert metrics["thresholds_mm"] == list(range(81))
    assert "community scorer" in metrics["protocol"].lower()
    md = (out / "report.md").read_text()
    assert md.index("| V2V |") < md.index("| Prior |")
    assert "scored on 702 of 1596 frames" in md
    assert "![" in md and "(curve.png)" in md and "(per_joint.png)" in md
    assert "| Thumb tip |" in md
    _assert_png_figure(out / "curve.png", 600, 450)
    _assert_png_figure(out / "per_joint.png", 900, 450)


def test_default_gt_is_found_beside_the_checkout(shared, monkeypatch):
    monkeypatch.chdir(REPO)
    pred = _published(shared, "icvl", "CVPR18_ICVL_V2V_PoseNet.txt")
    rep = evaluate_files("icvl", pred, None, [], out=None)
    assert abs(rep.results[0].mean_error - 6.284) <= 0.01


@pytest.mark.parametrize("dataset", ["msra", "icvl"])
def test_missing_default_gt_says_to_pass_gt(tmp_path, monkeypatch, dataset):
    monkeypatch.chdir(tmp_path)
    pred = tmp_path / "pred.txt"
    write_labels(pred, np.ones((2, 21, 3)))
    with pytest.raises(HandvoxError, match="--gt"):
        evaluate_files(dataset, pred, None, [], out=None)


@pytest.fixture
def small_gt(tmp_path) -> Path:
    """Three ICVL-shaped frames in community uvd."""
    rng = np.random.default_rng(1)
    uvd = np.concatenate([rng.uniform(100, 200, (3, 16, 2)), rng.uniform(250, 350, (3, 16, 1))], -1)
    path = tmp_path / "gt.txt"
    write_labels(path, uvd)
    return path


def _bad_pred(tmp_path: Path, gt: Path, problem: str) -> Path:
    path = tmp_path / f"pred_{problem}.txt"
    joints = read_labels(gt).joints
    if problem == "joints":
        write_labels(path, joints[:, :14])
    elif problem == "frames":
        write_labels(path, np.concatenate([joints, joints[:1]]))
    return path  # "missing": never written


@pytest.mark.parametrize(
    "problem, message",
    [("missing", "no such file"), ("joints", "14 joints"), ("frames", "4 frames")],
)
def test_bad_prediction_files_raise_dataerror_naming_them(tmp_path, small_gt, problem, message):
    pred = _bad_pred(tmp_path, small_gt, problem)
    with pytest.raises(DataError, match=message) as info:
        evaluate_files("icvl", pred, small_gt, [], out=tmp_path / "out")
    assert info.value.path == pred and pred.name in str(info.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["missing", "joints", "frames"])
def test_cli_exits_2_with_message_on_bad_files(tmp_path, small_gt, capsys, problem):
    good = tmp_path / "good.txt"
    write_labels(good, read_labels(small_gt).joints[:2])
    pred = _bad_pred(tmp_path, small_gt, problem)
    argv = ["evaluate", "--dataset", "icvl", "--pred", str(good), "--compare", str(pred)]
    argv += ["--gt", str(small_gt), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and pred.name in err


def test_too_many_names_or_out_a_file_is_an_error(tmp_path, small_gt):
    with pytest.raises(HandvoxError, match="names"):
        evaluate_files("icvl", small_gt, small_gt, [], out=None, names=["a", "b"])
    with pytest.raises(HandvoxError, match="not a folder"):
        evaluate_files("icvl", small_gt, small_gt, [], out=small_gt)


def test_generated_report_writes_all_outputs(tmp_path, small_gt):
    pred = tmp_path / "pred.txt"
    write_labels(pred, read_labels(small_gt).joints + [2.0, 0, 0])
    rep = evaluate_files("icvl", pred, small_gt, [small_gt], tmp_path / "o", names=["P", "GT"])
    names = ["metrics.json", "report.md", "curve.png", "per_joint.png"]
    assert [p.name for p in rep.files] == names
    assert all(p.stat().st_size > 0 for p in rep.files)
    assert rep.metrics["methods"][1]["mean_error_mm"] == 0.0
    assert rep.metrics["methods"][1]["fraction_of_frames_within_mm"][0] == 1.0
    assert not list((tmp_path / "o").glob(".*tmp*"))  # atomic writes leave no temp files


def test_synthetic_dataset_folder_as_ground_truth(tmp_path, capsys):
    # `handvox evaluate --dataset synthetic --gt DIR`: the folder's camera and canonical-21
    # labels; a uvd prediction 4 mm off along x scores 4 mm.
    from handvox.io.synthetic import SyntheticDataset
    from handvox.synth.generators import make_generator
    from handvox.synth.job import synthesize

    cam = Camera(300.0, 300.0, 80.0, 60.0, 160, 120)
    gen, info = make_generator("toy", cam)
    synthesize(tmp_path / "syn", gen, cam, 12, seed=2, chunk_size=12, generator_info=info,
               progress=False)  # fmt: skip
    ds = SyntheticDataset(tmp_path / "syn", load_clean=False)
    pred = np.asarray(ds.joints_xyz, np.float64) + [4.0, 0.0, 0.0]
    write_labels(tmp_path / "pred.txt", cam.xyz_to_uvd(pred), kind="uvd")
    args = ["evaluate", "--dataset", "synthetic", "--gt", str(tmp_path / "syn"), "--pred",
            str(tmp_path / "pred.txt"), "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(args) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["joint_set"] == "canonical21" and m["frames_in_labels"] == 12
    assert m["methods"][0]["mean_error_mm"] == pytest.approx(4.0, abs=1e-3)
    args[4] = str(tmp_path / "pred.txt")  # --gt a file, not a folder
    assert main(args) == 2
    assert "synth folder" in capsys.readouterr().err

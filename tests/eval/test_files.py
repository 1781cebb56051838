"""handvox.eval.files (``handvox evaluate``): the published methods' numbers reproduced, files
aligned and checked, the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.cli.main import main
from handvox.errors import DataError, HandvoxError
from handvox.eval.files import evaluate_files
from handvox.eval.metrics import joint_errors
from handvox.io.labels import read_labels, write_labels
from handvox.io.predictions import save_xyz

REPO = Path(__file__).resolve().parents[2]

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
    return evaluate_files("icvl", files[0], _gt(shared, "icvl"), files[1:], out=None,
                          partial=True)  # fmt: skip


# --- reproduction of published numbers --------------------------------------------------------
@pytest.mark.parametrize("i, name", list(enumerate(NYU_FILES)))
def test_reproduces_nyu_mean_errors(nyu_report, i, name):
    res = nyu_report.results[i]
    assert res.file.name == name
    assert res.frames_scored == res.frames_total == 8252
    assert abs(res.mean_error - NYU_FILES[name]) <= 0.01
    assert nyu_report.metrics["methods"][i]["mean_error_mm"] == round(res.mean_error, 6)


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
    assert m["coverage_note"].startswith("scored on 702 of 1596 frames")
    assert icvl_report.metrics["methods"][0]["coverage"] == "full"


def test_xyz_predictions_score_like_uvd(shared, tmp_path):
    cam = Camera.preset("nyu")
    uvd_file = _published(shared, "nyu", "CVPR18_NYU_V2V_PoseNet.txt")
    xyz_file = save_xyz(tmp_path / "v2v_xyz.txt", cam.uvd_to_xyz(read_labels(uvd_file).joints), cam)
    rep = evaluate_files("nyu", xyz_file, _gt(shared, "nyu"), [], out=None)
    assert rep.results[0].pred_format == "xyz"
    assert abs(rep.results[0].mean_error - 8.419) <= 0.01
    # Read as uvd, the same numbers would be nonsense: the header must be what decides.
    wrong = evaluate_files("nyu", xyz_file, _gt(shared, "nyu"), [], None, pred_format="uvd")
    assert wrong.results[0].mean_error > 100


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


# --- small files: alignment and errors --------------------------------------------------------
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
    [
        ("missing", "no such file"),
        ("joints", "14 joints.*--joint-set icvl16"),
        ("frames", "4 frames"),
    ],
)
def test_bad_prediction_files_raise_dataerror_naming_them(tmp_path, small_gt, problem, message):
    pred = _bad_pred(tmp_path, small_gt, problem)
    with pytest.raises(DataError, match=message) as info:
        evaluate_files("icvl", pred, small_gt, [], out=tmp_path / "out")
    assert info.value.path == pred and pred.name in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_file_with_fewer_frames_needs_partial(tmp_path, small_gt):
    # a line deleted: refused, naming the file, unless --partial says it covers a prefix
    pred = tmp_path / "short.txt"
    write_labels(pred, read_labels(small_gt).joints[:2])
    with pytest.raises(DataError, match="short.txt: 2 frames for 3 labels.*--partial"):
        evaluate_files("icvl", pred, small_gt, [], out=None)
    rep = evaluate_files("icvl", pred, small_gt, [], out=None, partial=True)
    assert rep.results[0].frames_scored == 2 and rep.results[0].mean_error == pytest.approx(0.0)


def test_frame_names_must_match_the_labels(tmp_path, small_gt):
    joints = read_labels(small_gt).joints
    gt = tmp_path / "named_gt.txt"
    write_labels(gt, joints, names=["s/a.png", "s/b.png", "s/c.png"])
    same = tmp_path / "same.txt"
    write_labels(same, joints[:2], names=["s/a.png", "s/b.png"])
    assert evaluate_files("icvl", same, gt, partial=True).results[0].mean_error == 0.0
    swapped = tmp_path / "swapped.txt"
    write_labels(swapped, joints[:2], names=["s/b.png", "s/a.png"])
    with pytest.raises(DataError, match=r"swapped\.txt: frame 1 is 's/b.png'"):
        evaluate_files("icvl", swapped, gt, partial=True)


def test_names_outputs_and_argument_errors(tmp_path, small_gt):
    pred = tmp_path / "pred.txt"
    write_labels(pred, read_labels(small_gt).joints + [2.0, 0, 0])
    rep = evaluate_files("icvl", pred, small_gt, [small_gt], tmp_path / "o", names=["P"])
    names = ["metrics.json", "report.md", "curve.png", "per_joint.png"]
    assert [p.name for p in rep.files] == names
    assert json.loads(rep.files[0].read_text()) == rep.metrics
    assert [m["name"] for m in rep.metrics["methods"]] == ["P", "gt"]  # default: the file stem
    assert rep.metrics["methods"][1]["mean_error_mm"] == 0.0
    assert rep.metrics["methods"][1]["fraction_of_frames_within_mm"][0] == 1.0
    with pytest.raises(HandvoxError, match="names"):
        evaluate_files("icvl", small_gt, small_gt, [], out=None, names=["a", "b"])
    with pytest.raises(HandvoxError, match="not a folder"):
        evaluate_files("icvl", small_gt, small_gt, [], out=small_gt)
    with pytest.raises(HandvoxError, match="unknown dataset"):
        evaluate_files("hands17", small_gt, small_gt)


# --- the command ------------------------------------------------------------------------------
@pytest.mark.integration
def test_cli_end_to_end(shared, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["evaluate", "--dataset", "icvl", "--gt", str(_gt(shared, "icvl")), "--out", str(out)]
    argv += ["--pred", str(_published(shared, "icvl", "CVPR18_ICVL_V2V_PoseNet.txt"))]
    argv += ["--compare", str(_published(shared, "icvl", "CVWW15_ICVL_Prior.txt"))]
    argv += ["--name", "V2V", "--name", "Prior"]
    assert main(argv) == 2  # Prior covers the first 702 frames: refused without --partial
    assert "CVWW15_ICVL_Prior.txt: 702 frames for 1596 labels" in capsys.readouterr().err
    argv += ["--partial"]
    assert main(argv) == 0
    assert (out / "report.md").read_text() in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "curve.png", "metrics.json", "per_joint.png", "report.md",
    ]  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "icvl" and metrics["joint_set"] == "icvl16"
    assert metrics["frames_in_labels"] == 1596
    assert [m["name"] for m in metrics["methods"]] == ["V2V", "Prior"]
    assert [m["coverage"] for m in metrics["methods"]] == ["full", "partial"]
    assert metrics["methods"][0]["mean_error_mm"] == pytest.approx(6.284, abs=0.01)
    per_joint = metrics["methods"][0]["per_joint_mean_error_mm"]
    assert list(per_joint) == metrics["joints"] and len(per_joint) == 16
    assert metrics["thresholds_mm"] == list(range(81))
    assert "community scorer" in metrics["protocol"].lower()


@pytest.mark.integration
@pytest.mark.parametrize("problem", ["missing", "joints", "frames"])
def test_cli_exits_2_with_message_on_bad_files(tmp_path, small_gt, capsys, problem):
    good = tmp_path / "good.txt"
    write_labels(good, read_labels(small_gt).joints)
    pred = _bad_pred(tmp_path, small_gt, problem)
    argv = ["evaluate", "--dataset", "icvl", "--pred", str(good), "--compare", str(pred)]
    argv += ["--gt", str(small_gt), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and pred.name in err


@pytest.mark.integration
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
    save_xyz(tmp_path / "pred.txt", pred, cam, "uvd")
    args = ["evaluate", "--dataset", "synthetic", "--gt", str(tmp_path / "syn"), "--pred",
            str(tmp_path / "pred.txt"), "--out", str(tmp_path / "ev")]  # fmt: skip
    assert main(args) == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["joint_set"] == "canonical21" and m["frames_in_labels"] == 12
    assert m["methods"][0]["mean_error_mm"] == pytest.approx(4.0, abs=1e-3)
    args[4] = str(tmp_path / "pred.txt")  # --gt a file, not a folder
    assert main(args) == 2
    assert "synth folder" in capsys.readouterr().err

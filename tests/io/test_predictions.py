"""handvox.io.predictions: each prediction format's writer and reader, round trips and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.labels import read_labels, write_labels
from handvox.io.predictions import (
    FILE_NAMES,
    FramePrediction,
    Predictions,
    load_xyz,
    read_csv,
    read_json,
    read_txt,
    save_xyz,
    write_csv,
    write_json,
    write_predictions,
    write_txt,
)
from handvox.joints import ICVL16, NYU14

NYU = Camera.preset("nyu")


@pytest.fixture
def preds() -> Predictions:
    """Two NYU-14 frames with a hand (coordinates of 3 decimals at most, as files keep them)
    and one without."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(2):
        xyz = np.round(rng.normal(0.0, 40.0, (14, 3)) + [0.0, 0.0, 700.0], 3)
        uvd = np.round(NYU.xyz_to_uvd(xyz), 3)
        com_xyz = np.round(xyz.mean(0), 3)
        com_uvd = np.round(NYU.xyz_to_uvd(com_xyz), 3)
        frames.append(FramePrediction(f"f{i}.png", f"d/f{i}.png", NYU, True, "", com_xyz,
                                      com_uvd, xyz, uvd, overlay=f"overlays/{i}.png"))  # fmt: skip
    frames.append(FramePrediction.missing('empty, "odd" id', "d/e.npy", NYU, "no hand", 14))
    return Predictions("nyu14", frames, model="m")


def _same(a: Predictions, b: Predictions, camera: bool = True, model: bool = True) -> None:
    assert a.joint_set == b.joint_set and len(a) == len(b)
    assert a.model == b.model or not model
    for fa, fb in zip(a.frames, b.frames, strict=True):
        assert (fa.id, fa.source, fa.found, fa.reason) == (fb.id, fb.source, fb.found, fb.reason)
        assert fa.camera == fb.camera or not camera
        for attr in ("com_xyz", "com_uvd", "joints_xyz", "joints_uvd"):
            np.testing.assert_array_equal(getattr(fa, attr), getattr(fb, attr))


def test_json_round_trip(tmp_path, preds):
    path = write_json(tmp_path / "p.json", preds)
    back = read_json(path)
    _same(back, preds)
    assert [f.overlay for f in back.frames] == ["overlays/0.png", "overlays/1.png", None]
    doc = json.loads(path.read_text())
    assert list(doc) == ["model", "joint_set", "joint_names", "units", "frames"]
    assert doc["joint_names"] == list(NYU14.names)
    assert doc["frames"][2]["joints_xyz"] is None and doc["frames"][2]["found"] is False
    assert list(doc["frames"][0]) == ["id", "source", "camera", "found", "reason", "com_xyz",
                                      "com_uvd", "joints_xyz", "joints_uvd", "overlay", "hand",
                                      "confidence", "joint_confidence", "p_hand",
                                      "p_left"]  # fmt: skip
    # confidences round trip (rounded to 4 decimals); NaN (none) as null
    assert doc["frames"][0]["confidence"] is None and doc["frames"][0]["p_hand"] is None
    preds.frames[0].confidence, preds.frames[0].p_hand = 0.71234567, 0.9
    preds.frames[0].joint_confidence = np.linspace(0.1, 1.0, 14)
    back = read_json(write_json(tmp_path / "c.json", preds)).frames[0]
    assert back.confidence == 0.7123 and back.p_hand == 0.9 and np.isnan(back.p_left)
    np.testing.assert_allclose(back.joint_confidence, np.round(np.linspace(0.1, 1.0, 14), 3))
    # the hand is kept; files written before handedness read as right hands
    preds.frames[1].hand = "left"
    assert [f.hand for f in read_json(write_json(tmp_path / "h.json", preds)).frames] == [
        "right", "left", "right"]  # fmt: skip
    for f in doc["frames"]:
        del f["hand"]
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert {f.hand for f in read_json(tmp_path / "old.json").frames} == {"right"}


def test_json_rounds_to_the_micrometre(tmp_path, preds):
    preds.frames[0].joints_xyz = preds.frames[0].joints_xyz + 1e-5
    back = read_json(write_json(tmp_path / "p.json", preds))
    np.testing.assert_allclose(back.frames[0].joints_xyz, preds.frames[0].joints_xyz, atol=1e-3)


def test_csv_round_trip(tmp_path, preds):
    path = write_csv(tmp_path / "p.csv", preds)
    back = read_csv(path)
    _same(back, preds, camera=False, model=False)
    assert back.frames[0].camera is None and back.model == ""
    head = path.read_text().splitlines()[0].split(",")
    assert head[:10] == ["id", "source", "found", "reason", "com_x", "com_y", "com_z", "com_u",
                         "com_v", "com_d"]  # fmt: skip
    assert head[10:16] == [f"little_tip_{c}" for c in "xyzuvd"] and len(head) == 10 + 14 * 6


def test_txt_round_trip_writes_missing_frames_as_zeros(tmp_path, preds):
    path = write_txt(tmp_path / "p.txt", preds.joints_uvd)
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and not lines[0].startswith("#")  # community tools read it
    assert lines[2] == " ".join(["0.000"] * 42)
    assert read_labels(path).kind is None
    np.testing.assert_array_equal(read_txt(path, num_joints=14), preds.joints_uvd)
    partial = preds.joints_uvd
    partial[0, 3] = np.nan  # one joint missing: the frame counts as missing
    assert np.isnan(read_txt(write_txt(tmp_path / "q.txt", partial))[0]).all()


def test_stacked_arrays(preds):
    assert preds.joints_xyz.shape == preds.joints_uvd.shape == (3, 14, 3)
    np.testing.assert_array_equal(preds.found, [True, True, False])
    assert np.isnan(preds.joints_xyz[2]).all()
    empty = Predictions("icvl16", [])
    assert empty.joints_uvd.shape == (0, 16, 3) and empty.found.shape == (0,)


def test_write_predictions_formats(tmp_path, preds):
    paths = write_predictions(tmp_path, preds, ("txt", "json"))
    assert paths == [tmp_path / FILE_NAMES["json"], tmp_path / FILE_NAMES["txt"]]
    assert not (tmp_path / "predictions.csv").exists()
    with pytest.raises(ValueError, match="xml"):
        write_predictions(tmp_path, preds, ("xml",))


def test_xyz_text_files_round_trip_through_either_format(tmp_path):
    xyz = np.random.default_rng(2).normal(0.0, 40.0, (3, 16, 3)) + [0.0, 0.0, 350.0]
    cam = Camera.preset("icvl")
    as_xyz = save_xyz(tmp_path / "x.txt", xyz, cam, joint_set="icvl16")
    as_uvd = save_xyz(tmp_path / "u.txt", xyz, cam, "uvd")
    assert as_xyz.read_text().startswith("# handvox labels kind=xyz joint_set=icvl16")
    assert not as_uvd.read_text().startswith("#")
    for path, kind in ((as_xyz, "xyz"), (as_uvd, "uvd")):
        got, lf, fmt = load_xyz(path, cam, ICVL16)
        assert fmt == kind and lf.path == path
        np.testing.assert_allclose(got, xyz, atol=0.01)
    forced, _, fmt = load_xyz(as_xyz, cam, ICVL16, fmt="uvd")  # the caller overrides the header
    assert fmt == "uvd" and np.abs(forced - xyz).max() > 100
    with pytest.raises(ValueError):
        save_xyz(tmp_path / "y.txt", xyz, cam, "xy")


def test_load_xyz_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_xyz(tmp_path / "none.txt", NYU, NYU14)
    with pytest.raises(DataError, match="is a folder"):
        load_xyz(tmp_path, NYU, NYU14)
    write_labels(tmp_path / "icvl.txt", np.ones((1, 16, 3)))
    with pytest.raises(DataError, match=r"icvl\.txt: 16 joints per line.*14 \(nyu14\)"):
        load_xyz(tmp_path / "icvl.txt", NYU, NYU14)
    with pytest.raises(ValueError, match="format"):
        load_xyz(tmp_path / "icvl.txt", NYU, ICVL16, fmt="xzy")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{", "unreadable"),
        ('{"joint_set": "nyu14"}', "frames"),
        ('{"joint_set": "nope", "frames": []}', "nope"),
    ],
)
def test_read_json_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "p.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message) as info:
        read_json(path)
    assert info.value.path == path


def test_read_json_rejects_joints_of_the_wrong_shape(tmp_path, preds):
    doc = json.loads(write_json(tmp_path / "p.json", preds).read_text())
    doc["frames"][1]["joints_uvd"] = doc["frames"][1]["joints_uvd"][:13]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"frame 1 \(f1.png\): shape \(13, 3\)"):
        read_json(tmp_path / "p.json")


def test_read_csv_errors_name_the_file(tmp_path, preds):
    path = write_csv(tmp_path / "p.csv", preds)
    head, row = path.read_text().splitlines()[:2]
    cells = row.split(",")
    for name, text, message in (
        ("empty.csv", "", "no header"),
        ("head.csv", "id,source\n", "known joint set"),
        ("short.csv", f"{head}\n{','.join(cells[:-1])}\n", "line 2: 93 cells"),
        ("x.csv", f"{head}\n{','.join([*cells[:4], 'x', *cells[5:]])}\n", "not a number"),
    ):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=message):
            read_csv(tmp_path / name)
    with pytest.raises(DataError, match="no such file"):
        read_csv(tmp_path / "none.csv")

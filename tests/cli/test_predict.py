"""``handvox predict`` over files, folders and datasets (handvox.cli.predict, handvox.cli.main);
its files are read back with handvox.io.predictions."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

import handvox.estimator.pipeline
from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.cli.main import main
from handvox.cli.predict import collect_frames, predict_frames
from handvox.errors import DataError, HandvoxError
from handvox.estimator.pipeline import HandPoseEstimator
from handvox.io.depth import write_nyu_depth, write_png16
from handvox.io.predictions import read_csv, read_json, read_txt
from handvox.synth.generators import make_generator
from handvox.synth.job import synthesize

pytestmark = pytest.mark.usefixtures("one_thread")

NYU = Camera.preset("nyu")


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


@pytest.mark.integration
def test_folder_all_formats_and_overlays(tmp_path, tiny_model, mixed_folder, frame, capsys):
    out = tmp_path / "out"
    args = ["predict", str(mixed_folder), "--model", str(tiny_model), "--camera", "nyu",
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
    assert doc["model"] == str(tiny_model) and frames[0]["camera"] == NYU.to_dict()
    want = HandPoseEstimator.from_folder(tiny_model, fast=False)(frame, NYU)
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
    # The three files say the same, as io.predictions reads them.
    js, cs = read_json(out / "predictions.json"), read_csv(out / "predictions.csv")
    np.testing.assert_allclose(cs.joints_xyz, js.joints_xyz, atol=1e-3, equal_nan=True)
    np.testing.assert_array_equal(cs.found, js.found)
    assert [f.reason for f in cs.frames] == [f.reason for f in js.frames]

    uvd = read_txt(out / "predictions.txt", num_joints=14)  # community format: NaN-free
    np.testing.assert_allclose(uvd[0], want.joints_uvd[0], atol=1e-3)
    np.testing.assert_allclose(uvd, js.joints_uvd, atol=1e-3, equal_nan=True)
    assert np.isnan(uvd[3]).all()  # written as zeros
    assert (out / "predictions.txt").read_text().splitlines()[3] == " ".join(["0.000"] * 42)

    pngs = sorted(p.name for p in (out / "overlays").iterdir())
    assert len(pngs) == 4 and pngs[0].startswith("00000_a_nyu")
    assert [f["overlay"] for f in frames] == [f"overlays/{p}" for p in pngs]
    with Image.open(out / "overlays" / pngs[0]) as im:
        assert im.mode == "RGB" and max(im.size) == 512


@pytest.mark.integration
def test_unreadable_file_is_named(tmp_path, tiny_model, mixed_folder, capsys):
    (mixed_folder / "e_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    args = ["predict", str(mixed_folder), "--model", str(tiny_model), "--out",
            str(tmp_path / "out"), "--quiet", "--camera", "nyu"]  # fmt: skip
    assert main(args) == 2
    assert "e_broken.png" in capsys.readouterr().err
    # --skip-errors: the file becomes a frame without a hand, the reason says why.
    assert main([*args, "--skip-errors"]) == 0
    assert "1 unreadable" in capsys.readouterr().out
    broken = read_json(tmp_path / "out/predictions.json").frames[-1]
    assert broken.id.endswith("e_broken.png") and not broken.found
    assert broken.reason.startswith("unreadable:") and "e_broken.png" in broken.reason
    assert np.isnan(broken.joints_xyz).all() and broken.overlay is None


@pytest.mark.integration
def test_hand_check_on_by_default_and_said_and_off_on_request(tmp_path, tiny_model, frame,
                                                              capsys):  # fmt: skip
    np.save(tmp_path / "f.npy", frame)
    base = ["predict", str(tmp_path / "f.npy"), "--model", str(tiny_model), "--camera", "nyu"]
    assert main([*base, "--out", str(tmp_path / "on")]) in (0, 1)
    assert "hand check: on" in capsys.readouterr().out
    on = json.loads((tmp_path / "on/predictions.json").read_text())["frames"][0]
    assert 0.0 <= on["p_hand"] <= 1.0
    assert main([*base, "--out", str(tmp_path / "off"), "--no-hand-check"]) == 0
    assert "hand check: off" in capsys.readouterr().out
    off = json.loads((tmp_path / "off/predictions.json").read_text())["frames"][0]
    assert off["found"] and off["p_hand"] is None


def test_wrong_size_for_camera_is_named(tmp_path, tiny_model, mixed_folder, capsys):
    args = ["predict", str(mixed_folder / "a_nyu.png"), "--model", str(tiny_model),
            "--camera", "icvl", "--out", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a_nyu.png" in err and "640x480" in err and "320x240" in err
    # A folder of mixed sizes: the frames of the camera's size are estimated, the others are
    # their own results (found=false, why), and the run goes on.
    np.save(mixed_folder / "f_small.npy", np.full((240, 320), 700.0, np.float32))
    out = tmp_path / "mixed"
    args = ["predict", str(mixed_folder), "--model", str(tiny_model), "--camera", "nyu",
            "--out", str(out), "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert "1 of another size than their camera" in capsys.readouterr().out
    frames = {
        f["id"].split("/")[-1]: f
        for f in json.loads((out / "predictions.json").read_text())["frames"]
    }
    small = frames["f_small.npy"]
    assert (
        not small["found"]
        and small["reason"].startswith("other size:")
        and "320x240" in small["reason"]
    )
    assert frames["a_nyu.png"]["found"]


@pytest.mark.integration
def test_synthetic_dataset_and_joint_set_conversion(tmp_path, tiny_model, capsys):
    cam = Camera.preset("icvl")
    generator, info = make_generator("hand", cam)
    root = tmp_path / "synth"
    synthesize(root, generator, cam, frames=3, seed=1, chunk_size=8, generator_info=info,
               progress=False)  # fmt: skip
    out = tmp_path / "out"
    args = ["predict", "--dataset", f"synthetic:{root}", "--limit", "2", "--model",
            str(tiny_model), "--out", str(out), "--format", "json,txt", "--quiet",
            "--joint-set", "nyu14"]  # fmt: skip
    assert main(args) == 0
    preds = read_json(out / "predictions.json")
    assert len(preds) == 2 and preds.frames[0].camera == cam and preds.found.all()
    assert preds.frames[0].source == f"synthetic:{root}#0"
    assert not (out / "predictions.csv").exists()
    # A model's joints in a set that has no mapping from them: a clear error.
    bad = [*args[:-2], "--joint-set", "msra21"]
    assert main(bad) == 2
    assert "no mapping from nyu14 to msra21" in capsys.readouterr().err


@pytest.mark.integration
def test_real_frames(tmp_path, tiny_model, shared):
    out = tmp_path / "out"
    nyu = shared / "data/nyu/depth_1_0000001.png"
    assert main(["predict", str(nyu), "--model", str(tiny_model), "--out", str(out), "--quiet",
                 "--overlay", "--camera", "nyu"]) == 0  # fmt: skip
    assert read_json(out / "predictions.json").frames[0].found
    hands17 = shared / "data/hands17/image_D00000030.png"
    cam = "475.065948,475.065948,315.944855,245.287079,640,480"
    assert main(["predict", str(hands17), "--model", str(tiny_model), "--camera", cam,
                 "--out", str(out), "--quiet", "--overlay"]) == 0  # fmt: skip
    frame = read_json(out / "predictions.json").frames[0]
    assert frame.found and np.isfinite(frame.joints_xyz).all()
    assert frame.camera == Camera.from_string(cam) and (out / frame.overlay).is_file()


@pytest.mark.integration
def test_no_inputs_no_hand_and_no_default_model(tmp_path, capsys, monkeypatch):
    assert main(["predict", "--out", str(tmp_path)]) == 2
    assert "give depth files" in capsys.readouterr().err
    # an empty frame through the shipped model: a clear "no hand found", not a crash or zeros
    np.save(tmp_path / "x.npy", np.zeros((480, 640), np.float32))
    args = ["predict", str(tmp_path / "x.npy"), "--camera", "nyu"]
    # outputs written, but nothing useful produced: exit code 1
    assert main([*args, "--out", str(tmp_path / "o")]) == 1
    assert "no frame produced a result" in capsys.readouterr().err
    frame = read_json(tmp_path / "o" / "predictions.json").frames[0]
    assert frame.found is False and "no hand found" in frame.reason
    assert np.isnan(frame.joints_xyz).all()
    # without a shipped model the error says what to do
    monkeypatch.setattr(handvox.estimator.pipeline, "DEFAULT_MODEL_DIR", tmp_path / "none")
    assert main([*args, "--out", str(tmp_path / "o2")]) == 2
    assert "no trained model" in capsys.readouterr().err


@pytest.mark.integration
def test_bad_dataset_specs_exit_2(capsys):
    for bad in ("nyu:/d?camera=2", "nyu:/d?kinect=two", "nyu", "synthetic:/s@2"):
        assert main(["predict", "--dataset", bad, "--out", "/tmp/never-written"]) == 2
        assert "error" in capsys.readouterr().err


def test_frames_ids_and_bad_arguments(tmp_path, tiny_model, frame):
    np.save(tmp_path / "f.npy", frame)
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "f.npy", frame)
    frames = collect_frames([tmp_path / "f.npy", tmp_path / "f.npy", tmp_path / "sub"], "nyu")
    assert [f.id for f in frames] == ["f.npy", "f.npy#1", "sub/f.npy"]
    # a folder's numbered frames in the order they were recorded, as handvox live reads them
    (tmp_path / "seq").mkdir()
    for n in (10, 2, 1):
        np.save(tmp_path / "seq" / f"{n}.npy", frame)
    ids = [f.id for f in collect_frames([tmp_path / "seq"], "nyu")]
    assert ids == ["seq/1.npy", "seq/2.npy", "seq/10.npy"]
    assert frames[0].camera == NYU and frames[0].source == str(tmp_path / "f.npy")
    with pytest.raises(HandvoxError, match="camera"):
        collect_frames([tmp_path / "f.npy"], "nope")
    est = HandPoseEstimator.from_folder(tiny_model)
    with pytest.raises(HandvoxError, match="unknown format"):
        predict_frames(est, frames, tmp_path / "out", formats=("json", "xml"), progress=False)
    with pytest.raises(HandvoxError, match="unknown joint set"):
        predict_frames(est, frames, tmp_path / "out", joint_set="nope", progress=False)
    assert not (tmp_path / "out" / "predictions.json").exists()
    summary = predict_frames(est, [], tmp_path / "empty", progress=False)  # nothing to predict
    assert summary.frames == 0 and [p.name for p in summary.files] == [
        "predictions.json", "predictions.csv", "predictions.txt"
    ]  # fmt: skip
    assert len(read_json(summary.files[0])) == 0


@pytest.mark.integration
def test_rotations_flag_overrides_the_models_setting(tmp_path, tiny_model, frame, capsys):
    np.save(tmp_path / "f.npy", frame)
    base = ["predict", str(tmp_path / "f.npy"), "--model", str(tiny_model), "--quiet",
            "--camera", "nyu"]  # fmt: skip

    def run(*flags: str) -> np.ndarray:
        out = tmp_path / "-".join(flags)
        assert main([*base, "--exact", *flags, "--out", str(out)]) == 0
        return read_json(out / "predictions.json").frames[0].joints_xyz

    runs = {flag: run(f"--rotations={flag}") for flag in ("none", "-20,20")}
    est = HandPoseEstimator.from_folder(tiny_model, fast=False)
    np.testing.assert_allclose(runs["none"], est(frame, NYU).joints_xyz[0], atol=1e-3)
    est = HandPoseEstimator.from_folder(tiny_model, fast=False, test_rotations_deg=(-20, 20))
    np.testing.assert_allclose(runs["-20,20"], est(frame, NYU).joints_xyz[0], atol=1e-3)
    assert np.abs(runs["none"] - runs["-20,20"]).max() > 1e-2
    for bad in ("0", "a,b"):
        assert main([*base, f"--rotations={bad}", "--out", str(tmp_path / "x")]) == 2
        assert "--rotations" in capsys.readouterr().err
    # --scales likewise
    got = run("--rotations=none", "--scales=0.9,1.1")
    est = HandPoseEstimator.from_folder(tiny_model, fast=False, test_scales=(0.9, 1.1))
    np.testing.assert_allclose(got, est(frame, NYU).joints_xyz[0], atol=1e-3)
    assert np.abs(got - runs["none"]).max() > 1e-2
    for bad in ("1", "x"):
        assert main([*base, f"--scales={bad}", "--out", str(tmp_path / "x")]) == 2
        assert "--scales" in capsys.readouterr().err


@pytest.mark.integration
def test_recentre_flag_overrides_the_models_setting(tmp_path, tiny_model, frame, capsys):
    np.save(tmp_path / "f.npy", frame)
    base = ["predict", str(tmp_path / "f.npy"), "--model", str(tiny_model), "--camera", "nyu",
            "--exact"]  # fmt: skip
    got = {}
    for n in (0, 1):
        out = tmp_path / f"r{n}"
        assert main([*base, f"--recentre={n}", "--out", str(out)]) == 0
        assert f"re-centring passes: {n} (--recentre)" in capsys.readouterr().out
        got[n] = read_json(out / "predictions.json").frames[0].joints_xyz
        est = HandPoseEstimator.from_folder(tiny_model, fast=False, recentre=n)
        np.testing.assert_allclose(got[n], est(frame, NYU).joints_xyz[0], atol=1e-3)
    assert np.abs(got[0] - got[1]).max() > 1e-2
    assert main([*base, "--recentre=-1", "--out", str(tmp_path / "x")]) == 2
    assert "--recentre" in capsys.readouterr().err


@pytest.mark.integration
def test_segment_flag_chooses_how_the_hand_is_found(tmp_path, tiny_model, shared):
    nyu = shared / "data/nyu/depth_1_0000001.png"
    base = ["predict", str(nyu), "--model", str(tiny_model), "--quiet", "--rotations=none",
            "--camera", "nyu"]  # fmt: skip
    coms = {}
    for method in ("depth", "learned"):
        out = tmp_path / method
        assert main([*base, "--segment", method, "--out", str(out)]) == 0
        frame = read_json(out / "predictions.json").frames[0]
        assert frame.found
        coms[method] = np.asarray(frame.com_xyz)
    est = HandPoseEstimator.from_folder(tiny_model, segment_method="learned")
    assert est.config.segment.method == "learned"
    # the two ways find the same hand (the real frame's) at different centres
    assert 1.0 < np.linalg.norm(coms["depth"] - coms["learned"]) < 60.0


def test_no_camera_is_an_error_and_camera_json_gives_one(tmp_path, frame, capsys):
    np.save(tmp_path / "f.npy", frame)
    # neither --camera nor a camera.json: refused, naming the file and both ways to give one
    assert main(["predict", str(tmp_path / "f.npy"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "f.npy" in err and "no camera: give --camera" in err and "camera.json" in err
    # a camera.json beside the frames (or in the folder above) gives it, and its depth unit
    rec = tmp_path / "rec"
    (rec / "seq").mkdir(parents=True)
    np.save(rec / "seq" / "f.npy", frame * 8)  # 0.125 mm units, as SR300/SR305 store them
    cam = {"fx": NYU.fx, "fy": NYU.fy, "cx": NYU.cx, "cy": NYU.cy, "width": 640,
           "height": 480, "depth_unit_mm": 0.125}  # fmt: skip
    (rec / "camera.json").write_text(json.dumps(cam))
    frames = collect_frames([rec / "seq"], None)
    assert frames[0].camera == NYU and frames[0].sensor.unit_mm == 0.125
    assert frames[0].sensor.origin == str(rec / "camera.json")
    np.testing.assert_allclose(frames[0].read(), frame, rtol=1e-6)
    # --camera and --depth-unit win over the file
    frames = collect_frames([rec / "seq"], "icvl", depth_unit="0.25mm")
    assert frames[0].camera == Camera.preset("icvl") and frames[0].sensor.unit_mm == 0.25
    with pytest.raises(HandvoxError, match="--depth-unit"):
        collect_frames([rec / "seq"], "nyu", depth_unit="furlongs")
    # a broken camera.json is named
    (rec / "camera.json").write_text('{"fx": 1}')
    with pytest.raises(DataError, match="camera.json.*lacks fy"):
        collect_frames([rec / "seq"], None)


@pytest.mark.parametrize(
    "scale, unit, hint",
    [(1e-3, None, "--depth-unit m"), (8.0, None, "0.125mm"), (1e-3, "m", None),
     (8.0, "0.125mm", None), (0.1, None, "--depth-unit cm")],
)  # fmt: skip
def test_depth_in_another_unit_is_named_not_silently_missed(tmp_path, frame, scale, unit, hint):
    # The same frame stored in metres, in 0.125 mm units or in cm: without the right
    # --depth-unit an error names the unit that fits; with it, the frame reads as millimetres.
    np.save(tmp_path / "f.npy", (frame * scale).astype(np.float32))
    frames = collect_frames([tmp_path / "f.npy"], "nyu", depth_unit=unit)
    if hint is None:
        np.testing.assert_allclose(frames[0].read(), frame, rtol=1e-5, atol=1e-3)
    else:
        with pytest.raises(DataError, match="f.npy") as e:
            frames[0].read()
        assert hint in str(e.value)


def test_version(capsys):
    import handvox

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"handvox {handvox.__version__}"


def test_hand_flag_mirrors_a_left_hand_and_is_recorded(tmp_path, tiny_model, frame, capsys):
    np.save(tmp_path / "f.npy", np.ascontiguousarray(frame[:, ::-1]))  # a "left" hand
    cam = NYU.mirrored()
    spec = f"{cam.fx},{cam.fy},{cam.cx},{cam.cy},{cam.width},{cam.height}"
    base = ["predict", str(tmp_path / "f.npy"), "--model", str(tiny_model), "--camera", spec,
            "--exact"]  # fmt: skip
    assert main([*base, "--hand", "left", "--out", str(tmp_path / "l")]) == 0
    assert "hand: left (--hand)" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "r")]) == 0
    assert "hand: right (the default; --hand left or --hand auto)" in capsys.readouterr().out
    left, right = (read_json(tmp_path / k / "predictions.json").frames[0] for k in "lr")
    assert left.hand == "left" and right.hand == "right"
    want = HandPoseEstimator.from_folder(tiny_model, fast=False)(frame, NYU).joints_xyz[0]
    np.testing.assert_allclose(left.joints_xyz, want * [-1, 1, 1], atol=1e-3)
    # auto: the shipped classifier decides, says how well it was measured, records its answer
    if HandPoseEstimator.from_folder(tiny_model).handedness is not None:
        assert main([*base, "--hand", "auto", "--out", str(tmp_path / "a")]) == 0
        assert "hand auto: a left-or-right classifier decides" in capsys.readouterr().out
        auto = read_json(tmp_path / "a" / "predictions.json").frames[0]
        assert auto.hand == ("left" if auto.p_left >= 0.5 else "right")
        same = left if auto.hand == "left" else right
        np.testing.assert_allclose(auto.joints_xyz, same.joints_xyz, atol=1e-3)


@pytest.mark.integration
def test_evaluate_and_show_read_predicts_own_json(tmp_path, tiny_model, shared, capsys):
    # predictions.json, as predict writes it, is a prediction file evaluate and show take; its
    # frames without a hand count as failures, as in the protocol
    from handvox.eval.files import evaluate_files
    from handvox.eval.metrics import MISSED_MM
    from handvox.io.labels import read_labels, write_labels

    nyu = shared / "data/nyu/depth_1_0000001.png"
    gt = tmp_path / "gt.txt"
    labels = read_labels(shared / "data/nyu/nyu_test_groundtruth_label.txt").joints[:2]
    write_labels(gt, labels)
    np.save(tmp_path / "empty.npy", np.zeros((480, 640), np.float32))
    out = tmp_path / "p"
    assert (
        main(
            [
                "predict",
                str(nyu),
                str(tmp_path / "empty.npy"),
                "--model",
                str(tiny_model),
                "--camera",
                "nyu",
                "--joint-set",
                "nyu14",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    frames = read_json(out / "predictions.json").frames
    assert frames[0].found and not frames[1].found
    rep = evaluate_files("nyu", out / "predictions.json", gt)
    err = np.linalg.norm(frames[0].joints_xyz - NYU.uvd_to_xyz(labels[0]), axis=-1)
    want = (err.mean() + np.sqrt(3) * MISSED_MM) / 2
    assert rep.results[0].mean_error == pytest.approx(want, abs=1e-3)
    png = tmp_path / "show.png"
    assert main(["show", str(nyu), "--camera", "nyu", "--pred", str(out / "predictions.json"),
                 "--out", str(png)]) == 0 and png.is_file()  # fmt: skip
    assert main(["show", str(nyu), "--camera", "nyu", "--pred", str(out / "predictions.json"),
                 "--frame", "1", "--out", str(png)]) == 2  # fmt: skip
    assert "frame 1 has no hand" in capsys.readouterr().err


@pytest.mark.integration
def test_locator_phases_flag_on_the_real_frame_with_a_head_beside_the_hand(tmp_path, shared,
                                                                          capsys):  # fmt: skip
    """SR305 231615/0, a raised right hand beside the person's head: read at one grid phase the
    shipped locator takes the head, at four (the shipped model's setting, gated on validation
    frames: docs/rules/2026-12-07-locator-phases.md) the phases outvote it and the cube is on the
    hand; the line printed says which. Read once, the hand is the heat's second candidate, and
    the left-or-right classifier and the hand check (``--other-min-heat``, the shipped model's
    setting) take it over the head; without them the cube stays on the head."""
    png = shared / "data/sr305/20210326-231615/0.png"
    coms = {}
    for n, other in ((None, None), (1, None), (4, "0"), (1, "0")):
        out = tmp_path / f"p{n}-{other}"
        flag = [] if n is None else ["--locator-phases", str(n)]
        flag += [] if other is None else ["--other-min-heat", other]
        assert main(["predict", str(png), "--out", str(out), *flag]) == 0
        assert f"learned locator at {n or 4} grid phase(s)" in capsys.readouterr().out
        frame = read_json(out / "predictions.json").frames[0]
        assert frame.found
        coms[n, other] = np.asarray(frame.com_uvd)[:2]
    hand, head = np.array([273.0, 268.0]), np.array([395.0, 201.0])  # px, by eye on the frame
    on_hand = [np.linalg.norm(coms[k] - hand) < 25 for k in coms]
    assert on_hand == [True, True, True, False]
    assert np.array_equal(coms[None, None], coms[4, "0"])
    assert np.linalg.norm(coms[1, "0"] - head) < 25
    with pytest.raises(SystemExit) as stop:  # two phases could never outvote the first
        main(["predict", str(png), "--out", str(tmp_path / "x"), "--locator-phases", "2"])
    assert stop.value.code == 2 and "--locator-phases" in capsys.readouterr().err


def test_other_min_heat_flag_keeps_the_hand_asked_for(tmp_path, capsys):
    """A rendered frame whose second hand, a left one, takes the locator's heat (seed 7, frame
    40; tests/estimator/test_pipeline.py has it too): ``--other-min-heat`` puts the cube on the
    labelled right hand (the shipped model's settings, gated: docs/rules/
    2026-12-08-second-candidate-checked.md and -margin.md), ``0`` leaves it on the other one; the
    line printed says so (and the shipped margin); a share outside [0, 1) is refused."""
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    frame = hand_frame_generator(HandSynthConfig.for_camera(NYU, second_hand_prob=1.0))(
        40, frame_rng(7, 40)
    )
    np.save(tmp_path / "two.npy", frame.raw)
    truth = frame.joints_xyz["canonical21"].mean(0)
    off = {}
    for share in (None, "0", "0.001"):  # None: the shipped model's, 0.001
        out = tmp_path / str(share)
        flag = [] if share is None else ["--other-min-heat", share]
        assert main(["predict", str(tmp_path / "two.npy"), "--camera", "nyu", "--out", str(out),
                     "--no-hand-check", *flag]) == 0  # fmt: skip
        said = capsys.readouterr().out
        assert ("second candidate holding 0.1 %+" in said) == (share != "0")
        assert ("finds the second less so by 0.2" in said) == (share != "0")
        com = np.asarray(read_json(out / "predictions.json").frames[0].com_xyz)
        off[share] = np.linalg.norm(com - truth)
    assert off["0"] > 150.0 and off["0.001"] < 30.0 and off[None] == off["0.001"]
    assert main(["predict", str(tmp_path / "two.npy"), "--camera", "nyu", "--out",
                 str(tmp_path / "x"), "--other-min-heat", "1.5"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--other-min-heat" in err and "other_min_heat must be in [0, 1), got 1.5" in err
    assert not (tmp_path / "x").exists()

"""Depth streams: file sequences, RealSense recordings, and the errors of sources that cannot
open."""

import json

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.io.depth import write_png16
from handvox.io.stream import open_stream, write_realsense_recording

CAM = Camera(475.0, 475.0, 160.0, 120.0, 320, 240)


def _frames(n=5, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.uniform(400, 900, (n, 240, 320)).astype(np.float32)
    d[:, :10] = 0  # no reading
    return d


def _camera_json(folder, unit=None):
    d = {"fx": CAM.fx, "fy": CAM.fy, "cx": CAM.cx, "cy": CAM.cy, "width": 320, "height": 240}
    if unit is not None:
        d["depth_unit_mm"] = unit
    (folder / "camera.json").write_text(json.dumps(d))


def test_folder_in_name_order_with_its_camera_and_unit(tmp_path):
    frames = _frames()
    seq = tmp_path / "rec" / "depth"
    seq.mkdir(parents=True)
    for i, f in enumerate(frames):
        write_png16(seq / f"f{i * 5}.png", f / 0.5)  # stored in 0.5 mm units; f0 .. f20
    _camera_json(tmp_path / "rec", unit=0.5)
    with open_stream(str(seq), fps=10) as s:
        assert s.camera == CAM and s.sensor.unit_mm == 0.5 and not s.live and s.length == 5
        got = list(s)
    # numbers by value: f5 before f10, as the recorder numbered them
    assert [f.source_id for f in got] == [f"f{i * 5}.png" for i in range(5)]
    assert [f.timestamp_s for f in got] == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    for f, want in zip(got, frames, strict=True):
        assert f.depth.dtype == np.float32
        np.testing.assert_allclose(f.depth, np.rint(want / 0.5) * 0.5)


def test_npy_stack_needs_a_camera_and_has_no_clock_without_fps(tmp_path):
    frames = _frames(3)
    path = tmp_path / "seq.npy"
    np.save(path, frames / 1000.0)  # metres
    with pytest.raises(DataError, match="no camera"):
        open_stream(str(path))
    with open_stream(f"npy:{path}", CAM, unit_mm=1000.0) as s:
        got = list(s)
    assert [f.timestamp_s for f in got] == [None] * 3
    np.testing.assert_allclose(got[2].depth, frames[2], rtol=1e-6)
    # metres read as millimetres: the unit check names the file and frame
    with pytest.raises(DataError, match=r"seq\.npy frame 0.*--depth-unit m"):
        list(open_stream(str(path), CAM))


def test_bad_sources_say_what_is_wrong(tmp_path):
    with pytest.raises(HandvoxError, match="unknown kind 'webcam'"):
        open_stream("webcam:0")
    with pytest.raises(DataError, match="no such file"):
        open_stream(str(tmp_path / "missing"), CAM)
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="not a readable .npy"):
        open_stream(str(tmp_path / "x.npy"), CAM)
    np.save(tmp_path / "flat.npy", np.zeros((240, 320)))
    with pytest.raises(DataError, match=r"\(N, H, W\)"):
        open_stream(str(tmp_path / "flat.npy"), CAM)
    np.save(tmp_path / "small.npy", np.zeros((2, 100, 100)))
    with pytest.raises(DataError, match="small.npy"):
        open_stream(str(tmp_path / "small.npy"), CAM)
    # a device reports its own camera: one given is refused, not silently ignored
    with pytest.raises(HandvoxError, match="reports its camera"):
        open_stream("realsense", CAM)


@pytest.mark.parametrize(("spec", "extra"), [("k4a", "k4a"), ("openni2", "openni")])
def test_a_missing_sdk_names_the_extra(spec, extra, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_sdk(name, *a, **k):
        if name in ("pyk4a", "openni"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", no_sdk)
    with pytest.raises(HandvoxError, match=rf"pip install 'handvox\[{extra}\]'"):
        open_stream(spec)


def test_realsense_recording_round_trip(tmp_path, recording_suffix):
    frames = _frames(12, seed=1)
    path = tmp_path / f"rec{recording_suffix}"
    write_realsense_recording(path, frames, CAM, unit_mm=0.125, fps=30)
    with open_stream(f"bag:{path}") as s:
        assert not s.live
        cam = s.camera
        got = list(s)
    assert (cam.width, cam.height) == (320, 240)
    np.testing.assert_allclose(cam.intrinsics, CAM.intrinsics, rtol=1e-6)
    assert s.sensor.unit_mm == pytest.approx(0.125, rel=1e-6)
    # every frame, in order, none dropped, as stored (whole 0.125 mm units)
    assert [f.source_id for f in got] == [str(i) for i in range(12)]
    assert [f.timestamp_s for f in got] == pytest.approx(np.arange(12) / 30, abs=1e-6)
    for f, want in zip(got, frames, strict=True):
        np.testing.assert_allclose(f.depth, np.rint(want / 0.125) * 0.125, atol=1e-4)


def test_realsense_recording_stopped_early_releases_the_player(tmp_path, recording_suffix):
    path = tmp_path / f"rec{recording_suffix}"
    write_realsense_recording(path, _frames(8), CAM, unit_mm=1.0)
    for _ in range(2):  # opened again after an early stop: the first run let go of the file
        with open_stream(f"bag:{path}") as s:
            for f in s:
                if f.index == 2:
                    break
    with pytest.raises(DataError, match="no such recording"):
        open_stream(f"bag:{tmp_path / 'none.db3'}")

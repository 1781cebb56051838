"""Depth streams: file sequences, RealSense recordings, and the errors of sources that cannot
open."""

import itertools
import json
import sys
import types

import numpy as np
import pytest

from handvox.camera import Camera, LensDistortion, remap, undistortion_index
from handvox.errors import DataError, HandvoxError
from handvox.io.depth import write_png16
from handvox.io.stream import open_stream, write_realsense_recording
from tests.oracles import sphere_depth_librealsense
from tests.test_camera import SR300_COEFFS, SR300_HALF, SR300_LENS

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


def _ball_seen_through_an_sr300_lens():
    """A ball near the corner before a wall at 600 mm, as an SR300's lens images it (320x240)."""
    centre = np.array([-150.0, -100.0, 350.0])
    ball = sphere_depth_librealsense(SR300_HALF, "inverse_brown_conrady", SR300_COEFFS, centre, 60)
    return np.where(ball > 0, ball, 600.0).astype(np.float32), centre


def _off_the_ball(camera, depth, centre):
    v, u = np.nonzero((depth > 0) & (depth < 590))  # the ball's pixels, not the wall's
    p = camera.uvd_to_xyz(np.stack([u, v, depth[v, u]], -1).astype(np.float64))
    return float(np.median(np.abs(np.linalg.norm(p - centre, axis=1) - 60.0)))


def test_a_realsense_recording_with_lens_distortion_comes_out_pinhole(tmp_path, recording_suffix):
    frame, centre = _ball_seen_through_an_sr300_lens()
    path = tmp_path / f"rec{recording_suffix}"
    write_realsense_recording(path, np.stack([frame] * 3), SR300_HALF, 0.125, lens=SR300_LENS)
    with open_stream(f"bag:{path}") as s:
        got, sensor = list(s), s.sensor
    assert sensor.lens.model == "inverse_brown_conrady"
    np.testing.assert_allclose(sensor.lens.coeffs, SR300_COEFFS, rtol=1e-6)  # float32 there
    assert "inverse_brown_conrady lens distortion undone" in sensor.describe()
    stored = np.rint(frame / 0.125).astype(np.float32) * np.float32(0.125)
    want = remap(stored, undistortion_index(sensor.camera, sensor.lens))
    for f in got:
        np.testing.assert_array_equal(f.depth, want)
    # on the pinhole image the ball is where it is; the frame as stored, read as pinhole, is not
    assert _off_the_ball(sensor.camera, got[0].depth, centre) < 0.3
    assert _off_the_ball(sensor.camera, stored, centre) > 1.0


def test_a_camera_file_with_distortion_undistorts_files_and_refuses_a_bad_one(tmp_path):
    frame, centre = _ball_seen_through_an_sr300_lens()
    seq = tmp_path / "rec"
    seq.mkdir()
    write_png16(seq / "0.png", frame)
    cam = SR300_HALF
    d = {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy, "width": 320, "height": 240}
    (seq / "camera.json").write_text(json.dumps({**d, "distortion": SR300_LENS.to_dict()}))
    with open_stream(str(seq)) as s:
        (got,) = list(s)
    assert s.sensor.lens == SR300_LENS
    assert _off_the_ball(cam, got.depth, centre) < 0.3
    (seq / "camera.json").write_text(json.dumps({**d, "distortion": {"model": "ftheta"}}))
    with pytest.raises(DataError, match=r"camera\.json.*distortion"):
        open_stream(str(seq))


def _stand_in_pyk4a(monkeypatch, frames, coeffs, depth_mode="NFOV_UNBINNED"):
    """No Azure Kinect here: a stand-in for pyk4a with the calls handvox makes (a device and a
    recording), its calibration a rational lens of ``coeffs``, its captures ``frames`` (None: a
    capture without depth)."""
    k4a = types.ModuleType("pyk4a")
    k4a.Config = lambda **kw: kw
    k4a.DepthMode = types.SimpleNamespace(NFOV_UNBINNED="nfov")
    k4a.ColorResolution = types.SimpleNamespace(OFF="off")
    k4a.FPS = types.SimpleNamespace(FPS_30=30)
    k4a.CalibrationType = types.SimpleNamespace(DEPTH="depth")
    calibration = types.SimpleNamespace(
        get_camera_matrix=lambda c: np.array([[504.2, 0, 321.5], [0, 504.4, 330.1], [0, 0, 1]]),
        get_distortion_coefficients=lambda c: np.array(coeffs),
    )

    def captures():
        for k, depth in enumerate(frames):
            yield types.SimpleNamespace(depth=depth, depth_timestamp_usec=1000 + 33333 * k)

    class Device:
        def __init__(self, config, device_id):
            self.calibration, self._captures = calibration, captures()

        def start(self):
            pass

        def stop(self):
            pass

        def get_capture(self):
            return next(self._captures)

    class Playback:
        closed = 0

        def __init__(self, path):
            self.calibration, self._captures = calibration, captures()
            self.configuration = {"depth_mode": types.SimpleNamespace(name=depth_mode)}

        def open(self):
            pass

        def get_next_capture(self):
            try:
                return next(self._captures)
            except StopIteration:
                raise EOFError from None

        def close(self):
            Playback.closed += 1

    k4a.PyK4A, k4a.PyK4APlayback = Device, Playback
    monkeypatch.setitem(sys.modules, "pyk4a", k4a)
    return k4a


# made-up coefficients of a rational lens (OpenCV's order: k1, k2, p1, p2, k3, k4, k5, k6)
K4A_COEFFS = (0.45, -0.03, 0.0001, -0.0002, 0.0015, 0.78, 0.05, 0.006)


def test_azure_kinect_frames_come_undistorted(monkeypatch):
    rng = np.random.default_rng(0)
    raw = [rng.uniform(400, 900, (576, 640)).astype(np.uint16) for _ in range(2)]
    _stand_in_pyk4a(monkeypatch, raw, K4A_COEFFS)
    with open_stream("k4a") as s:
        frames = list(itertools.islice(s, 2))
        cam, lens = s.camera, s.sensor.lens
    assert (cam.width, cam.height, cam.fx, cam.cy) == (640, 576, 504.2, 330.1)
    assert lens == LensDistortion("rational", K4A_COEFFS)
    index = undistortion_index(cam, lens)
    for f, r in zip(frames, raw, strict=True):
        np.testing.assert_array_equal(f.depth, remap(r.astype(np.float32), index))
        assert not np.array_equal(f.depth, r)


def test_an_azure_kinect_recording_plays_every_depth_frame_undistorted(monkeypatch, tmp_path):
    rng = np.random.default_rng(1)
    raw = [rng.uniform(400, 900, (512, 512)).astype(np.uint16) for _ in range(3)]
    k4a = _stand_in_pyk4a(monkeypatch, [raw[0], None, raw[1], raw[2]], K4A_COEFFS, "WFOV_2X2BINNED")
    path = tmp_path / "rec.mkv"
    path.write_bytes(b"\x1aE\xdf\xa3")
    with open_stream(f"k4a:{path}") as s:
        assert not s.live and (s.camera.width, s.camera.height) == (512, 512)
        got = list(s)  # to the end: the capture without depth skipped
    assert [f.index for f in got] == [0, 1, 2]
    assert [f.timestamp_s for f in got] == pytest.approx([0, 2 * 0.033333, 3 * 0.033333])
    index = undistortion_index(s.camera, LensDistortion("rational", K4A_COEFFS))
    for f, r in zip(got, raw, strict=True):
        np.testing.assert_array_equal(f.depth, remap(r.astype(np.float32), index))
    assert k4a.PyK4APlayback.closed == 1
    with pytest.raises(DataError, match="no such recording"):
        open_stream(f"k4a:{tmp_path / 'none.mkv'}")
    _stand_in_pyk4a(monkeypatch, raw, K4A_COEFFS, "PASSIVE_IR")
    with pytest.raises(DataError, match="no depth images"):
        open_stream(f"k4a:{path}")


class _Depth1mm:
    def __str__(self):
        return "OniPixelFormat.ONI_PIXEL_FORMAT_DEPTH_1_MM"


def _stand_in_openni(monkeypatch, frames, recording: bool):
    """No OpenNI2 runtime here: a stand-in for the ``openni`` binding with the calls handvox
    makes (its Device, depth VideoStream, frames and, for a file, its PlaybackSupport)."""
    openni2 = types.SimpleNamespace(initialize=lambda: None, unloaded=0)

    def unload():
        openni2.unloaded += 1

    openni2.unload = unload
    h, w = frames[0].shape

    class Stream:
        def get_video_mode(self):
            return types.SimpleNamespace(resolutionX=w, resolutionY=h, pixelFormat=_Depth1mm())

        def get_horizontal_fov(self):
            return 1.0226  # Kinect v1's 58.6 degrees

        def get_vertical_fov(self):
            return 0.7959

        def start(self):
            self.k = 0

        def stop(self):
            pass

        def read_frame(self):
            k, self.k = self.k, (self.k + 1) % len(frames)  # a repeating player wraps round
            buf = frames[k].astype(np.uint16)
            return types.SimpleNamespace(get_buffer_as_uint16=lambda: buf.ravel(),
                                         timestamp=33333 * k, frameIndex=k + 1)  # fmt: skip

        def get_number_of_frames(self):
            return len(frames)

    class Playback:
        repeat, speed = True, 1.0

        def get_number_of_frames(self, stream):
            return stream.get_number_of_frames()

    class Device:
        def __init__(self, uri):
            self.playback = Playback() if recording else None

        @classmethod
        def open_any(cls):
            return cls(None)

        @classmethod
        def open_file(cls, uri):
            return cls(uri)

        def create_depth_stream(self):
            return Stream()

    openni2.Device = Device
    module = types.ModuleType("openni")
    module.openni2 = openni2
    monkeypatch.setitem(sys.modules, "openni", module)
    return openni2


def test_an_openni_device_and_an_oni_recording(monkeypatch, tmp_path):
    rng = np.random.default_rng(2)
    frames = [rng.uniform(500, 900, (480, 640)).astype(np.uint16) for _ in range(3)]
    _stand_in_openni(monkeypatch, frames, recording=False)
    with open_stream("openni2") as s:
        got = list(itertools.islice(s, 5))  # a device streams on
        assert s.live and s.sensor.unit_mm == 1.0 and "the device" in s.sensor.origin
    assert [f.index for f in got] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(got[3].depth, frames[0])
    assert s.camera.fx == pytest.approx(320 / np.tan(1.0226 / 2)) and s.camera.cx == 319.5
    rec = tmp_path / "rec.oni"
    rec.write_bytes(b"stand-in")
    openni2 = _stand_in_openni(monkeypatch, frames, recording=True)
    with open_stream(f"openni2:{rec}") as s:
        got = list(itertools.islice(s, 10))  # once through, and the stream ends
        assert not s.live and "the recording" in s.sensor.origin
        assert s.playback.repeat is False and s.playback.speed == -1.0
    assert [f.index for f in got] == [0, 1, 2]
    assert [f.timestamp_s for f in got] == pytest.approx([0, 0.033333, 0.066666])
    for f, want in zip(got, frames, strict=True):
        np.testing.assert_array_equal(f.depth, want)
    assert openni2.unloaded == 1
    with pytest.raises(DataError, match="no such recording"):
        open_stream(f"openni2:{tmp_path / 'none.oni'}")

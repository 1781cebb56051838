"""Depth streams: a live camera, a recording or a sequence of files, one frame at a time.

``handvox live --source SPEC`` reads every source through :func:`open_stream`; each source says
its camera and its depth unit, read from the device where it has one (a RealSense reports its
intrinsics and depth scale; an SR305 stores 0.125 mm units, a D4xx 1 mm by default) and from the
user or a ``camera.json`` otherwise (:func:`handvox.io.sensor.sensor_for`): never guessed.

Sources (``SPEC``):

=====================  ==========================================================================
``realsense[:SERIAL]``  a RealSense camera (D4xx, L515, SR300/SR305) through ``pyrealsense2``
``bag:FILE``            a RealSense recording (``.bag``; ``.db3`` from librealsense 2.57 on),
                        played back through ``pyrealsense2`` as fast as it is read, no frame
                        dropped
``openni2[:URI]``       an OpenNI2 device (Kinect v1, Xtion, Orbbec) through ``openni``, or an
                        OpenNI recording (``openni2:FILE.oni``) played back once, frame by frame
``k4a[:INDEX]``         an Azure Kinect through ``pyk4a`` (narrow unbinned depth mode)
``k4a:FILE``            an Azure Kinect recording (``.mkv``, ``k4arecorder``'s) played back
                        through ``pyk4a``, every depth frame in order
``FOLDER``              the depth files of a folder in name order, numbers by value
                        (``folder:FOLDER`` too)
``FILE.npy``            an ``(N, H, W)`` stack of depth images (``npy:FILE`` too)
=====================  ==========================================================================

Camera SDKs are optional extras (``pip install 'handvox[realsense]'``, ``[openni]``, ``[k4a]``);
a source whose SDK is missing is an error naming the extra, a device source without a device an
error saying so.

Where the camera's depth is not pinhole (an SR300/SR305's inverse Brown-Conrady lens, an Azure
Kinect's), the distortion its calibration reports (or a ``camera.json``'s ``distortion``) is
undone as each frame is read: frames come on the pinhole image of the reported intrinsics
(:class:`handvox.camera.LensDistortion`); a lens model handvox cannot undo is refused.

Frames come as :class:`StreamFrame`: ``(H, W)`` float32 depth in mm (0: no reading) and a time
stamp in seconds from the device's clock where it has one, else from the sequence's frame rate
(``fps``; a file sequence without one has no time stamps, and what needs them says so).
"""

from __future__ import annotations

import importlib
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handvox.camera import Camera, LensDistortion
from handvox.errors import DataError, HandvoxError
from handvox.io.sensor import SensorSpec, check_depth_scale, sensor_for

DEPTH_SUFFIXES = (".png", ".npy", ".bin")
# The optional extra that installs each source's SDK (pyproject.toml's optional-dependencies).
EXTRAS = {
    "realsense": ("pyrealsense2", "realsense"),
    "openni2": ("openni", "openni"),
    "k4a": ("pyk4a", "k4a"),
}


@dataclass(frozen=True)
class StreamFrame:
    """One frame of a stream.

    Attributes:
        index: 0, 1, ... in the order the stream gave them.
        depth: ``(H, W)`` float32 mm, 0 where the sensor has no reading.
        timestamp_s: seconds since the stream's first frame (the device's clock, or index / fps
            for a file sequence with a frame rate); None when the source has no clock.
        source_id: what the source calls the frame (a file name, the device's frame number).
    """

    index: int
    depth: np.ndarray
    timestamp_s: float | None
    source_id: str


class DepthStream:
    """A source of depth frames; iterate it for :class:`StreamFrame`, close it when done (or use
    it as a context manager).

    Attributes:
        spec: the ``SPEC`` it was opened from.
        sensor: its camera, depth unit and where both came from.
        live: a device (frames keep coming, some may be dropped when the reader is slow) rather
            than a recording or files (every frame, in order, as fast as they are read).
        length: the number of frames of a recording or sequence where known, else None.
    """

    spec: str
    sensor: SensorSpec
    live: bool = False
    length: int | None = None

    @property
    def camera(self) -> Camera:
        return self.sensor.camera

    def __iter__(self) -> Iterator[StreamFrame]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file (idempotent)."""

    def __enter__(self) -> DepthStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _sdk(source: str):
    """The SDK module of ``source``, or a HandvoxError naming the extra that installs it."""
    module, extra = EXTRAS[source]
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if ".so" in str(e) or "DLL" in str(e):  # installed, but a system library it needs is not
            raise HandvoxError(
                f"source {source}: the {module} package cannot load a system library ({e}); "
                + (
                    "install libusb-1.0 (Debian/Ubuntu: apt install libusb-1.0-0)"
                    if source == "realsense"
                    else "install the device's SDK"
                )
            ) from None
        raise HandvoxError(
            f"source {source}: needs the {module} package, which is not installed ({e}); "
            f"install it with: pip install 'handvox[{extra}]'"
        ) from None


def _timed(index: int, fps: float | None) -> float | None:
    return None if fps is None else index / fps


def natural_key(name: str) -> list:
    """Sort key that orders the numbers in file names by value: ``2.png`` before ``10.png``
    (recorders rarely pad frame numbers with zeros)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def depth_files(folder: Path) -> list[Path]:
    """The depth files of ``folder`` (:data:`DEPTH_SUFFIXES`, not hidden, not recursive) in name
    order, numbers by value (:func:`natural_key`); DataError naming the folder if none."""
    files = sorted(
        (
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in DEPTH_SUFFIXES and not p.name.startswith(".")
        ),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise DataError(folder, f"no depth files ({', '.join(DEPTH_SUFFIXES)}) in folder")
    return files


class FileSequence(DepthStream):
    """The depth files of a folder in name order, numbers by value (:func:`natural_key`; files of
    :data:`DEPTH_SUFFIXES`), each read and checked as ``handvox predict`` reads files
    (:meth:`handvox.io.sensor.SensorSpec.read`)."""

    def __init__(self, spec: str, folder: Path, sensor: SensorSpec, fps: float | None):
        files = depth_files(folder)
        self.spec, self.sensor, self.files, self.fps = spec, sensor, files, fps
        self.length = len(files)

    def __iter__(self) -> Iterator[StreamFrame]:
        for i, path in enumerate(self.files):
            yield StreamFrame(i, self.sensor.read(path), _timed(i, self.fps), path.name)


class ArraySequence(DepthStream):
    """An ``(N, H, W)`` ``.npy`` stack of depth images in the sensor's unit (memory-mapped: a
    long recording is not read whole)."""

    def __init__(self, spec: str, path: Path, sensor: SensorSpec, fps: float | None):
        try:
            stack = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DataError(path, f"not a readable .npy array ({e})") from None
        if stack.ndim != 3 or not (
            np.issubdtype(stack.dtype, np.integer) or np.issubdtype(stack.dtype, np.floating)
        ):
            raise DataError(
                path,
                f"a depth sequence is an (N, H, W) array of numbers; this one is "
                f"{stack.dtype} {stack.shape}",
            )
        sensor.camera.check_depth(stack[0], path, f"the camera from {sensor.origin}")
        self.spec, self.sensor, self.path, self.stack, self.fps = spec, sensor, path, stack, fps
        self.length = len(stack)

    def __iter__(self) -> Iterator[StreamFrame]:
        unit = np.float32(self.sensor.unit_mm)
        checked = False
        for i in range(len(self.stack)):
            depth = np.nan_to_num(np.asarray(self.stack[i], np.float32) * unit, nan=0.0)
            if not checked:  # one unit for the whole stack: its first frame with readings says
                checked = check_depth_scale(depth, f"{self.path} frame {i}", self.sensor.unit_mm)
            yield StreamFrame(i, self.sensor.undistort(depth), _timed(i, self.fps), str(i))


def _realsense_sensor(rs, spec: str, profile, device, origin: str) -> SensorSpec:
    intr = profile.as_video_stream_profile().get_intrinsics()
    camera = Camera(intr.fx, intr.fy, intr.ppx, intr.ppy, intr.width, intr.height)
    scale_m = device.first_depth_sensor().get_depth_scale()
    model = str(intr.model).rpartition(".")[2]
    lens = None
    if model != "none" and any(intr.coeffs):
        try:
            lens = LensDistortion(model, tuple(intr.coeffs))
        except ValueError as e:  # a lens handvox cannot undo: refused, not ignored
            raise HandvoxError(f"source {spec}: the depth stream's {e}") from None
    return SensorSpec(camera, float(scale_m) * 1000.0, f"{origin} ({spec})", lens)


class RealSenseStream(DepthStream):
    """A RealSense camera through ``pyrealsense2``: the depth stream's intrinsics and the depth
    sensor's scale read from the device. Frames the reader is too slow for are dropped, as a
    live camera's are."""

    def __init__(self, spec: str, serial: str | None = None, fps: int | None = None):
        rs = _sdk("realsense")
        self.spec, self.live = spec, True
        self.pipeline = rs.pipeline()
        cfg = rs.config()
        if serial:
            cfg.enable_device(serial)
        cfg.enable_stream(rs.stream.depth, 0, 0, rs.format.z16, fps or 0)  # 0: the default
        try:
            profile = self.pipeline.start(cfg)
        except RuntimeError as e:
            raise HandvoxError(
                f"source {spec}: cannot start a RealSense camera: {e} (is one "
                "connected, and not in use by another program?)"
            ) from None
        self._started = True
        stream = profile.get_stream(rs.stream.depth)
        self.sensor = _realsense_sensor(rs, spec, stream, profile.get_device(), "the device")

    def __iter__(self) -> Iterator[StreamFrame]:
        unit = np.float32(self.sensor.unit_mm)
        t0 = None
        i = 0
        while self._started:
            ok, frames = self.pipeline.try_wait_for_frames(2000)
            if not ok:
                raise HandvoxError(f"source {self.spec}: no frame from the camera in 2 s")
            frame = frames.get_depth_frame()
            if not frame:
                continue
            t_ms = frame.get_timestamp()
            t0 = t_ms if t0 is None else t0
            depth = self.sensor.undistort(np.asanyarray(frame.get_data()).astype(np.float32) * unit)
            yield StreamFrame(i, depth, (t_ms - t0) / 1000.0, str(frame.get_frame_number()))
            i += 1

    def close(self) -> None:
        if getattr(self, "_started", False):
            self._started = False
            self.pipeline.stop()


class RealSenseRecording(DepthStream):
    """A RealSense recording (``.bag``, or ``.db3`` from librealsense 2.57 on) played through
    ``pyrealsense2``: every frame in order, as fast as the reader takes them; the camera and
    depth scale as recorded."""

    def __init__(self, spec: str, path: Path):
        rs = _sdk("realsense")
        if not path.is_file():
            raise DataError(path, "no such recording")
        self.spec, self.path, self.rs = spec, path, rs
        try:
            device = rs.context().load_device(str(path))
        except RuntimeError as e:
            raise DataError(path, f"not a readable RealSense recording ({e})") from None
        # Not in real time, set before the sensor starts: the player then waits for the reader
        # (a pipeline's playback starts in real time and drops first frames at random).
        self._playback = device.as_playback()
        self._playback.set_real_time(False)
        self._device = device
        self._depth = device.first_depth_sensor()
        profiles = [
            p for p in self._depth.get_stream_profiles() if p.stream_type() == rs.stream.depth
        ]
        if not profiles:
            raise DataError(path, "the recording holds no depth stream")
        self._profile = profiles[0]
        self.sensor = _realsense_sensor(rs, spec, self._profile, device, "the recording")
        self._started = False

    def __iter__(self) -> Iterator[StreamFrame]:
        frames: queue.Queue = queue.Queue(maxsize=2)  # the player blocks on a full queue

        def take(frame) -> None:
            d = frame.as_depth_frame()
            item = (d.get_timestamp(), d.get_frame_number(), np.asanyarray(d.get_data()).copy())
            while self._started:  # a reader that stopped early must not leave the player stuck
                try:
                    frames.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        self._started = True  # before the start: the player may call take() at once
        self._depth.open(self._profile)
        self._depth.start(take)
        unit = np.float32(self.sensor.unit_mm)
        stopped = self.rs.playback_status.stopped
        t0 = None
        i = 0
        try:
            while True:
                try:
                    t_ms, number, raw = frames.get(timeout=0.1)
                except queue.Empty:
                    # Not in real time the player has handed over every frame once it stops.
                    if self._playback.current_status() == stopped and frames.empty():
                        return
                    continue
                t0 = t_ms if t0 is None else t0
                depth = self.sensor.undistort(raw.astype(np.float32) * unit)
                yield StreamFrame(i, depth, (t_ms - t0) / 1000.0, str(number))
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        if self._started:
            self._started = False
            self._depth.stop()
            self._depth.close()


class OpenNI2Stream(DepthStream):
    """An OpenNI2 device through ``openni``, or an OpenNI recording (``.oni``; played frame by
    frame, none dropped, once through): the focal lengths from the depth stream's fields of view
    (OpenNI reports no principal point: the image centre), the unit from its pixel format."""

    def __init__(self, spec: str, uri: str | None = None):
        mod = _sdk("openni2")
        openni2 = mod.openni2
        if uri and Path(uri).suffix.lower() == ".oni" and not Path(uri).is_file():
            raise DataError(Path(uri), "no such recording")
        try:
            openni2.initialize()
            self.device = (
                openni2.Device.open_file(uri.encode()) if uri else openni2.Device.open_any()
            )
        except Exception as e:  # the binding raises its own OpenNIError
            raise HandvoxError(
                f"source {spec}: cannot open the OpenNI2 device: {e} "
                "(is one connected, and OpenNI2's redistributable found?)"
            ) from None
        self.openni2, self.spec = openni2, spec
        # a recording: the binding's playback control (None for a device)
        self.playback = getattr(self.device, "playback", None)
        self.live = self.playback is None
        self.stream = self.device.create_depth_stream()
        if self.stream is None:
            openni2.unload()
            raise HandvoxError(f"source {spec}: the OpenNI2 device has no depth sensor")
        mode = self.stream.get_video_mode()
        w, h = mode.resolutionX, mode.resolutionY
        fx = w / 2 / np.tan(self.stream.get_horizontal_fov() / 2)
        fy = h / 2 / np.tan(self.stream.get_vertical_fov() / 2)
        units = {"ONI_PIXEL_FORMAT_DEPTH_1_MM": 1.0, "ONI_PIXEL_FORMAT_DEPTH_100_UM": 0.1}
        unit = units.get(str(mode.pixelFormat).split(".")[-1])
        if unit is None:
            raise HandvoxError(
                f"source {spec}: depth pixel format {mode.pixelFormat} is not one of 1 mm or 100 um"
            )
        cam = Camera(float(fx), float(fy), (w - 1) / 2, (h - 1) / 2, w, h)
        what = "the device" if self.live else "the recording"
        self.sensor = SensorSpec(cam, unit, f"{what} ({spec}; centre assumed principal point)")
        self._length = None
        if self.playback is not None:
            # once through, each frame when read (speed -1: OpenNI's manual mode), none dropped
            self.playback.repeat = False
            self.playback.speed = -1.0
            self._length = self.playback.get_number_of_frames(self.stream)
        self.stream.start()
        self._started = True

    def __iter__(self) -> Iterator[StreamFrame]:
        t0 = None
        i = 0
        w, h = self.camera.width, self.camera.height
        while self._started and (self._length is None or i < self._length):
            frame = self.stream.read_frame()
            buf = np.frombuffer(frame.get_buffer_as_uint16(), np.uint16).reshape(h, w)
            t_us = frame.timestamp
            t0 = t_us if t0 is None else t0
            depth = buf.astype(np.float32) * np.float32(self.sensor.unit_mm)
            yield StreamFrame(i, depth, (t_us - t0) / 1e6, str(frame.frameIndex))
            i += 1

    def close(self) -> None:
        if getattr(self, "_started", False):
            self._started = False
            self.stream.stop()
            self.openni2.unload()


# The depth image of each Azure Kinect depth mode (pyk4a's DepthMode names), width x height.
_K4A_DEPTH_SIZES = {
    "NFOV_2X2BINNED": (320, 288),
    "NFOV_UNBINNED": (640, 576),
    "WFOV_2X2BINNED": (512, 512),
    "WFOV_UNBINNED": (1024, 1024),
}


def _k4a_sensor(k4a, calibration, size: tuple[int, int], origin: str) -> SensorSpec:
    """The depth camera of an Azure Kinect calibration (its intrinsics and lens, OpenCV's
    rational model) for depth images of ``size``, in mm."""
    depth = k4a.CalibrationType.DEPTH
    m = calibration.get_camera_matrix(depth)
    cam = Camera(float(m[0, 0]), float(m[1, 1]), float(m[0, 2]), float(m[1, 2]), *size)
    lens = LensDistortion("rational", tuple(calibration.get_distortion_coefficients(depth)))
    return SensorSpec(cam, 1.0, origin, lens)


def _k4a_frames(captures: Iterator, sensor: SensorSpec) -> Iterator[StreamFrame]:
    """The depth frames of pyk4a captures, undistorted, timed from the first one's clock."""
    t0 = None
    i = 0
    for cap in captures:
        if cap.depth is None:  # a capture of the other streams only
            continue
        t_us = cap.depth_timestamp_usec
        t0 = t_us if t0 is None else t0
        depth = sensor.undistort(cap.depth.astype(np.float32))
        yield StreamFrame(i, depth, (t_us - t0) / 1e6, str(i))
        i += 1


class K4AStream(DepthStream):
    """An Azure Kinect through ``pyk4a``, narrow field of view unbinned (640x576, 30 frames/s),
    depth in mm; the depth camera's intrinsics and lens distortion (OpenCV's rational model) from
    its factory calibration, the distortion undone as frames are read."""

    def __init__(self, spec: str, index: int = 0):
        k4a = _sdk("k4a")
        cfg = k4a.Config(
            depth_mode=k4a.DepthMode.NFOV_UNBINNED,
            color_resolution=k4a.ColorResolution.OFF,
            camera_fps=k4a.FPS.FPS_30,
            synchronized_images_only=False,
        )
        self.device = k4a.PyK4A(cfg, device_id=index)
        try:
            self.device.start()
        except Exception as e:  # pyk4a raises K4AException
            raise HandvoxError(
                f"source {spec}: cannot start the Azure Kinect: {e} (is one connected?)"
            ) from None
        self._started = True
        self.spec, self.live = spec, True
        size = _K4A_DEPTH_SIZES["NFOV_UNBINNED"]
        self.sensor = _k4a_sensor(k4a, self.device.calibration, size, f"the device ({spec})")

    def __iter__(self) -> Iterator[StreamFrame]:
        def captures():
            while self._started:
                yield self.device.get_capture()

        yield from _k4a_frames(captures(), self.sensor)

    def close(self) -> None:
        if getattr(self, "_started", False):
            self._started = False
            self.device.stop()


class K4ARecording(DepthStream):
    """An Azure Kinect recording (``.mkv``, as ``k4arecorder`` writes it) played through
    ``pyk4a``: every depth frame in order, as fast as the reader takes them; the camera, lens and
    image size of the recorded depth mode from the recording's calibration."""

    def __init__(self, spec: str, path: Path):
        k4a = _sdk("k4a")
        if not path.is_file():
            raise DataError(path, "no such recording")
        self.spec, self.path, self.live = spec, path, False
        self.playback = k4a.PyK4APlayback(path)
        try:
            self.playback.open()
            self._open = True
            mode = self.playback.configuration["depth_mode"]
            calibration = self.playback.calibration
        except Exception as e:  # pyk4a raises K4AException
            self.close()
            raise DataError(path, f"not a readable Azure Kinect recording ({e})") from None
        name = getattr(mode, "name", str(mode))
        if name not in _K4A_DEPTH_SIZES:
            self.close()
            raise DataError(path, f"the recording holds no depth images (depth mode {name})")
        size = _K4A_DEPTH_SIZES[name]
        self.sensor = _k4a_sensor(k4a, calibration, size, f"the recording ({spec})")

    def __iter__(self) -> Iterator[StreamFrame]:
        def captures():
            while True:
                try:
                    yield self.playback.get_next_capture()
                except EOFError:
                    return

        try:
            yield from _k4a_frames(captures(), self.sensor)
        finally:
            self.close()

    def close(self) -> None:
        if getattr(self, "_open", False):
            self._open = False
            self.playback.close()


def open_stream(
    spec: str,
    camera: Camera | None = None,
    camera_origin: str = "--camera",
    unit_mm: float | None = None,
    fps: float | None = None,
) -> DepthStream:
    """The stream of ``spec`` (module docstring).

    Args:
        camera, unit_mm: of file sequences (None: a ``camera.json`` beside them, its unit or
            mm; :func:`handvox.io.sensor.sensor_for`). A device or recording reports its own:
            giving either for one is an error rather than silently ignored or obeyed.
        camera_origin: how ``camera`` was given, for messages.
        fps: frame rate of a file sequence, for its time stamps (None: no time stamps); a
            camera's requested rate.

    Raises:
        HandvoxError: an unknown source, a missing SDK (naming the extra), no device.
        DataError: a file or folder that does not exist or cannot be read.
    """
    kind, sep, rest = spec.partition(":")
    device_kinds = ("realsense", "bag", "openni2", "k4a")
    if sep and kind in device_kinds or spec in device_kinds:
        if camera is not None or unit_mm is not None:
            raise HandvoxError(
                f"source {spec}: the device or recording reports its camera and depth unit; "
                "--camera and --depth-unit are for file sequences"
            )
        if kind == "realsense":
            return RealSenseStream(spec, serial=rest or None, fps=int(fps) if fps else None)
        if kind == "bag":
            if not rest:
                raise HandvoxError("source bag: give the recording, bag:FILE")
            return RealSenseRecording(spec, Path(rest))
        if kind == "openni2":
            return OpenNI2Stream(spec, rest or None)
        if rest and not rest.isdigit():
            return K4ARecording(spec, Path(rest))
        return K4AStream(spec, int(rest or 0))
    if sep and kind in ("folder", "npy"):
        path = Path(rest)
    elif sep and len(kind) > 1 and not Path(spec).exists():
        raise HandvoxError(
            f"source {spec}: unknown kind {kind!r}; one of realsense[:SERIAL], bag:FILE, "
            "openni2[:URI], k4a[:INDEX], k4a:FILE, folder:FOLDER, npy:FILE, or a folder or .npy "
            "path"
        )
    else:
        path = Path(spec)
    if not path.exists():
        raise DataError(path, "no such file or folder")
    sensor = sensor_for(path, camera, camera_origin, unit_mm)
    if path.is_dir():
        return FileSequence(spec, path, sensor, fps)
    if path.suffix.lower() != ".npy":
        raise DataError(
            path,
            "a sequence file is an (N, H, W) .npy stack; a folder of frames or a device otherwise",
        )
    return ArraySequence(spec, path, sensor, fps)


def write_realsense_recording(
    path: str | Path,
    depth: np.ndarray,
    camera: Camera,
    unit_mm: float,
    fps: float = 30.0,
    lens: LensDistortion | None = None,
) -> Path:
    """Record ``(N, H, W)`` depth frames (mm; 0 no reading) as a RealSense camera would, through
    ``pyrealsense2``'s software device and recorder: a recording :class:`RealSenseStream` plays
    (``bag:PATH``) with ``camera``'s intrinsics, ``lens`` as the stream's distortion (None:
    none; the frames must be distorted so already) and a depth scale of ``unit_mm``; frames are
    stored as uint16 multiples of ``unit_mm`` (rounded), time stamps ``i / fps``. librealsense
    2.57 on writes ROS2 ``.db3`` recordings, earlier versions ROS1 ``.bag``: ``path`` must have
    the extension of the installed version. Returns ``path``."""
    rs = _sdk("realsense")
    path = Path(path)
    frames = np.asarray(depth, np.float64)
    if frames.ndim != 3:
        raise ValueError(f"depth: expected (N, H, W), got {frames.shape}")
    camera.check_depth(frames[0], path, "the camera given")
    raw = np.clip(np.rint(np.nan_to_num(frames) / unit_mm), 0, 65535).astype(np.uint16)
    h, w = raw.shape[1:]
    device = rs.software_device()
    sensor = device.add_sensor("Depth")  # the name librealsense's topics carry
    intr = rs.intrinsics()
    intr.width, intr.height = w, h
    intr.fx, intr.fy, intr.ppx, intr.ppy = camera.fx, camera.fy, camera.cx, camera.cy
    if lens is None:
        intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    elif lens.model != "rational":  # librealsense's own Brown-Conrady models
        intr.model, intr.coeffs = getattr(rs.distortion, lens.model), list(lens.coeffs)
    else:
        raise ValueError(f"lens: a RealSense stream has no {lens.model!r} model")
    vs = rs.video_stream()
    vs.type, vs.index, vs.uid = rs.stream.depth, 0, 0
    vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = w, h, int(round(fps)), 2, rs.format.z16
    vs.intrinsics = intr
    profile = sensor.add_video_stream(vs).as_video_stream_profile()
    sensor.add_read_only_option(rs.option.depth_units, unit_mm / 1000.0)
    path.unlink(missing_ok=True)
    # The recorder after every sensor, stream and option: made earlier it writes only the
    # file's version, and loading that file hangs (librealsense's own test records so too).
    recorder = rs.recorder(str(path), device)
    sink = rs.syncer()
    sensor.open(profile)
    sensor.start(sink)
    for i, frame in enumerate(raw):
        f = rs.software_video_frame()  # one per frame: the pixels are copied into it
        f.pixels = np.ascontiguousarray(frame)
        f.bpp, f.stride = 2, w * 2
        f.timestamp = 1000.0 + i * 1000.0 / fps  # ms
        f.domain = rs.timestamp_domain.hardware_clock
        f.frame_number = i
        f.depth_units = unit_mm / 1000.0
        f.profile = profile
        sensor.on_video_frame(f)
        sink.try_wait_for_frames(0)
    sensor.stop()
    sensor.close()
    recorder.pause()
    del recorder  # closes the file
    return path

"""Depth sensor families, their devices, and a per-frame random draw of sensor and camera.

Four families, each a cited measurement model in its own module:

================  ==============================  ==========================================
family            devices                         model
================  ==============================  ==========================================
structured_light  Kinect v1, PrimeSense, Xtion    :mod:`handvox.synth.noise` [K12, N12]
time_of_flight    Kinect v2, Azure Kinect, L515   :mod:`handvox.synth.tof` [LS01, S15, F16, T21]
active_stereo     RealSense D415, D435            :mod:`handvox.synth.stereo` [D4, BKM, SS02]
coded_light       RealSense SR300, SR305          :mod:`handvox.synth.coded_light` [Z20, C17]
================  ==============================  ==========================================

:func:`sample_sensor` draws, from a frame's generator, one family (uniformly among those asked
for), one of its devices (:data:`DEVICES`: resolution mode, field of view, the depth unit the
device stores), the camera that follows (:func:`sample_camera`) and the model's parameters
within :data:`RANGES` (given the hand's depths, only among the devices and resolutions that
measure them, :func:`nearest_mm`: nobody tracks a hand at 300 mm with a Kinect v2);
:func:`simulate` measures a clean frame with that draw, at the draw's
camera or at another one (the dataset's); :func:`simulate_at_sensor` measures at the sensor's own
pixel grid and regrids the result to the dataset's camera (:func:`regrid`: the two share the
optical centre, so a pixel's depth carries over unchanged).

Each entry of :data:`RANGES` and :data:`DEVICES` names where it comes from. Where no paper gives
a figure (SR305 noise, the edge artefacts' rates) the range brackets a fit to the real frames in
``../shared/data`` (docs/benchmarks.md, "Sensor families against real frames"), and says so.

Sources (the models' own lists are in their modules):
    [K12] Khoshelham & Elberink, Sensors 12(2), 2012: Kinect v1 f = 580 px at 640 (57-58 deg
          HFOV), b = 75 mm, 0.5-5 m with the useful range to ~4 m.
    [N12] Nguyen, Izadi & Lovell, 3DIMPVT 2012: Kinect v1 axial and lateral noise.
    [S15] Sarbolandi, Lefloch & Kolb, CVIU 2015: Kinect v2 512x424, 70.6 x 60 deg, 0.5-4.5 m.
    [AK]  Microsoft, "Azure Kinect DK hardware specification": NFOV unbinned 640x576 and binned
          320x288, 75 x 65 deg, 0.5-3.86 m (unbinned); 1 mm units.
    [L515] Intel RealSense LiDAR Camera L515 datasheet: 1024x768 / 640x480 / 320x240, 70 x 55
          deg, 0.25-9 m, depth unit 0.25 mm.
    [D4]  Intel RealSense D400 Series datasheet: D415 55 mm baseline, 65 deg HFOV; D435 50 mm,
          87 deg; depth modes 1280x720 down to 424x240; 1 mm default depth unit.
    [RS]  librealsense camera_specs.md: SR300 68 x 54 deg, 0.2-1.5 m; [Z20] Zabatani et al.,
          TPAMI 2020: 640x480, 0.125 mm depth resolution. The SR305 frames' camera.json:
          f = 476.0 px at 640 (67.8 deg).
    [BKM] Grunnet-Jepsen, Sweetser & Woodfill, "Best-Known-Methods for Tuning Intel RealSense
          D400 Depth Cameras": subpixel RMS ~0.08 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from handvox.camera import Camera
from handvox.synth.coded_light import CodedLightConfig, add_coded_light_noise
from handvox.synth.noise import NoiseConfig, add_sensor_noise
from handvox.synth.stereo import StereoConfig, add_stereo_noise
from handvox.synth.tof import ToFConfig, add_tof_noise

__all__ = [
    "DEPTH_UNITS_MM",
    "DEVICES",
    "FAMILIES",
    "RANGES",
    "Device",
    "SensorDraw",
    "Span",
    "as_families",
    "max_range_mm",
    "nearest_mm",
    "regrid",
    "sample_camera",
    "sample_config",
    "sample_sensor",
    "simulate",
    "simulate_at_sensor",
]

FAMILIES = ("structured_light", "time_of_flight", "active_stereo", "coded_light")
DEPTH_UNITS_MM = (1.0, 0.25, 0.125)
"""The depth units devices store: 1 mm (Kinect v1/v2, Azure Kinect, D4xx), 0.25 mm (L515),
0.125 mm (SR300/SR305)."""
SensorConfig = NoiseConfig | ToFConfig | StereoConfig | CodedLightConfig


@dataclass(frozen=True)
class Span:
    """A parameter's range for the per-frame draw (uniform in ``lo .. hi``) and its source."""

    lo: float
    hi: float
    source: str

    def draw(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.lo, self.hi))


@dataclass(frozen=True)
class Device:
    """A depth camera a family's draw picks among.

    Attributes:
        name: e.g. ``"d435"``.
        family: one of :data:`FAMILIES`.
        modes: depth resolutions ``(width, height)`` it streams (within 320x240 .. 1280x720).
        hfov_deg: the horizontal field of view's range (units' spread, spec tolerance).
        depth_units_mm: the steps of the depth it stores (the default first).
        range_mm: nearest and farthest depth it measures.
        baseline_mm: stereo baseline (active stereo only; 0 otherwise).
        source: where the figures come from.
    """

    name: str
    family: str
    modes: tuple[tuple[int, int], ...]
    hfov_deg: tuple[float, float]
    depth_units_mm: tuple[float, ...]
    range_mm: tuple[float, float]
    baseline_mm: float
    source: str


DEVICES: tuple[Device, ...] = (
    Device("kinect_v1", "structured_light", ((640, 480), (320, 240)), (57.0, 58.5), (1.0,),
           (400.0, 4000.0), 0.0, "[K12]: f = 580 px at 640 px; 0.4-4 m useful"),
    Device("kinect_v2", "time_of_flight", ((512, 424),), (70.0, 71.2), (1.0,),
           (500.0, 4500.0), 0.0, "[S15]: 512x424, 70.6 x 60 deg, 0.5-4.5 m"),
    Device("azure_kinect_nfov", "time_of_flight", ((640, 576), (320, 288)), (74.0, 76.0),
           (1.0,), (500.0, 3860.0), 0.0, "[AK]: NFOV 640x576 / 320x288, 75 x 65 deg"),
    Device("l515", "time_of_flight", ((640, 480), (320, 240)), (69.0, 71.0), (0.25,),
           (250.0, 9000.0), 0.0, "[L515]: 70 x 55 deg, 0.25-9 m, 0.25 mm unit"),
    Device("d415", "active_stereo",
           ((1280, 720), (848, 480), (640, 480), (640, 360), (480, 270), (424, 240)),
           (64.0, 66.0), (1.0,), (0.0, 6000.0), 55.0, "[D4]: 55 mm, 65 deg"),
    Device("d435", "active_stereo",
           ((1280, 720), (848, 480), (640, 480), (640, 360), (480, 270), (424, 240)),
           (85.0, 89.0), (1.0,), (0.0, 6000.0), 50.0, "[D4]: 50 mm, 87 +- 3 deg"),
    Device("sr305", "coded_light", ((640, 480),), (66.0, 69.0), (0.125,), (200.0, 1500.0),
           0.0, "[RS, Z20]; 67.8 deg in the SR305 frames' camera.json"),
)  # fmt: skip

_PRINCIPAL_SPREAD = 0.02  # principal point within +-2 % of the image size of its centre
_ASPECT_SPREAD = 0.005  # fy / fx within 1 +- 0.5 %

RANGES: dict[str, dict[str, Span]] = {
    "structured_light": {
        "axial_scale": Span(0.8, 1.25, "x [N12]'s sigma_z fit; +-20 % spread between units "
                            "(chosen, not measured)"),
        "lateral_scale": Span(0.8, 1.25, "x [N12]'s sigma_L; chosen like axial_scale"),
        "edge_dropout_scale": Span(0.5, 1.5, "x NoiseConfig's (0.15, 0.05), tuned by eye on "
                                   "the NYU frame"),
        "holes_per_10k_px": Span(0.3, 1.2, "about NoiseConfig's 0.6 (by eye on NYU)"),
    },
    "time_of_flight": {
        "sigma_ref_mm": Span(0.6, 1.8, "millimetre-level 1 m centre-pixel std of Kinect v2 "
                             "[S15, F16] and Azure Kinect [T21] (bracketed, not fitted)"),
        "ambient_ratio": Span(0.0, 0.5, "indoor: ambient well below the active signal [LS01]"),
        "albedo": Span(0.5, 1.2, "skin's NIR reflectance against the reference target "
                       "(chosen)"),
        "min_amplitude": Span(0.03, 0.15, "signal cut of the devices' invalidation [AK] "
                              "(chosen so grazing > ~80 deg fails at 1 m)"),
        "flying_keep": Span(0.2, 1.0, "share of mixed pixels past the edge filters [AK, S15] "
                            "(chosen)"),
        "multipath_gain": Span(0.0, 0.15, "concavities read up to a few mm far [F16, T21] "
                               "(chosen)"),
        "multipath_radius_mm": Span(20.0, 50.0, "finger to palm distances (chosen)"),
    },
    "active_stereo": {
        "subpixel_rms_px": Span(0.05, 0.12, "[BKM]: ~0.08 px on a textured target"),
        "correlated_fraction": Span(0.3, 0.8, "matching windows correlate neighbours "
                                    "(chosen)"),
        "correlation_px": Span(5.0, 10.0, "about a matching window (chosen; shorter ones cost "
                               "more than the structured-light model)"),
        "fattening_px": Span(0.0, 2.0, "half a window at most [SS02] (chosen)"),
        "speckle_per_10k_px": Span(0.1, 1.5, "chosen; skin is weakly textured"),
        "speckle_outlier_fraction": Span(0.2, 0.8, "chosen"),
        "grazing_start_deg": Span(70.0, 80.0, "chosen"),
        "grazing_full_deg": Span(84.0, 89.0, "chosen"),
    },
    "coded_light": {
        "sigma_500_mm": Span(0.1, 0.35, "fit to the SR305 frames: their palms' residual (0.15 mm "
                             "at 0.5-0.66 m) is below a noise-free render's (0.27)"),
        "correlated_fraction": Span(0.8, 0.97, "on-board filtering [Z20]; smooth SR305 "
                                    "surfaces"),
        "correlation_px": Span(5.0, 10.0, "SR305 frames (by eye)"),
        "baseline_mm": Span(15.0, 35.0, "not published that we found; the SR305 frames' narrow "
                            "occlusions"),
        "lateral_scale": Span(0.3, 1.0, "SR305 rims: ~6 % invalid within 2 px (fit)"),
        "edge_dropout_scale": Span(0.5, 1.5, "x (0.08, 0.03), with lateral_scale (fit)"),
        "edge_outlier_prob": Span(0.0, 0.01, "SR305: < 0.3 % of edge pixels off by > 10 mm"),
        "holes_per_10k_px": Span(0.3, 2.0, "SR305: a few small holes inside each hand"),
        "grazing_start_deg": Span(78.0, 86.0, "SR305: few holes on finger sides (fit)"),
    },
}  # fmt: skip


_MODELS = {NoiseConfig: add_sensor_noise, ToFConfig: add_tof_noise,
           StereoConfig: add_stereo_noise, CodedLightConfig: add_coded_light_noise}  # fmt: skip


@dataclass(frozen=True)
class SensorDraw:
    """One frame's sensor: family, device, its camera, stored depth unit and model config
    (``config``'s depth unit and range are the device's)."""

    family: str
    device: str
    camera: Camera
    depth_unit_mm: float
    config: SensorConfig


def as_families(spec: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """A family name, ``"all"`` or several names -> a tuple of :data:`FAMILIES` (ValueError
    naming the unknown ones)."""
    names = FAMILIES if spec == "all" else (spec,) if isinstance(spec, str) else tuple(spec)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names:
        raise ValueError(f"unknown sensor family {unknown or names!r}; choose among {FAMILIES} "
                         "or 'all'")  # fmt: skip
    return names


def max_range_mm(families: tuple[str, ...]) -> float:
    """The farthest depth any device of ``families`` measures."""
    return max(d.range_mm[1] for d in DEVICES if d.family in families)


def sample_camera(
    rng: np.random.Generator, device: Device, mode: tuple[int, int] | None = None
) -> Camera:
    """A camera of ``device``: a resolution mode (uniform, or ``mode``), a horizontal field of
    view uniform in its range (fx = W / 2 / tan(HFOV / 2)), fy within 0.5 % of fx and the
    principal point within 2 % of the image size of its centre."""
    w, h = mode or device.modes[int(rng.integers(len(device.modes)))]
    hfov = math.radians(rng.uniform(*device.hfov_deg))
    fx = w / 2.0 / math.tan(hfov / 2.0)
    fy = fx * (1.0 + rng.uniform(-_ASPECT_SPREAD, _ASPECT_SPREAD))
    cx = w / 2.0 + rng.uniform(-_PRINCIPAL_SPREAD, _PRINCIPAL_SPREAD) * w
    cy = h / 2.0 + rng.uniform(-_PRINCIPAL_SPREAD, _PRINCIPAL_SPREAD) * h
    return Camera(fx, fy, cx, cy, w, h)


def sample_config(
    rng: np.random.Generator, device: Device, camera: Camera, depth_unit_mm: float
) -> SensorConfig:
    """The model parameters of ``device`` for one frame: each :data:`RANGES` entry of its
    family drawn uniformly, the rest the device's (range, baseline, unit) or the model's
    defaults. ``camera``: the sensor's (stereo disparities are in its pixels)."""
    r = {k: s.draw(rng) for k, s in RANGES[device.family].items()}
    lo, hi = device.range_mm
    if device.family == "structured_light":
        e = r.pop("edge_dropout_scale")
        base = NoiseConfig()
        return replace(base, **r, edge_dropout_prob=tuple(p * e for p in base.edge_dropout_prob),
                       min_depth_mm=lo, max_depth_mm=hi)  # fmt: skip
    if device.family == "time_of_flight":
        return ToFConfig(**r, min_depth_mm=lo, max_depth_mm=hi, depth_unit_mm=depth_unit_mm)
    if device.family == "active_stereo":
        return StereoConfig(**r, baseline_mm=device.baseline_mm, focal_px=camera.fx,
                            max_depth_mm=hi, depth_unit_mm=depth_unit_mm)  # fmt: skip
    if device.family == "coded_light":
        e = r.pop("edge_dropout_scale")
        base = CodedLightConfig()
        side = 1 if rng.random() < 0.5 else -1
        return replace(base, **r, edge_dropout_prob=tuple(p * e for p in base.edge_dropout_prob),
                       projector_side=side, min_depth_mm=lo, max_depth_mm=hi,
                       depth_unit_mm=depth_unit_mm)  # fmt: skip
    raise ValueError(f"unknown sensor family {device.family!r}")


def nearest_mm(device: Device, mode: tuple[int, int]) -> float:
    """The nearest depth ``device`` measures at resolution ``mode``: its range's start, and for
    active stereo also ``f b / max_disparity_px`` at the mode's focal length (middle of its field
    of view): a D415 at 1280x720 sees nothing nearer than ~0.4 m, at 424x240 ~0.13 m."""
    lo = device.range_mm[0]
    if device.family == "active_stereo":
        fx = mode[0] / 2.0 / math.tan(math.radians(sum(device.hfov_deg) / 2.0) / 2.0)
        lo = max(lo, fx * device.baseline_mm / StereoConfig.max_disparity_px)
    return lo


def sample_sensor(
    rng: np.random.Generator,
    families: str | tuple[str, ...] = FAMILIES,
    device: str | None = None,
    mode: tuple[int, int] | None = None,
    reach_mm: tuple[float, float] | None = None,
) -> SensorDraw:
    """One frame's sensor, from ``rng`` alone: a family (uniform among ``families``), a device
    of it (uniform; or the one named), its camera (:func:`sample_camera`; ``mode`` fixes the
    resolution), a depth unit among the device's and the model's parameters
    (:func:`sample_config`).

    ``reach_mm``: ``(near, far)`` depths the sensor must measure (the hand's): the draw is then
    among the devices and resolutions that do (:func:`nearest_mm` to the range's end), as a user
    picks a sensor for the working distance (a Kinect v2 sees no hand at 300 mm), and among all
    where none does."""
    fams = as_families(families)
    if device is not None:
        dev = next((d for d in DEVICES if d.name == device), None)
        if dev is None:
            raise ValueError(f"unknown device {device!r}; choose among "
                             f"{[d.name for d in DEVICES]}")  # fmt: skip
    elif reach_mm is not None and mode is None:
        near, far = reach_mm
        fits = [(d, m) for d in DEVICES if d.family in fams for m in d.modes
                if nearest_mm(d, m) <= near and far <= d.range_mm[1]]  # fmt: skip
        if fits:
            fam_ok = [f for f in fams if any(d.family == f for d, _ in fits)]
            fam = fam_ok[int(rng.integers(len(fam_ok)))]
            devs = list(dict.fromkeys(d for d, _ in fits if d.family == fam))
            dev = devs[int(rng.integers(len(devs)))]
            modes = [m for d, m in fits if d is dev]
            mode = modes[int(rng.integers(len(modes)))]
        else:
            fam = fams[int(rng.integers(len(fams)))]
            devs = [d for d in DEVICES if d.family == fam]
            dev = devs[int(rng.integers(len(devs)))]
    else:
        fam = fams[int(rng.integers(len(fams)))]
        devs = [d for d in DEVICES if d.family == fam]
        dev = devs[int(rng.integers(len(devs)))]
    cam = sample_camera(rng, dev, mode)
    unit = dev.depth_units_mm[int(rng.integers(len(dev.depth_units_mm)))]
    return SensorDraw(dev.family, dev.name, cam, unit, sample_config(rng, dev, cam, unit))


def simulate(
    draw: SensorDraw,
    clean: np.ndarray,
    rng: np.random.Generator,
    normals: np.ndarray | None = None,
    camera: Camera | None = None,
    invalid_value: float = 0.0,
) -> np.ndarray:
    """Measure ``clean`` (``(H, W)`` mm, 0 background) with ``draw``'s model at ``camera``
    (default: the draw's own; its size must be ``clean``'s) -> ``(H, W)`` float32 mm, multiples
    of the draw's depth unit, ``invalid_value`` where invalid. ``normals``: ``(H, W, 3)``."""
    cam = draw.camera if camera is None else camera
    cam.check_depth(clean, hint="simulate at the camera the clean frame was rendered with")
    cfg = draw.config
    # (structured light rounds to whole mm itself, NoiseConfig.round_mm: Kinect v1's only unit)
    model = _MODELS[type(cfg)]
    return model(clean, cam, rng, cfg, normals, invalid_value)


def regrid(image: np.ndarray, src: Camera, dst: Camera, fill: float = 0.0) -> np.ndarray:
    """``image`` (``(H, W, ...)`` at ``src``) resampled to ``dst``'s pixel grid, nearest pixel.

    The cameras share the optical centre and axes, so a ray keeps its depth and the map is
    separable: column ``u`` of ``dst`` reads column ``rint((u - cx') fx / fx' + cx)`` of ``src``
    (rows alike). Pixels outside ``src``'s view take ``fill``."""
    src.check_depth(image[..., 0] if image.ndim == 3 else image, hint="regrid's source camera")
    cols = np.rint((np.arange(dst.width) - dst.cx) * (src.fx / dst.fx) + src.cx).astype(np.int64)
    rows = np.rint((np.arange(dst.height) - dst.cy) * (src.fy / dst.fy) + src.cy).astype(np.int64)
    okc = (cols >= 0) & (cols < src.width)
    okr = (rows >= 0) & (rows < src.height)
    out = np.full((dst.height, dst.width, *image.shape[2:]), fill, dtype=image.dtype)
    out[np.ix_(okr, okc)] = image[np.ix_(rows[okr], cols[okc])]
    return out


def simulate_at_sensor(
    draw: SensorDraw,
    clean: np.ndarray,
    camera: Camera,
    rng: np.random.Generator,
    normals: np.ndarray | None = None,
    invalid_value: float = 0.0,
) -> np.ndarray:
    """Measure ``clean`` (rendered at ``camera``) at the sensor's own pixel grid and return it
    at ``camera``'s: :func:`regrid` to ``draw.camera``, :func:`simulate` there, :func:`regrid`
    back. A coarser sensor's edges, holes and flying pixels come back as blocks of its pixels;
    what lies outside its field of view is invalid. ``(H, W)`` float32 mm."""
    c = regrid(np.asarray(clean, np.float32), camera, draw.camera)
    n = None if normals is None else regrid(np.asarray(normals, np.float32), camera, draw.camera)
    raw = simulate(draw, c, rng, n, draw.camera, invalid_value)
    return regrid(raw, draw.camera, camera, fill=invalid_value)

"""The kinematic hand frame generator for :func:`handvox.synth.job.synthesize`.

:func:`hand_frame_generator` makes each frame from a hand shape of :mod:`handvox.hand.shapes`, a
natural pose from :mod:`handvox.hand.poses` kept in view, the kinematics of
:mod:`handvox.hand.kinematics`, a scene of hand, forearm, body and wall
(:mod:`handvox.synth.primitives`) ray cast by :mod:`handvox.synth.raycast`
(:func:`render_hand_scene`) and the sensor noise of :mod:`handvox.synth.noise` (:func:`add_noise`);
:class:`HandSynthConfig` says what it draws. The parts are public so that
:mod:`handvox.synth.transfer` can put labelled real poses on the same hands and scenes. The job
runner (:mod:`handvox.synth.job`) knows nothing of hands; :mod:`handvox.synth.generators` names
this generator.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from handvox.camera import Camera
from handvox.config import to_dict
from handvox.hand.kinematics import HandBones, forward_kinematics, markers
from handvox.hand.poses import ArticulationConfig, PoseSamplerConfig, ViewConfig, sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape, sample_shape
from handvox.synth.frame import INVALID_DEPTH, SynthFrame, frame_key
from handvox.synth.noise import NoiseConfig, add_sensor_noise
from handvox.synth.primitives import PART_NAMES, hand_primitives, scene_primitives
from handvox.synth.raycast import render_depth
from handvox.synth.sensors import (
    as_families,
    max_range_mm,
    sample_sensor,
    simulate,
    simulate_at_sensor,
)

HAND_VERSION = 1
MARKER_SETS = ("canonical21", "nyu14", "icvl16", "msra21")
# The shape vector stored per frame: the HandBones fields flattened in this order (62 numbers).
SHAPE_LAYOUT = (("base", (5, 3)), ("length", (5, 3)), ("radius", (5, 4)), ("cmc", (4, 3)))
# Part ids of the "part" image: 0 = nothing rendered, k + 1 = PART_NAMES[k] of the primitives.
HAND_PARTS = ("none", *PART_NAMES)
# Flags of the "scene" extra array, in order.
SCENE_FLAGS = ("forearm", "body", "head", "wall")


@dataclass(frozen=True)
class HandSynthConfig:
    """What :func:`hand_frame_generator` draws (lengths in mm, angles in degrees).

    Attributes:
        camera: the depth camera rendered.
        view: :class:`handvox.hand.poses.ViewConfig` preset (``nyu``, ``icvl``, ``generic``) giving
            the hand's distance and orientation distribution; its camera is replaced by
            ``camera``.
        depth_mm: overrides the view preset's range of hand distances.
        articulation: :class:`handvox.hand.poses.ArticulationConfig` (None: its defaults).
        shapes: base hand shapes (:data:`handvox.hand.shapes.SHAPE_NAMES`) drawn uniformly.
        shape_variation: relative spread around the base shape (:func:`~handvox.hand.shapes.
            sample_shape`: overall size within 2 x, single bones within 1 x this).
        forearm_prob, body_prob, wall_prob: chance of each scene part; ``head_prob`` is the
            chance of a head given a body. The body (torso, neck, head) stands behind the hand;
            the wall is a plane facing the camera, tilted up to ``wall_tilt_deg``, at
            ``wall_depth_mm`` (moved back when it would cut the hand or body); where it lies
            beyond the noise model's ``max_depth_mm`` it is left out (NYU's frames show no
            background beyond 2 m either).
        noise: :class:`handvox.synth.noise.NoiseConfig` or preset name; invalid pixels are stored as
            0 whatever its ``invalid_value``. Used when ``sensor`` is None.
        sensor: None (``noise`` measures every frame: today's structured light), or a sensor
            family of :data:`handvox.synth.sensors.FAMILIES`, several, or ``"all"``: each frame
            then draws one family uniformly, one of its devices, the device's depth unit and
            the model's parameters within their cited ranges
            (:func:`handvox.synth.sensors.sample_sensor`). The wall is kept up to the farthest
            range of those devices.
        sensor_camera: with ``sensor``: measure at the drawn device's own camera (resolution
            320x240 .. 1280x720, field of view, principal point) and regrid to ``camera``
            (:func:`handvox.synth.sensors.simulate_at_sensor`); off: measure at ``camera``.
        margin_px, margin_mm: every joint must project at least ``margin_px`` plus
            ``margin_mm`` (seen at the joint's depth) inside the image; poses are redrawn
            until one does.
        forearm_max_toward_deg: poses whose forearm (leaving the wrist away from the middle
            finger) points more than this towards the camera, out of the image plane, are
            redrawn (None: no limit). Seen along the arm, the forearm hides the hand; people
            facing a sensor rarely hold their hand so. 40 degrees rejects ~5 % of the
            sampler's poses.
        max_tries: poses drawn for a frame before giving up (a configuration error).
        pose_block: frames made with :func:`~handvox.synth.job.frame_rng` take their shape and
            first pose from a batch drawn for the ``pose_block`` frames ``B * (i // B) ..`` from
            ``(seed, i // B)`` (sampling and kinematics batched, several times cheaper a frame:
            docs/benchmarks.md, "`handvox synth` end to end"; benchmarks/synth_speed.py times
            the stage); still a function of ``(seed, i)`` alone. 1: every frame draws its own.
        part_image: store the ``part`` image (uint8 ids into :data:`HAND_PARTS`).
    """

    camera: Camera = field(default_factory=lambda: Camera.preset("nyu"))
    view: str = "nyu"
    depth_mm: tuple[float, float] | None = None
    articulation: ArticulationConfig | None = None
    shapes: tuple[str, ...] | None = None
    shape_variation: float = 0.05
    forearm_prob: float = 1.0
    body_prob: float = 0.5
    head_prob: float = 0.8
    wall_prob: float = 0.5
    wall_depth_mm: tuple[float, float] = (1300.0, 2800.0)
    wall_tilt_deg: float = 25.0
    noise: NoiseConfig | str = "nyu"
    margin_px: float = 2.0
    margin_mm: float = 12.0
    forearm_max_toward_deg: float | None = 40.0
    max_tries: int = 50
    pose_block: int = 64
    part_image: bool = True
    sensor: str | tuple[str, ...] | None = None
    sensor_camera: bool = False

    def __post_init__(self) -> None:
        if self.sensor is not None:
            # a tuple, checked: the config keys a cache and meta.json
            object.__setattr__(self, "sensor", as_families(self.sensor))
        elif self.sensor_camera:
            raise ValueError("sensor_camera needs a sensor family (sensor=...)")

    @classmethod
    def for_camera(cls, camera: Camera, **kwargs) -> HandSynthConfig:
        """Defaults suited to ``camera``: a 640x480 Kinect-like camera gets the NYU view and
        noise; a smaller one the close ICVL range with Kinect noise allowed from 150 mm (the
        noise model describes structured light only, see :mod:`handvox.synth.noise`)."""
        if camera.width >= 640:
            return cls(camera=camera, **kwargs)
        return cls(**{"camera": camera, "view": "icvl",
                      "noise": NoiseConfig(min_depth_mm=150.0), **kwargs})  # fmt: skip

    def to_dict(self) -> dict:
        """JSON-ready description (for meta.json): :func:`handvox.config.to_dict`, less the
        sensor fields while they are off, so that datasets made before they existed resume."""
        d = to_dict(self)
        if self.sensor is None:
            del d["sensor"], d["sensor_camera"]
        return d


def bones_to_vector(bones: HandBones) -> np.ndarray:
    """:class:`~handvox.hand.kinematics.HandBones` of batch ``B`` -> ``(B, 62)`` float32
    (:data:`SHAPE_LAYOUT`)."""
    parts = [
        getattr(bones, name).detach().reshape(bones.batch_size, -1) for name, _ in SHAPE_LAYOUT
    ]
    return np.concatenate([p.cpu().numpy() for p in parts], axis=1).astype(np.float32)


def bones_from_vector(vec: np.ndarray) -> HandBones:
    """``(62,)`` or ``(B, 62)`` shape vectors -> :class:`~handvox.hand.kinematics.HandBones`."""
    v = torch.as_tensor(np.atleast_2d(np.asarray(vec, np.float32)))
    out, k = {}, 0
    for name, shape in SHAPE_LAYOUT:
        n = shape[0] * shape[1]
        out[name] = v[:, k : k + n].reshape(-1, *shape)
        k += n
    if v.shape[1] != k:
        raise ValueError(f"shape vector: expected {k} numbers, got {v.shape[1]}")
    return HandBones(**out)


def joint_radii(bones: HandBones) -> np.ndarray:
    """``(21,)`` finger radius at each canonical joint (mm) of a batch-1 hand, for
    :func:`handvox.synth.primitives.hand_primitives`.

    A joint takes the mean of the bones meeting there (a fingertip 0.92 of its distal phalanx,
    a finger MCP its proximal phalanx's, the thumb CMC its metacarpal's thenar radius); the
    wrist entry (the forearm's half-thickness) is 20 mm scaled with the hand's thickness.
    With the average adult this reproduces ``primitives.DEFAULT_RADII`` within 1 mm.
    """
    r = bones.radius[0].detach().double().cpu().numpy()  # (5, 4) per chain: bone 0..3
    out = np.empty(21)
    out[0] = 20.0 * thickness_scale(bones)
    for c in range(5):
        b = 1 + 4 * c
        out[b] = r[c, 0] if c == 0 else 1.05 * r[c, 1]
        out[b + 1] = 0.5 * (r[c, 1] + r[c, 2])
        out[b + 2] = 0.5 * (r[c, 2] + r[c, 3])
        out[b + 3] = 0.92 * r[c, 3]
    return out


@functools.cache
def _average_radius() -> float:
    return float(base_shape("average_adult").radius.mean())


def thickness_scale(bones: HandBones) -> float:
    """Mean bone radius of a batch-1 hand relative to the average adult's."""
    return float(bones.radius[0].mean()) / _average_radius()


def in_view(points: np.ndarray, camera: Camera, margin_px: float, margin_mm: float) -> np.ndarray:
    """Whether all ``(..., M, 3)`` points project inside the image with a margin of
    ``margin_px + margin_mm * f / z`` px (and lie in front of the camera) -> ``(...)`` bool."""
    z = points[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = camera.fx * points[..., 0] / z + camera.cx
        v = camera.fy * points[..., 1] / z + camera.cy
        m = margin_px + margin_mm * camera.fx / z
        ok = (z > 1.0) & (u >= m) & (u <= camera.width - 1 - m)
        ok &= (v >= m) & (v <= camera.height - 1 - m)
    return ok.all(axis=-1)


@dataclass
class Scene:
    """A rendered scene (noise-free).

    Attributes:
        clean: ``(H, W)`` float32 depth, mm; 0 where nothing was rendered.
        normals: ``(H, W, 3)`` float32 unit normals (for the noise model).
        part: ``(H, W)`` uint8 ids into :data:`HAND_PARTS`, or None.
        flags: ``(4,)`` uint8, :data:`SCENE_FLAGS`.
    """

    clean: np.ndarray
    normals: np.ndarray
    part: np.ndarray | None
    flags: np.ndarray


def render_hand_scene(
    joints21: np.ndarray, bones, rng: np.random.Generator, config: HandSynthConfig
) -> Scene:
    """Render a posed hand (``(21, 3)`` canonical joints, camera frame; ``bones`` its
    HandBones of batch 1) with the optional forearm, body and wall of ``config``.

    Randomness: ``rng`` only. Rendering runs in the calling thread (``threads=1``): the job
    runner's parallelism is one process per core.
    """
    cam = config.camera
    j = np.asarray(joints21, np.float64)
    s_t = thickness_scale(bones)
    u = rng.random(4)  # the scene's choices, in one draw
    forearm = bool(u[0] < config.forearm_prob)
    body = bool(u[1] < config.body_prob)
    head = body and bool(u[2] < config.head_prob)
    wall = bool(u[3] < config.wall_prob)
    prims = hand_primitives(j, joint_radii(bones), palm_thickness=28.0 * s_t, forearm=forearm,
                            forearm_length=rng.uniform(160.0, 260.0))  # fmt: skip
    centre = j.mean(axis=0)
    far = j[:, 2].max() + 60.0  # behind the hand (and its thickness)
    if body:
        # A person behind the raised hand (NYU's subjects hold it ~250 mm before the chest):
        # shoulders from a little above to well below the hand, torso reaching down to the
        # hips, usually past the image's bottom edge.
        thick, height = rng.uniform(180.0, 260.0), rng.uniform(550.0, 800.0)
        offset = (rng.uniform(-250.0, 250.0), rng.uniform(-50.0, 250.0) + height / 2,
                  max(rng.uniform(200.0, 450.0), far - centre[2] + thick / 2))  # fmt: skip
        prims = prims + scene_primitives(
            centre, body_offset=offset, shoulder_width=rng.uniform(340.0, 460.0),
            torso_height=height, torso_thickness=thick, head=head, wall_depth=None,
        )  # fmt: skip
        far = max(far, centre[2] + offset[2] + thick / 2 + 150.0)
    r = render_depth(prims, cam, return_ids=True, return_normals=True, threads=1)
    depth, ids, normals = r.depth, r.ids, r.normals
    if wall:
        # A plane filled in analytically: cheaper than ray casting it for every pixel.
        tilt = np.radians(config.wall_tilt_deg) * rng.uniform(-1.0, 1.0, 2)
        n = np.array([np.sin(tilt[0]), np.sin(tilt[1]), -1.0])
        n /= np.linalg.norm(n)
        d0 = max(rng.uniform(*config.wall_depth_mm), far)
        rx = (np.arange(cam.width, dtype=np.float32) - np.float32(cam.cx)) / np.float32(cam.fx)
        ry = (np.arange(cam.height, dtype=np.float32) - np.float32(cam.cy)) / np.float32(cam.fy)
        den = np.float32(n[0]) * rx[None, :] + np.float32(n[1]) * ry[:, None] + np.float32(n[2])
        wall_z = np.float32(n[2] * d0) / den
        # Beyond the sensor's range the wall is no more seen than nothing: leave it out, so
        # the clean depth is what a noise-free sensor of that range measures (and a far wall
        # costs nothing to noise and store).
        nohit = (ids < 0) & (wall_z <= _max_depth_mm(config))
        ids[(ids < 0) & ~nohit] = -2  # not the wall either
        np.copyto(depth, wall_z, where=nohit)
        # Per channel: faster than broadcasting the mask over (H, W, 3) (an ad-hoc timing;
        # docs/benchmarks.md, "`handvox synth` end to end").
        for k in range(3):
            np.copyto(normals[..., k], np.float32(n[k]), where=nohit)
    part = None
    if config.part_image:
        lut = np.zeros(len(prims) + 2, np.uint8)  # ids -1 (wall, if any) and -2 (nothing)
        lut[:-2] = prims.part + 1
        lut[-1] = HAND_PARTS.index("background") if wall else 0
        if wall:
            part = np.take(lut, ids)
        else:  # only the rendered box: a hand covers a few % of the frame
            part = np.zeros(ids.shape, np.uint8)
            hit = ids >= 0
            rows, cols = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
            if rows.size:
                box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
                part[box] = np.take(lut, ids[box])
    return Scene(depth, normals, part, np.array([forearm, body, head, wall], np.uint8))


def add_noise(scene: Scene, rng: np.random.Generator, config: HandSynthConfig) -> np.ndarray:
    """The scene's raw depth, invalid pixels 0 (:data:`INVALID_DEPTH`): with ``config.sensor``
    None, :func:`handvox.synth.noise.add_sensor_noise` with ``config.noise``; else a sensor drawn
    from ``rng`` (:func:`handvox.synth.sensors.sample_sensor`) measures it."""
    if config.sensor is None:
        return add_sensor_noise(scene.clean, config.camera, rng, _noise_config(config),
                                normals=scene.normals, invalid_value=INVALID_DEPTH)  # fmt: skip
    draw = sample_sensor(rng, config.sensor)
    if config.sensor_camera:
        return simulate_at_sensor(draw, scene.clean, config.camera, rng, scene.normals,
                                  INVALID_DEPTH)  # fmt: skip
    return simulate(draw, scene.clean, rng, scene.normals, config.camera, INVALID_DEPTH)


def _max_depth_mm(config: HandSynthConfig) -> float:
    """The farthest depth the frame's sensor may measure (what is rendered beyond is left out)."""
    if config.sensor is None:
        return _noise_config(config).max_depth_mm
    return max_range_mm(config.sensor)


def _noise_config(config: HandSynthConfig) -> NoiseConfig:
    return (
        config.noise if isinstance(config.noise, NoiseConfig) else NoiseConfig.preset(config.noise)
    )


def pose_sampler_config(config: HandSynthConfig) -> PoseSamplerConfig:
    """The pose sampler's configuration for ``config``: its articulation and its view preset
    with ``config``'s camera and depth range."""
    view = ViewConfig.preset(config.view)
    view = replace(view, camera=config.camera, depth_mm=config.depth_mm or view.depth_mm)
    return PoseSamplerConfig(articulation=config.articulation or ArticulationConfig(), view=view)


@dataclass
class HandSample:
    """A hand drawn for one frame: shape name, bones (batch 1), pose ``(30,)`` and joints of
    every set in :data:`MARKER_SETS` (``(J, 3)`` float32, camera frame, mm)."""

    shape_id: str
    bones: HandBones
    pose: np.ndarray
    joints: dict[str, np.ndarray]


def check_poses(poses, bones, config: HandSynthConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Joints ``(n, J, 3)`` per :data:`MARKER_SETS` of ``(n, 30)`` poses on ``bones`` (batch 1
    or n), and whether each keeps every joint in view (:func:`in_view`) and its forearm within
    ``config.forearm_max_toward_deg``."""
    fk = forward_kinematics(poses, bones)
    sets = {name: markers(fk, name).numpy() for name in MARKER_SETS}
    ok = in_view(np.concatenate(list(sets.values()), axis=1), config.camera,
                 config.margin_px, config.margin_mm)  # fmt: skip
    if config.forearm_max_toward_deg is not None:
        j = sets["canonical21"]
        arm = j[:, 0] - j[:, 9]  # as handvox.synth.primitives.hand_primitives lays the forearm
        limit = -np.sin(np.radians(config.forearm_max_toward_deg))
        ok &= arm[:, 2] >= limit * np.linalg.norm(arm, axis=1)
    return sets, ok


def pose_in_view(sample_poses, bones, config: HandSynthConfig, what: str):
    """Draw poses with ``sample_poses(1) -> (1, 30)`` until one passes :func:`check_poses`;
    returns its pose ``(30,)`` and joints ``(J, 3)`` per :data:`MARKER_SETS`."""
    for _ in range(config.max_tries):
        poses = sample_poses(1)
        sets, ok = check_poses(poses, bones, config)
        if ok[0]:
            joints = {name: np.ascontiguousarray(v[0], np.float32) for name, v in sets.items()}
            return poses[0].numpy().astype(np.float32), joints
    raise ValueError(
        f"{what}: no pose of {config.max_tries} drawn keeps the hand in view (or its forearm "
        "out of the way); check the camera, view preset and depth range"
    )


@dataclass
class _HandBlock:
    """Shapes and poses drawn together for ``pose_block`` consecutive frames."""

    names: list[str]
    bones: HandBones
    poses: np.ndarray
    joints: dict[str, np.ndarray]
    ok: np.ndarray


_BLOCKS: OrderedDict = OrderedDict()  # (config, seed, block) -> _HandBlock, per process
_BLOCK_TAG = 0x5EED


def _hand_block(config: HandSynthConfig, seed: int, block: int) -> _HandBlock:
    key = (config, seed, block)
    if key in _BLOCKS:
        return _BLOCKS[key]
    n = config.pose_block
    rng = np.random.default_rng([seed, block, _BLOCK_TAG])
    gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
    names = config.shapes or SHAPE_NAMES
    picks = [names[k] for k in rng.integers(len(names), size=n)]
    base = HandBones.cat([base_shape(name) for name in picks])
    bones = sample_shape(gen, n, base, config.shape_variation)
    poses = sample_poses(gen, n, pose_sampler_config(config))
    sets, ok = check_poses(poses, bones, config)
    _BLOCKS[key] = _HandBlock(picks, bones, poses.numpy().astype(np.float32), sets, ok)
    while len(_BLOCKS) > 2:  # a worker walks through its chunks' blocks in order
        _BLOCKS.popitem(last=False)
    return _BLOCKS[key]


@dataclass(frozen=True)
class HandFrameGenerator:
    """``make_frame(index, rng) -> SynthFrame`` of :func:`hand_frame_generator` (picklable)."""

    config: HandSynthConfig

    def sample_hand(self, index: int, rng: np.random.Generator) -> HandSample:
        """Shape, pose in view and joints of frame ``index`` (the first draws from ``rng``)."""
        cfg = self.config
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        names = cfg.shapes or SHAPE_NAMES
        pick = names[int(rng.integers(len(names)))]
        key = frame_key(rng)
        if cfg.pose_block > 1 and key is not None and key[1] == index:
            blk = _hand_block(cfg, key[0], index // cfg.pose_block)
            k = index % cfg.pose_block
            if blk.ok[k]:
                joints = {name: np.ascontiguousarray(v[k], np.float32)
                          for name, v in blk.joints.items()}  # fmt: skip
                return HandSample(blk.names[k], blk.bones[k], blk.poses[k], joints)
            shape_id, bones = blk.names[k], blk.bones[k]  # keep the shape, redraw the pose
        else:
            shape_id, bones = pick, sample_shape(gen, 1, pick, cfg.shape_variation)
        pose_cfg = pose_sampler_config(cfg)
        pose, joints = pose_in_view(lambda n: sample_poses(gen, n, pose_cfg), bones, cfg,
                                    f"frame {index}")  # fmt: skip
        return HandSample(shape_id, bones, pose, joints)

    def __call__(self, index: int, rng: np.random.Generator) -> SynthFrame:
        hand = self.sample_hand(index, rng)
        scene = render_hand_scene(hand.joints["canonical21"], hand.bones, rng, self.config)
        return make_frame(hand, scene, add_noise(scene, rng, self.config))


def make_frame(hand: HandSample, scene: Scene, raw: np.ndarray, **extra) -> SynthFrame:
    """A :class:`SynthFrame` from its parts; ``extra`` adds label arrays."""
    extra = {"scene": scene.flags, **extra}
    if scene.part is not None:
        extra["part"] = scene.part
    return SynthFrame(
        raw=raw,
        clean=scene.clean,
        joints_xyz=hand.joints,
        pose=np.asarray(hand.pose, np.float32),
        shape=bones_to_vector(hand.bones)[0],
        shape_id=hand.shape_id,
        extra=extra,
    )


def hand_frame_generator(config: HandSynthConfig | None = None) -> HandFrameGenerator:
    """The real generator: hand shape -> natural pose in view -> kinematics -> exact depth
    rendering of hand, forearm, body and wall -> sensor noise (structured light, or a sensor
    family drawn per frame: ``config.sensor``).

    Each frame draws a base shape (its name is the frame's ``shape_id``) with continuous
    variation (:func:`handvox.hand.shapes.sample_shape`; ``shape`` holds the bones,
    :data:`SHAPE_LAYOUT`), a pose from :func:`handvox.hand.poses.sample_poses` (redrawn until every
    joint projects inside the image), the joints of :data:`MARKER_SETS`, the scene of
    :func:`render_hand_scene` and its noise. ``extra``: ``part`` (``(H, W)`` uint8 ids into
    :data:`HAND_PARTS`, unless ``config.part_image`` is off) and ``scene`` (``(4,)`` uint8
    flags, :data:`SCENE_FLAGS`). All randomness comes from the frame's ``rng``.

    Args:
        config: :class:`HandSynthConfig` (default: the NYU camera's).
    Returns:
        A picklable :class:`HandFrameGenerator`, for ``--workers``.
    """
    return HandFrameGenerator(config or HandSynthConfig())

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

What users' cameras see besides a bare hand, each off by default: the LibHand mesh hand
(:mod:`handvox.synth.skinned`) instead of the capsule hand (``mesh_prob``), an object held in the
hand, the fingers closed onto it by :mod:`handvox.hand.grasp` (``object_prob``), an object near
the hand (``near_object_prob``), a second, unlabelled hand (``second_hand_prob``); and the views
of :class:`handvox.hand.poses.ViewConfig` beyond third person, ``egocentric`` and ``desk``, whose
frames follow :data:`VIEW_RULES` (what must stay in the image, what the scene holds).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from handvox.camera import Camera
from handvox.config import to_dict
from handvox.geometry import axis_angle_to_matrix, segment_distance
from handvox.hand.grasp import CLOSING_DOFS, close_grasp, place_on_palm
from handvox.hand.kinematics import HandBones, dof_index, forward_kinematics, markers
from handvox.hand.poses import ArticulationConfig, PoseSamplerConfig, ViewConfig, sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape, sample_shape
from handvox.synth.frame import INVALID_DEPTH, SynthFrame, frame_key
from handvox.synth.mesh import rasterize_depth
from handvox.synth.noise import NoiseConfig, add_sensor_noise
from handvox.synth.primitives import (
    EXTRA_PART_NAMES,
    FOREARM,
    OBJECT,
    OTHER_HAND,
    PART_NAMES,
    Primitives,
    forearm_primitives,
    hand_primitives,
    scene_primitives,
)
from handvox.synth.raycast import render_depth
from handvox.synth.sensors import (
    as_families,
    max_range_mm,
    sample_sensor,
    simulate,
    simulate_at_sensor,
)
from handvox.synth.skinned import libhand_hand

HAND_VERSION = 1
MARKER_SETS = ("canonical21", "nyu14", "icvl16", "msra21")
# The shape vector stored per frame: the HandBones fields flattened in this order (62 numbers).
SHAPE_LAYOUT = (("base", (5, 3)), ("length", (5, 3)), ("radius", (5, 4)), ("cmc", (4, 3)))
# Part ids of the "part" image: 0 = nothing rendered, k + 1 = PART_NAMES[k] of the primitives.
HAND_PARTS = ("none", *PART_NAMES)
# Flags of the "scene" extra array, in order.
SCENE_FLAGS = ("forearm", "body", "head", "wall")
# The part ids of configurations with objects or a second hand (:func:`part_names`): the ids of
# HAND_PARTS, then "object" and "other_hand" (apart, so other datasets keep their part list).
SCENE_PARTS = (*HAND_PARTS, *EXTRA_PART_NAMES)
# Flags of the "content" extra array (configurations with any of the four options on), in order.
CONTENT_FLAGS = ("mesh", "object", "near_object", "second_hand")
# Objects a hand holds (or that lie near it): capsules (cylinders with rounded ends: cans,
# bottles, tool handles) and spheres, drawn with these chances and sizes (mm): the graspable range
# of everyday objects, from thin handles (15-30 mm across) through cans and bottles (20-80 mm)
# to balls (40-90 mm).
OBJECT_KINDS = ("cylinder", "sphere", "handle")
OBJECT_KIND_PROBS = (0.45, 0.25, 0.30)
OBJECT_RADIUS_MM = ((10.0, 40.0), (20.0, 45.0), (7.5, 15.0))
OBJECT_LENGTH_MM = ((60.0, 200.0), (0.0, 0.0), (80.0, 150.0))


@dataclass(frozen=True)
class ViewRules:
    """What frames of a view keep in the image and what their scene holds.

    Attributes:
        all_joints: every joint of every marker set projects inside the image with the margins
            (``margin_px``, ``margin_mm``): a sensor facing the person, or above a desk, sees the
            whole hand. Off: only the wrist must, and ``min_joints`` of the 21 canonical joints
            must project inside the image; at arm's length before a head-mounted camera fingers
            leave the image, the wrist, where the arm enters it, does not.
        min_joints: see ``all_joints``.
        forearm_check: poses whose forearm points towards the camera are redrawn
            (``forearm_max_toward_deg``). Off for a head-mounted camera, which looks down the arm.
        forearm_to_border: the forearm is lengthened until it leaves the image: seen from the
            head or from above a desk the arm runs on out of the image, where from a sensor
            facing the person it recedes behind the hand.
        body: a person may stand behind the hand (``body_prob``); elsewhere the person is behind
            the camera.
        table: the background plane is a table under the hand, in every frame, instead of the
            wall of ``wall_prob``.
        min_depth_mm: the nearest depth the structured-light noise model measures in this view
            (None: its own); a hand 200 mm before a head-mounted camera needs a near-range
            sensor, as the small camera of :meth:`HandSynthConfig.for_camera` does.
        elbow_mm: None (the forearm continues the hand's proximal axis), or where the elbow is
            drawn, uniformly in a box of the camera frame: ``x`` ranges on the hand's side
            (``+x`` for the right hand), then ``y`` (below the camera) and ``z``; the forearm
            points from the wrist towards it, bent at the wrist by 70 degrees at most (the
            wrist's range). Before a head-mounted camera the hand's proximal axis points at the
            camera, while the elbow hangs below and beside it: the arm enters from the image's
            lower edge, mostly clear of the hand.
        hand_up_deg: None, or poses whose hand (wrist to middle MCP, in the image) turns more
            than this from the image's up direction are redrawn: the arm comes from below, and a
            hand hanging down the image would lie behind it.
    """

    all_joints: bool = True
    min_joints: int = 21
    forearm_check: bool = True
    forearm_to_border: bool = False
    body: bool = True
    table: bool = False
    min_depth_mm: float | None = None
    elbow_mm: tuple[tuple[float, float], ...] | None = None
    hand_up_deg: float | None = None


THIRD_PERSON = ViewRules()
# Views whose frames differ from third person's (the others: nyu, icvl, generic).
VIEW_RULES: dict[str, ViewRules] = {
    "egocentric": ViewRules(all_joints=False, min_joints=16, forearm_check=False,
                            forearm_to_border=True, body=False, min_depth_mm=150.0,
                            elbow_mm=((100.0, 300.0), (250.0, 450.0), (50.0, 250.0)),
                            hand_up_deg=100.0),
    "desk": ViewRules(forearm_to_border=True, body=False, table=True, min_depth_mm=150.0),
}  # fmt: skip


def view_rules(view: str) -> ViewRules:
    """:data:`VIEW_RULES` of a ViewConfig preset name (third person's for the others)."""
    return VIEW_RULES.get(view.lower(), THIRD_PERSON)


@dataclass(frozen=True)
class HandSynthConfig:
    """What :func:`hand_frame_generator` draws (lengths in mm, angles in degrees).

    Attributes:
        camera: the depth camera rendered.
        view: :class:`handvox.hand.poses.ViewConfig` preset (``nyu``, ``icvl``, ``generic``;
            ``egocentric``, ``desk``) giving the hand's distance and orientation distribution;
            its camera is replaced by ``camera``. :data:`VIEW_RULES` says how the egocentric and
            desk frames differ (hands cut by the image border, forearms to the border, a table).
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
            until one does. In views whose :class:`ViewRules` allow the hand to be cut by the
            border (egocentric), the wrist must, and most joints must project inside.
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
        part_image: store the ``part`` image (uint8 ids into :data:`HAND_PARTS`, or
            :data:`SCENE_PARTS` with objects or a second hand: :func:`part_names`).
        mesh_prob: chance that a frame's hand is the LibHand mesh
            (:func:`handvox.synth.skinned.libhand_hand`, skinned to the frame's pose and bones,
            rasterised and composited with the ray-cast scene by depth) instead of the capsule
            hand. Labels are the same forward kinematics either way; a capsule forearm continues
            the mesh's forearm stub.
        object_prob: chance that the hand holds an object (:data:`OBJECT_KINDS`): the object is
            laid on the open pre-shape of the frame's hand (:func:`handvox.hand.grasp.
            place_on_palm`) and the fingers closed onto it (:func:`~handvox.hand.grasp.
            close_grasp`), which replaces the sampled articulation's closing joints; the view
            sampler's placement stays, the hand is checked in view again.
        near_object_prob: chance of an object near the hand but not in it (beside the forearm,
            in front of or behind the hand; on the table in the desk view), 5-200 mm from it.
        second_hand_prob: chance of a second hand (capsule or mesh as ``mesh_prob`` draws; a
            left hand three times in four), posed by the view sampler and moved beside the
            hand or before / behind it, not touching it. Its joints are not labels (stored
            apart, extra ``second_hand``).

    With any of the last four on, frames also hold the extras ``content`` (``(4,)`` uint8,
    :data:`CONTENT_FLAGS`), ``objects`` (``(2, 7)`` float32: the held and the near object as
    capsule ends ``a``, ``b`` and radius, camera frame, mm; zeros where there is none) and
    ``second_hand`` (``(21, 3)`` float32 canonical joints, zeros where there is none).
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
    mesh_prob: float = 0.0
    object_prob: float = 0.0
    near_object_prob: float = 0.0
    second_hand_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in _CONTENT_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        ViewConfig.preset(self.view)  # an unknown view fails here, not in a worker
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
        sensor fields while they are off and the scene-content chances while they are 0, so
        that datasets made before they existed resume."""
        d = to_dict(self)
        if self.sensor is None:
            del d["sensor"], d["sensor_camera"]
        for name in _CONTENT_FIELDS:
            if d[name] == 0.0:
                del d[name]
        return d


_CONTENT_FIELDS = ("mesh_prob", "object_prob", "near_object_prob", "second_hand_prob")


def content_on(config: HandSynthConfig) -> bool:
    """Whether frames of ``config`` may hold a mesh hand, objects or a second hand (and so the
    extras ``content``, ``objects`` and ``second_hand``)."""
    return any(getattr(config, name) > 0.0 for name in _CONTENT_FIELDS)


def part_names(config: HandSynthConfig) -> tuple[str, ...]:
    """What the ids of ``config``'s ``part`` image name: :data:`SCENE_PARTS` when its frames may
    hold objects or a second hand, else :data:`HAND_PARTS` (as every dataset before them)."""
    extra = config.object_prob, config.near_object_prob, config.second_hand_prob
    return SCENE_PARTS if max(extra) > 0.0 else HAND_PARTS


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
        part: ``(H, W)`` uint8 ids into :data:`HAND_PARTS` (:func:`part_names`), or None.
        flags: ``(4,)`` uint8, :data:`SCENE_FLAGS`.
        extra: further label arrays of the frame: ``content``, ``objects`` and ``second_hand``
            when the configuration's content options are on (:class:`HandSynthConfig`).
    """

    clean: np.ndarray
    normals: np.ndarray
    part: np.ndarray | None
    flags: np.ndarray
    extra: dict = field(default_factory=dict)


def render_hand_scene(
    joints21: np.ndarray,
    bones,
    rng: np.random.Generator,
    config: HandSynthConfig,
    pose: np.ndarray | None = None,
    held: HeldObject | None = None,
) -> Scene:
    """Render a posed hand (``(21, 3)`` canonical joints, camera frame; ``bones`` its
    HandBones of batch 1) with the optional forearm, body and wall of ``config``; with its
    content options also the mesh hand (which needs ``pose``, the ``(30,)`` pose of the joints),
    the object ``held`` in the hand, an object near it and a second hand; in the egocentric and
    desk views as :data:`VIEW_RULES` say.

    Randomness: ``rng`` only. Rendering runs in the calling thread (``threads=1``): the job
    runner's parallelism is one process per core.
    """
    cam = config.camera
    j = np.asarray(joints21, np.float64)
    s_t = thickness_scale(bones)
    rules = view_rules(config.view)
    u = rng.random(4)  # the scene's choices, in one draw
    forearm = bool(u[0] < config.forearm_prob)
    body = rules.body and bool(u[1] < config.body_prob)
    head = body and bool(u[2] < config.head_prob)
    wall = rules.table or bool(u[3] < config.wall_prob)
    length = rng.uniform(160.0, 260.0)
    content = None
    if content_on(config) or rules is not THIRD_PERSON or held is not None:
        content = _build_content(j, bones, forearm, length, rng, config, rules, pose, held)
        prims, far = content.prims, content.far
    else:
        prims = hand_primitives(j, joint_radii(bones), palm_thickness=28.0 * s_t,
                                forearm=forearm, forearm_length=length)  # fmt: skip
        far = j[:, 2].max() + 60.0  # behind the hand (and its thickness)
    centre = j.mean(axis=0)
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
    mesh_part = None
    if content is not None and content.meshes:
        mesh_part = _composite_meshes(content.meshes, depth, ids, normals, cam)
    if wall:
        # A plane filled in analytically: cheaper than ray casting it for every pixel.
        if content is not None and content.table is not None:
            n, d0 = content.table  # placed with the scene's content, under everything
        else:
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
        # costs nothing to noise and store). Mesh pixels (-3) are taken.
        nohit = (ids == -1) & (wall_z <= _max_depth_mm(config))
        ids[(ids == -1) & ~nohit] = -2  # not the wall either
        np.copyto(depth, wall_z, where=nohit)
        # Per channel: faster than broadcasting the mask over (H, W, 3) (an ad-hoc timing;
        # docs/benchmarks.md, "`handvox synth` end to end").
        for k in range(3):
            np.copyto(normals[..., k], np.float32(n[k]), where=nohit)
    part = None
    if config.part_image and content is not None:
        part = np.zeros(ids.shape, np.uint8)
        hit = ids >= 0
        part[hit] = prims.part[ids[hit]] + 1
        if mesh_part is not None:
            mesh = ids == -3
            part[mesh] = mesh_part[mesh]
        if wall:
            part[ids == -1] = HAND_PARTS.index("background")
    elif config.part_image:
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
    extra = content.extra if content is not None else {}
    return Scene(depth, normals, part, np.array([forearm, body, head, wall], np.uint8), extra)


# --- what else a scene holds: the mesh hand, objects, a second hand, the views' arms and table --

Capsules = tuple[np.ndarray, np.ndarray, np.ndarray]  # ends (m, 3), (m, 3) and radii (m,), mm


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _caps(*items: Capsules) -> Capsules:
    """Capsule sets joined into one."""
    return tuple(np.concatenate([np.reshape(c[k], (-1, 3) if k < 2 else (-1,)) for c in items])
                 for k in range(3))  # fmt: skip


def _gap(a: Capsules, b: Capsules) -> float:
    """Smallest gap (mm; negative: overlap) between two capsule sets."""
    p1, q1, r1 = (torch.from_numpy(np.asarray(x, np.float64)) for x in a)
    p2, q2, r2 = (torch.from_numpy(np.asarray(x, np.float64)) for x in b)
    d = segment_distance(p1[:, None], q1[:, None], p2[None], q2[None])
    return float((d - r1[:, None] - r2[None]).min())


def _hand_capsules(j: np.ndarray, radii: np.ndarray, palm_radius: float) -> Capsules:
    """A hand's bones as capsules (for the gaps between things placed in a scene): the palm as
    wrist-to-base bones and the knuckle line of ``palm_radius``, the fingers' bones with the
    radius at their distal joint."""
    first = j[[1, 5, 9, 13, 17]]
    chains = j[1:].reshape(5, 4, 3)
    p = np.concatenate([np.repeat(j[:1], 5, 0), j[[5]], chains[:, :3].reshape(-1, 3)])
    q = np.concatenate([first, j[[17]], chains[:, 1:].reshape(-1, 3)])
    r = np.concatenate([np.full(6, palm_radius), radii[1:].reshape(5, 4)[:, 1:].reshape(-1)])
    return p, q, r


def _sight_blocked(caps: Capsules, target: np.ndarray) -> bool:
    """Whether capsules cross the line of sight from the camera to ``target``."""
    return _gap(caps, (np.zeros((1, 3)), target[None], np.zeros(1))) < 0.0


@dataclass
class _Limb:
    """A forearm: :func:`handvox.synth.primitives.forearm_primitives` from ``start`` to ``end``
    with ``lateral``, ``half_width`` and ``radius`` (at start and end)."""

    start: np.ndarray
    end: np.ndarray
    lateral: np.ndarray
    half_width: tuple[float, float]
    radius: tuple[float, float]

    @property
    def axis(self) -> np.ndarray:
        return _unit(self.end - self.start)

    def primitives(self, part: int) -> Primitives:
        return forearm_primitives(self.start, self.end, self.lateral, self.half_width,
                                  self.radius, part)  # fmt: skip

    def capsule(self) -> Capsules:
        """Capsules around it: its two rims and its axis, each of its largest radius (the round
        quad is the hull of its four corner spheres; this covers it)."""
        axis = self.axis
        lat = _unit(self.lateral - axis * (self.lateral @ axis))
        a = self.start + np.outer([1.0, -1.0, 0.0], lat * self.half_width[0])
        b = self.end + np.outer([1.0, -1.0, 0.0], lat * self.half_width[1])
        return a, b, np.full(3, max(self.radius))

    def moved(self, move, linear: np.ndarray) -> _Limb:
        """Under the point map ``move`` whose linear part is ``linear``."""
        return _Limb(move(self.start), move(self.end), linear @ self.lateral, self.half_width,
                     self.radius)  # fmt: skip

    def turned(self, direction: np.ndarray, limit_deg: float) -> _Limb:
        """Turned about its start towards ``direction``, by ``limit_deg`` at most."""
        axis, d = self.axis, _unit(np.asarray(direction, float))
        k = np.cross(axis, d)
        if np.linalg.norm(k) < 1e-9:
            return self
        angle = min(np.arccos(np.clip(axis @ d, -1.0, 1.0)), np.radians(limit_deg))
        rot = axis_angle_to_matrix(torch.from_numpy(_unit(k) * angle)).numpy()
        start = self.start
        return _Limb(start, start + rot @ (self.end - start), rot @ self.lateral,
                     self.half_width, self.radius)  # fmt: skip

    def to_border(self, camera: Camera, limit_mm: float = 700.0) -> _Limb:
        """Lengthened along its axis until its end lies wholly outside the image (at most
        ``limit_mm`` from its start: the reach of an arm), its surface never nearer the camera
        than 100 mm (a head-mounted camera's distance to the shoulder and upper arm)."""
        axis = self.axis
        bound = max(self.half_width) + max(self.radius)
        t = np.arange(0.0, limit_mm + 2.5, 5.0)
        p = self.start + t[:, None] * axis
        z = p[:, 2]
        near = (z < bound + 100.0) & (z < z[0] - 1.0)  # a wrist that near may keep its depth
        with np.errstate(divide="ignore", invalid="ignore"):
            u = camera.fx * p[:, 0] / z + camera.cx
            v = camera.fy * p[:, 1] / z + camera.cy
            r = max(camera.fx, camera.fy) * bound / z
            out = (u + r < 0) | (u - r > camera.width - 1) | (v + r < 0)
            out |= v - r > camera.height - 1
        stop = near | out
        k = int(np.argmax(stop)) if stop.any() else len(t) - 1
        length = max(float(np.linalg.norm(self.end - self.start)), float(t[k]))
        if near.any():
            length = max(min(length, float(t[int(np.argmax(near))])), 40.0)
        return _Limb(self.start, self.start + axis * length, self.lateral, self.half_width,
                     self.radius)  # fmt: skip


def _view_arm(arm: _Limb, rules: ViewRules, xr: np.random.Generator, camera: Camera,
              joints: np.ndarray, side: float = 1.0) -> _Limb:  # fmt: skip
    """A forearm as the view's rules want it: lengthened to the image border, and with
    ``rules.elbow_mm`` pointing at an elbow drawn there (``side``: +1 for a right hand, -1 a
    left one), the draw that leaves the lines of sight to the hand's (``joints``) knuckles, palm
    and centre clearest of 8 (the first that leaves them free)."""
    if rules.elbow_mm is None:
        return arm.to_border(camera) if rules.forearm_to_border else arm
    lo, hi = np.asarray(rules.elbow_mm, float).T
    targets = [joints[9], joints[5], joints[17], joints.mean(axis=0), (joints[0] + joints[9]) / 2]
    best, clear = arm, -np.inf
    for _ in range(8):
        elbow = (lo + (hi - lo) * xr.random(3)) * [side, 1.0, 1.0]
        limb = arm.turned(elbow - arm.start, 70.0)
        limb = limb.to_border(camera) if rules.forearm_to_border else limb
        # The arm's own thickness, from 30 mm past the wrist (where it meets the palm's heel).
        cap = (limb.start + 30.0 * limb.axis)[None], limb.end[None], np.array([max(limb.radius)])
        gap = min(_gap(cap, (np.zeros((1, 3)), t[None], np.zeros(1))) for t in targets)
        if gap > clear:
            best, clear = limb, gap
        if gap > 0.0:
            break
    return best


def _capsule_arm(j: np.ndarray, radii: np.ndarray, length: float) -> _Limb:
    """The forearm :func:`handvox.synth.primitives.hand_primitives` gives the capsule hand."""
    wrist, mcp = j[0], j[[5, 9, 13, 17]]
    across = mcp[0] - mcp[3]
    width = float(np.linalg.norm(across))
    end = wrist + _unit(wrist - mcp[1]) * length
    return _Limb(wrist, end, across, (0.3 * width, 0.36 * width),
                 (0.85 * radii[0], 1.3 * radii[0]))  # fmt: skip


@functools.cache
def _stub_end() -> np.ndarray:
    """Vertices of LibHand's forearm stub within 10 mm of its end (the hand frame's +y)."""
    y = libhand_hand().mesh.vertices[:, 1]
    return np.flatnonzero(y > y.max() - 10.0)


@functools.cache
def _mesh_face_parts() -> np.ndarray:
    """``(F,)`` uint8 part id (:data:`HAND_PARTS`) of each LibHand face."""
    return (libhand_hand().face_part + 1).astype(np.uint8)


def _posed_mesh(pose: np.ndarray, bones: HandBones) -> np.ndarray:
    """``(V, 3)`` LibHand's vertices skinned to ``pose`` ``(30,)`` on ``bones`` (camera frame)."""
    hand = libhand_hand()
    p = torch.as_tensor(np.asarray(pose, np.float32)).double()[None]
    fk = forward_kinematics(p, bones.to(dtype=torch.float64))
    return hand.skin(hand.skinning_matrices(fk, p)[0])


def _mesh_arm(verts: np.ndarray, pose: np.ndarray, length: float) -> _Limb:
    """A forearm continuing the posed mesh's stub (which ends ~35 mm past the wrist): it starts
    8 mm inside the stub's end with the cross-section measured there (so the stub's end cap is
    inside it), along the hand frame's proximal axis, widening by a fifth to its end ``length``
    mm from the wrist."""
    p = np.asarray(pose, np.float64)
    rot = axis_angle_to_matrix(torch.from_numpy(p[3:6])).numpy()
    ring = (verts[_stub_end()] - p[:3]) @ rot  # in the hand frame
    lo, hi = ring.min(axis=0), ring.max(axis=0)
    thick = (hi[2] - lo[2]) / 2
    half = max((hi[0] - lo[0]) / 2 - thick, 1.0)
    y0 = hi[1] - 8.0
    start = rot @ np.array([(lo[0] + hi[0]) / 2, y0, (lo[2] + hi[2]) / 2]) + p[:3]
    end = start + rot[:, 1] * max(length - y0, 20.0)
    return _Limb(start, end, rot[:, 0], (half, 1.2 * half), (thick, 1.2 * thick))


def _composite_meshes(meshes, depth, ids, normals, camera: Camera) -> np.ndarray:
    """Rasterise meshes ``(vertices (V, 3), face part ids (F,))`` into the ray-cast ``depth``,
    ``ids`` (-3 where a mesh is nearest) and ``normals`` (its faces', facing the camera) by
    per-pixel nearest depth; returns their part ids ``(H, W)`` uint8."""
    faces = libhand_hand().mesh.faces
    part = np.zeros(depth.shape, np.uint8)
    for verts, face_part in meshes:
        dm, fid = rasterize_depth(verts, faces, camera, return_ids=True)
        take = (fid >= 0) & ((depth <= 0) | (dm < depth))
        f = fid[take]
        tri = verts[faces[f]]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n *= np.where((n * tri[:, 0]).sum(axis=1) > 0, -1.0, 1.0)[:, None]
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        depth[take] = dm[take]
        normals[take] = n / np.where(norm > 0, norm, 1.0)
        part[take] = face_part[f]
        ids[take] = -3
    return part


@dataclass
class _Content:
    """What :func:`_build_content` puts in a scene besides the body and the wall.

    Attributes:
        prims: everything ray cast (hand or mesh forearm, objects, capsule second hand).
        meshes: ``(vertices, face part ids)`` rasterised and composited.
        far: a depth behind the hand, the objects and the second hand with its arm (body and
            wall go farther; the hand's own forearm may reach them, as without content).
        table: the table plane, ``(normal towards the camera, depth on the optical axis)``.
        extra: the frame's ``content``, ``objects`` and ``second_hand`` arrays (when on).
    """

    prims: Primitives
    meshes: list
    far: float
    table: tuple[np.ndarray, float] | None
    extra: dict


def _build_content(j, bones, forearm, length, rng, config, rules, pose, held) -> _Content:
    """The scene's hand (capsule or mesh) and forearm (to the border, as ``rules`` say), the held
    object, a second hand, the desk's table and a near object, each placed clear of those
    before it; drawn from one number of ``rng`` (so frames without content draw as before)."""
    cam = config.camera
    xr = np.random.default_rng(int(rng.integers(2**63 - 1)))
    c = xr.random(3)
    mesh = bool(c[0] < config.mesh_prob)
    if mesh and pose is None:
        raise ValueError("mesh_prob: a mesh hand needs the frame's pose (render_hand_scene(pose=))")
    radii, s_t = joint_radii(bones), thickness_scale(bones)
    hand = _hand_capsules(j, radii, 14.0 * s_t)
    parts, meshes, solids = [], [], [hand]
    if mesh:
        verts = _posed_mesh(pose, bones)
        meshes.append((verts, _mesh_face_parts()))
        arm = _mesh_arm(verts, pose, length) if forearm else None
    else:
        parts.append(hand_primitives(j, radii, palm_thickness=28.0 * s_t))
        arm = _capsule_arm(j, radii, length) if forearm else None
    if arm is not None:
        arm = _view_arm(arm, rules, xr, cam, j)
        parts.append(arm.primitives(FOREARM))
    # What a body or wall must clear: the forearm, as in frames without content, may reach them.
    clear = list(solids)
    if arm is not None:
        solids.append(arm.capsule())
    objects = np.zeros((2, 7), np.float32)
    if held is not None:
        parts.append(Primitives.round_cones(held.a, held.b, held.radius, held.radius, OBJECT))
        solids.append((held.a[None], held.b[None], np.array([held.radius])))
        clear.append(solids[-1])
        objects[0] = [*held.a, *held.b, held.radius]
    second_joints = np.zeros((21, 3), np.float32)
    second = None
    if c[2] < config.second_hand_prob:
        second = _second_hand(xr, j, _caps(*solids), config, rules)
    if second is not None:
        prims2, mesh2, second_joints[:], caps2 = second
        parts += prims2
        meshes += mesh2
        solids.append(caps2)
        clear.append(caps2)
    table = None
    everything = _caps(*solids)
    if rules.table:
        # Under the hand (resting on it to hovering 120 mm above), and under everything else.
        tilt = np.radians(config.wall_tilt_deg) * xr.uniform(-1.0, 1.0, 2)
        n = _unit(np.array([np.sin(tilt[0]), np.sin(tilt[1]), -1.0]))
        away = -n

        def level(caps: Capsules) -> float:
            return float((np.maximum(caps[0] @ away, caps[1] @ away) + caps[2]).max())

        offset = max(level(hand) + xr.uniform(0.0, 120.0), level(everything) + 1.0)
        table = (n, offset / away[2])
    near = None
    if c[1] < config.near_object_prob:
        near = _near_object(xr, j, hand, arm, everything, cam, table)
    if near is not None:
        a, b, radius = near
        parts.append(Primitives.round_cones(a, b, radius, radius, OBJECT))
        clear.append((a[None], b[None], np.array([radius])))
        objects[1] = [*a, *b, radius]
    behind = _caps(*clear)
    top = np.maximum(behind[0][:, 2], behind[1][:, 2]) + behind[2]
    extra = {}
    if content_on(config):
        flags = [mesh, held is not None, near is not None, second is not None]
        extra = {"content": np.array(flags, np.uint8), "objects": objects,
                 "second_hand": second_joints}  # fmt: skip
    return _Content(Primitives.concat(parts), meshes, max(j[:, 2].max() + 60.0, top.max() + 10.0),
                    table, extra)  # fmt: skip


def _second_hand(xr: np.random.Generator, j: np.ndarray, solids: Capsules,
                 config: HandSynthConfig, rules: ViewRules):  # fmt: skip
    """A second hand for the scene: shape and pose from the view sampler, a left hand three
    times in four (mirrored), capsule or mesh as ``mesh_prob`` draws, moved beside the hand
    (60 %: its centre 0.8-1.5 hand sizes away, up to 100 mm nearer or 150 mm farther) or before
    or behind it (0.3-0.8 sizes aside, 80-250 mm farther; a third of the time as much nearer,
    then at least 0.6 sizes aside). Its gap to everything placed is at least 5 mm and it leaves
    the line of sight to the hand's centre free; 8 tries, else None.

    Returns:
        ``([primitives], [(vertices, face parts)], joints (21, 3), capsules)`` or None.
    """
    cam = config.camera
    gen = torch.Generator().manual_seed(int(xr.integers(2**63 - 1)))
    names = config.shapes or SHAPE_NAMES
    bones = sample_shape(gen, 1, names[int(xr.integers(len(names)))], config.shape_variation)
    pose = sample_poses(gen, 1, pose_sampler_config(config))[0].numpy()
    j2 = forward_kinematics(torch.from_numpy(pose)[None], bones).joints[0].double().numpy()
    u = xr.random(3)
    mesh, forearm = bool(u[0] < config.mesh_prob), bool(u[2] < config.forearm_prob)
    flip = np.diag([-1.0 if u[1] < 0.75 else 1.0, 1.0, 1.0])
    radii, s_t = joint_radii(bones), thickness_scale(bones)
    length = xr.uniform(160.0, 260.0)
    verts = _posed_mesh(pose, bones) if mesh else None
    arm = None
    if forearm:
        arm = _mesh_arm(verts, pose, length) if mesh else _capsule_arm(j2, radii, length)
    c1, c2 = j.mean(axis=0), j2.mean(axis=0)
    size = np.linalg.norm(j - c1, axis=1).max() + np.linalg.norm(j2 - c2, axis=1).max()
    for _ in range(8):
        v = xr.random(5)
        if v[0] < 0.6:
            d, dz = (0.8 + 0.7 * v[1]) * size, -100.0 + 250.0 * v[2]
        else:
            d, dz = (0.3 + 0.5 * v[1]) * size, 80.0 + 170.0 * v[2]
            if v[3] < 1 / 3:
                d, dz = max(d, 0.6 * size), -dz
        phi = 2 * np.pi * v[4]
        target = c1 + np.array([d * np.cos(phi), d * np.sin(phi), dz])

        def move(p: np.ndarray, target=target) -> np.ndarray:
            return (p - c2) @ flip + target  # flip is its own transpose

        jj = move(j2)
        if jj[:, 2].min() < 100.0 or not in_view(target, cam, 0.0, 0.0):
            continue
        caps = _hand_capsules(jj, radii, 14.0 * s_t)
        limb = None
        if arm is not None:
            limb = _view_arm(arm.moved(move, flip), rules, xr, cam, jj, flip[0, 0])
            caps = _caps(caps, limb.capsule())
        if _gap(caps, solids) < 5.0 or _sight_blocked(caps, c1):
            continue
        prims = [limb.primitives(OTHER_HAND)] if limb is not None else []
        meshes = []
        if mesh:
            meshes.append((move(verts), np.full(len(_mesh_face_parts()), OTHER_HAND + 1,
                                                  np.uint8)))  # fmt: skip
        else:
            p = hand_primitives(jj, radii, palm_thickness=28.0 * s_t)
            prims.append(Primitives(p.kind, p.params, np.full_like(p.part, OTHER_HAND)))
        return prims, meshes, jj.astype(np.float32), caps
    return None


def _near_object(xr, j, hand: Capsules, arm: _Limb | None, solids: Capsules, camera: Camera,
                 table) -> tuple[np.ndarray, np.ndarray, float] | None:  # fmt: skip
    """An object (:func:`draw_objects`) near the hand, not in it: lying on the table (desk view,
    within 40-260 mm of the point under the hand's centre), else beside the forearm (half the
    time, when there is one) or in front of or behind the hand. At most 200 mm from the hand,
    at least 5 from everything placed, in the image, the line of sight to the hand's centre
    free; 8 tries, else None. Returns its axis ends and radius (camera frame, mm)."""
    centre = j.mean(axis=0)
    for _ in range(8):
        draw = draw_objects(xr, 1)
        radius, length = float(draw.radius[0]), float(draw.length[0])
        v = xr.random(4)
        if table is not None:
            n, d0 = table
            e1 = _unit(np.cross(n, [0.0, 1.0, 0.0]))
            e2 = np.cross(n, e1)
            below = centre + (n[2] * d0 - n @ centre) * n  # on the plane, under the centre
            ang, psi = 2 * np.pi * v[0], 2 * np.pi * v[2]
            mid = below + (40.0 + 220.0 * v[1]) * (np.cos(ang) * e1 + np.sin(ang) * e2)
            mid = mid + n * radius  # resting on it
            axis = np.cos(psi) * e1 + np.sin(psi) * e2
        else:
            if v[0] < 0.5 and arm is not None:
                along = arm.axis
                anchor = arm.start + along * v[1] * min(np.linalg.norm(arm.end - arm.start), 250.0)
                w = xr.normal(size=3)
                w = _unit(w - along * (w @ along))
                reach = max(arm.half_width) + max(arm.radius)
            else:
                anchor = centre
                w = _unit(np.array([*(0.6 * xr.normal(size=2)), 1.0 if v[1] < 0.5 else -1.0]))
                reach = 60.0
            mid = anchor + w * (reach + radius + 150.0 * v[2])
            axis = _unit(xr.normal(size=3))
        a, b = mid - axis * length / 2, mid + axis * length / 2
        cap = (a[None], b[None], np.array([radius]))
        if min(a[2], b[2]) - radius < 50.0 or not in_view(mid, camera, 0.0, 0.0):
            continue
        if _gap(cap, solids) < 5.0 or _gap(cap, hand) > 200.0 or _sight_blocked(cap, centre):
            continue
        return a, b, radius
    return None


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
    noise = (
        config.noise if isinstance(config.noise, NoiseConfig) else NoiseConfig.preset(config.noise)
    )
    low = view_rules(config.view).min_depth_mm
    if low is not None and low < noise.min_depth_mm:
        noise = replace(noise, min_depth_mm=low)
    return noise


def pose_sampler_config(config: HandSynthConfig) -> PoseSamplerConfig:
    """The pose sampler's configuration for ``config``: its articulation and its view preset
    with ``config``'s camera and depth range."""
    view = ViewConfig.preset(config.view)
    view = replace(view, camera=config.camera, depth_mm=config.depth_mm or view.depth_mm)
    return PoseSamplerConfig(articulation=config.articulation or ArticulationConfig(), view=view)


@dataclass
class HeldObject:
    """An object in the hand: the capsule ``a``-``b`` (``(3,)`` each, camera frame, mm; a sphere
    where they coincide) of ``radius``, and its kind (:data:`OBJECT_KINDS`)."""

    a: np.ndarray
    b: np.ndarray
    radius: float
    kind: str


@dataclass
class HandSample:
    """A hand drawn for one frame: shape name, bones (batch 1), pose ``(30,)`` and joints of
    every set in :data:`MARKER_SETS` (``(J, 3)`` float32, camera frame, mm); the object it holds,
    if any."""

    shape_id: str
    bones: HandBones
    pose: np.ndarray
    joints: dict[str, np.ndarray]
    held: HeldObject | None = None


def check_poses(poses, bones, config: HandSynthConfig) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Joints ``(n, J, 3)`` per :data:`MARKER_SETS` of ``(n, 30)`` poses on ``bones`` (batch 1
    or n), and whether each keeps its joints in view (:func:`in_view`: every joint, or as the
    view's :class:`ViewRules` say) and its forearm within ``config.forearm_max_toward_deg``."""
    fk = forward_kinematics(poses, bones)
    sets = {name: markers(fk, name).numpy() for name in MARKER_SETS}
    rules = view_rules(config.view)
    if rules.all_joints:
        ok = in_view(np.concatenate(list(sets.values()), axis=1), config.camera,
                     config.margin_px, config.margin_mm)  # fmt: skip
    else:
        j = sets["canonical21"]
        ok = in_view(j[:, :1], config.camera, config.margin_px, config.margin_mm)
        inside = in_view(j[:, :, None], config.camera, 0.0, 0.0).sum(axis=1)
        ok &= inside >= rules.min_joints
    if rules.hand_up_deg is not None:
        j = sets["canonical21"]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = j[:, [0, 9], :2] / j[:, [0, 9], 2:] * [config.camera.fx, config.camera.fy]
        d = uv[:, 1] - uv[:, 0]
        up = -d[:, 1] / np.linalg.norm(d, axis=1)
        ok &= up >= np.cos(np.radians(rules.hand_up_deg))
    if config.forearm_max_toward_deg is not None and rules.forearm_check:
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


# --- objects in the hand ------------------------------------------------------------------------


@dataclass
class ObjectDraw:
    """Objects drawn for ``n`` hands (:func:`draw_objects`): kind (index into
    :data:`OBJECT_KINDS`), radius and axis length (mm), five uniform numbers placing each on the
    palm (:func:`object_in_hand`) and the pre-shape's thumb CMC flexion (rad)."""

    kind: np.ndarray
    radius: np.ndarray
    length: np.ndarray
    place: np.ndarray
    thumb: np.ndarray

    def __getitem__(self, idx) -> ObjectDraw:
        if isinstance(idx, int | np.integer):
            idx = slice(int(idx), int(idx) + 1)
        return ObjectDraw(*(getattr(self, f)[idx] for f in ObjectDraw.__dataclass_fields__))


def draw_objects(rng: np.random.Generator, n: int) -> ObjectDraw:
    """Kinds and sizes of :data:`OBJECT_KINDS` (:data:`OBJECT_KIND_PROBS`,
    :data:`OBJECT_RADIUS_MM`, :data:`OBJECT_LENGTH_MM`) for ``n`` objects, in one draw."""
    u = rng.random((n, 9))
    kind = np.minimum(np.searchsorted(np.cumsum(OBJECT_KIND_PROBS), u[:, 0], side="right"),
                      len(OBJECT_KINDS) - 1)  # fmt: skip
    lo, hi = np.asarray(OBJECT_RADIUS_MM)[kind].T
    radius = lo + (hi - lo) * u[:, 1]
    lo, hi = np.asarray(OBJECT_LENGTH_MM)[kind].T
    length = lo + (hi - lo) * u[:, 2]
    # The thumb swung radially, 5-25 degrees, out of the palm's way (it closes from there).
    thumb = np.radians(-25.0 + 20.0 * u[:, 3])
    return ObjectDraw(kind, radius, length, u[:, 4:], thumb)


def object_in_hand(draw: ObjectDraw, bones: HandBones) -> tuple[Tensor, Tensor]:
    """Axis ends ``(n, 3)`` float64 in the hand frame (z = 0: :func:`handvox.hand.grasp.
    place_on_palm` lowers them) of drawn objects on hands ``bones`` (batch 1 or n).

    A capsule lies across the palm below the knuckles (62-85 % of the way from the wrist to the
    MCP row), its axis within 25 degrees of the knuckle line and 10 of the palm's plane, gripped
    anywhere but its last 30 mm; a sphere sits in the palm's hollow (60-80 % of the way)."""
    n = len(draw.kind)
    mcp = bones.base[:, 1:].to(torch.float64).expand(n, 4, 3)
    p = torch.from_numpy(np.asarray(draw.place, np.float64))
    sphere = torch.from_numpy(draw.kind == OBJECT_KINDS.index("sphere"))
    length = torch.from_numpy(np.asarray(draw.length, np.float64))
    x = mcp[..., 0].mean(1) + 16.0 * (p[:, 2] - 0.5) - 5.0 * sphere
    y = mcp[..., 1].mean(1) * torch.where(sphere, 0.6 + 0.2 * p[:, 3], 0.62 + 0.23 * p[:, 3])
    centre = torch.stack([x, y, torch.zeros_like(x)], 1)
    turn, tilt = math.radians(50.0) * (p[:, 0] - 0.5), math.radians(20.0) * (p[:, 1] - 0.5)
    axis = torch.stack([turn.cos() * tilt.cos(), turn.sin() * tilt.cos(), tilt.sin()], 1)
    shift = (p[:, 4] - 0.5) * 2.0 * (length / 2 - 30.0).clamp_min(0.0)
    a = centre + axis * (shift - length / 2)[:, None]
    b = centre + axis * (shift + length / 2)[:, None]
    return a, b


_CLOSING = [dof_index(name) for chain in CLOSING_DOFS for name in chain]
_ABDUCTION = [dof_index(f"{f}_mcp_abd") for f in ("index", "middle", "ring", "little")]
_THUMB_CMC_FLEX = dof_index("thumb_cmc_flex")


def grasp_poses(
    poses, bones: HandBones, draw: ObjectDraw
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Close ``(n, 30)`` sampled poses onto drawn objects.

    The pre-shape is the pose's own hand opened: its closing joints (:data:`handvox.hand.grasp.
    CLOSING_DOFS`) straight, the finger spread halved, the thumb swung out of the palm's way
    (``draw.thumb``); palm cupping and the root stay. The object is lowered onto it
    (:func:`~handvox.hand.grasp.place_on_palm`), the fingers closed
    (:func:`~handvox.hand.grasp.close_grasp`: each bone stops on the surface, within
    :data:`~handvox.hand.grasp.CONTACT_TOLERANCE_MM`), and the root put back.

    Returns:
        ``(n, 30)`` float32 poses, and the objects' axis ends ``(n, 2, 3)`` float64 in the camera
        frame; radii are ``draw.radius``.
    """
    pose = torch.as_tensor(np.asarray(poses, np.float32)).double()
    root = pose[:, :6].clone()
    pre = pose.clone()
    pre[:, :6] = 0.0
    pre[:, _CLOSING] = 0.0
    pre[:, _ABDUCTION] *= 0.5
    pre[:, _THUMB_CMC_FLEX] = torch.from_numpy(np.asarray(draw.thumb, np.float64))
    hands = bones.to(dtype=torch.float64)
    a, b = object_in_hand(draw, hands)
    obj = place_on_palm(pre, hands, a, b, torch.from_numpy(np.asarray(draw.radius, np.float64)))
    out = close_grasp(pre, hands, obj).pose
    out[:, :6] = root
    rot = axis_angle_to_matrix(root[:, 3:6])
    ends = torch.stack([obj.a, obj.b], 1) @ rot.transpose(1, 2) + root[:, None, :3]
    return out.float().numpy(), ends.numpy()


def _clear_of_camera(ends: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Whether objects ``(n, 2, 3)`` keep 30 mm in front of the camera."""
    return ends[..., 2].min(axis=-1) - radius > 30.0


def grasp_in_view(draw_pose, bones, draw: ObjectDraw, config: HandSynthConfig, what: str):
    """Draw poses with ``draw_pose(1) -> (1, 30)`` until one whose grasp of the drawn object
    (``draw`` of one, :func:`grasp_poses`) passes :func:`check_poses`; returns its pose ``(30,)``,
    joints ``(J, 3)`` per :data:`MARKER_SETS` and the :class:`HeldObject`."""
    for _ in range(config.max_tries):
        poses = draw_pose(1)
        if not check_poses(poses, bones, config)[1][0]:
            continue  # the open hand does not fit: do not spend a grasp on it
        grasped, ends = grasp_poses(poses, bones, draw)
        sets, ok = check_poses(torch.from_numpy(grasped), bones, config)
        if ok[0] and _clear_of_camera(ends, draw.radius)[0]:
            joints = {name: np.ascontiguousarray(v[0], np.float32) for name, v in sets.items()}
            held = HeldObject(ends[0, 0], ends[0, 1], float(draw.radius[0]),
                              OBJECT_KINDS[int(draw.kind[0])])  # fmt: skip
            return grasped[0], joints, held
    raise ValueError(
        f"{what}: no pose of {config.max_tries} drawn keeps the hand holding its object in view; "
        "check the camera, view preset and depth range"
    )


@dataclass
class _BlockObjects:
    """The objects of a block's frames: whether each holds one, what was drawn, and where the
    grasps put them (``ends`` ``(n, 2, 3)``, camera frame; valid where ``held`` and ``ok``)."""

    held: np.ndarray
    draw: ObjectDraw
    ends: np.ndarray


@dataclass
class _HandBlock:
    """Shapes and poses drawn together for ``pose_block`` consecutive frames."""

    names: list[str]
    bones: HandBones
    poses: np.ndarray
    joints: dict[str, np.ndarray]
    ok: np.ndarray
    objects: _BlockObjects | None = None


_BLOCKS: OrderedDict = OrderedDict()  # (config, seed, block) -> _HandBlock, per process
_BLOCK_TAG = 0x5EED
_OBJECT_TAG = 0x0B1EC7


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
    poses = poses.numpy().astype(np.float32)
    objects = None
    if config.object_prob > 0.0:
        # Grasps batched over the block: one at a time costs ~25x more a frame (torch's
        # per-call overhead over the grasp's few hundred small kinematics calls).
        orng = np.random.default_rng([seed, block, _OBJECT_TAG])
        held = orng.random(n) < config.object_prob
        draw = draw_objects(orng, n)
        ends = np.zeros((n, 2, 3))
        idx = np.flatnonzero(held & ok)  # the others are redrawn frame by frame anyway
        if idx.size:
            pick = torch.from_numpy(idx)
            grasped, ends[idx] = grasp_poses(poses[idx], bones[pick], draw[idx])
            gsets, gok = check_poses(torch.from_numpy(grasped), bones[pick], config)
            poses[idx] = grasped
            for name in sets:
                sets[name][idx] = gsets[name]
            ok[idx] = gok & _clear_of_camera(ends[idx], draw.radius[idx])
        objects = _BlockObjects(held, draw, ends)
    _BLOCKS[key] = _HandBlock(picks, bones, poses, sets, ok, objects)
    while len(_BLOCKS) > 2:  # a worker walks through its chunks' blocks in order
        _BLOCKS.popitem(last=False)
    return _BLOCKS[key]


@dataclass(frozen=True)
class HandFrameGenerator:
    """``make_frame(index, rng) -> SynthFrame`` of :func:`hand_frame_generator` (picklable)."""

    config: HandSynthConfig

    def sample_hand(self, index: int, rng: np.random.Generator) -> HandSample:
        """Shape, pose in view and joints of frame ``index`` (the first draws from ``rng``);
        with ``object_prob``, the object it holds."""
        cfg = self.config
        gen = torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))
        names = cfg.shapes or SHAPE_NAMES
        pick = names[int(rng.integers(len(names)))]
        key = frame_key(rng)
        draw = None  # the object of a frame that holds one
        if cfg.pose_block > 1 and key is not None and key[1] == index:
            blk = _hand_block(cfg, key[0], index // cfg.pose_block)
            k = index % cfg.pose_block
            objects = blk.objects
            holds = objects is not None and bool(objects.held[k])
            if blk.ok[k]:
                joints = {name: np.ascontiguousarray(v[k], np.float32)
                          for name, v in blk.joints.items()}  # fmt: skip
                held = None
                if holds:
                    held = HeldObject(objects.ends[k, 0], objects.ends[k, 1],
                                      float(objects.draw.radius[k]),
                                      OBJECT_KINDS[int(objects.draw.kind[k])])  # fmt: skip
                return HandSample(blk.names[k], blk.bones[k], blk.poses[k], joints, held)
            shape_id, bones = blk.names[k], blk.bones[k]  # keep the shape, redraw the pose
            if holds:
                draw = objects.draw[k]
        else:
            shape_id, bones = pick, sample_shape(gen, 1, pick, cfg.shape_variation)
            if cfg.object_prob > 0.0 and rng.random() < cfg.object_prob:
                draw = draw_objects(rng, 1)
        pose_cfg = pose_sampler_config(cfg)

        def draw_pose(n: int) -> Tensor:
            return sample_poses(gen, n, pose_cfg)

        if draw is not None:
            pose, joints, held = grasp_in_view(draw_pose, bones, draw, cfg, f"frame {index}")
            return HandSample(shape_id, bones, pose, joints, held)
        pose, joints = pose_in_view(draw_pose, bones, cfg, f"frame {index}")
        return HandSample(shape_id, bones, pose, joints)

    def __call__(self, index: int, rng: np.random.Generator) -> SynthFrame:
        hand = self.sample_hand(index, rng)
        scene = render_hand_scene(hand.joints["canonical21"], hand.bones, rng, self.config,
                                  pose=hand.pose, held=hand.held)  # fmt: skip
        return make_frame(hand, scene, add_noise(scene, rng, self.config))


def make_frame(hand: HandSample, scene: Scene, raw: np.ndarray, **extra) -> SynthFrame:
    """A :class:`SynthFrame` from its parts; ``extra`` adds label arrays."""
    extra = {"scene": scene.flags, **scene.extra, **extra}
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

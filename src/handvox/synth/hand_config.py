"""What the hand frame generator draws: :class:`HandSynthConfig`, the rules of each view
(:data:`VIEW_RULES`), and the names its frames' extra arrays and part ids use."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from handvox.camera import Camera
from handvox.config import to_dict
from handvox.hand.poses import ArticulationConfig, PoseSamplerConfig, ViewConfig
from handvox.synth.noise import NoiseConfig
from handvox.synth.primitives import (
    EXTRA_PART_NAMES,
    PART_NAMES,
)
from handvox.synth.sensors import (
    as_families,
    max_range_mm,
)

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
    # A raised hand's arm hangs from it to below the image (the elbow at the chest, the upper
    # arm beside the body): a straight limb to the lower edge stands in for both.
    "wave": ViewRules(forearm_to_border=True, hand_up_deg=50.0),
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
            chance of a head given a body, ``hand_by_head_prob`` the chance, given a head, that
            the hand is raised beside the face at about its depth (a wave or a hello at a
            sensor; the depth-only rule and a locator that never saw it take the face for the
            hand) instead of before the chest. The body (torso, neck, head) stands behind the hand;
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
        held_object_shown: False draws the grasp as ``object_prob`` says (the fingers closed
            on the object) but leaves the object out of the picture: grasp poses without their
            objects, so that a model can be trained without objects yet with the poses that
            hold them (the leave-one-out run of docs/benchmarks.md keeps pose coverage apart
            from the objects' surfaces). The ``content`` and ``objects`` extras say no object.
        near_object_prob: chance of an object near the hand but not in it (beside the forearm,
            in front of or behind the hand; on the table in the desk view), 5-200 mm from it.
        second_hand_prob: chance of a second hand (capsule or mesh as ``mesh_prob`` draws; a
            left hand three times in four), posed by the view sampler and moved beside the
            hand or before / behind it, not touching it. Its joints are not labels (stored
            apart, extra ``second_hand``).
        no_hand_prob: chance that the frame's hand is left out of the picture: its forearm,
            the object it held, a near object, a second hand, body and wall stay (frames that
            are not of a hand, for the hand check, :mod:`handvox.estimator.check`). Frames then
            hold the extra ``hand_shown`` (``(1,)`` uint8, 0 for such a frame); the joints are
            the hidden hand's.

    With any of mesh_prob .. second_hand_prob on, frames also hold the extras ``content``
    (``(4,)`` uint8, :data:`CONTENT_FLAGS`), ``objects`` (``(2, 12)`` float32: the held and the
    near object as axis ends ``a``, ``b``, radius, a box's half-width vector and half thickness
    (zero for round objects), camera frame, mm, and 1 for a precision grasp
    (:meth:`handvox.synth.objects.HeldObject.vector`); zeros where there is none) and
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
    hand_by_head_prob: float = 0.0
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
    held_object_shown: bool = True
    near_object_prob: float = 0.0
    second_hand_prob: float = 0.0
    no_hand_prob: float = 0.0

    def __post_init__(self) -> None:
        for name in _CHANCE_FIELDS:
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
        sensor fields while they are off, the scene-content chances (and ``hand_by_head_prob``)
        while they are 0 and ``held_object_shown`` while True, so
        that datasets made before they existed resume."""
        d = to_dict(self)
        if self.sensor is None:
            del d["sensor"], d["sensor_camera"]
        for name in _CHANCE_FIELDS:
            if d[name] == 0.0:
                del d[name]
        if self.held_object_shown:
            del d["held_object_shown"]
        return d


_CONTENT_FIELDS = ("mesh_prob", "object_prob", "near_object_prob", "second_hand_prob")
# Chances checked to lie in [0, 1] and left out of meta.json while 0 (older datasets resume).
_CHANCE_FIELDS = (*_CONTENT_FIELDS, "hand_by_head_prob", "no_hand_prob")


def content_on(config: HandSynthConfig) -> bool:
    """Whether frames of ``config`` may hold a mesh hand, objects or a second hand (and so the
    extras ``content``, ``objects`` and ``second_hand``)."""
    return any(getattr(config, name) > 0.0 for name in _CONTENT_FIELDS)


def part_names(config: HandSynthConfig) -> tuple[str, ...]:
    """What the ids of ``config``'s ``part`` image name: :data:`SCENE_PARTS` when its frames may
    hold objects or a second hand, else :data:`HAND_PARTS` (as every dataset before them)."""
    extra = config.object_prob, config.near_object_prob, config.second_hand_prob
    return SCENE_PARTS if max(extra) > 0.0 else HAND_PARTS


def sensor_max_depth_mm(config: HandSynthConfig) -> float:
    """The farthest depth the frame's sensor may measure (what is rendered beyond is left out)."""
    if config.sensor is None:
        return noise_config(config).max_depth_mm
    return max_range_mm(config.sensor)


def noise_config(config: HandSynthConfig) -> NoiseConfig:
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

"""The kinematic hand frame generator for :func:`handvox.synth.job.synthesize`.

:func:`hand_frame_generator` makes each frame from a hand shape of :mod:`handvox.hand.shapes`, a
natural pose from :mod:`handvox.hand.poses` kept in view (:func:`pose_in_view`; for a held object
the fingers closed onto it: :mod:`handvox.synth.objects`), the kinematics of
:mod:`handvox.hand.kinematics`, the scene of :func:`handvox.synth.scene.render_hand_scene` and its
sensor (:func:`handvox.synth.scene.add_noise`); :class:`handvox.synth.hand_config.HandSynthConfig`
says what it draws. The parts are public so that :mod:`handvox.synth.transfer` can put labelled
real poses on the same hands and scenes. The job runner (:mod:`handvox.synth.job`) knows nothing
of hands; :mod:`handvox.synth.generators` names this generator.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from handvox.hand.kinematics import HandBones, forward_kinematics, markers
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape, sample_shape
from handvox.synth.frame import SynthFrame, frame_key
from handvox.synth.hand_config import (
    MARKER_SETS,
    SHAPE_LAYOUT,
    HandSynthConfig,
    pose_sampler_config,
    view_rules,
)
from handvox.synth.objects import (
    OBJECT_KINDS,
    HeldObject,
    ObjectDraw,
    bounding_radius,
    clear_of_camera,
    draw_objects,
    grasp_poses,
)
from handvox.synth.scene import Scene, add_noise, in_view, render_hand_scene


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


# --- what else a scene holds: the mesh hand, objects, a second hand, the views' arms and table --


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


def grasp_in_view(draw_pose, bones, draw: ObjectDraw, config: HandSynthConfig, what: str):
    """Draw poses with ``draw_pose(1) -> (1, 30)`` until one whose grasp of the drawn object
    (``draw`` of one, :func:`grasp_poses`) passes :func:`check_poses`; returns its pose ``(30,)``,
    joints ``(J, 3)`` per :data:`MARKER_SETS` and the :class:`HeldObject`."""
    for _ in range(config.max_tries):
        poses = draw_pose(1)
        if not check_poses(poses, bones, config)[1][0]:
            continue  # the open hand does not fit: do not spend a grasp on it
        grasped, ends, across, pinched = grasp_poses(poses, bones, draw)
        sets, ok = check_poses(torch.from_numpy(grasped), bones, config)
        if ok[0] and clear_of_camera(ends, bounding_radius(draw))[0]:
            joints = {name: np.ascontiguousarray(v[0], np.float32) for name, v in sets.items()}
            held = HeldObject(ends[0, 0], ends[0, 1], float(draw.radius[0]),
                              OBJECT_KINDS[int(draw.kind[0])], across[0],
                              float(draw.thick[0]), bool(pinched[0]))  # fmt: skip
            return grasped[0], joints, held
    raise ValueError(
        f"{what}: no pose of {config.max_tries} drawn keeps the hand holding its object in view; "
        "check the camera, view preset and depth range"
    )


@dataclass
class _BlockObjects:
    """The objects of a block's frames: whether each holds one, what was drawn, and where the
    grasps put them (``ends`` ``(n, 2, 3)`` and a box's half width ``across`` ``(n, 3)``,
    camera frame) and which are precision grasps (``pinched``); valid where ``held`` and
    ``ok``."""

    held: np.ndarray
    draw: ObjectDraw
    ends: np.ndarray
    across: np.ndarray
    pinched: np.ndarray


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
        ends, across, pinched = np.zeros((n, 2, 3)), np.zeros((n, 3)), np.zeros(n, bool)
        idx = np.flatnonzero(held & ok)  # the others are redrawn frame by frame anyway
        if idx.size:
            pick = torch.from_numpy(idx)
            grasps = grasp_poses(poses[idx], bones[pick], draw[idx])
            grasped, ends[idx], across[idx], pinched[idx] = grasps
            gsets, gok = check_poses(torch.from_numpy(grasped), bones[pick], config)
            poses[idx] = grasped
            for name in sets:
                sets[name][idx] = gsets[name]
            ok[idx] = gok & clear_of_camera(ends[idx], bounding_radius(draw[idx]))
        objects = _BlockObjects(held, draw, ends, across, pinched)
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
                                      OBJECT_KINDS[int(objects.draw.kind[k])],
                                      objects.across[k], float(objects.draw.thick[k]),
                                      bool(objects.pinched[k]))  # fmt: skip
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
        extra = {}
        hidden = False
        if self.config.no_hand_prob > 0.0:  # drawn only then: other configs draw as before
            hidden = bool(rng.random() < self.config.no_hand_prob)
            extra["hand_shown"] = np.array([not hidden], np.uint8)
        scene = render_hand_scene(hand.joints["canonical21"], hand.bones, rng, self.config,
                                  pose=hand.pose, held=hand.held, hide_hand=hidden)  # fmt: skip
        raw = add_noise(scene, rng, self.config, hand.joints["canonical21"])
        return make_frame(hand, scene, raw, **extra)


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

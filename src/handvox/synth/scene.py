"""A hand's scene rendered for one frame (:func:`render_hand_scene`): the capsule or LibHand mesh
hand, its forearm, body, wall or table, held and nearby objects, a second hand; and the sensor
that measures it (:func:`add_noise`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from handvox.camera import Camera
from handvox.geometry import axis_angle_to_matrix, segment_distance
from handvox.hand.kinematics import HandBones, forward_kinematics
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import SHAPE_NAMES, base_shape, sample_shape
from handvox.synth.frame import INVALID_DEPTH
from handvox.synth.hand_config import (
    HAND_PARTS,
    THIRD_PERSON,
    HandSynthConfig,
    ViewRules,
    content_on,
    noise_config,
    pose_sampler_config,
    sensor_max_depth_mm,
    view_rules,
)
from handvox.synth.mesh import rasterize_depth
from handvox.synth.noise import add_sensor_noise
from handvox.synth.objects import OBJECT_KINDS, HeldObject, draw_objects
from handvox.synth.primitives import (
    FOREARM,
    LITTLE,
    OBJECT,
    OTHER_HAND,
    PALM,
    Primitives,
    forearm_primitives,
    hand_primitives,
    scene_primitives,
)
from handvox.synth.raycast import render_depth
from handvox.synth.sensors import (
    sample_sensor,
    simulate,
    simulate_at_sensor,
)
from handvox.synth.skinned import libhand_hand

HAND_PART_IDS = np.arange(PALM, LITTLE + 1)  # palm, thumb .. little: the hand itself


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
    hide_hand: bool = False,
) -> Scene:
    """Render a posed hand (``(21, 3)`` canonical joints, camera frame; ``bones`` its
    HandBones of batch 1) with the optional forearm, body and wall of ``config``; with its
    content options also the mesh hand (which needs ``pose``, the ``(30,)`` pose of the joints),
    the object ``held`` in the hand, an object near it and a second hand; in the egocentric and
    desk views as :data:`VIEW_RULES` say. ``hide_hand``: everything but the hand itself (its
    forearm, what it held, the rest of the scene, placed as with it). ``config.held_object_shown``
    False leaves ``held`` out (its grasp stays in the joints).

    Randomness: ``rng`` only. Rendering runs in the calling thread (``threads=1``): the job
    runner's parallelism is one process per core.
    """
    cam = config.camera
    if not config.held_object_shown:
        held = None
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
    if hide_hand:
        keep = ~np.isin(prims.part, HAND_PART_IDS)
        prims = Primitives(prims.kind[keep], prims.params[keep], prims.part[keep])
        if content is not None:  # the hand's mesh (a second hand's faces are all OTHER_HAND)
            content.meshes = [m for m in content.meshes if (m[1] == OTHER_HAND + 1).all()]
    centre = j.mean(axis=0)
    if body:
        # A person behind the raised hand (NYU's subjects hold it ~250 mm before the chest):
        # shoulders from a little above to well below the hand, torso reaching down to the
        # hips, usually past the image's bottom edge.
        thick, height = rng.uniform(180.0, 260.0), rng.uniform(550.0, 800.0)
        offset = (rng.uniform(-250.0, 250.0), rng.uniform(-50.0, 250.0) + height / 2,
                  max(rng.uniform(200.0, 450.0), far - centre[2] + thick / 2))  # fmt: skip
        if head and config.hand_by_head_prob > 0 and rng.random() < config.hand_by_head_prob:
            offset = _beside_head(j, centre, height, rng)
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
        nohit = (ids == -1) & (wall_z <= sensor_max_depth_mm(config))
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


def _beside_head(j: np.ndarray, centre: np.ndarray, height: float, rng) -> tuple:
    """Body offset (:func:`scene_primitives`) that puts the head beside the raised hand ``j``
    (``(21, 3)`` mm), as a person waving or saying hello to a sensor holds it: the face at the
    hand's height (+-60 mm), its front 20 mm before the hand's farthest joint to 100 mm behind
    it, 10-120 mm to the side of the hand's nearest joint. The head is :func:`scene_primitives`'
    ellipsoid (semi-axes 80, 110, 95 mm) 150 mm above the torso's top."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    reach = np.abs(j[:, 0] - centre[0]).max()
    dx = side * (reach + 80.0 + rng.uniform(10.0, 120.0))
    dy = height / 2 + 150.0 + rng.uniform(-60.0, 60.0)
    dz = j[:, 2].max() - centre[2] + 95.0 + rng.uniform(-20.0, 100.0)
    return (dx, dy, dz)


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
    objects = np.zeros((2, 12), np.float32)
    if held is not None:
        parts.append(held.primitives(OBJECT))
        solids.append((held.a[None], held.b[None], np.array([held.bounding_radius()])))
        clear.append(solids[-1])
        objects[0] = held.vector()
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
        parts.append(near.primitives(OBJECT))
        clear.append((near.a[None], near.b[None], np.array([near.bounding_radius()])))
        objects[1] = near.vector()
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
                 table) -> HeldObject | None:  # fmt: skip
    """An object (:func:`draw_objects`) near the hand, not in it: lying on the table (desk view,
    within 40-260 mm of the point under the hand's centre), else beside the forearm (half the
    time, when there is one) or in front of or behind the hand. At most 200 mm from the hand,
    at least 5 from everything placed, in the image, the lines of sight to the hand's centre
    and to the object's free; 8 tries, else None. A box lies on the table on a flat side,
    elsewhere turned at random about its axis."""
    centre = j.mean(axis=0)
    for _ in range(8):
        draw = draw_objects(xr, 1)
        radius, length = float(draw.radius[0]), float(draw.length[0])
        width, thick = float(draw.width[0]), float(draw.thick[0])
        bound = radius + np.hypot(width, thick)
        v = xr.random(4)
        if table is not None:
            n, d0 = table
            e1 = _unit(np.cross(n, [0.0, 1.0, 0.0]))
            e2 = np.cross(n, e1)
            below = centre + (n[2] * d0 - n @ centre) * n  # on the plane, under the centre
            ang, psi = 2 * np.pi * v[0], 2 * np.pi * v[2]
            mid = below + (40.0 + 220.0 * v[1]) * (np.cos(ang) * e1 + np.sin(ang) * e2)
            axis = np.cos(psi) * e1 + np.sin(psi) * e2
            flat = np.cross(n, axis)  # a box lies on a flat side: its width along the table
            mid = mid + n * (radius + thick)  # resting on it
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
            mid = anchor + w * (reach + bound + 150.0 * v[2])
            axis = _unit(xr.normal(size=3))
            flat = np.cross(axis, xr.normal(size=3))
        a, b = mid - axis * length / 2, mid + axis * length / 2
        cap = (a[None], b[None], np.array([bound]))
        if min(a[2], b[2]) - bound < 50.0 or not in_view(mid, camera, 0.0, 0.0):
            continue
        if _gap(cap, solids) < 5.0 or _gap(cap, hand) > 200.0 or _sight_blocked(cap, centre):
            continue
        if _sight_blocked(solids, mid):  # hidden under the hand or the arm: no use to anyone
            continue
        return HeldObject(a, b, radius, OBJECT_KINDS[int(draw.kind[0])], _unit(flat) * width,
                          thick)  # fmt: skip
    return None


# Joint centres lie this far inside the skin: the hand's surface spans the joints' depths
# widened by it (a fingertip's pad, the back of the palm).
_SKIN_MM = 25.0


def add_noise(
    scene: Scene,
    rng: np.random.Generator,
    config: HandSynthConfig,
    joints: np.ndarray | None = None,
) -> np.ndarray:
    """The scene's raw depth, invalid pixels 0 (:data:`INVALID_DEPTH`): with ``config.sensor``
    None, :func:`handvox.synth.noise.add_sensor_noise` with ``config.noise``; else a sensor drawn
    from ``rng`` (:func:`handvox.synth.sensors.sample_sensor`) measures it, among those that
    reach the hand of ``joints`` (``(J, 3)`` mm; all sensors without)."""
    if config.sensor is None:
        return add_sensor_noise(scene.clean, config.camera, rng, noise_config(config),
                                normals=scene.normals, invalid_value=INVALID_DEPTH)  # fmt: skip
    reach = None
    if joints is not None:
        z = np.asarray(joints, np.float64)[:, 2]
        reach = (float(z.min()) - _SKIN_MM, float(z.max()) + _SKIN_MM)
    draw = sample_sensor(rng, config.sensor, reach_mm=reach)
    if config.sensor_camera:
        return simulate_at_sensor(draw, scene.clean, config.camera, rng, scene.normals,
                                  INVALID_DEPTH)  # fmt: skip
    return simulate(draw, scene.clean, rng, scene.normals, config.camera, INVALID_DEPTH)


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


Capsules = tuple[np.ndarray, np.ndarray, np.ndarray]  # ends (m, 3), (m, 3) and radii (m,), mm

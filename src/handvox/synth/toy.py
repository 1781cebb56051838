"""A cheap stand-in generator for tests and benchmarks: capsules on a posed 21-joint skeleton.

Not the kinematic hand (:func:`handvox.synth.hand.hand_frame_generator` is): no kinematics, pose
sampler, ray caster or sensor model, just numpy drawing, so frames are cheap and the job
runner's tests stay quick. Importing it still loads torch (through :mod:`handvox.camera`
and :mod:`handvox.geometry`) and numba (through the storage format, :mod:`handvox.io.synthformat`),
as any generator run by the job does: the time goes to the import, not to every frame.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from handvox.camera import Camera
from handvox.geometry import axis_angle_to_matrix
from handvox.io.synthformat import crop_box
from handvox.joints import CANONICAL21, convert_joints
from handvox.synth.frame import INVALID_DEPTH, FrameGenerator, SynthFrame

TOY_VERSION = 1
# Rest layout of the toy hand (mm, hand frame of handvox.hand.kinematics: +x towards the thumb,
# fingers along -y, palm facing -z). Per finger: MCP position, then phalanx lengths.
_TOY_FINGERS = {
    "index": ((24.0, -88.0), (40.0, 25.0, 20.0)),
    "middle": ((4.0, -91.0), (45.0, 28.0, 22.0)),
    "ring": ((-15.0, -86.0), (42.0, 27.0, 21.0)),
    "little": ((-32.0, -78.0), (33.0, 20.0, 18.0)),
}
_TOY_THUMB = ((22.0, -22.0), (42.0, 32.0, 27.0), (0.55, -0.835))
# Part ids in the toy's "part" image: 0 background, then palm and the fingers.
TOY_PARTS = ("background", "palm", "thumb", "index", "middle", "ring", "little")


def _toy_joints(pose: np.ndarray, scale: float) -> np.ndarray:
    """Canonical-21 joints ``(21, 3)`` in the hand frame for the toy's pose layout."""
    j = np.zeros((21, 3))
    (tx, ty), lengths, (dx, dy) = _TOY_THUMB
    base = np.array([tx, ty, 0.0])
    flex = np.cumsum([pose[6], pose[8], pose[9]])
    j[1] = base
    for s in range(3):
        # Thumb flexion swings its in-plane direction towards the palm side (-z).
        d = np.array([dx * math.cos(flex[s]), dy * math.cos(flex[s]), -math.sin(flex[s])])
        j[2 + s] = j[1 + s] + lengths[s] * d
    for k, ((x0, y0), lengths) in enumerate(_TOY_FINGERS.values()):
        b = 5 + 4 * k
        abd = pose[12 + 5 * k]
        flex = np.cumsum([pose[11 + 5 * k], pose[13 + 5 * k], pose[14 + 5 * k]])
        j[b] = (x0, y0, 0.0)
        for s in range(3):
            c = math.cos(flex[s])
            d = np.array([math.sin(abd) * c, -math.cos(abd) * c, -math.sin(flex[s])])
            j[b + 1 + s] = j[b + s] + lengths[s] * d
    return j * scale


# (joint a, joint b, radius mm at scale 1, part id) of the toy's capsules.
_TOY_CAPSULES = [
    (0, 9, 26.0, 1), (5, 17, 13.0, 1), (0, 5, 14.0, 1), (0, 17, 14.0, 1),
    (0, 1, 16.0, 2), (1, 2, 12.0, 2), (2, 3, 10.0, 2), (3, 4, 9.0, 2),
]  # fmt: skip
for _k in range(4):
    for _s, _r in enumerate((9.5, 8.5, 7.5)):
        _TOY_CAPSULES.append((5 + 4 * _k + _s, 6 + 4 * _k + _s, _r - 0.6 * _k, 3 + _k))


def _draw_capsules(xyz: np.ndarray, scale: float, camera: Camera):
    """Approximate z-buffer of capsules: returns depth and part images ``(H, W)``."""
    h, w = camera.height, camera.width
    depth = np.zeros((h, w), np.float32)
    part = np.zeros((h, w), np.uint8)
    uvd = camera.xyz_to_uvd(xyz)
    focal = camera.fx
    for a, b, r, pid in _TOY_CAPSULES:
        r = r * scale
        pa, pb = uvd[a], uvd[b]
        pad = r * focal / min(pa[2], pb[2]) + 1
        u0, u1 = int(max(min(pa[0], pb[0]) - pad, 0)), int(min(max(pa[0], pb[0]) + pad + 1, w))
        v0, v1 = int(max(min(pa[1], pb[1]) - pad, 0)), int(min(max(pa[1], pb[1]) + pad + 1, h))
        if u0 >= u1 or v0 >= v1:
            continue
        # Pixel offsets from end a, broadcast (rows, 1) x (1, cols), in float32 for speed.
        du = np.arange(u0, u1, dtype=np.float32)[None, :] - np.float32(pa[0])
        dv = np.arange(v0, v1, dtype=np.float32)[:, None] - np.float32(pa[1])
        ab = (pb[:2] - pa[:2]).astype(np.float32)
        t = np.clip((du * ab[0] + dv * ab[1]) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
        z = np.float32(pa[2]) + t * np.float32(pb[2] - pa[2])
        s_mm = np.hypot(du - t * ab[0], dv - t * ab[1]) * z / np.float32(focal)
        surf = z - np.sqrt(np.maximum(np.float32(r * r) - s_mm * s_mm, 0.0))
        cur = depth[v0:v1, u0:u1]
        hit = (s_mm < r) & ((cur == 0) | (surf < cur))
        cur[hit] = surf[hit]
        part[v0:v1, u0:u1][hit] = pid
    return depth, part


def toy_frame(index: int, rng: np.random.Generator, camera: Camera | None = None) -> SynthFrame:
    """A cheap stand-in hand for tests: capsules on a posed 21-joint skeleton, drawn with numpy.

    Not the kinematic model (its pose uses :mod:`handvox.hand.kinematics`' 30-parameter layout, but
    only roots and flexions, and the geometry is approximate); the noise is Gaussian plus
    dropouts. Joint sets: canonical21, msra21 (exact), nyu14 and icvl16 (approximate markers).
    ``extra["part"]``: ``(H, W)`` uint8 ids into :data:`TOY_PARTS`.
    """
    cam = camera if camera is not None else Camera.preset("nyu")
    pose = np.zeros(30)
    depth_mm = rng.uniform(450.0, 800.0)
    # Keep the hand in view whatever the camera: its x, y span a fraction of the view.
    half_w = 0.25 * cam.width / cam.fx * depth_mm
    half_h = 0.2 * cam.height / cam.fy * depth_mm
    pose[0:3] = (rng.uniform(-half_w, half_w), rng.uniform(-half_h, half_h) + 60.0, depth_mm)
    pose[3:6] = (rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), rng.uniform(-0.8, 0.8))
    pose[[6, 8, 9]] = rng.uniform(0.0, 0.6, size=3)
    for k in range(4):
        mcp, pip = rng.uniform(0.0, 1.3, size=2)
        pose[11 + 5 * k : 15 + 5 * k] = (mcp, rng.uniform(-0.15, 0.15), pip, 0.67 * pip)
    scale = rng.uniform(0.85, 1.15)
    rest = _toy_joints(np.zeros(30), scale)
    hand = _toy_joints(pose, scale)
    rot = axis_angle_to_matrix(torch.from_numpy(pose[3:6])).numpy()
    xyz = hand @ rot.T + pose[0:3]
    clean, part = _draw_capsules(xyz, scale, cam)

    raw = clean.copy()
    box = crop_box([clean])
    u0, v0, u1, v1 = box
    c, r = clean[v0:v1, u0:u1], raw[v0:v1, u0:u1]
    valid = c > 0
    sigma = 1.4e-6 * c * c
    r += (sigma * rng.standard_normal(c.shape)).astype(np.float32)
    edge = valid & ~(np.roll(valid, 1, 0) & np.roll(valid, -1, 0) & np.roll(valid, 1, 1)
                     & np.roll(valid, -1, 1))  # fmt: skip
    drop = (edge & (rng.random(c.shape) < 0.5)) | (rng.random(c.shape) < 0.02)
    r[drop | ~valid] = INVALID_DEPTH

    xyz32 = xyz.astype(np.float32)
    joints = {name: convert_joints(xyz32, CANONICAL21, name) for name in ("msra21", "nyu14",
                                                                           "icvl16")}  # fmt: skip
    joints["canonical21"] = xyz32
    bones = np.array([np.linalg.norm(rest[b] - rest[a]) for a, b in CANONICAL21.bones], np.float32)
    return SynthFrame(
        raw=raw,
        clean=clean,
        joints_xyz=joints,
        pose=pose.astype(np.float32),
        shape=bones,
        shape_id=f"toy_scale_{scale:.3f}",
        extra={"part": part},
    )


def toy_generator(camera: Camera) -> FrameGenerator:
    """:func:`toy_frame` bound to ``camera`` (picklable)."""
    return functools.partial(toy_frame, camera=camera)

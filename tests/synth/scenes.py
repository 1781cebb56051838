"""Test scenes for the ray caster and the hand primitives, and what the tests of the hand
generator (test_hand, test_scene, test_objects) share: its camera, part ids and frames."""

from __future__ import annotations

import numpy as np

from handvox.camera import Camera
from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import HAND_PARTS, HandSynthConfig

NYU = Camera.preset("nyu")
CANON_PALM = [0, 5, 9, 13, 17]  # wrist and the finger MCPs
HAND_IDS = [HAND_PARTS.index(p) for p in ("palm", "thumb", "index", "middle", "ring", "little")]


def open_hand(wrist=(0.0, 40.0, 500.0)) -> np.ndarray:
    """A flat open hand in canonical-21 order: fingers up (-y), palm towards the camera."""
    w = np.asarray(wrist, float)
    j = np.zeros((21, 3))
    j[0] = w
    j[1:5] = w + [[22, -22, 3], [42, -45, -2], [56, -68, -6], [66, -90, -9]]
    mcp = {1: (24, -88), 2: (4, -93), 3: (-15, -89), 4: (-32, -80)}
    lengths = {1: (42, 25, 22), 2: (46, 29, 23), 3: (43, 28, 22), 4: (34, 21, 20)}
    spread = {1: 0.12, 2: 0.03, 3: -0.06, 4: -0.16}
    for f in range(1, 5):
        d = np.array([np.sin(spread[f]), -np.cos(spread[f]), -0.05])
        p = w + [*mcp[f], 0.0]
        j[1 + 4 * f] = p
        for k, length in enumerate(lengths[f]):
            p = p + d / np.linalg.norm(d) * length
            j[2 + 4 * f + k] = p
    return j


def palm_visibility(clean: np.ndarray, joints: np.ndarray, camera: Camera = NYU) -> np.ndarray:
    """Whether the clean depth at the projected wrist and MCPs is within 30 mm of the joint."""
    uvd = camera.xyz_to_uvd(joints[CANON_PALM].astype(np.float64))
    u, v = np.rint(uvd[:, 0]).astype(int), np.rint(uvd[:, 1]).astype(int)
    return np.abs(clean[v, u] - uvd[:, 2]) < 30.0


def content_frames(seed: int, n: int, **kw) -> list:
    """``n`` frames of the hand generator with ``HandSynthConfig(**kw)``, seed ``seed``."""
    gen = hand_frame_generator(HandSynthConfig(**kw))
    return [gen(i, frame_rng(seed, i)) for i in range(n)]

"""Rendered depth sequences: one hand over time, for what only a sequence shows (jitter, lag).

:func:`render_sequence` draws one hand (shape, pose, scene) as :func:`handvox.synth.hand.
hand_frame_generator` draws a frame, then renders it at every time step of a motion with the
scene held fixed and a fresh draw of the sensor's noise each frame, as a still camera sees a
hand: ``still`` (only the noise changes) or ``wave`` (the whole hand swept side to side,
``x(t) = amplitude * sin(2 pi t / period)``, its fastest at ``2 pi amplitude / period`` mm/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handvox.camera import Camera
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.scene import add_noise, render_hand_scene

MOTIONS = ("still", "wave")


@dataclass
class RenderedSequence:
    """Attributes:
    depth: ``(T, H, W)`` float32 mm, 0 where the sensor has no reading.
    joints: ``(T, 21, 3)`` float32 canonical joints, camera frame, mm.
    times_s: ``(T,)`` float64 seconds from the first frame.
    camera: the camera rendered.
    """

    depth: np.ndarray
    joints: np.ndarray
    times_s: np.ndarray
    camera: Camera


def render_sequence(
    frames: int,
    fps: float = 30.0,
    motion: str = "still",
    seed: int = 0,
    config: HandSynthConfig | None = None,
    amplitude_mm: float = 60.0,
    period_s: float = 2.0,
) -> RenderedSequence:
    """``frames`` frames at ``fps`` of one hand drawn from ``seed`` (module docstring); the
    ``wave`` keeps the sampled pose's joints within the image only if ``amplitude_mm`` is small
    against the hand's distance from the border (the caller's choice)."""
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r}: one of {', '.join(MOTIONS)}")
    config = config or HandSynthConfig()
    gen = hand_frame_generator(config)
    rng = np.random.default_rng(seed)
    hand = gen.sample_hand(0, rng)
    if motion != "still" and hand.held is not None:
        raise ValueError("render_sequence: a held object stays still; wave a hand without one")
    scene_seed = int(rng.integers(2**63 - 1))
    times = np.arange(frames) / fps
    j0 = hand.joints["canonical21"].astype(np.float64)
    depth, joints = [], []
    for t in times:
        shift = np.zeros(3)
        if motion == "wave":
            shift[0] = amplitude_mm * np.sin(2 * np.pi * t / period_s)
        j = j0 + shift
        pose = np.array(hand.pose, np.float64)
        pose[:3] += shift  # the root (wrist) position: the mesh hand follows the joints
        # The same draws every frame: body, wall, forearm and objects stay where they were.
        scene = render_hand_scene(
            j,
            hand.bones,
            np.random.default_rng(scene_seed),
            config,
            pose=pose.astype(np.float32),
            held=hand.held,
        )
        depth.append(add_noise(scene, rng, config, j))
        joints.append(j)
    return RenderedSequence(
        np.stack(depth).astype(np.float32),
        np.stack(joints).astype(np.float32),
        times,
        config.camera,
    )

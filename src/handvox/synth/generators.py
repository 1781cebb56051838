"""Frame generators by name: what ``handvox synth --generator`` chooses among."""

from __future__ import annotations

from handvox.camera import Camera
from handvox.synth.frame import FrameGenerator
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import (
    HAND_VERSION,
    SCENE_FLAGS,
    SHAPE_LAYOUT,
    HandSynthConfig,
    part_names,
)
from handvox.synth.toy import TOY_VERSION, toy_generator


def make_generator(
    name: str, camera: Camera, config: HandSynthConfig | None = None
) -> tuple[FrameGenerator, dict]:
    """The generator ``name`` (``"hand"`` or ``"toy"``) and its meta.json description.

    ``config`` (hand only) defaults to
    :meth:`~handvox.synth.hand_config.HandSynthConfig.for_camera`.
    """
    if name == "toy":
        return toy_generator(camera), {"name": "toy", "version": TOY_VERSION}
    if name == "hand":
        cfg = config or HandSynthConfig.for_camera(camera)
        if cfg.camera != camera:
            raise ValueError(f"config camera {cfg.camera} differs from {camera}")
        info = {"name": "hand", "version": HAND_VERSION, "config": cfg.to_dict(),
                "shape_layout": [[n, list(s)] for n, s in SHAPE_LAYOUT],
                "parts": list(part_names(cfg)), "scene_flags": list(SCENE_FLAGS)}  # fmt: skip
        return hand_frame_generator(cfg), info
    raise ValueError(f"unknown generator {name!r}; choose 'hand' or 'toy'")

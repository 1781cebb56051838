"""The frame contract: what a generator returns for frame ``index`` of a dataset, and the random
generator it must make it with, so that a frame depends on ``(seed, index)`` alone."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from handvox.io.synthformat import INVALID_DEPTH

__all__ = ["INVALID_DEPTH", "FrameGenerator", "SynthFrame", "frame_key", "frame_rng"]


@dataclass
class SynthFrame:
    """One generated frame.

    Attributes:
        raw: ``(H, W)`` float32 noisy depth, mm; 0 = invalid (no measurement).
        clean: ``(H, W)`` float32 noise-free depth, mm; 0 = background (nothing rendered).
        joints_xyz: joint set name -> ``(J, 3)`` float32 mm, OpenCV camera frame. Holds
            ``"canonical21"`` always, plus any marker sets (``"nyu14"``, ``"icvl16"``, ...).
        pose: ``(P,)`` float32 pose parameters (``P = 30`` for :mod:`handvox.hand.kinematics`).
        shape: ``(B,)`` float32 hand shape, e.g. bone lengths in mm.
        shape_id: name of the hand shape (subject) the frame was made with.
        extra: more per-frame arrays; an ``(H, W)`` one is stored as an image (cropped with the
            depth, 0 outside the crop), any other shape as is. Same keys, shapes and dtypes
            in every frame.
    """

    raw: np.ndarray
    clean: np.ndarray
    joints_xyz: dict[str, np.ndarray]
    pose: np.ndarray
    shape: np.ndarray
    shape_id: str = ""
    extra: dict[str, np.ndarray] = field(default_factory=dict)


FrameGenerator = Callable[[int, np.random.Generator], SynthFrame]


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """The generator frame ``index`` of a dataset with ``seed`` is made with."""
    return np.random.default_rng([seed, index])


def frame_key(rng: np.random.Generator) -> tuple[int, int] | None:
    """``(seed, index)`` of a generator made by :func:`frame_rng`, else None.

    Lets a generator share work between the frames of a block (e.g. one batched pose draw
    for frames ``B * (i // B) ..``, seeded by ``(seed, i // B)``) and still make each frame
    from ``(seed, index)`` alone.
    """
    seq = getattr(rng.bit_generator, "seed_seq", None)
    ent = getattr(seq, "entropy", None)
    if isinstance(ent, list | tuple) and len(ent) == 2 and not getattr(seq, "spawn_key", ()):
        return int(ent[0]), int(ent[1])
    return None

"""Test scenes for the ray caster and the hand primitives."""

from __future__ import annotations

import numpy as np


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

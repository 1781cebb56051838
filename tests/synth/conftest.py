"""Fixtures of the hand generator's tests (test_hand, test_scene): helpers are in scenes.py."""

from __future__ import annotations

import pytest

from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator


@pytest.fixture(scope="module")
def frames():
    """16 frames of the default hand generator (seed 7), made once per test module."""
    gen = hand_frame_generator()
    return [gen(i, frame_rng(7, i)) for i in range(16)]

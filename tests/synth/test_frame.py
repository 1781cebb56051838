"""The frame contract: every frame's random generator comes from (seed, index) alone."""

import numpy as np

from handvox.synth.frame import frame_key, frame_rng


def test_frame_rng_is_a_function_of_seed_and_index():
    a, b = frame_rng(5, 7).random(4), frame_rng(5, 7).random(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, frame_rng(5, 8).random(4))
    assert not np.array_equal(a, frame_rng(6, 7).random(4))


def test_frame_key_recovers_seed_and_index_only_from_frame_rng():
    assert frame_key(frame_rng(5, 7)) == (5, 7)
    assert frame_key(np.random.default_rng(3)) is None
    assert frame_key(np.random.default_rng([1, 2, 3])) is None
    assert frame_key(frame_rng(5, 7).spawn(1)[0]) is None

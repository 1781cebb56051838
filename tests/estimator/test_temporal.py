"""The One Euro filter on signals whose jitter and lag are known."""

import numpy as np
import pytest

from handvox.estimator.temporal import OneEuroConfig, OneEuroFilter, smooth_sequence
from handvox.eval.metrics import jitter_mm, lag_frames

FPS = 30.0


def _times(n):
    return np.arange(n) / FPS


def test_still_noise_is_cut_and_a_first_order_low_pass_sets_how_much():
    rng = np.random.default_rng(0)
    true = rng.uniform(-100, 100, (1, 21, 3))
    noisy = true + rng.normal(0, 3.0, (600, 21, 3))
    out = smooth_sequence(noisy, _times(600), OneEuroConfig(beta=0.0))
    # beta 0: a fixed first-order low-pass at 1 Hz, whose frame-to-frame steps of white noise
    # are alpha / sqrt(2 - alpha) of the input's (alpha at 1 Hz and 30 frames/s: 0.173)
    alpha = 1 / (1 + FPS / (2 * np.pi))
    ratio = jitter_mm(noisy[50:]) / jitter_mm(out[50:])
    assert ratio == pytest.approx(np.sqrt(2 - alpha) / alpha, rel=0.1)
    # and it stays on the still position
    assert np.abs(out[50:].mean(axis=0) - true[0]).max() < 0.5


def test_speed_opens_the_filter_so_a_moving_joint_lags_less():
    t = _times(300)
    x = 60.0 * np.sin(2 * np.pi * t / 2.0)  # 188 mm/s at its fastest
    moving = np.zeros((300, 21, 3))
    moving[..., 0] = x[:, None]
    fixed = smooth_sequence(moving, t, OneEuroConfig(beta=0.0))
    adaptive = smooth_sequence(moving, t, OneEuroConfig())
    assert lag_frames(fixed, moving) > 3.0  # a 1 Hz low-pass trails by ~4.8 frames at 30 fps
    assert lag_frames(adaptive, moving) <= 1.0


def test_no_hand_keeps_the_state_and_a_long_gap_restarts():
    f = OneEuroFilter()
    a = np.zeros((21, 3))
    f(a, 0.0)
    f(a + 1.0, 1 / FPS)
    assert np.isnan(f(np.full((21, 3), np.nan), 2 / FPS)).all()
    # a short gap: filtered from where it was
    near = f(a + 1.0, 3 / FPS)
    assert 0.0 < near[0, 0] < 1.0
    # after more than reset_after_s without a hand the new position is taken as it is
    far = f(a + 500.0, 3 / FPS + 0.6)
    np.testing.assert_array_equal(far, a + 500.0)
    with pytest.raises(ValueError, match="time must increase"):
        f(a, 0.0)


def test_config_rejects_nonsense():
    with pytest.raises(ValueError):
        OneEuroConfig(min_cutoff_hz=0.0)
    with pytest.raises(ValueError):
        OneEuroConfig(beta=-1.0)


def test_lag_of_a_shifted_copy():
    t = np.arange(200, dtype=float)
    x = np.zeros((200, 2, 3))
    x[..., 1] = (np.sin(t / 7.0) * 50)[:, None]
    late = np.zeros_like(x)
    late[..., 1] = (np.sin((t - 2.5) / 7.0) * 50)[:, None]
    assert lag_frames(late, x) == pytest.approx(2.5, abs=0.06)
    assert lag_frames(x, x) == 0.0


def test_track_restarts_the_smoothing_where_auto_changes_hand():
    """With hand="auto" a frame may be estimated as the other hand: its joints (a mirrored
    estimate) must not be blended with the last hand's."""
    from types import SimpleNamespace

    from handvox.estimator.temporal import track
    from handvox.io.stream import StreamFrame

    sides = ["right", "right", "left", "left", "right"]
    rng = np.random.default_rng(0)
    raw = [rng.normal(0.0, 5.0, (21, 3)) + (100.0 if s == "left" else 0.0) for s in sides]

    def estimator(depth, camera, timings=None, hand="right", near_xyz=None, track=None):
        k = int(depth[0, 0])
        return SimpleNamespace(joints_xyz=raw[k][None], found=np.array([True]),
                               com_xyz=raw[k].mean(0)[None], hands=[sides[k]])  # fmt: skip

    frames = [StreamFrame(k, np.full((4, 4), float(k), np.float32), k / FPS, str(k))
              for k in range(len(sides))]  # fmt: skip
    out = [t.joints for t in track(frames, estimator, camera="nyu", hand="auto",
                                   smoothing=OneEuroConfig(), prior=False)]  # fmt: skip
    for k in (0, 2, 4):  # the first frame and each change of hand: as estimated, no state
        np.testing.assert_allclose(out[k], raw[k])
    for k in (1, 3):  # the same hand again: smoothed towards the last frame
        assert not np.allclose(out[k], raw[k])
        assert np.abs(out[k] - raw[k - 1]).mean() < np.abs(raw[k] - raw[k - 1]).mean()

"""Joints over time: a stream estimated frame by frame (:func:`track`) and smoothed by the One Euro
filter (Casiez, Roussel and Vogel, CHI 2012).

A frame's joints jitter by a few millimetres from frame to frame even when the hand is still
(sensor noise moves the surface, the network answers each frame afresh). A fixed low-pass filter
trades that jitter against lag; the One Euro filter lowers its cut-off while a joint is still
and raises it with the joint's speed, so a still hand is smoothed hard and a moving one barely
delayed. Per joint and frame, with ``dt`` the time since the last frame:

    alpha(f) = 1 / (1 + 1 / (2 pi f dt))
    v       <- low-pass of (x - x_hat) / dt at ``d_cutoff_hz``        (mm/s, a vector)
    cutoff   = min_cutoff_hz + beta * |v|                             (Hz)
    x_hat   <- low-pass of x at cutoff

One speed a joint (the length of its velocity), not one a coordinate: the cut-off then does not
depend on how the camera is turned. The velocity is low-passed as a vector before its length is
taken, so a still joint's noise averages out instead of adding up to a speed.

The defaults (:class:`OneEuroConfig`) were chosen on rendered sequences (seeds 1-3 of
:func:`handvox.synth.sequence.render_sequence`, docs/benchmarks.md), not on any test set:
``min_cutoff_hz`` sets how smooth a still hand is (lower: smoother), ``beta`` how fast the filter
lets go once the hand moves (higher: less lag, more jitter in motion). A frame without a hand
keeps the filter's state; a gap longer than ``reset_after_s`` starts it afresh (the hand may have
come back elsewhere).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from handvox.camera import Camera
from handvox.errors import HandvoxError
from handvox.estimator.locate import HandTrack
from handvox.estimator.pipeline import HandPoseEstimator, Prediction
from handvox.io.stream import DepthStream, StreamFrame


@dataclass(frozen=True)
class OneEuroConfig:
    """Parameters of :class:`OneEuroFilter`.

    Attributes:
        min_cutoff_hz: cut-off of a still joint. 1 Hz cuts a still hand's frame-to-frame jitter
            about 8x at 30 frames/s.
        beta: cut-off added per mm/s of a joint's speed (Hz per mm/s). 0.02: a joint moving at
            250 mm/s (a hand waving slowly) is filtered at 6 Hz, under a frame of lag at 30
            frames/s.
        d_cutoff_hz: cut-off of the speed estimate itself.
        reset_after_s: a gap without a hand longer than this restarts the filter.
    """

    min_cutoff_hz: float = 1.0
    beta: float = 0.02
    d_cutoff_hz: float = 1.0
    reset_after_s: float = 0.5

    def __post_init__(self) -> None:
        if min(self.min_cutoff_hz, self.d_cutoff_hz) <= 0 or self.beta < 0:
            raise ValueError("One Euro filter: cut-offs must be positive and beta >= 0")


def smoothing_factor(cutoff_hz: np.ndarray | float, dt_s: float) -> np.ndarray | float:
    """The exponential smoothing factor of a first-order low-pass at ``cutoff_hz`` sampled every
    ``dt_s`` seconds (1: no smoothing)."""
    return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz) * dt_s))


class OneEuroFilter:
    """Filters ``(J, 3)`` joints frame by frame (module docstring); stateful, one per hand."""

    def __init__(self, config: OneEuroConfig | None = None):
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None  # (J, 3) filtered position
        self._v: np.ndarray | None = None  # (J, 3) filtered velocity, mm/s
        self._t: float | None = None

    def __call__(self, joints: np.ndarray, t_s: float) -> np.ndarray:
        """The filtered ``(J, 3)`` joints at time ``t_s`` (seconds, increasing) of the measured
        ``joints``; joints with NaN (no hand) return NaN and leave the state as it was."""
        x = np.asarray(joints, np.float64)
        if not np.isfinite(x).all():
            return np.full_like(x, np.nan)
        cfg = self.config
        if self._x is None or self._t is None or t_s - self._t > cfg.reset_after_s:
            self._x, self._v, self._t = x.copy(), np.zeros_like(x), t_s
            return x.copy()
        dt = t_s - self._t
        if dt <= 0:
            raise ValueError(f"One Euro filter: time must increase (got {t_s} after {self._t})")
        a_d = smoothing_factor(cfg.d_cutoff_hz, dt)
        self._v = self._v + a_d * ((x - self._x) / dt - self._v)
        speed = np.linalg.norm(self._v, axis=-1)
        a = smoothing_factor(cfg.min_cutoff_hz + cfg.beta * speed, dt)[..., None]
        self._x = self._x + a * (x - self._x)
        self._t = t_s
        return self._x.copy()


def smooth_sequence(
    joints: np.ndarray, times_s: np.ndarray, config: OneEuroConfig | None = None
) -> np.ndarray:
    """``(T, J, 3)`` joints of a sequence (NaN frames: no hand) filtered frame by frame at
    ``(T,)`` time stamps, as :class:`OneEuroFilter` does live."""
    f = OneEuroFilter(config)
    return np.stack([f(j, float(t)) for j, t in zip(joints, times_s, strict=True)])


# The last hand steers the next frame's hand finding only this soon after it (then the hand may
# be anywhere); a stream without time stamps: the frame before.
PRIOR_MAX_GAP_S = 0.5
# Frames per read of the learned locator's network while a hand is tracked (HandTrack.every);
# the frames between carry the hand it found. Chosen on rendered sequences of seeds 1-3
# (benchmarks/live_loop.py --parts carry; docs/benchmarks.md, "Finding the hand every few frames").
LOCATOR_EVERY = 4


@dataclass
class TrackedFrame:
    """One frame of :func:`track`.

    Attributes:
        frame: the stream's frame.
        prediction: the estimator's, batch 1 (its joints as estimated, unfiltered).
        joints: ``(J, 3)`` mm, smoothed when the track smooths; None without a hand.
        latency_ms: from the frame's arrival (read) to its joints: estimation and smoothing.
        timings: seconds per stage of this frame (the estimator's stages, ``smoothing``).
    """

    frame: StreamFrame
    prediction: Prediction
    joints: np.ndarray | None
    latency_ms: float
    timings: dict[str, float] = field(default_factory=dict)


def track(
    stream: DepthStream | Iterable[StreamFrame],
    estimator: HandPoseEstimator,
    camera: Camera | str | None = None,
    hand: str = "right",
    smoothing: OneEuroConfig | None = None,
    timed: bool = False,
    prior: bool = True,
    locator_every: int = LOCATOR_EVERY,
) -> Iterator[TrackedFrame]:
    """Estimate every frame of ``stream`` (batch 1) and smooth the joints with a One Euro filter
    of ``smoothing`` (None: as estimated). ``camera``: of plain frame iterables (a stream's
    own otherwise). ``timed``: fill :attr:`TrackedFrame.timings` (costs a few clock reads).
    ``prior``: the last frame's hand centre, when it had one no more than
    :data:`PRIOR_MAX_GAP_S` before, steers the next frame's hand finding (the estimator's
    ``near_xyz``: of two candidates, the locator takes the one near it). ``locator_every``:
    with the prior, the locator's network reads every this many frames and the frames between
    carry the hand it found (:class:`~handvox.estimator.locate.HandTrack`; 1: every frame read;
    the depth rule ignores it). With ``hand="auto"`` a frame estimated as the other hand than the
    last found one restarts the smoothing.

    Raises:
        HandvoxError: smoothing a stream without time stamps.
    """
    camera = camera if camera is not None else stream.camera  # type: ignore[union-attr]
    smoother = OneEuroFilter(smoothing) if smoothing is not None else None
    last: tuple[float, np.ndarray] | None = None  # (time, centre) of the last frame with a hand
    side: str | None = None  # which hand the last found frame was estimated as (hand="auto")
    hand_track = HandTrack(locator_every) if prior else None
    for k, frame in enumerate(stream):
        t_in = time.perf_counter()
        timings: dict[str, float] = {}
        now = frame.timestamp_s if frame.timestamp_s is not None else float(k)
        near = None
        if prior and last is not None and (frame.timestamp_s is None or
                                           now - last[0] <= PRIOR_MAX_GAP_S):  # fmt: skip
            near = last[1]
        elif hand_track is not None:
            hand_track.forget()  # no hand, or too long ago: read the frame
        pred = estimator(frame.depth, camera, timings=timings if timed else None, hand=hand,
                         near_xyz=near, track=hand_track)  # fmt: skip
        joints = pred.joints_xyz[0] if pred.found[0] else None
        if joints is not None:
            last = (now, pred.com_xyz[0])
        elif hand_track is not None:
            hand_track.forget()  # the hand found was not one (the check): read the next frame
        if smoother is not None:
            if frame.timestamp_s is None:
                raise HandvoxError(
                    "the stream has no time stamps: give its frame rate (--fps) for the "
                    "smoothing, or turn the smoothing off (--no-smooth)"
                )
            t_s = time.perf_counter()
            if joints is not None:
                if side is not None and pred.hands[0] != side:
                    smoother.reset()  # a left hand's joints are no state for a right one's
                joints = smoother(joints, frame.timestamp_s)
            if timed:
                timings["smoothing"] = time.perf_counter() - t_s
        if pred.found[0]:
            side = pred.hands[0]
        latency = (time.perf_counter() - t_in) * 1000.0
        yield TrackedFrame(frame, pred, joints, latency, timings)

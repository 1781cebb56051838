"""The hand check: is the cube the estimator built around the segmented centre on a hand, and is
that hand a left or a right one?

Segmentation takes the nearest sizeable thing for the hand, so without a check a box held before
the camera comes back with a skeleton drawn on it, and a left hand with its thumb on the little
finger. The check is a small 3-D CNN over the same TSDF cube the pose net reads (so it costs one
small network pass, no second volume), with two logits:

- ``hand``: the cube holds a hand, centred within :data:`ON_HAND_MM` of its joints' mean
  (trained on rendered frames whose hand was left out, :attr:`HandSynthConfig.no_hand_prob`:
  held objects, forearms, objects near the hand, bodies and walls, and on frames whose
  segmentation missed the hand);
- ``left``: the hand is a left one. Rendered right hands mirrored (the cube flipped along x, which
  is the cube of the frame flipped left to right seen through :meth:`Camera.mirrored`) are the
  left ones.

:func:`frame_confidence` combines ``p(hand)`` with how much the test-time views of the pose net
agree (their spread, per joint and per frame); ``found`` needs ``p(hand)`` at least the check's
``threshold``, chosen on validation frames to keep their hands. Trained by
:mod:`handvox.train.check`; figures in docs/benchmarks.md, "The hand check".
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from handvox import config as cfgio
from handvox.atomic import atomic_path, write_text
from handvox.errors import DataError
from handvox.estimator.cpu import frozen_for_cpu
from handvox.estimator.volume import VolumeConfig

# A cube whose centre lies farther than this from the hand's joint mean counts as "not on the
# hand" in training: the pose net's cube is 300 mm across, the hand ~200 mm long, so at 60 mm off
# a fingertip or the wrist starts to leave it.
ON_HAND_MM = 60.0
# The views' spread (mm) at which the confidence halves when no check says otherwise.
SPREAD_MM = 10.0
# hand="auto" needs a left-or-right classifier (handvox.estimator.handedness) whose accuracy on
# held-out frames reached this: below it a guess would be worse than asking. (The check's own
# left logit, meta["validation"]["handedness_accuracy"], is far below: a coin.)
HANDEDNESS_MIN = 0.95
# found needs p(hand) >= the check's threshold; this one until training sets it from validation.
HAND_THRESHOLD = 0.5

DEFAULT_CHECK_DIR = Path(__file__).resolve().parents[1] / "data" / "hand_check"
# The shipped checks, one per way of finding the hand (SegmentConfig.method): the depth rule and
# the locator centre their cubes differently on what is not a hand (an arm, an object), and a
# check learns the cubes it is shown.
SHIPPED_CHECK_DIRS = {
    "depth": DEFAULT_CHECK_DIR,
    "learned": DEFAULT_CHECK_DIR.parent / "hand_check_learned",
}


@dataclass(frozen=True)
class HandCheckConfig:
    """The check network and the cube it reads.

    Attributes:
        volume: the TSDF cube (the shipped pose model's: the pose path's plain cube is reused).
        width: channels of the first level (doubled at each of the four levels).
        spread_mm: the test-time views' spread (mean over joints of the distance to their mean)
            at which :func:`frame_confidence` halves; set from validation frames in training.
        threshold: ``found`` needs ``p(hand)`` at least this; set in training so that the
            validation frames' hands are kept (:func:`handvox.train.check.choose_threshold`).
        segment_method: how the cubes it learned were centred (``SegmentConfig.method``); an
            estimator that finds the hand otherwise shows it cubes it never saw.
    """

    volume: VolumeConfig = VolumeConfig(size=32, voxel_mm=9.375)
    width: int = 8
    spread_mm: float = SPREAD_MM
    threshold: float = HAND_THRESHOLD
    segment_method: str = "depth"

    def to_dict(self) -> dict:
        return cfgio.to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HandCheckConfig:
        return cfgio.from_dict(cls, d)


class HandCheckNet(nn.Module):
    """``(B, 1, D, D, D)`` TSDF -> ``(B, 2)`` logits (hand, left): four levels of 3^3
    convolutions with batch norm, each halving the cube, then two fully connected layers over
    the flattened ``(D / 16)^3`` cells. Flattened, not averaged over the cube: which hand it is
    is where the thumb lies against the palm and the fingers, and a mean over positions (tried
    first: 53 % on left vs right after 1,500 steps) keeps too little of where things are."""

    def __init__(self, width: int = 8, size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for k in range(4):
            cout = width * 2**k
            layers += [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool3d(2)]  # fmt: skip
            cin = cout
        self.features = nn.Sequential(*layers)
        cells = (size // 16) ** 3
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * cells, 128), nn.ReLU(inplace=True), nn.Linear(128, 2)
        )
        self.width = width

    def forward(self, tsdf: Tensor) -> Tensor:
        return self.head(self.features(tsdf))


@dataclass
class HandCheck:
    """A loaded check: its network (eval mode) and config."""

    net: HandCheckNet
    config: HandCheckConfig
    meta: dict

    def for_cpu(self) -> HandCheck:
        """The same check with its network run as :func:`~handvox.estimator.cpu.frozen_for_cpu`
        (several times faster on CPU, same results within float rounding)."""
        size = self.config.volume.size
        net = frozen_for_cpu(self.net.cpu(), torch.zeros(1, 1, size, size, size))
        return dataclasses.replace(self, net=net)

    @torch.inference_mode()
    def __call__(self, tsdf: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """``(B, 1, D, D, D)`` TSDF (the config's cube) -> ``p(hand)``, ``p(left)``, ``(B,)``."""
        net = self.net.to(tsdf.device)
        p = torch.sigmoid(net(tsdf.float())).double().cpu().numpy()
        return p[:, 0], p[:, 1]


def save_hand_check(net: HandCheckNet, config: HandCheckConfig, folder: str | Path,
                    meta: dict) -> Path:  # fmt: skip
    """``folder/model.safetensors`` and ``folder/config.json`` (config and ``meta``)."""
    folder = Path(folder)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    doc = {"format": "handvox-hand-check", "config": config.to_dict(), "meta": meta}
    write_text(folder / "config.json", json.dumps(doc, indent=2) + "\n")
    return folder


def load_hand_check(folder: str | Path = DEFAULT_CHECK_DIR) -> HandCheck:
    """A :class:`HandCheck` from ``folder`` (:func:`save_hand_check`).

    Raises:
        DataError: not such a folder.
    """
    folder = Path(folder)
    try:
        doc = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if doc.get("format") != "handvox-hand-check":
            raise ValueError("config.json is not a hand check's")
        config = HandCheckConfig.from_dict(doc["config"])
        net = HandCheckNet(config.width, config.volume.size)
        net.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise DataError(folder, f"not a hand check folder: {e}") from e
    return HandCheck(net.eval(), config, doc.get("meta", {}))


@lru_cache(maxsize=4)
def shipped_hand_check(segment_method: str = "depth") -> HandCheck | None:
    """The shipped check for cubes centred by ``segment_method`` (:data:`SHIPPED_CHECK_DIRS`),
    or None where the package holds none."""
    folder = SHIPPED_CHECK_DIRS.get(segment_method)
    if folder is None or not (folder / "config.json").is_file():
        return None
    return load_hand_check(folder)


def view_spread(views: np.ndarray) -> np.ndarray:
    """How much the test-time views disagree: ``(V, B, J, 3)`` joints of V views -> ``(B, J)``
    distance (mm) of each view's joint from the views' mean, averaged over the views."""
    mean = views.mean(0, keepdims=True)
    return np.linalg.norm(views - mean, axis=-1).mean(0)


def joint_confidence(spread: np.ndarray, spread_mm: float | np.ndarray) -> np.ndarray:
    """``(B, J)`` spread (mm) -> ``(B, J)`` confidence in (0, 1]: 1 where the views agree (or
    a heatmap is a point), halving at every ``spread_mm`` (one, or ``(J,)``: each joint's)."""
    return np.exp2(-np.asarray(spread, np.float64) / spread_mm)


def frame_confidence(
    p_hand: np.ndarray, spread: np.ndarray | None, spread_mm: float | np.ndarray
) -> np.ndarray:
    """``(B,)`` confidence of each frame's estimate: ``p(hand)`` times the pose net's
    certainty (``2^-x``, x the frame's mean over joints of ``spread / spread_mm``);
    ``p(hand)`` alone without a spread."""
    p = np.asarray(p_hand, np.float64)
    if spread is None:
        return p
    return p * np.exp2(-(np.asarray(spread, np.float64) / spread_mm).mean(-1))

"""The estimator as one callable: depth image(s) in, 3D joints out.

Pipeline (paper Sec. 3), per frame:

1. :func:`handvox.estimator.locate.find_hand`: the hand's mask and centre of mass (COM) from
   depth alone (the model's ``SegmentConfig.method``: the depth rule or the learned locator).
   No hand -> ``found=False``, NaN joints and the segmenter's reason.
2. :func:`handvox.estimator.volume.projective_tsdf` of the masked depth in the cube around the COM
   (pixels outside the mask count as background, so body and forearm beyond the wrist cut are not
   seen),
   as ``handvox train`` builds its volumes (without the mask where the model was trained so).
   :func:`hand_volumes` is this step.
3. Refinement net (when the model has one), then the pose net: joints relative to the COM, in
   units of ``pose.target_scale_mm``, decoded by :func:`handvox.estimator.volume.decode_joints`.
4. The hand check (:mod:`handvox.estimator.check`) on the plain cube: ``p(hand)`` (a frame below
   the check's threshold is not found: "not a hand") and ``p(left)``; with ``hand="auto"``
   the handedness classifier's ``p(left)`` (:mod:`handvox.estimator.handedness`), and the
   frames it calls left estimated as left hands. The confidence of each
   frame and joint from ``p(hand)`` and how sure the pose net is: its heatmaps' spread (the
   dense head, calibrated: ``EstimatorConfig.joint_spread_mm``), else the test-time views'
   agreement.

``fast=True`` (the default) on CPU runs the networks as the fastest measured CPU variants
(:mod:`handvox.estimator.cpu`); ``fast=False`` runs them exactly as trained (fp32, eager).
"""

from __future__ import annotations

import copy
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from handvox.camera import Camera, as_camera
from handvox.errors import DataError, HandvoxError
from handvox.estimator.check import (
    HANDEDNESS_MIN,
    SPREAD_MM,
    HandCheck,
    frame_confidence,
    joint_confidence,
    load_hand_check,
    shipped_hand_check,
    view_spread,
)
from handvox.estimator.cpu import fast_cpu_networks
from handvox.estimator.handedness import (
    Handedness,
    load_handedness,
    right_logits,
    shipped_handedness,
)
from handvox.estimator.locate import HandTrack, find_hand
from handvox.estimator.networks import heatmap_moments
from handvox.estimator.segment import Segmentation, SegmentConfig
from handvox.estimator.volume import VolumeConfig, decode_joints, projective_tsdf
from handvox.estimator.weights import Estimator, load_model
from handvox.joints import JointSet, get_joint_set

# Where a model shipped with the package would live (a model folder: model.safetensors +
# config.json). Nothing is shipped yet.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "data" / "default_model"


@dataclass
class Prediction:
    """Joints of a batch of frames. Frames where no hand was found have ``found=False``, NaN
    joints and COM, and a reason.

    Attributes:
        joints_xyz: ``(B, J, 3)`` float64 mm, camera frame (OpenCV: x right, y down, z forward).
        joints_uvd: ``(B, J, 3)`` float64 u, v (px), d (mm).
        com_xyz: ``(B, 3)`` float64 mm: the centre of the volume the networks saw.
        com_uvd: ``(B, 3)`` float64.
        found: ``(B,)`` bool.
        reason: ``B`` strings, "" where found.
        joint_set: name of the joint set of ``joints_*``.
        hand: the call's ``hand``: ``"right"``, ``"left"`` or ``"auto"``.
        hands: ``B`` strings, the hand each frame was estimated as (``right`` or ``left``).
        p_hand: ``(B,)`` the hand check's probability that the cube is on a hand; NaN where no
            hand was segmented or no check ran (``hand_check=False``).
        p_left: ``(B,)`` the probability that the hand (as the frame shows it, before any
            mirroring) is a left one: the hand check's, with ``hand="auto"`` the handedness
            classifier's; NaN likewise.
        confidence: ``(B,)`` in [0, 1]: ``p_hand`` times how sure the pose net is of the
            frame's joints (:func:`handvox.estimator.check.frame_confidence`); NaN where not
            estimated.
        joint_confidence: ``(B, J)`` in (0, 1]: per joint, from its heatmap's spread (a dense
            head calibrated by ``handvox calibrate``), else from the test-time views'
            agreement; NaN where not estimated or where the model has neither.
    """

    joints_xyz: np.ndarray
    joints_uvd: np.ndarray
    com_xyz: np.ndarray
    com_uvd: np.ndarray
    found: np.ndarray
    reason: list[str]
    joint_set: str
    hand: str = "right"
    hands: list[str] | None = None
    p_hand: np.ndarray | None = None
    p_left: np.ndarray | None = None
    confidence: np.ndarray | None = None
    joint_confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        b, j = self.joints_xyz.shape[:2]
        if self.hands is None:
            self.hands = [self.hand if self.hand in ("right", "left") else "right"] * b
        for name in ("p_hand", "p_left", "confidence"):
            if getattr(self, name) is None:
                setattr(self, name, np.full(b, np.nan))
        if self.joint_confidence is None:
            self.joint_confidence = np.full((b, j), np.nan)

    def __len__(self) -> int:
        return len(self.found)

    def select(self, index: np.ndarray) -> Prediction:
        """The frames ``index`` (an integer array) of this prediction."""
        i = np.asarray(index, np.int64)
        return Prediction(self.joints_xyz[i], self.joints_uvd[i], self.com_xyz[i],
                          self.com_uvd[i], self.found[i], [self.reason[k] for k in i],
                          self.joint_set, self.hand, [self.hands[k] for k in i], self.p_hand[i],
                          self.p_left[i], self.confidence[i],
                          self.joint_confidence[i])  # fmt: skip


def as_depth_batch(depth: np.ndarray | torch.Tensor, camera: Camera) -> np.ndarray:
    """``(H, W)`` or ``(B, H, W)`` depth (mm, any real dtype, NumPy or torch on any device) as
    ``(B, H, W)`` float32 NumPy; DataError unless the size is the camera's."""
    if isinstance(depth, torch.Tensor):
        depth = depth.detach().to("cpu", torch.float32).numpy()
    depth = np.asarray(depth)
    if depth.dtype.kind not in "fiu":
        raise DataError(None, f"depth must be numeric, got {depth.dtype}")
    if depth.ndim == 2:
        depth = depth[None]
    if depth.ndim != 3:
        raise DataError(None, f"depth must be (H, W) or (B, H, W), got shape {depth.shape}")
    camera.check_depth(depth)
    return np.ascontiguousarray(depth, dtype=np.float32)


def hand_volumes(
    depth: np.ndarray,
    segs: list[Segmentation],
    camera: Camera,
    volume: VolumeConfig,
    device: str | torch.device = "cpu",
    use_mask: bool = True,
    centres: np.ndarray | None = None,
    angle_deg: float | np.ndarray = 0.0,
    scale: float = 1.0,
) -> torch.Tensor:
    """TSDF volumes of found hands: each frame's depth inside its hand mask (or all of it with
    ``use_mask=False``), around its COM (or ``centres``).

    Args:
        depth: ``(B, H, W)`` float32 mm.
        segs: ``B`` segmentations of those frames, all found.
        centres: ``(B, 3)`` mm cube centres instead of the segmentations' COMs.
        angle_deg: the cube rotated about the viewing axis, as training's augmentation rotates
            it, one angle for all or ``(B,)``; 0 is the plain cube.
        scale: the cube scaled by this factor about its centre, as training's augmentation
            scales it (> 1: the hand looks smaller); 1 is the plain cube.
    Returns:
        ``(B, 1, D, D, D)`` float32 on ``device``.
    """
    if centres is None:
        centres = np.stack([s.com_xyz for s in segs])
    com = torch.from_numpy(np.asarray(centres, np.float64)).to(device)
    mask = None
    if use_mask:
        mask = torch.from_numpy(np.stack([s.mask for s in segs])).to(device)
    d = torch.from_numpy(depth).to(device)
    view = {}
    angle_deg = np.broadcast_to(np.asarray(angle_deg, np.float64), (len(d),))
    if angle_deg.any() or scale != 1:
        angle = torch.from_numpy(np.deg2rad(angle_deg)).to(device)
        view = {"angle": angle, "scale": torch.full_like(angle, scale)}
    return projective_tsdf(d, com, camera, volume, mask=mask, **view)


def pointing_deg(uv: np.ndarray, joint_set: JointSet) -> np.ndarray:
    """``(..., J, 2)`` image points of ``joint_set`` -> ``(...)`` the direction the hand points
    in the image, wrist -> middle finger's MCP, degrees: 0 up (image v decreasing), 90 right,
    +-180 down."""
    names = joint_set.names
    if "wrist" not in names or "middle_mcp" not in names:
        raise HandvoxError(f"joint set {joint_set.name} has no wrist and middle_mcp to point")
    d = uv[..., names.index("middle_mcp"), :] - uv[..., names.index("wrist"), :]
    return np.degrees(np.arctan2(d[..., 0], -d[..., 1]))


class _Clock:
    """``with clock(stage):`` adds the block's wall time to ``timings[stage]`` (no-op for None)."""

    def __init__(self, timings: dict[str, float] | None):
        self.timings = timings

    @contextmanager
    def __call__(self, stage: str):
        if self.timings is None:
            yield
            return
        t0 = time.perf_counter()
        yield
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - t0


class HandPoseEstimator:
    """Load a model folder once, then call on depth images.

    Example::

        est = HandPoseEstimator.from_folder("runs/nyu/model")
        pred = est(read_depth("depth_1_0000001.png"), "nyu")
        pred.joints_xyz[0]  # (J, 3) mm

    Args:
        estimator: networks and config (:func:`handvox.estimator.weights.load_model`).
        device: where volumes are built and networks run.
        fast: on CPU, the fast network variants (module docstring); False: exact fp32.
        batch_size: frames per network pass (bounds memory on large inputs).
        use_mask: TSDF of the hand mask only; default: as the model was trained (its
            ``meta["input"]["mask"]`` from ``handvox train``), else True.
        recentre: extra passes with the cube re-centred on the mean of the joints just
            predicted (default: the model's ``config.recentre``). The COM reported is the last
            cube centre.
        test_rotations_deg: angles (besides 0) of extra cubes rotated about the viewing axis
            whose predictions, rotated back, are averaged with the plain one (default: the
            model's ``config.test_rotations_deg``); each costs one more TSDF and network pass.
        test_scales: factors (besides 1) of extra unrotated cubes scaled about their centre,
            averaged likewise (default: the model's ``config.test_scales``).
        segment_method: how the hand is found (``SegmentConfig.method``: ``"depth"``, the
            nearest object's end; ``"learned"``, the shipped locator); default: the model's.
        locator_phases: with the learned locator, the grid sampling phases a frame read
            without a prior is read at (``SegmentConfig.locator_phases``: 1, or 4 to vote
            against a near tie that one phase decides, at several times a read's cost);
            default: the model's.
        other_min_heat: with the learned locator and a handedness classifier, the share of
            the locator's heat a second candidate must hold for a frame told its hand
            (``hand="right"`` or ``"left"``) to be decided between its two candidates by the
            classifier (``SegmentConfig.other_min_heat``; 0: never); default: the model's.
        upright_beyond_deg: a frame whose hand points further than this from up in the image
            is estimated again on a cube turned to hold it upright
            (``EstimatorConfig.upright_beyond_deg``); None: never; default: the model's.
        hand_check: the hand check (:mod:`handvox.estimator.check`): True, the shipped one
            (none where the package holds none); a folder or a loaded
            :class:`~handvox.estimator.check.HandCheck`; False: none (every segmented frame is
            estimated, ``p_hand`` NaN).
        handedness: the left-or-right classifier ``hand="auto"`` decides with
            (:mod:`handvox.estimator.handedness`): True, the shipped one (none where the package
            holds none); a folder or a loaded :class:`~handvox.estimator.handedness.Handedness`;
            False: none (``hand="auto"`` refused).

    Raises:
        HandvoxError: a model whose pose net was never trained (``handvox train --mode refine``
            trains the refinement net alone).
    """

    def __init__(
        self,
        estimator: Estimator,
        device: str | torch.device = "cpu",
        fast: bool = True,
        batch_size: int = 8,
        use_mask: bool | None = None,
        recentre: int | None = None,
        test_rotations_deg: tuple[float, ...] | None = None,
        test_scales: tuple[float, ...] | None = None,
        segment_method: str | None = None,
        hand_check: bool | str | Path | HandCheck = True,
        upright_beyond_deg: float | None | str = "model",
        handedness: bool | str | Path | Handedness = True,
        locator_phases: int | None = None,
        other_min_heat: float | None = None,
    ):
        self.config = estimator.config
        if segment_method is not None:
            seg = replace(self.config.segment, method=segment_method)
            self.config = replace(self.config, segment=seg)
        if locator_phases is not None:
            seg = replace(self.config.segment, locator_phases=locator_phases)
            self.config = replace(self.config, segment=seg)
        if other_min_heat is not None:
            seg = replace(self.config.segment, other_min_heat=other_min_heat)
            self.config = replace(self.config, segment=seg)
        method = self.config.segment.method
        if hand_check is True:
            self.check = shipped_hand_check(method)
        elif hand_check is False or hand_check is None:
            self.check = None
        elif isinstance(hand_check, HandCheck):
            self.check = hand_check
        else:
            self.check = load_hand_check(hand_check)
        if handedness is True:
            self.handedness = shipped_handedness()
        elif handedness is False or handedness is None:
            self.handedness = None
        elif isinstance(handedness, Handedness):
            self.handedness = handedness
        else:
            self.handedness = load_handedness(handedness)
        if self.check is not None and self.check.config.segment_method != method:
            warnings.warn(
                f"this hand check learned cubes centred by segment method "
                f"{self.check.config.segment_method!r}, the estimator's is {method!r}: its p_hand "
                "is not what it was validated to be",
                stacklevel=2,
            )
        if test_rotations_deg is not None:
            self.config = replace(self.config, test_rotations_deg=tuple(test_rotations_deg))
        if test_scales is not None:
            self.config = replace(self.config, test_scales=tuple(test_scales))
        if upright_beyond_deg != "model":
            self.config = replace(self.config, upright_beyond_deg=upright_beyond_deg)
        self.meta = estimator.meta
        trained = self.meta.get("trained")
        if trained is not None and "pose" not in trained:
            raise HandvoxError(
                f"this model's pose net was not trained (trained: {', '.join(trained)}); "
                "train a pose net on it (handvox train --mode finetune --init DIR, or --mode pose)"
            )
        if use_mask is None:
            use_mask = bool(self.meta.get("input", {}).get("mask", True))
        self.recentre = int(self.config.recentre if recentre is None else recentre)
        self.use_mask = use_mask
        self.joint_set: JointSet = get_joint_set(self.config.joint_set)
        if self.config.upright_beyond_deg is not None:
            pointing_deg(np.zeros((len(self.joint_set), 2)), self.joint_set)  # it can point
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise HandvoxError(f"device {device}: CUDA is not available to this torch build")
        self.batch_size = max(1, int(batch_size))
        # The exact networks stay available (export, comparisons) next to the fast ones.
        self.pose_net = estimator.pose_net.to(self.device).eval()
        self.refine_net = None
        if estimator.refine_net is not None:
            self.refine_net = estimator.refine_net.to(self.device).eval()
        self.fast = fast and self.device.type == "cpu"
        self._check = self.check
        self._side: Handedness | None = None  # the classifier as run: made at its first use
        self._spare_check: HandCheck | None = None  # _choice_check's, without self.check
        if self.fast:
            self._pose, self._refine, self.variants = fast_cpu_networks(
                self.pose_net, self.refine_net
            )
            if self.check is not None:
                self._check = self.check.for_cpu()
                self.variants["check"] = "fp32-frozen"
        else:
            self._pose, self._refine = self.pose_net, self.refine_net
            self.variants = {"pose": "fp32"} | ({"refine": "fp32"} if self.refine_net else {})

    @classmethod
    def from_folder(
        cls, path: str | Path, device: str | torch.device = "cpu", fast: bool = True, **kwargs
    ) -> HandPoseEstimator:
        """Load a model folder (``model.safetensors`` + ``config.json``)."""
        return cls(load_model(path, device="cpu"), device=device, fast=fast, **kwargs)

    @classmethod
    def default(
        cls, device: str | torch.device = "cpu", fast: bool = True, **kwargs
    ) -> HandPoseEstimator:
        """The model shipped with handvox (:data:`DEFAULT_MODEL_DIR`)."""
        if not (DEFAULT_MODEL_DIR / "config.json").is_file():
            raise HandvoxError(
                f"handvox ships no trained model yet (looked in {DEFAULT_MODEL_DIR}); "
                "train one with `handvox train` and load its folder "
                "(HandPoseEstimator.from_folder(DIR), or --model DIR on the command line)"
            )
        return cls.from_folder(DEFAULT_MODEL_DIR, device=device, fast=fast, **kwargs)

    @property
    def segment_config(self) -> SegmentConfig:
        return self.config.segment

    def without_refinement(self) -> HandPoseEstimator:
        """The same estimator with the refinement net skipped (the pose path alone; for timing,
        or for models trained without it)."""
        est = Estimator(replace(self.config, refine=None), self.pose_net, None, self.meta)
        keep = (self.batch_size, self.use_mask, self.recentre)
        tta = (self.config.test_rotations_deg, self.config.test_scales)
        return HandPoseEstimator(est, self.device, self.fast, *keep, *tta,
                                 hand_check=self.check or False,
                                 handedness=self.handedness or False)  # fmt: skip

    def without_check(self) -> HandPoseEstimator:
        """The same estimator without the hand check: every segmented frame is estimated and
        found (the benchmark protocols, whose frames all show a hand, score so)."""
        if self.check is None:
            return self
        est = Estimator(self.config, self.pose_net, self.refine_net, self.meta)
        keep = (self.batch_size, self.use_mask, self.recentre)
        tta = (self.config.test_rotations_deg, self.config.test_scales)
        return HandPoseEstimator(est, self.device, self.fast, *keep, *tta, hand_check=False,
                                 handedness=self.handedness or False)  # fmt: skip

    # --- stages ---------------------------------------------------------------------------------
    def segment(
        self,
        depth: np.ndarray,
        camera: Camera,
        near_xyz: np.ndarray | None = None,
        track: HandTrack | None = None,
    ) -> list[Segmentation]:
        """``(B, H, W)`` float32 mm -> B segmentations (mask, COM, found, reason); ``near_xyz``
        ``(B, 3)``: where each frame's hand was a frame before (NaN rows: unknown); ``track``:
        the sequence's (batch 1; :func:`handvox.estimator.locate.locate_hand`)."""
        near = [None] * len(depth) if near_xyz is None else near_xyz
        return [
            find_hand(d, camera, self.config.segment, n, track)
            for d, n in zip(depth, near, strict=True)
        ]

    def volumes(
        self,
        depth: np.ndarray,
        segs: list[Segmentation],
        camera: Camera,
        centres: np.ndarray | None = None,
        angle_deg: float | np.ndarray = 0.0,
        scale: float = 1.0,
    ) -> torch.Tensor:
        """``(B, H, W)`` depth of found hands -> ``(B, 1, D, D, D)`` TSDF on the device, around
        the COMs (or ``centres`` ``(B, 3)``), the cube rotated by ``angle_deg`` (one or
        ``(B,)``) and scaled by ``scale``."""
        cfg = self.config.volume
        return hand_volumes(
            depth, segs, camera, cfg, self.device, self.use_mask, centres, angle_deg, scale
        )

    @torch.inference_mode()
    def refine(self, tsdf: torch.Tensor) -> torch.Tensor:
        """Refined TSDF (the input unchanged for a model without refinement).

        On CPU one volume at a time: a 60^3 volume's feature maps (tens of MB) mostly stay in
        cache, a batch's do not, and batches came out slower per frame (docs/benchmarks.md).
        """
        if self._refine is None:
            return tsdf
        if self.device.type == "cpu" and len(tsdf) > 1:
            return torch.cat([self._refine(t[None]) for t in tsdf])
        return self._refine(tsdf)

    @torch.inference_mode()
    def pose(self, tsdf: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, D, D)`` (refined) TSDF -> ``(B, J, 3)`` pose net output: the target of
        :func:`handvox.estimator.volume.encode_joints` (decode it with ``decode_joints``)."""
        return self._pose(tsdf)

    @torch.inference_mode()
    def pose_and_spread(self, tsdf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`pose` of a dense-head model, and each joint's heatmap spread ``(B, J)``, mm
        (:func:`handvox.estimator.networks.heatmap_moments`, the same softmax read once)."""
        if self.config.pose.head != "dense":
            raise HandvoxError("only the dense head has heatmaps to spread")
        # the fast and the exact pose nets both split into features (the heatmaps) and head
        joints, spread = heatmap_moments(self._pose.features(tsdf))
        return joints, spread * self.config.pose.target_scale_mm

    @torch.inference_mode()
    def relative_joints(self, tsdf: torch.Tensor, exact: bool = False) -> torch.Tensor:
        """Both networks: raw TSDF ``(B, 1, D, D, D)`` -> ``(B, J, 3)`` joints - COM, mm.

        ``exact`` uses the fp32 networks whatever ``fast`` says (what ONNX export contains).
        """
        if exact:
            x = tsdf if self.refine_net is None else self.refine_net(tsdf)
            return self.pose_net(x) * self.config.pose.target_scale_mm
        return self.pose(self.refine(tsdf)) * self.config.pose.target_scale_mm

    # --- the whole estimator --------------------------------------------------------------------
    def test_views(self) -> list[tuple[float, float]]:
        """The cubes each frame's prediction averages, as (angle in degrees, scale): the plain
        cube, then ``config.test_rotations_deg``, then ``config.test_scales``."""
        cfg = self.config
        return [(0.0, 1.0), *((a, 1.0) for a in cfg.test_rotations_deg),
                *((0.0, s) for s in cfg.test_scales)]  # fmt: skip

    def __call__(
        self,
        depth: np.ndarray | torch.Tensor,
        camera: Camera | str,
        timings: dict[str, float] | None = None,
        hand: str = "right",
        near_xyz: np.ndarray | None = None,
        track: HandTrack | None = None,
    ) -> Prediction:
        """Joints of one depth image ``(H, W)`` or a batch ``(B, H, W)``, mm (0 / NaN = no
        reading), taken with ``camera`` (a Camera, a preset name or ``fx,fy,cx,cy,w,h``).

        ``near_xyz``: ``(3,)`` or ``(B, 3)`` mm, where each frame's hand was in its sequence's
        previous frame (e.g. that frame's ``com_xyz``; NaN: unknown): the learned locator takes
        the candidate near it (:func:`handvox.estimator.locate.locate_hand`). ``track``: the
        sequence's :class:`~handvox.estimator.locate.HandTrack` (one frame a call): the locator's
        network reads every ``track.every``-th frame, the frames between carry its hand.

        ``hand``: the hand the frames show. The networks know right hands: a left hand's frames
        are flipped left to right (a right hand, seen through :meth:`Camera.mirrored`),
        estimated, and the joints mirrored back (``x -> -x``). ``"auto"``: the handedness
        classifier (:mod:`handvox.estimator.handedness`) decides per frame (its ``p_left >=
        0.5``: estimated as a left hand; ``hands`` says which; ``p_left`` is then its, where
        ``right`` and ``left`` report the hand check's).

        ``timings``, when given, accumulates wall-clock seconds per stage: ``segmentation``
        (mask and COM), ``tsdf``, ``check``, ``refinement``, ``pose`` (all passes of each), and
        ``handedness`` where the classifier ran (``hand="auto"``, or a second candidate weighed).

        Raises:
            DataError: depth not (H, W) / (B, H, W) numbers of the camera's size.
        """
        if hand not in ("right", "left", "auto"):
            raise HandvoxError(f"hand must be 'right', 'left' or 'auto', got {hand!r}")
        cam = as_camera(camera)
        depth = as_depth_batch(depth, cam)
        if track is not None and len(depth) != 1:
            raise HandvoxError(f"track: one frame a call (a sequence's), got {len(depth)}")
        near = None
        if near_xyz is not None:
            near = np.asarray(near_xyz, np.float64).reshape(-1, 3)
            if len(near) != len(depth):
                raise HandvoxError(f"near_xyz: {len(near)} rows for {len(depth)} frames")
        if hand == "right":
            return self._estimate(depth, cam, timings, near, track, choose=True)
        if hand == "left":
            return self._estimate_left(depth, cam, timings, near, track, choose=True)
        if self.handedness is None:
            raise HandvoxError("hand='auto' needs a handedness classifier (this estimator has "
                               "none); say which hand: 'right' or 'left'")  # fmt: skip
        acc = self.handedness.accuracy
        if not acc >= HANDEDNESS_MIN:  # NaN too: never measured
            raise HandvoxError(
                f"hand='auto': this classifier tells left from right in {100 * acc:.1f} % of "
                f"held-out frames, below the {100 * HANDEDNESS_MIN:.0f} % it needs; say which "
                "hand the frames show: 'right' or 'left'"
            )

        # a track follows the frame as shown; the left pass re-reads its frames
        pred = self._estimate(depth, cam, timings, near, track, side=True)
        left = np.flatnonzero(pred.p_left >= 0.5)  # NaN (nothing segmented) is not >= 0.5
        if left.size:
            lp = self._estimate_left(depth[left], cam, timings,
                                     None if near is None else near[left])  # fmt: skip
            for k, i in enumerate(left):
                for name in ("joints_xyz", "joints_uvd", "com_xyz", "com_uvd", "found",
                             "p_hand", "confidence", "joint_confidence"):  # fmt: skip
                    getattr(pred, name)[i] = getattr(lp, name)[k]
                pred.reason[i] = lp.reason[k]
                pred.hands[i] = "left"
        pred.hand = "auto"
        return pred

    def _estimate_left(
        self, depth: np.ndarray, cam: Camera, timings, near=None, track=None, choose=False
    ) -> Prediction:
        """Left hands: the frames flipped left to right (right hands seen through the mirrored
        camera), estimated, the joints mirrored back (``x -> -x``); ``choose``: as
        :meth:`_estimate`'s."""
        if near is not None:
            near = near * np.array([-1.0, 1.0, 1.0])  # in the mirrored frame
        pred = self._estimate(np.ascontiguousarray(depth[:, :, ::-1]), cam.mirrored(), timings,
                              near, track, choose=choose)  # fmt: skip
        xyz, com = pred.joints_xyz.copy(), pred.com_xyz.copy()
        xyz[..., 0] *= -1
        com[..., 0] *= -1
        # The check saw the mirrored frame: its p(left) is that of the frame as shown being right.
        return Prediction(xyz, cam.xyz_to_uvd(xyz), com, cam.xyz_to_uvd(com), pred.found,
                          pred.reason, pred.joint_set, "left", None, pred.p_hand,
                          1.0 - pred.p_left, pred.confidence,
                          pred.joint_confidence)  # fmt: skip

    def hand_check(self, tsdf_plain: torch.Tensor, depth: np.ndarray, segs: list[Segmentation],
                   cam: Camera, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """The hand check's ``p(hand)``, ``p(left)`` ``(B,)`` of found frames (``depth``
        ``(B, H, W)``, their ``segs`` and cube ``centres`` ``(B, 3)``): on the pose path's plain
        cube ``tsdf_plain`` where it is the check's cube, else on a cube of the check's own."""
        chk = self._check
        if chk.config.volume == self.config.volume and self.use_mask:
            return chk(tsdf_plain)
        vol = hand_volumes(depth, segs, cam, chk.config.volume, self.device, True, centres)
        return chk(vol)

    def _views(self, depth, segs, cam, centres, views, clock, turn=0.0):
        """Every test view of found hands (``depth`` ``(n, H, W)``, their ``segs``, cube
        ``centres`` ``(n, 3)``), each cube turned by ``turn`` degrees (one or ``(n,)``) besides
        its view's own angle: joints ``(views, n, J, 3)``, the heatmaps' spread ``(views, n, J)``
        mm (NaN unless the model's confidence is calibrated on them), and the first view's
        unrefined TSDF (the hand check's cube)."""
        unit = self.config.pose.target_scale_mm
        each = np.zeros((len(views), len(segs), len(self.joint_set), 3))
        spread = np.full(each.shape[:3], np.nan)
        first = None
        for v, (a, sc) in enumerate(views):
            ang = np.broadcast_to(a + np.asarray(turn, np.float64), (len(segs),))
            with clock("tsdf"):
                tsdf = self.volumes(depth, segs, cam, centres, ang, sc)
            first = tsdf if v == 0 else first
            with clock("refinement"):
                tsdf = self.refine(tsdf)
            with clock("pose"):
                if self.config.joint_spread_mm:  # calibrated: read the heatmaps' spread too
                    out, sp = self.pose_and_spread(tsdf)
                    spread[v] = sp.cpu().numpy()
                else:
                    out = self.pose(tsdf)
                out = out.cpu()
            angle = torch.from_numpy(np.ascontiguousarray(np.deg2rad(ang)))
            centre = torch.from_numpy(centres)
            each[v] = decode_joints(out, centre, unit, angle, torch.full_like(angle, sc)).numpy()
        return each, spread, first

    def _right_candidates(self, depth: np.ndarray, segs: list[Segmentation],
                          cam: Camera) -> list[Segmentation]:  # fmt: skip
        """Found hands ``segs`` of right-hand frames ``depth`` ``(n, H, W)``, each replaced by its
        second candidate (``Segmentation.other``) where the handedness classifier calls the first
        a left hand and the second a right one (or, with ``SegmentConfig.other_margin``, less
        left than the first by that margin), and the hand check (:meth:`_choice_check`) does
        not call the second 'not a hand': a second hand of the other side took the locator's
        heat. Frames without a second candidate cost nothing."""
        two = [i for i, g in enumerate(segs) if g.other is not None]
        chk = self._choice_check()
        if not two or chk is None:
            return segs

        def p_left(idx: list[int], cands: list[Segmentation]) -> np.ndarray:
            return self._left_probability(depth[idx], cands, cam,
                                          np.stack([g.com_xyz for g in cands]))  # fmt: skip

        # Each test only where the one before passed (the classifier's cubes are most of the
        # cost): the first called left, then the second called right (or less left), then a
        # hand at all (an object or an arm can look "right" too).
        first = dict(zip(two, p_left(two, [segs[i] for i in two]), strict=True))
        keep = [i for i in two if first[i] >= 0.5]
        if keep:
            others = [segs[i].other for i in keep]
            margin = self.config.segment.other_margin
            keep = [i for i, p in zip(keep, p_left(keep, others), strict=True)
                    if (p < 0.5 if margin is None else p < first[i] - margin)]  # fmt: skip
        if not keep:
            return segs
        others = [segs[i].other for i in keep]
        cubes = hand_volumes(depth[keep], others, cam, chk.config.volume, self.device, True,
                             np.stack([g.com_xyz for g in others]))  # fmt: skip
        out = list(segs)
        for i, ph in zip(keep, chk(cubes)[0], strict=True):
            if ph >= chk.config.threshold:
                out[i] = segs[i].other
        return out

    def _choice_check(self) -> HandCheck | None:
        """The hand check :meth:`_right_candidates` weighs a second candidate with: this
        estimator's, else (its rejections turned off) the shipped one for its way of finding the
        hand, as run; None where there is none (then no second candidate is taken)."""
        if self.check is not None:
            return self._check
        if self._spare_check is None:
            chk = shipped_hand_check(self.config.segment.method)
            if chk is None:
                return None
            self._spare_check = chk.for_cpu() if self.fast else chk
        return self._spare_check

    def _left_probability(self, depth: np.ndarray, segs: list[Segmentation], cam: Camera,
                          centres: np.ndarray) -> np.ndarray:  # fmt: skip
        """The handedness classifier's ``p(left)`` ``(n,)`` of found hands (``depth`` ``(n, H,
        W)``, their ``segs``, cube ``centres`` ``(n, 3)``), on its own cubes (masked, as it
        learned them) at each of its angles."""
        if self._side is None:
            h = self.handedness
            # a copy: the shipped one is shared, and .to() moves a module in place
            net = copy.deepcopy(h.net).to(self.device)
            self._side = h.for_cpu() if self.fast else replace(h, net=net)
        side = self._side
        k = len(side.config.angles_deg)
        angles = np.repeat(np.asarray(side.config.angles_deg, np.float64), len(segs))
        cubes = hand_volumes(np.concatenate([depth] * k), segs * k, cam, side.config.volume,
                             self.device, True, np.concatenate([centres] * k), angles)  # fmt: skip
        return torch.sigmoid(-right_logits(side, cubes)).double().cpu().numpy()

    def _estimate(
        self,
        depth: np.ndarray,
        cam: Camera,
        timings,
        near=None,
        track=None,
        side: bool = False,
        choose: bool = False,
    ) -> Prediction:
        """The pipeline on ``(B, H, W)`` float32 depth, as right hands; ``side``: ``p_left``
        from the handedness classifier instead of the hand check; ``choose``: the frames are
        known to show right hands, so a frame with a second candidate keeps the one the
        classifier calls right (:meth:`_right_candidates`)."""
        b, j = len(depth), len(self.joint_set)
        xyz = np.full((b, j, 3), np.nan)
        com = np.full((b, 3), np.nan)
        found = np.zeros(b, bool)
        reason = [""] * b
        p_hand, p_left = np.full(b, np.nan), np.full(b, np.nan)
        spread = np.full((b, j), np.nan)  # mm, of the views or of the heatmaps: spread_mm's unit
        heat = bool(self.config.joint_spread_mm)
        clock = _Clock(timings)
        views = self.test_views()
        for s in range(0, b, self.batch_size):
            chunk = depth[s : s + self.batch_size]
            with clock("segmentation"):
                segs = self.segment(chunk, cam, None if near is None else near[s : s + len(chunk)],
                                    track)  # fmt: skip
            hit = [i for i, g in enumerate(segs) if g.found]
            for i, g in enumerate(segs):
                reason[s + i] = g.reason
            if not hit:
                continue
            found_segs = [segs[i] for i in hit]
            two = any(g.other is not None for g in found_segs)
            if choose and two and self.handedness is not None:
                with clock("handedness"):
                    found_segs = self._right_candidates(chunk[hit], found_segs, cam)
            c = np.stack([g.com_xyz for g in found_segs])
            idx = np.asarray(hit) + s
            joints = None
            for p in range(1 + self.recentre):
                if p:  # the cube re-centred on the joints just predicted
                    c = joints.mean(1)
                each, heat_spread, plain = self._views(chunk[hit], found_segs, cam, c, views,
                                                       clock)  # fmt: skip
                if p == 0 and self.check is not None:
                    with clock("check"):
                        p_hand[idx], p_left[idx] = self.hand_check(
                            plain, chunk[hit], found_segs, cam, c
                        )
                if p == 0 and side:
                    with clock("handedness"):
                        p_left[idx] = self._left_probability(chunk[hit], found_segs, cam, c)
                joints = each.mean(0)
            if self.config.upright_beyond_deg is not None:
                # hands pointing down or sideways again, on a cube turned to hold them upright
                # (turning the cube by the angle the hand points turns the hand to 0)
                points = pointing_deg(cam.xyz_to_uvd(joints)[..., :2], self.joint_set)
                t = np.flatnonzero(np.abs(points) > self.config.upright_beyond_deg)
                if t.size:
                    segs_t = [found_segs[k] for k in t]
                    each[:, t], heat_spread[:, t], _ = self._views(
                        chunk[hit][t], segs_t, cam, c[t], views, clock, points[t]
                    )
                    joints = each.mean(0)
            xyz[idx] = joints
            com[idx] = c
            found[idx] = True
            if heat:
                spread[idx] = heat_spread.mean(0)
            elif len(views) > 1:
                spread[idx] = view_spread(each)
        if heat:  # each joint's own scale, from validation (handvox.train.confidence)
            spread_mm = np.asarray(self.config.joint_spread_mm)
        else:
            spread_mm = self.check.config.spread_mm if self.check is not None else SPREAD_MM
        joint_conf = joint_confidence(spread, spread_mm)
        # p_hand times how sure the pose net is; either alone where the other is missing; NaN
        # (nothing to say) without a check and without heatmaps or test-time views.
        certainty = spread if heat or len(views) > 1 else None
        conf = np.full(b, np.nan)
        if self.check is not None or certainty is not None:
            ph = p_hand if self.check is not None else np.ones(b)
            conf = np.where(found, frame_confidence(ph, certainty, spread_mm), np.nan)
        if self.check is not None:
            t = self.check.config.threshold
            rejected = found & (p_hand < t)
            for i in np.flatnonzero(rejected):
                reason[i] = f"not a hand: the hand check gives {p_hand[i]:.3f} (below {t:.3f})"

            found &= ~rejected
            xyz[rejected] = np.nan
            com[rejected] = np.nan
        return Prediction(
            joints_xyz=xyz,
            joints_uvd=cam.xyz_to_uvd(xyz),
            com_xyz=com,
            com_uvd=cam.xyz_to_uvd(com),
            found=found,
            reason=reason,
            joint_set=self.joint_set.name,
            p_hand=p_hand,
            p_left=p_left,
            confidence=conf,
            joint_confidence=joint_conf,
        )


__all__ = [
    "DEFAULT_MODEL_DIR",
    "HandPoseEstimator",
    "Prediction",
    "as_camera",
    "hand_volumes",
    "pointing_deg",
]

"""A subject's hand as inverse kinematics sees it, and which labelled frames belong to whom.

:class:`SubjectModel` holds one subject's bones, marker offsets and mean articulation (learnt by
:func:`handvox.hand.ik.fit.fit_subject`, used by :func:`handvox.hand.ik.solve.solve_ik`).
:func:`rigid_pairs` finds the labels no pose moves apart; their distances tell subjects apart
(:func:`cluster_subjects`, :func:`assign_subjects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.cluster.vq import kmeans2
from torch import Tensor

from handvox.errors import DataError
from handvox.hand.kinematics import (
    HandBones,
    MarkerSet,
    forward_kinematics,
    get_marker_set,
    markers,
    random_pose,
    zero_pose,
)
from handvox.hand.shapes import base_shape
from handvox.joints import JointSet

JointsLike = Tensor | np.ndarray


@dataclass
class SubjectModel:
    """One subject's hand as :func:`~handvox.hand.ik.solve_ik` uses it.

    Attributes:
        joint_set: name of the marker set the model explains (``nyu14``, ``icvl16``, ...).
        bones: learnt :class:`~handvox.hand.kinematics.HandBones`, batch 1.
        offsets: ``(M, 3)`` learnt marker offsets in their parent joint's frame, mm.
        parents: canonical joint whose frame carries each marker (default: the marker set's).
            :func:`~handvox.hand.ik.fit_subject` hangs markers labelled at a PIP / DIP (thumb
            MCP / IP) on the bone that ends there, so a learnt offset does not turn with the
            next joint.
        mean_pose: ``(30,)`` mean articulation of the fitting frames (root entries zero): the
            IK's starting articulation and the centre of its weak prior.
        info: how it was learnt: ``frames`` (indices of the frames used, into the array given
            to :func:`~handvox.hand.ik.fit_subject`), ``residual_mm`` (mean marker error on
            them), ``scale`` (overall size against the base shape), ``base`` and the prior
            widths.
    """

    joint_set: str
    bones: HandBones
    offsets: Tensor
    mean_pose: Tensor
    info: dict = field(default_factory=dict)
    parents: tuple[int, ...] | None = None

    @classmethod
    def from_bones(
        cls, joint_set: str | JointSet, bones: HandBones, offsets: Tensor | None = None
    ) -> SubjectModel:
        """A model from known bones (batch 1); offsets default to the set's, scaled to size."""
        ms = get_marker_set(joint_set)
        off = ms.default_offsets(bones)[0] if offsets is None else offsets
        mean = zero_pose(1, bones.dtype, bones.device)[0]
        return cls(ms.joint_set.name, bones, off.to(bones.base), mean, {"base": "given"})

    @property
    def marker_set(self) -> MarkerSet:
        ms = get_marker_set(self.joint_set)
        if self.parents is None or tuple(self.parents) == ms.parents:
            return ms
        return MarkerSet(ms.joint_set, tuple(self.parents), ms.offsets)

    def to(self, *args, **kwargs) -> SubjectModel:
        return SubjectModel(
            self.joint_set,
            self.bones.to(*args, **kwargs),
            self.offsets.to(*args, **kwargs),
            self.mean_pose.to(*args, **kwargs),
            dict(self.info),
            self.parents,
        )

    def rest_markers(self, articulation: Tensor | None = None) -> Tensor:
        """``(M, 3)`` markers in the hand frame at ``articulation`` (default: the mean pose)."""
        pose = (self.mean_pose if articulation is None else articulation).clone()[None]
        pose[:, :6] = 0.0
        return markers(forward_kinematics(pose, self.bones), self.marker_set, self.offsets)[0]

    def to_dict(self) -> dict:
        """Plain lists (JSON)."""
        return {
            "joint_set": self.joint_set,
            "bones": self.bones.to_dict(),
            "offsets": self.offsets.detach().cpu().tolist(),
            "mean_pose": self.mean_pose.detach().cpu().tolist(),
            "parents": None if self.parents is None else list(self.parents),
            "info": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                     for k, v in self.info.items()},
        }  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict, dtype: torch.dtype = torch.float32, device=None) -> SubjectModel:
        return cls(
            d["joint_set"],
            HandBones.from_dict(d["bones"], dtype, device),
            torch.as_tensor(d["offsets"], dtype=dtype, device=device),
            torch.as_tensor(d["mean_pose"], dtype=dtype, device=device),
            dict(d.get("info", {})),
            None if d.get("parents") is None else tuple(d["parents"]),
        )


def as_labels(joints: JointsLike, ms: MarkerSet, dtype, device=None) -> Tensor:
    """Validate ``(N, M, 3)`` labels and return them as a tensor."""
    t = torch.as_tensor(np.asarray(joints) if not isinstance(joints, Tensor) else joints)
    m = len(ms.parents)
    name = ms.joint_set.name
    if t.dim() == 2 and t.shape[-1] == 3 * m:
        t = t.reshape(-1, m, 3)
    if t.dim() != 3 or t.shape[1:] != (m, 3):
        raise DataError(None, f"joints: expected shape (N, {m}, 3) for {name}, "
                              f"got {tuple(t.shape)}")  # fmt: skip
    if t.shape[0] == 0:
        raise DataError(None, "joints: no frames")
    bad = ~torch.isfinite(t).all(-1).all(-1)
    if bad.any():
        idx = torch.nonzero(bad).flatten()[:5].tolist()
        raise DataError(None, f"joints: NaN or infinite values in {int(bad.sum())} frame(s), "
                              f"e.g. frames {idx}")  # fmt: skip
    return t.to(dtype=dtype, device=device)


# --- rigid structure of a marker set -----------------------------------------------------------


def rigid_pairs(ms: MarkerSet, bones: HandBones | None = None) -> list[tuple[int, int]]:
    """Marker pairs whose distance no pose changes (found numerically on random poses).

    These are the paper's "bones" generalised: on NYU-14 the wrist/palm triangle and the
    thumb's distal phalanx; on ICVL-16 and MSRA-21 every labelled bone. Markers sit where the
    set puts them by default (joint centres for joint labels).
    """
    bones = base_shape("average_adult", torch.float64) if bones is None else bones
    bones = bones.to(torch.float64)
    gen = torch.Generator().manual_seed(0)
    pose = random_pose(64, gen, torch.float64)
    pts = markers(forward_kinematics(pose, bones), ms)
    d = (pts[:, :, None] - pts[:, None]).norm(dim=-1)
    spread = d.std(0)
    m = len(ms.parents)
    return [(i, k) for i in range(m) for k in range(i + 1, m) if spread[i, k] < 1e-5]


def pair_distances(pts: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    """``(..., K)`` distances between the ``K`` marker pairs of ``pts`` ``(..., M, 3)``."""
    i = [a for a, _ in pairs]
    k = [b for _, b in pairs]
    return (pts[..., i, :] - pts[..., k, :]).norm(dim=-1)


# --- several subjects --------------------------------------------------------------------------


def cluster_subjects(
    joints: JointsLike, joint_set: str | JointSet, n_subjects: int, seed: int = 0
) -> np.ndarray:
    """Split frames by hand size: k-means on the distances between rigidly linked labels
    (:func:`rigid_pairs`), which do not change with the pose.

    Returns:
        ``(N,)`` int cluster of each frame, clusters numbered by first appearance.
    """
    ms = get_marker_set(joint_set)
    obs = as_labels(joints, ms, torch.float64)
    if n_subjects == 1:
        return np.zeros(obs.shape[0], dtype=int)
    pairs = rigid_pairs(ms)
    if not pairs:
        raise ValueError(f"{ms.joint_set.name} has no rigidly linked labels to cluster on")
    feats = pair_distances(obs, pairs).numpy()
    feats = feats / feats.std(0).clip(1e-6)
    _, labels = kmeans2(feats, n_subjects, minit="++", seed=seed)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels]


def assign_subjects(joints: JointsLike, subjects: list[SubjectModel]) -> np.ndarray:
    """``(N,)`` index of the subject whose rigid label distances fit each frame best."""
    ms = get_marker_set(subjects[0].joint_set)
    pairs = rigid_pairs(ms)
    if len(subjects) == 1 or not pairs:
        return np.zeros(as_labels(joints, ms, torch.float64).shape[0], dtype=int)
    obs = as_labels(joints, ms, torch.float64)
    d = pair_distances(obs, pairs)
    with torch.no_grad():
        model = torch.stack([pair_distances(s.rest_markers().double(), pairs) for s in subjects])
    return ((d[:, None] - model[None].cpu()) ** 2).sum(-1).argmin(1).numpy()

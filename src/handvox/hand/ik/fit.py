"""Learning a subject's hand from its labelled frames (the paper's bone lengths, refined).

:func:`fit_subject` learns one subject's bones and marker offsets; :func:`fit_subjects` first
splits frames of several subjects by hand size (:func:`handvox.hand.ik.subject.cluster_subjects`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from handvox.hand.ik.solve import PRIOR_WEIGHT, articulation_prior, objective, solve_ik
from handvox.hand.ik.subject import (
    JointsLike,
    SubjectModel,
    as_labels,
    cluster_subjects,
    pair_distances,
    rigid_pairs,
)
from handvox.hand.kinematics import (
    NUM_DOF,
    HandBones,
    MarkerSet,
    forward_kinematics,
    get_marker_set,
    markers,
    pose_limits,
)
from handvox.hand.shapes import base_shape
from handvox.joints import JointSet


@dataclass
class _SubjectParams:
    """Free parameters of a subject around a template hand (all zero: the template at scale
    ``exp(log_scale)``). Positions in cm and lengths as log factors, so one Adam step size
    suits all."""

    log_scale: Tensor  # ()
    d_len: Tensor  # (5, 3) log factors on the phalanx lengths
    d_base: Tensor  # (5, 3) cm, chain starts in the template's frame
    d_cmc: Tensor  # (4, 3) cm, finger CMC pivots
    d_off: Tensor  # (M, 3) cm, marker offsets from the set's defaults

    def tensors(self) -> list[Tensor]:
        return [self.log_scale, self.d_len, self.d_base, self.d_cmc, self.d_off]

    def build(
        self, tpl: HandBones, default_off: Tensor, hung: Tensor, off_mask: Tensor
    ) -> tuple[HandBones, Tensor]:
        """Bones and offsets; ``hung`` ``(M, 3)`` long: marker, chain, bone of the markers
        moved to the bone ending at their joint (their offset starts at that bone's end)."""
        s = self.log_scale.exp()
        bones = HandBones(
            base=(tpl.base + 10.0 * self.d_base) * s,
            length=tpl.length * self.d_len.exp() * s,
            radius=tpl.radius * s,
            cmc=(tpl.cmc + 10.0 * self.d_cmc) * s,
        )
        off = default_off * s + 10.0 * self.d_off * off_mask
        if hung.numel():
            m, c, b = hung.unbind(-1)
            along = torch.zeros_like(off).index_put((m, torch.ones_like(m)), -bones.length[0, c, b])
            off = off + along
        return bones, off

    def penalty(self, bone_sigma: float, position_sigma: float, offset_sigma: float) -> Tensor:
        return (
            (self.d_len**2).sum() / bone_sigma**2
            + ((self.d_base**2).sum() + (self.d_cmc**2).sum()) * (10.0 / position_sigma) ** 2
            + (self.d_off**2).sum() * (10.0 / offset_sigma) ** 2
        )


def _hang_on_proximal_bones(ms: MarkerSet, default_off: Tensor) -> tuple[MarkerSet, Tensor]:
    """Move markers at a chain's second or third joint centre to the bone ending there.

    Returns the new marker set and ``(K, 3)`` long rows ``(marker, chain, bone)``: marker
    ``marker``'s offset now starts at the end of ``bones.length[:, chain, bone]``.
    """
    parents, rows = list(ms.parents), []
    for i, p in enumerate(ms.parents):
        chain, depth = divmod(p - 1, 4)
        if p >= 1 and depth in (1, 2) and not bool(default_off[i].any()):
            parents[i] = p - 1
            rows.append((i, chain, depth - 1))
    hung = torch.tensor(rows, dtype=torch.long).reshape(-1, 3)
    return MarkerSet(ms.joint_set, tuple(parents), ms.offsets), hung


def fit_subject(
    joints: JointsLike,
    joint_set: str | JointSet,
    frames: int = 300,
    base: str | HandBones = "average_adult",
    rounds: int = 3,
    steps: int = 300,
    lr: float = 0.03,
    label_sigma: float = 3.0,
    bone_sigma: float = 0.1,
    position_sigma: float = 5.0,
    offset_sigma: float = 5.0,
    learn_offsets: bool = True,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> SubjectModel:
    """Learn one subject's bones and marker offsets from its labelled frames.

    What is learnt, from ``frames`` frames evenly spaced through ``joints`` (all if fewer):

    1. the paper's step: the mean distance between every pair of labels the model links
       rigidly (:func:`~handvox.hand.ik.rigid_pairs`) fixes the overall scale and, as far as
       those pairs reach, the bones (for ICVL/MSRA/canonical every labelled bone; for NYU only
       the wrist-palm triangle and the thumb's tip phalanx);
    2. then ``rounds`` times: IK of the frames (:func:`~handvox.hand.ik.solve_ik`), then
       ``steps`` Adam steps on the frames' poses, the bones and the offsets together,
       minimising the marker errors (weighted ``1 / label_sigma^2``) plus Gaussian priors:
       each phalanx within ``bone_sigma`` (relative) and each palm joint position within
       ``position_sigma`` mm of the base shape scaled to the subject, each marker within
       ``offset_sigma`` mm of the set's default offset. The priors only decide what the
       labels leave open (e.g. where along the finger an unlabelled MCP sits).

    Offsets are learnt for every marker (``learn_offsets``): annotators and the model fits
    that made NYU's labels do not put joint labels at our joint centres. A label at a PIP or
    DIP (thumb MCP or IP) is carried by the bone that ends there, so its offset does not
    swing with the next joint's angle (which would let a DIP angle chase label noise).

    The result records its frames and fitting error in ``info``. Fitting on the frames one
    then solves is what the paper does for pose transfer (the bones are a property of the
    labelled subject), not a train/test leak in that use.

    Args:
        joints: ``(N, M, 3)`` one subject's labels, camera frame, mm.
        joint_set: their joint set (``nyu14``, ``icvl16``, ``msra21``, ``canonical21``).
        base: base shape name (:data:`handvox.hand.shapes.SHAPE_NAMES`) or HandBones of batch 1
            whose proportions the fit starts from.
    Returns:
        :class:`~handvox.hand.ik.SubjectModel` (``dtype``, ``device``).
    """
    ms = get_marker_set(joint_set)
    obs_all = as_labels(joints, ms, dtype, device)
    n_all = obs_all.shape[0]
    idx = np.unique(np.linspace(0, n_all - 1, min(frames, n_all)).round().astype(int))
    obs = obs_all[torch.as_tensor(idx, device=obs_all.device)]
    if isinstance(base, str):
        tpl = base_shape(base, dtype, device)
    else:
        tpl = base.to(dtype=dtype, device=device)
    pairs = rigid_pairs(ms, tpl)
    default_off = ms.default_offsets(tpl)[0]
    ms, hung = _hang_on_proximal_bones(ms, default_off)
    hung = hung.to(obs.device)
    off_mask = torch.full_like(default_off[:, :1], float(learn_offsets))
    z = obs.new_zeros
    params = _SubjectParams(z(()), z(5, 3), z(5, 3), z(4, 3), z(len(ms.parents), 3))
    sig = (bone_sigma, position_sigma, offset_sigma)

    def subject_of(p: _SubjectParams, mean_pose: Tensor) -> SubjectModel:
        bones, off = p.build(tpl, default_off, hung, off_mask)
        return SubjectModel(ms.joint_set.name, bones, off, mean_pose, parents=ms.parents)

    def rest(p: _SubjectParams) -> Tensor:
        bones, off = p.build(tpl, default_off, hung, off_mask)
        return markers(forward_kinematics(z(1, NUM_DOF), bones), ms, off)[0]

    # 1. The paper's mean bone lengths: pose-free distances between rigidly linked labels.
    if pairs:
        target = pair_distances(obs, pairs).mean(0)
        with torch.no_grad():
            params.log_scale.fill_(float((target / pair_distances(rest(params), pairs)).log()
                                         .median()))  # fmt: skip
        _adam([(params.tensors(), 0.01)], 200, lambda: (
            ((pair_distances(rest(params), pairs) - target) ** 2).sum() / label_sigma**2
            + params.penalty(*sig)))  # fmt: skip
    else:  # no rigid pair: match the labels' overall spread instead
        spread = (obs - obs.mean(1, keepdim=True)).norm(dim=-1).mean()
        r0 = rest(params)
        with torch.no_grad():
            params.log_scale.fill_(float((spread / (r0 - r0.mean(0)).norm(dim=-1).mean()).log()))

    # 2. Alternate: IK of the frames, then poses, bones and offsets together.
    mean_pose = z(NUM_DOF)
    lo, hi = pose_limits(dtype=dtype, device=obs.device)
    for _ in range(rounds):
        with torch.no_grad():
            subject = subject_of(params, mean_pose)
            pose = solve_ik(obs, subject).pose
            mean_pose = torch.cat([z(6), pose[:, 6:].mean(0)])
        root_t, rest_pose = pose[:, :3].clone(), pose[:, 3:].clone()

        def loss(root_t=root_t, rest_pose=rest_pose, mean_pose=mean_pose) -> Tensor:
            bones, off = params.build(tpl, default_off, hung, off_mask)
            pose = torch.cat([root_t, rest_pose], 1)
            err = markers(forward_kinematics(pose, bones), ms, off) - obs
            data = objective(err, pose[:, 6:], articulation_prior(mean_pose), PRIOR_WEIGHT).sum()
            data = data / label_sigma**2
            return (data + params.penalty(*sig)) / obs.shape[0]

        def project(rest_pose=rest_pose) -> None:
            rest_pose[:, 3:] = torch.maximum(torch.minimum(rest_pose[:, 3:], hi[6:]), lo[6:])

        # Translations in mm take 10x the step of angles (rad) and subject parameters (cm).
        groups = [(params.tensors(), lr), ([rest_pose], lr), ([root_t], 10 * lr)]
        _adam(groups, steps, loss, project)
    with torch.no_grad():
        subject = subject_of(params, mean_pose)
        res = solve_ik(obs, subject)
        subject.mean_pose = torch.cat([z(6), res.pose[:, 6:].mean(0)])
    subject.info = {
        "frames": idx.tolist(),
        "residual_mm": float(res.residual.mean()),
        "scale": float(params.log_scale.exp()),
        "base": base if isinstance(base, str) else "given",
        "rigid_pairs": [list(p) for p in pairs],
        "sigmas": {"label": label_sigma, "bone": bone_sigma, "position": position_sigma,
                   "offset": offset_sigma},
    }  # fmt: skip
    return subject


def _adam(groups: list[tuple[list[Tensor], float]], steps: int, loss_fn, project=None) -> None:
    """Adam over ``(tensors, step size)`` groups with a cosine-decayed step; ``project()`` runs
    after every step (to enforce limits)."""
    for ts, _ in groups:
        for t in ts:
            t.requires_grad_(True)
    opt = torch.optim.Adam([{"params": ts, "lr": lr} for ts, lr in groups])
    for i in range(steps):
        decay = 0.1 + 0.45 * (1 + math.cos(math.pi * i / steps))
        for g, (_, lr) in zip(opt.param_groups, groups, strict=True):
            g["lr"] = lr * decay
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
        if project is not None:
            with torch.no_grad():
                project()
    for ts, _ in groups:
        for t in ts:
            t.requires_grad_(False)


def fit_subjects(
    joints: JointsLike, joint_set: str | JointSet, n_subjects: int, **kwargs
) -> tuple[list[SubjectModel], np.ndarray]:
    """:func:`~handvox.hand.ik.cluster_subjects`, then :func:`fit_subject` on each cluster's frames.

    Returns:
        the models and the ``(N,)`` cluster of each frame; each model's ``info["frames"]``
        indexes into ``joints``.
    """
    labels = cluster_subjects(joints, joint_set, n_subjects)
    data = joints if isinstance(joints, Tensor) else np.asarray(joints)
    models = []
    for k in range(labels.max() + 1):
        sel = np.nonzero(labels == k)[0]
        model = fit_subject(data[sel], joint_set, **kwargs)
        model.info["frames"] = sel[model.info["frames"]].tolist()
        model.info["cluster_frames"] = int(sel.size)
        models.append(model)
    return models, labels

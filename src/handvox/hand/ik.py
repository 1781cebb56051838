"""Inverse kinematics: joint angles of the kinematic hand from labelled joints (pose transfer).

The paper (Appendix B.1, Eqn 2) recovers the joint angles of each annotated frame so that the
pose can be put on other hand models: it learns the subject's bone lengths (mean distance
between the two labelled ends of each bone), then minimises ``sum_i |R_i(p) - O_i|^2`` over the
pose ``p`` with joint limits, by particle swarm optimisation. Here:

- :func:`fit_subject` learns one subject's :class:`~handvox.hand.kinematics.HandBones` and marker
  offsets from a few hundred of its labelled frames. It starts from the paper's idea (bone
  lengths from the mean distances between labelled points that are rigidly linked in the
  model: for MSRA / canonical joints every bone, for NYU only the palm's and the thumb's distal
  phalanx) and then refines bones, offsets and the frames' poses jointly (Adam), with priors
  that keep offsets small and the bones near the base shape's proportions. Labels that were
  not drawn on a rigid skeleton (real annotations) leave bone-length noise behind, so the fit
  is a least-squares compromise over all the frames, as the paper's mean length is.
- :func:`solve_ik` recovers the poses of any number of frames, batched: a closed-form rigid
  alignment (weighted Kabsch) of the subject's rest markers to the labels gives the root, then
  Levenberg-Marquardt (``method="gradient"``: damped Gauss-Newton on the analytic marker
  Jacobian, projected onto the joint limits) or the paper's particle swarm (``method="pso"``)
  fits all 30 DOF. A weak prior settles what the markers cannot see: DOFs stay near the
  subject's mean pose (e.g. the index CMC), and each DIP near 2/3 of its PIP's flexion (ICVL
  labels no DIP angle; NYU only splits PIP from DIP through the PIP-tip distance).
- :func:`fit_subjects` / :func:`cluster_subjects` split frames of several subjects by the
  distances between rigidly linked labels (the NYU test set has three distinct hand sizes) and
  fit one model per cluster.

All tensors are in the camera frame (OpenCV, mm); poses follow :mod:`handvox.hand.kinematics`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from handvox.errors import DataError
from handvox.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from handvox.hand.kinematics import (
    NUM_DOF,
    THUMB_CMC_AXIS_TILT_DEG,
    FKResult,
    HandBones,
    MarkerSet,
    forward_kinematics,
    get_marker_set,
    markers,
    pose_limits,
    random_pose,
    zero_pose,
)
from handvox.hand.shapes import base_shape
from handvox.joints import JointSet

JointsLike = Tensor | np.ndarray

# --- containers --------------------------------------------------------------------------------


@dataclass
class SubjectModel:
    """One subject's hand as :func:`solve_ik` uses it.

    Attributes:
        joint_set: name of the marker set the model explains (``nyu14``, ``icvl16``, ...).
        bones: learnt :class:`HandBones`, batch 1.
        offsets: ``(M, 3)`` learnt marker offsets in their parent joint's frame, mm.
        parents: canonical joint whose frame carries each marker (default: the marker set's).
            :func:`fit_subject` hangs markers labelled at a PIP / DIP (thumb MCP / IP) on the
            bone that ends there, so a learnt offset does not turn with the next joint.
        mean_pose: ``(30,)`` mean articulation of the fitting frames (root entries zero): the
            IK's starting articulation and the centre of its weak prior.
        info: how it was learnt: ``frames`` (indices of the frames used, into the array given
            to :func:`fit_subject`), ``residual_mm`` (mean marker error on them), ``scale``
            (overall size against the base shape), ``base`` and the prior widths.
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


@dataclass
class IKResult:
    """Output of :func:`solve_ik`.

    Attributes:
        pose: ``(N, 30)`` poses within the joint limits (radians, mm).
        residual: ``(N, M)`` distance from each fitted marker to its label, mm.
        markers: ``(N, M, 3)`` the fitted markers (FK of ``pose``), camera frame, mm.
        objective: ``(N,)`` final objective (sum of squared marker errors, mm^2, plus the prior).
        method: ``"gradient"`` or ``"pso"``.
        iterations: iterations run.
    """

    pose: Tensor
    residual: Tensor
    markers: Tensor
    objective: Tensor
    method: str
    iterations: int


# --- input checks and small geometry -----------------------------------------------------------


def _as_joints(joints: JointsLike, ms: MarkerSet, dtype, device=None) -> Tensor:
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


def kabsch(src: Tensor, dst: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Weighted least-squares rigid transform with ``dst ~ R @ src + t``.

    Args:
        src: ``(M, 3)`` or ``(N, M, 3)`` model points.
        dst: ``(N, M, 3)`` observed points.
        weights: ``(M,)`` non-negative weights.
    Returns:
        ``R`` ``(N, 3, 3)`` (proper rotations) and ``t`` ``(N, 3)``.
    """
    w = (weights / weights.sum()).to(dst)
    src = src.to(dst).expand_as(dst)
    cs = (w[:, None] * src).sum(-2)
    cd = (w[:, None] * dst).sum(-2)
    h = (src - cs[:, None]).transpose(1, 2) @ (w[:, None] * (dst - cd[:, None]))  # (N, 3, 3)
    u, _, vh = torch.linalg.svd(h.double())
    d = torch.det(vh.transpose(1, 2) @ u.transpose(1, 2)).sign()
    fix = torch.ones_like(u[..., 0])
    fix[:, 2] = d
    rot = (vh.transpose(1, 2) * fix[:, None]) @ u.transpose(1, 2)
    rot = rot.to(dst)
    return rot, cd - (rot @ cs[..., None]).squeeze(-1)


# --- the marker Jacobian -------------------------------------------------------------------------
# Each articulation DOF turns the bones after it about an axis through a pivot; a marker that
# rides on one of those bones moves with velocity axis x (marker - pivot). Axes and pivots come
# out of FKResult (see forward_kinematics: the two-axis joints rotate by R_flex @ R_abd, so the
# abduction axis is fixed in the distal bone and the flexion axis in the proximal one).


def _thumb_cmc_axes() -> tuple[tuple[float, ...], tuple[float, ...]]:
    phi = math.radians(THUMB_CMC_AXIS_TILT_DEG["flex"])
    psi = math.radians(THUMB_CMC_AXIS_TILT_DEG["abd"])
    return (math.cos(phi), math.sin(phi), 0.0), (0.0, math.sin(psi), math.cos(psi))


# Per chain and slot (DOF order within the chain), the depth from which a marker's parent joint
# is moved by it (0: the chain's first joint's frame).
_THUMB_DEPTH = (0, 0, 1, 2)  # cmc_flex, cmc_abd, mcp_flex, ip_flex
_FINGER_DEPTH = (0, 0, 0, 1, 2)  # cmc_flex, mcp_flex, mcp_abd, pip_flex, dip_flex


def _dependency(ms: MarkerSet) -> Tensor:
    """``(M, 24)`` bool: articulation DOF ``d`` (pose index ``6 + d``) moves marker ``m``."""
    dep = torch.zeros(len(ms.parents), NUM_DOF - 6, dtype=torch.bool)
    for i, parent in enumerate(ms.parents):
        if parent == 0:
            continue
        chain, depth = divmod(parent - 1, 4)
        depth = min(depth, 2)  # tips ride on the distal phalanx's frame
        if chain == 0:
            for s, need in enumerate(_THUMB_DEPTH):
                dep[i, s] = depth >= need
        else:
            for s, need in enumerate(_FINGER_DEPTH):
                dep[i, 4 + 5 * (chain - 1) + s] = depth >= need
    return dep


def _axes_pivots(fk: FKResult) -> tuple[Tensor, Tensor]:
    """World axes and pivots ``(B, 24, 3)`` of the 24 articulation DOFs."""
    j, rot = fk.joints, fk.rotations
    a_flex, a_abd = (torch.tensor(a, dtype=j.dtype, device=j.device) for a in _thumb_cmc_axes())
    thumb_axes = [
        fk.metacarpal_rotations[:, 0] @ a_flex,
        rot[:, 1] @ a_abd,
        rot[:, 1, :, 0],
        rot[:, 1, :, 0],
    ]
    thumb_piv = [j[:, 1], j[:, 1], j[:, 2], j[:, 3]]
    axes, piv = thumb_axes, thumb_piv
    for k in range(1, 5):
        mcp = 1 + 4 * k
        x_mc = fk.metacarpal_rotations[:, k, :, 0]
        axes += [x_mc, x_mc, rot[:, mcp, :, 2], rot[:, mcp, :, 0], rot[:, mcp, :, 0]]
        piv += [fk.metacarpal_origins[:, k], j[:, mcp], j[:, mcp], j[:, mcp + 1], j[:, mcp + 2]]
    return torch.stack(axes, 1), torch.stack(piv, 1)


def marker_jacobian(fk: FKResult, marker_pos: Tensor, dependency: Tensor) -> Tensor:
    """``(B, M, 3, 30)`` derivative of the markers with respect to the pose.

    Columns 0-2: root translation; 3-5: a small rotation ``w`` of the whole hand about the
    wrist, applied on the left (``R <- exp(w) R``, camera frame), not the axis-angle
    coordinates; 6-29: the articulation DOFs.

    Args:
        fk: forward kinematics of the poses.
        marker_pos: ``(B, M, 3)`` the markers on ``fk``.
        dependency: ``(M, 24)`` from ``_dependency``.
    """
    b, m = marker_pos.shape[:2]
    axes, piv = _axes_pivots(fk)  # (B, 24, 3)
    rel = marker_pos[:, :, None] - piv[:, None]  # (B, M, 24, 3)
    art = torch.linalg.cross(axes[:, None].expand_as(rel), rel, dim=-1)
    art = art * dependency.to(art)[None, :, :, None]
    eye = torch.eye(3, dtype=marker_pos.dtype, device=marker_pos.device)
    trans = eye.expand(b, m, 3, 3)
    rel_root = marker_pos - fk.joints[:, :1]
    # w x r = -r x w: the columns of -[r]_x.
    rel_root = rel_root[:, :, None].expand(b, m, 3, 3)
    rot = torch.linalg.cross(eye.expand(b, m, 3, 3), rel_root, dim=-1)
    return torch.cat([trans, rot.transpose(-1, -2), art.transpose(-1, -2)], -1)


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


def _rigid_weights(subject: SubjectModel, sigma: float = 3.0) -> Tensor:
    """``(M,)`` Kabsch weights ``1 / (sigma^2 + var)`` with ``var`` the marker's spread in the
    hand frame over random poses: markers fixed to the palm dominate the root estimate."""
    gen = torch.Generator().manual_seed(1)
    pose = random_pose(64, gen, subject.offsets.dtype, subject.offsets.device)
    pts = markers(forward_kinematics(pose, subject.bones), subject.marker_set, subject.offsets)
    var = pts.var(0).sum(-1)
    return 1.0 / (sigma**2 + var)


# --- the objective ------------------------------------------------------------------------------

_PRIOR_WEIGHT = 1.0  # mm^2 per rad^2: a radian from the mean pose costs as much as 1 mm error
# DIP flexion follows PIP flexion by about 2/3 in free finger motion (Rijpkema & Girard 1991;
# Lee & Kunii 1995); the prior centres each DIP there rather than on the mean pose, so a DIP no
# label sees (ICVL's "tips" are the DIPs) curls with its finger.
DIP_PIP_RATIO = 2.0 / 3.0


def _prior(mean_pose: Tensor) -> tuple[Tensor, Tensor]:
    """Linear prior on the articulation ``a`` (24,): residual ``P @ a - q`` (rad), the
    deviation from the mean pose, except ``dip - DIP_PIP_RATIO * pip`` for the four DIPs."""
    mat = torch.eye(NUM_DOF - 6, dtype=mean_pose.dtype, device=mean_pose.device)
    q = mean_pose[6:].clone()
    for k in range(4):
        pip, dip = 4 + 5 * k + 3, 4 + 5 * k + 4
        mat[dip, pip] = -DIP_PIP_RATIO
        q[dip] = 0.0
    return mat, q


def _cost(err: Tensor, art: Tensor, prior_mq: tuple[Tensor, Tensor], weight: float) -> Tensor:
    """``(...,)`` sum of squared marker errors (mm^2) plus the weighted prior."""
    mat, q = prior_mq
    rho = art @ mat.T - q
    return (err * err).sum((-1, -2)) + weight * (rho * rho).sum(-1)


def _fk_markers(root_r: Tensor, root_t: Tensor, art: Tensor, subject: SubjectModel):
    """FK with the root applied outside (``root_r`` a matrix), so LM needs no axis-angle."""
    pose = torch.cat([root_t.new_zeros(root_t.shape[0], 6), art], -1)
    fk = forward_kinematics(pose, subject.bones)
    fk_cam = FKResult(
        joints=fk.joints @ root_r.transpose(1, 2) + root_t[:, None],
        rotations=root_r[:, None] @ fk.rotations,
        metacarpal_rotations=root_r[:, None] @ fk.metacarpal_rotations,
        metacarpal_origins=fk.metacarpal_origins @ root_r.transpose(1, 2) + root_t[:, None],
        bones=fk.bones,
    )
    return fk_cam, markers(fk_cam, subject.marker_set, subject.offsets)


def rigid_init(joints: Tensor, subject: SubjectModel) -> Tensor:
    """``(N, 30)`` starting poses: the subject's mean articulation, rigidly aligned (weighted
    Kabsch) to the labels ``(N, M, 3)``."""
    rest = subject.rest_markers()
    r, t = kabsch(rest, joints, _rigid_weights(subject))
    pose = subject.mean_pose.to(joints).expand(joints.shape[0], NUM_DOF).clone()
    pose[:, :3] = t
    pose[:, 3:6] = matrix_to_axis_angle(r)
    return pose


def _levenberg_marquardt(
    obs: Tensor, pose: Tensor, subject: SubjectModel, iters: int, prior: float, tol: float
) -> tuple[Tensor, int]:
    """Projected, per-frame damped Gauss-Newton on all 30 DOF (see :func:`solve_ik`)."""
    n = obs.shape[0]
    dtype, dev = obs.dtype, obs.device
    lo, hi = pose_limits(dtype=dtype, device=dev)
    lo, hi = lo[6:], hi[6:]
    dep = _dependency(subject.marker_set).to(dev)
    pm = _prior(subject.mean_pose.to(obs))
    r = axis_angle_to_matrix(pose[:, 3:6])
    t = pose[:, :3].clone()
    art = pose[:, 6:].clamp(lo, hi)
    lam = torch.full((n,), 1e-2, dtype=dtype, device=dev)
    prior_h = torch.zeros(NUM_DOF, NUM_DOF, dtype=dtype, device=dev)
    prior_h[6:, 6:] = prior * pm[0].T @ pm[0]
    eye = torch.eye(NUM_DOF, dtype=dtype, device=dev)
    fk, mk = _fk_markers(r, t, art, subject)
    err = mk - obs
    cost = _cost(err, art, pm, prior)
    active = torch.ones(n, dtype=torch.bool, device=dev)
    it = 0
    while it < iters:
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        it += 1
        fa = FKResult(fk.joints[idx], fk.rotations[idx], fk.metacarpal_rotations[idx],
                      fk.metacarpal_origins[idx], fk.bones)  # fmt: skip
        jac = marker_jacobian(fa, mk[idx], dep).flatten(1, 2)  # (A, 3M, 30)
        e = err[idx].flatten(1)
        a_art = art[idx]
        jtj = jac.transpose(1, 2) @ jac + prior_h
        g = (jac.transpose(1, 2) @ e[..., None]).squeeze(-1)
        g[:, 6:] += prior * (a_art @ pm[0].T - pm[1]) @ pm[0]
        # Joints pressed against a limit drop out of the step (projected Newton).
        fixed = ((a_art <= lo + 1e-6) & (g[:, 6:] > 0)) | ((a_art >= hi - 1e-6) & (g[:, 6:] < 0))
        free = torch.cat([torch.ones_like(fixed[:, :6]), ~fixed], 1).to(dtype)
        h = jtj * free[:, :, None] * free[:, None, :]
        diag = torch.diagonal(h, dim1=-2, dim2=-1)
        h = h + torch.diag_embed(lam[idx, None] * diag + 1e-6) + eye * (1 - free)[:, None, :]
        step = -torch.linalg.solve(h, (g * free)[..., None]).squeeze(-1)
        r_new = axis_angle_to_matrix(step[:, 3:6]) @ r[idx]
        t_new = t[idx] + step[:, :3]
        art_new = (a_art + step[:, 6:]).clamp(lo, hi)
        fk_new, mk_new = _fk_markers(r_new, t_new, art_new, subject)
        err_new = mk_new - obs[idx]
        cost_new = _cost(err_new, art_new, pm, prior)
        better = cost_new < cost[idx]
        b_idx = idx[better]
        r[b_idx], t[b_idx], art[b_idx] = r_new[better], t_new[better], art_new[better]
        mk[b_idx], err[b_idx] = mk_new[better], err_new[better]
        for name in ("joints", "rotations", "metacarpal_rotations", "metacarpal_origins"):
            getattr(fk, name)[b_idx] = getattr(fk_new, name)[better]
        gain = cost[idx] - cost_new
        cost[b_idx] = cost_new[better]
        lam[idx] = torch.where(better, lam[idx] * 0.3, lam[idx] * 10.0).clamp(1e-7, 1e7)
        # Converged: a step (taken or not) that changes the objective by almost nothing.
        done = (gain.abs() < tol * (1 + cost[idx])) | (lam[idx] >= 1e7)
        active[idx[done]] = False
    pose = torch.cat([t, matrix_to_axis_angle(r), art], -1)
    return pose, it


def _pso(
    obs: Tensor,
    pose0: Tensor,
    subject: SubjectModel,
    iters: int,
    particles: int,
    prior: float,
    generator: torch.Generator | None,
    chunk: int,
    spread: float = 0.05,
) -> Tensor:
    """The paper's particle swarm (constriction PSO, Clerc & Kennedy 2002) on Eqn 2, batched
    over frames x particles. Articulation within the limits; the root searches a box of
    ±15 mm and ±0.25 rad around the rigid alignment (the paper keeps it fixed)."""
    dtype, dev = obs.dtype, obs.device
    lo, hi = pose_limits(dtype=dtype, device=dev)
    lo, hi = lo.clone(), hi.clone()
    lo[:3], hi[:3] = -15.0, 15.0
    lo[3:6], hi[3:6] = -0.25, 0.25
    span = hi - lo
    pm = _prior(subject.mean_pose.to(obs))
    out = []
    for s in range(0, obs.shape[0], chunk):
        o, p0 = obs[s : s + chunk], pose0[s : s + chunk]
        n = o.shape[0]
        r0 = axis_angle_to_matrix(p0[:, 3:6])

        def cost_of(x: Tensor, o=o, p0=p0, r0=r0, n=n) -> Tensor:  # (n, P, 30) -> (n, P)
            flat = x.reshape(-1, NUM_DOF)
            rr = axis_angle_to_matrix(flat[:, 3:6]) @ r0.repeat_interleave(particles, 0)
            tt = p0[:, :3].repeat_interleave(particles, 0) + flat[:, :3]
            _, mk = _fk_markers(rr, tt, flat[:, 6:], subject)
            err = mk.view(n, particles, -1, 3) - o[:, None]
            return _cost(err, x[..., 6:], pm, prior)

        # Particle 0 is the starting pose; the others scatter around it (spread x each range).
        start = torch.cat([torch.zeros_like(p0[:, :6]), p0[:, 6:]], 1)
        noise = torch.randn(n, particles, NUM_DOF, generator=generator, dtype=dtype).to(dev)
        x = (start[:, None] + spread * span * noise).clamp(lo, hi)
        x[:, 0] = start
        v = torch.randn(n, particles, NUM_DOF, generator=generator, dtype=dtype).to(dev)
        v = 0.5 * spread * span * v
        with torch.no_grad():
            f = cost_of(x)
            pbest, pbest_f = x.clone(), f.clone()
            for _ in range(iters):
                g = pbest[torch.arange(n), pbest_f.argmin(1)]
                r1 = torch.rand(n, particles, NUM_DOF, generator=generator, dtype=dtype).to(dev)
                r2 = torch.rand(n, particles, NUM_DOF, generator=generator, dtype=dtype).to(dev)
                v = 0.7298 * (v + 2.05 * r1 * (pbest - x) + 2.05 * r2 * (g[:, None] - x))
                v = torch.maximum(torch.minimum(v, 0.5 * span), -0.5 * span)
                x = (x + v).clamp(lo, hi)
                f = cost_of(x)
                better = f < pbest_f
                pbest = torch.where(better[..., None], x, pbest)
                pbest_f = torch.where(better, f, pbest_f)
        best = pbest[torch.arange(n), pbest_f.argmin(1)]
        r = axis_angle_to_matrix(best[:, 3:6]) @ r0
        out.append(torch.cat([p0[:, :3] + best[:, :3], matrix_to_axis_angle(r), best[:, 6:]], 1))
    return torch.cat(out)


def solve_ik(
    joints: JointsLike,
    subject: SubjectModel,
    joint_set: str | JointSet | None = None,
    method: Literal["gradient", "pso"] = "gradient",
    iters: int | None = None,
    init: Tensor | None = None,
    prior_weight: float = _PRIOR_WEIGHT,
    particles: int = 48,
    tol: float = 1e-5,
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> IKResult:
    """Joint angles whose forward kinematics best match labelled joints.

    Args:
        joints: ``(N, M, 3)`` labels in the camera frame, mm (numpy or torch; computed in the
            subject's dtype and device).
        subject: the subject's model (:func:`fit_subject`).
        joint_set: the labels' joint set; must be the subject's (default: the subject's).
        method: ``"gradient"``: Levenberg-Marquardt on the analytic Jacobian, limits by
            projection, per frame until converged or ``iters`` (default 20); ``"pso"``: the
            paper's particle swarm, ``particles`` per frame, ``iters`` (default 60) rounds,
            evaluated ``chunk`` frames at a time.
        init: ``(N, 30)`` starting poses (e.g. the previous frame's solution in a sequence);
            default the rigid alignment of :func:`rigid_init`.
        prior_weight: mm^2 per rad^2 of deviation from the subject's mean articulation (and
            of each DIP from :data:`DIP_PIP_RATIO` times its PIP).
        tol: relative objective gain below which a frame stops (gradient).
        generator: random source for PSO.
    Returns:
        :class:`IKResult`; poses are within :func:`handvox.hand.kinematics.pose_limits`.
    Raises:
        handvox.errors.DataError: wrong shape, no frames, NaN or infinite labels.
        ValueError: another joint set than the subject's, unknown method.
    """
    ms = subject.marker_set
    if joint_set is not None and get_marker_set(joint_set).joint_set.name != ms.joint_set.name:
        raise ValueError(f"labels are {get_marker_set(joint_set).joint_set.name} but the subject "
                         f"model is {ms.joint_set.name}")  # fmt: skip
    if method not in ("gradient", "pso"):
        raise ValueError(f"unknown IK method {method!r}; choose 'gradient' or 'pso'")
    dtype, dev = subject.offsets.dtype, subject.offsets.device
    obs = _as_joints(joints, ms, dtype, dev)
    with torch.no_grad():
        pose0 = rigid_init(obs, subject) if init is None else init.to(obs).clone()
        if pose0.shape != (obs.shape[0], NUM_DOF):
            raise ValueError(f"init: expected shape ({obs.shape[0]}, {NUM_DOF}), "
                             f"got {tuple(pose0.shape)}")  # fmt: skip
        if method == "gradient":
            n_it = 20 if iters is None else iters
            pose, n_it = _levenberg_marquardt(obs, pose0, subject, n_it, prior_weight, tol)
        else:
            n_it = 60 if iters is None else iters
            pose = _pso(obs, pose0, subject, n_it, particles, prior_weight, generator, chunk)
        lo, hi = pose_limits(dtype=dtype, device=dev)
        pose = torch.maximum(torch.minimum(pose, hi), lo)
        mk = markers(forward_kinematics(pose, subject.bones), ms, subject.offsets)
        err = mk - obs
        obj = _cost(err, pose[:, 6:], _prior(subject.mean_pose.to(obs)), prior_weight)
    return IKResult(pose, err.norm(dim=-1), mk, obj, method, n_it)


# --- learning a subject ----------------------------------------------------------------------


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


def _pair_distances(pts: Tensor, pairs: list[tuple[int, int]]) -> Tensor:
    i = [a for a, _ in pairs]
    k = [b for _, b in pairs]
    return (pts[..., i, :] - pts[..., k, :]).norm(dim=-1)


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
       rigidly (:func:`rigid_pairs`) fixes the overall scale and, as far as those pairs reach,
       the bones (for ICVL/MSRA/canonical every labelled bone; for NYU only the wrist-palm
       triangle and the thumb's tip phalanx);
    2. then ``rounds`` times: IK of the frames (:func:`solve_ik`), then ``steps`` Adam steps on
       the frames' poses, the bones and the offsets together, minimising the marker errors
       (weighted ``1 / label_sigma^2``) plus Gaussian priors: each phalanx within
       ``bone_sigma`` (relative) and each palm joint position within ``position_sigma`` mm of
       the base shape scaled to the subject, each marker within ``offset_sigma`` mm of the
       set's default offset. The priors only decide what the labels leave open (e.g. where
       along the finger an unlabelled MCP sits).

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
        :class:`SubjectModel` (``dtype``, ``device``).
    """
    ms = get_marker_set(joint_set)
    obs_all = _as_joints(joints, ms, dtype, device)
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
        target = _pair_distances(obs, pairs).mean(0)
        with torch.no_grad():
            params.log_scale.fill_(float((target / _pair_distances(rest(params), pairs)).log()
                                         .median()))  # fmt: skip
        _adam([(params.tensors(), 0.01)], 200, lambda: (
            ((_pair_distances(rest(params), pairs) - target) ** 2).sum() / label_sigma**2
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
            data = _cost(err, pose[:, 6:], _prior(mean_pose), _PRIOR_WEIGHT).sum()
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


# --- several subjects --------------------------------------------------------------------------


def cluster_subjects(
    joints: JointsLike, joint_set: str | JointSet, n_subjects: int, seed: int = 0
) -> np.ndarray:
    """Split frames by hand size: k-means on the distances between rigidly linked labels
    (:func:`rigid_pairs`), which do not change with the pose.

    Returns:
        ``(N,)`` int cluster of each frame, clusters numbered by first appearance.
    """
    from scipy.cluster.vq import kmeans2

    ms = get_marker_set(joint_set)
    obs = _as_joints(joints, ms, torch.float64)
    if n_subjects == 1:
        return np.zeros(obs.shape[0], dtype=int)
    pairs = rigid_pairs(ms)
    if not pairs:
        raise ValueError(f"{ms.joint_set.name} has no rigidly linked labels to cluster on")
    feats = _pair_distances(obs, pairs).numpy()
    feats = feats / feats.std(0).clip(1e-6)
    _, labels = kmeans2(feats, n_subjects, minit="++", seed=seed)
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(np.argsort(first))
    return order[labels]


def fit_subjects(
    joints: JointsLike, joint_set: str | JointSet, n_subjects: int, **kwargs
) -> tuple[list[SubjectModel], np.ndarray]:
    """:func:`cluster_subjects`, then :func:`fit_subject` on each cluster's frames.

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


def assign_subjects(joints: JointsLike, subjects: list[SubjectModel]) -> np.ndarray:
    """``(N,)`` index of the subject whose rigid label distances fit each frame best."""
    ms = get_marker_set(subjects[0].joint_set)
    pairs = rigid_pairs(ms)
    if len(subjects) == 1 or not pairs:
        return np.zeros(_as_joints(joints, ms, torch.float64).shape[0], dtype=int)
    obs = _as_joints(joints, ms, torch.float64)
    d = _pair_distances(obs, pairs)
    with torch.no_grad():
        model = torch.stack([_pair_distances(s.rest_markers().double(), pairs) for s in subjects])
    return ((d[:, None] - model[None].cpu()) ** 2).sum(-1).argmin(1).numpy()


def solve_ik_subjects(
    joints: JointsLike, subjects: list[SubjectModel], labels: np.ndarray | None = None, **kwargs
) -> IKResult:
    """:func:`solve_ik` of each frame with its subject (``labels``, default
    :func:`assign_subjects`), results in the input's frame order."""
    labels = assign_subjects(joints, subjects) if labels is None else np.asarray(labels)
    data = joints if isinstance(joints, Tensor) else np.asarray(joints)
    parts, order = [], []
    for k, subject in enumerate(subjects):
        sel = np.nonzero(labels == k)[0]
        if sel.size:
            parts.append(solve_ik(data[sel], subject, **kwargs))
            order.append(sel)
    if not parts:
        raise DataError(None, "joints: no frames")
    inv = torch.as_tensor(np.argsort(np.concatenate(order)))
    cat = {f: torch.cat([getattr(p, f) for p in parts])[inv]
           for f in ("pose", "residual", "markers", "objective")}  # fmt: skip
    return IKResult(**cat, method=parts[0].method, iterations=max(p.iterations for p in parts))

"""Joint angles of the kinematic hand from labelled joints, given the subject's hand.

:func:`solve_ik` recovers the poses of any number of frames, batched: a closed-form rigid
alignment (:func:`kabsch`) of the subject's rest markers gives the root, then Levenberg-Marquardt
on the analytic marker Jacobian (:func:`marker_jacobian`) or the paper's particle swarm fits all
30 DOF, with a weak prior (:func:`articulation_prior`) on what the markers cannot see.
:func:`solve_ik_subjects` solves frames of several subjects, each with its own model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from handvox.errors import DataError
from handvox.geometry import axis_angle_to_matrix, matrix_to_axis_angle
from handvox.hand.ik.subject import JointsLike, SubjectModel, as_labels, assign_subjects
from handvox.hand.kinematics import (
    JOINT_AXES,
    NUM_DOF,
    FKResult,
    MarkerSet,
    forward_kinematics,
    get_marker_set,
    markers,
    pose_limits,
    random_pose,
)
from handvox.joints import JointSet


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
    # the thumb CMC's oblique flexion and abduction axes, fixed in the frames they turn in
    a_flex, a_abd = JOINT_AXES[0, 1:3].to(dtype=j.dtype, device=j.device)
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


def _rigid_weights(subject: SubjectModel, sigma: float = 3.0) -> Tensor:
    """``(M,)`` Kabsch weights ``1 / (sigma^2 + var)`` with ``var`` the marker's spread in the
    hand frame over random poses: markers fixed to the palm dominate the root estimate."""
    gen = torch.Generator().manual_seed(1)
    pose = random_pose(64, gen, subject.offsets.dtype, subject.offsets.device)
    pts = markers(forward_kinematics(pose, subject.bones), subject.marker_set, subject.offsets)
    var = pts.var(0).sum(-1)
    return 1.0 / (sigma**2 + var)


# --- the objective ------------------------------------------------------------------------------

PRIOR_WEIGHT = 1.0  # mm^2 per rad^2: a radian from the mean pose costs as much as 1 mm error
# DIP flexion follows PIP flexion by about 2/3 in free finger motion (Rijpkema & Girard 1991;
# Lee & Kunii 1995); the prior centres each DIP there rather than on the mean pose, so a DIP no
# label sees (ICVL's "tips" are the DIPs) curls with its finger.
DIP_PIP_RATIO = 2.0 / 3.0


def articulation_prior(mean_pose: Tensor) -> tuple[Tensor, Tensor]:
    """Linear prior on the articulation ``a`` (24,): residual ``P @ a - q`` (rad), the
    deviation from the mean pose, except ``dip - DIP_PIP_RATIO * pip`` for the four DIPs."""
    mat = torch.eye(NUM_DOF - 6, dtype=mean_pose.dtype, device=mean_pose.device)
    q = mean_pose[6:].clone()
    for k in range(4):
        pip, dip = 4 + 5 * k + 3, 4 + 5 * k + 4
        mat[dip, pip] = -DIP_PIP_RATIO
        q[dip] = 0.0
    return mat, q


def objective(err: Tensor, art: Tensor, prior_mq: tuple[Tensor, Tensor], weight: float) -> Tensor:
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
    pm = articulation_prior(subject.mean_pose.to(obs))
    r = axis_angle_to_matrix(pose[:, 3:6])
    t = pose[:, :3].clone()
    art = pose[:, 6:].clamp(lo, hi)
    lam = torch.full((n,), 1e-2, dtype=dtype, device=dev)
    prior_h = torch.zeros(NUM_DOF, NUM_DOF, dtype=dtype, device=dev)
    prior_h[6:, 6:] = prior * pm[0].T @ pm[0]
    eye = torch.eye(NUM_DOF, dtype=dtype, device=dev)
    fk, mk = _fk_markers(r, t, art, subject)
    err = mk - obs
    cost = objective(err, art, pm, prior)
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
        cost_new = objective(err_new, art_new, pm, prior)
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
    pm = articulation_prior(subject.mean_pose.to(obs))
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
            return objective(err, x[..., 6:], pm, prior)

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
    prior_weight: float = PRIOR_WEIGHT,
    particles: int = 48,
    tol: float = 1e-5,
    generator: torch.Generator | None = None,
    chunk: int = 256,
) -> IKResult:
    """Joint angles whose forward kinematics best match labelled joints.

    Args:
        joints: ``(N, M, 3)`` labels in the camera frame, mm (numpy or torch; computed in the
            subject's dtype and device).
        subject: the subject's model (:func:`~handvox.hand.ik.fit_subject`).
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
    obs = as_labels(joints, ms, dtype, dev)
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
        obj = objective(
            err, pose[:, 6:], articulation_prior(subject.mean_pose.to(obs)), prior_weight
        )
    return IKResult(pose, err.norm(dim=-1), mk, obj, method, n_it)


# --- several subjects --------------------------------------------------------------------------


def solve_ik_subjects(
    joints: JointsLike, subjects: list[SubjectModel], labels: np.ndarray | None = None, **kwargs
) -> IKResult:
    """:func:`solve_ik` of each frame with its subject (``labels``, default
    :func:`~handvox.hand.ik.assign_subjects`), results in the input's frame order."""
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

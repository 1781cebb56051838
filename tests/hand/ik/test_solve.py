"""Solving poses (handvox.hand.ik.solve): Kabsch, the analytic Jacobian, round trips with
known subjects, joint limits, bad input, warm starts and PSO on real NYU labels."""

from __future__ import annotations

import pytest
import torch
from scipy.spatial.transform import Rotation

from handvox.errors import DataError
from handvox.geometry import axis_angle_to_matrix
from handvox.hand import ik
from handvox.hand.ik.fit import _hang_on_proximal_bones
from handvox.hand.ik.solve import _dependency, _fk_markers
from handvox.hand.kinematics import forward_kinematics, get_marker_set, markers, pose_limits
from handvox.hand.shapes import base_shape, sample_shape
from tests.hand.ik.labels import random_poses, within_limits

F64 = torch.float64
SETS = ["nyu14", "icvl16", "msra21", "canonical21"]
# Small batches run faster on one thread, the more so on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_kabsch_recovers_rigid_motion():
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(6, 3, generator=gen, dtype=F64) * 40
    rot = torch.tensor(Rotation.random(4, 1).as_matrix())
    t = torch.randn(4, 3, generator=gen, dtype=F64) * 100
    dst = src @ rot.transpose(1, 2) + t[:, None]
    r_fit, t_fit = ik.kabsch(src, dst, torch.ones(6, dtype=F64))
    assert torch.allclose(r_fit, rot, atol=1e-9) and torch.allclose(t_fit, t, atol=1e-7)


# torch.func's forward mode registers its decompositions through the deprecated torch.jit.script
@pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:DeprecationWarning")
@pytest.mark.parametrize("joint_set", SETS)
def test_jacobian_matches_autograd(joint_set):
    """The analytic marker Jacobian (LM's) equals forward-mode autodiff of FK, for markers
    with offsets on every kind of parent frame, including ones hung on the proximal bone."""
    gen = torch.Generator().manual_seed(3)
    bones = sample_shape(gen, 1, "average_adult", dtype=F64)
    ms = get_marker_set(joint_set)
    ms_hung, _ = _hang_on_proximal_bones(ms, ms.default_offsets(bones)[0])
    off = torch.randn(len(ms.parents), 3, generator=gen, dtype=F64) * 5
    subject = ik.SubjectModel(ms.joint_set.name, bones, off, torch.zeros(30, dtype=F64),
                              parents=ms_hung.parents)  # fmt: skip
    pose = random_poses(3, gen, F64)
    r = axis_angle_to_matrix(pose[:, 3:6])
    fk, mk = _fk_markers(r, pose[:, :3], pose[:, 6:], subject)
    jac = ik.marker_jacobian(fk, mk, _dependency(subject.marker_set))
    for b in range(3):

        def f(x, b=b):  # root translation, left rotation increment, articulation
            rr = axis_angle_to_matrix(x[3:6])[None] @ r[b : b + 1]
            return _fk_markers(rr, x[None, :3], x[None, 6:], subject)[1][0]

        x0 = torch.cat([pose[b, :3], torch.zeros(3, dtype=F64), pose[b, 6:]])
        assert torch.allclose(torch.func.jacfwd(f)(x0), jac[b], atol=1e-9)


@pytest.mark.parametrize("joint_set", SETS)
def test_round_trip_known_subject(joint_set):
    """FK -> markers -> IK with the true bones: sub-millimetre residual, within limits, and
    the angles come back wherever the markers determine them (all of them for 21 joints)."""
    gen = torch.Generator().manual_seed(1)
    bones = base_shape("average_adult", F64)
    subject = ik.SubjectModel.from_bones(joint_set, bones)
    pose = random_poses(200, gen, F64)
    obs = markers(forward_kinematics(pose, bones), joint_set)
    res = ik.solve_ik(obs, subject, joint_set, prior_weight=1e-3, iters=40)
    assert within_limits(res.pose)
    frame = res.residual.mean(1)
    # measured: nyu14 0.23 / 0.69 mm (a few frames in local minima), others < 1e-4
    assert float(frame.mean()) < 0.35 and float(frame.quantile(0.9)) < 1.0
    if joint_set in ("msra21", "canonical21"):
        err = (res.pose[:, 6:] - pose[:, 6:]).abs()
        assert float(torch.rad2deg(err.median())) < 0.1
        # the hand's placement comes back too
        assert float((res.pose[:, :3] - pose[:, :3]).norm(dim=-1).median()) < 0.1


def test_limits_hold_for_unreachable_labels():
    """Labels of hyperextended fingers (beyond the limits) still give poses within limits,
    with both solvers."""
    gen = torch.Generator().manual_seed(4)
    bones = base_shape("average_adult", F64)
    lo, hi = pose_limits(dtype=F64)
    pose = random_poses(20, gen, F64)
    pose[:, 6:] = torch.where(torch.rand(20, 24, generator=gen, dtype=F64) < 0.5,
                              lo[6:] - 0.4, hi[6:] + 0.4)  # fmt: skip
    obs = markers(forward_kinematics(pose, bones), "canonical21")
    subject = ik.SubjectModel.from_bones("canonical21", bones)
    for method in ("gradient", "pso"):
        res = ik.solve_ik(obs, subject, method=method, iters=20, generator=gen)
        assert within_limits(res.pose)
        assert float(res.residual.mean()) > 1.0  # it could not (and did not) follow them


def test_bad_input():
    subject = ik.SubjectModel.from_bones("nyu14", base_shape("average_adult"))
    good = markers(forward_kinematics(random_poses(3, torch.Generator().manual_seed(0)),
                                      subject.bones), "nyu14")  # fmt: skip
    bad = good.clone()
    bad[1, 4, 2] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        ik.solve_ik(bad, subject)
    with pytest.raises(DataError, match=r"\(N, 14, 3\)"):
        ik.solve_ik(good[:, :13], subject)
    with pytest.raises(DataError, match="no frames"):
        ik.solve_ik(good[:0], subject)
    with pytest.raises(ValueError, match="icvl16"):
        ik.solve_ik(good, subject, joint_set="icvl")
    with pytest.raises(ValueError, match="method"):
        ik.solve_ik(good, subject, method="newton")
    with pytest.raises(ValueError, match="init"):
        ik.solve_ik(good, subject, init=torch.zeros(2, 30))


@pytest.mark.slow
def test_warm_start_from_solution(nyu_xyz, nyu_subject):
    """Starting from a frame's solution (a sequence's previous frame) stays there and stops
    sooner than a cold start."""
    x = nyu_xyz[:40]
    first = ik.solve_ik(x, nyu_subject)
    again = ik.solve_ik(x, nyu_subject, init=first.pose)
    assert again.iterations < first.iterations
    assert (again.objective <= first.objective + 1e-2).all()
    assert torch.allclose(again.residual, first.residual, atol=0.05)


@pytest.mark.slow
def test_pso_reduces_objective(nyu_xyz, nyu_subject):
    x = nyu_xyz[100:2440:300]
    start = ik.solve_ik(x, nyu_subject, iters=0)  # the rigid initialisation, unrefined
    res = ik.solve_ik(x, nyu_subject, method="pso", iters=30, particles=32,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert res.method == "pso" and within_limits(res.pose)
    assert (res.objective <= start.objective + 1e-3).all()
    assert float(res.objective.mean()) < 0.15 * float(start.objective.mean())  # measured 0.054
    assert float(res.residual.mean()) < 8.0

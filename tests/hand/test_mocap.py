"""A sequence of joints solved to a BVH animation, read back by an independent parser."""

import numpy as np
import pytest
import torch

from handvox.errors import DataError
from handvox.hand.bvh import write_bvh
from handvox.hand.hand_bvh import BVH_NAMES
from handvox.hand.kinematics import forward_kinematics, markers
from handvox.hand.mocap import solve_sequence
from handvox.hand.poses import sample_poses
from handvox.hand.shapes import base_shape
from handvox.joints import CANONICAL21


def _sequence(frames=24, seed=3):
    """Joints of a hand moving smoothly between two sampled poses (forward kinematics of a
    larger hand than the fit starts from)."""
    gen = torch.Generator().manual_seed(seed)
    a, b = sample_poses(gen, 2)
    w = torch.linspace(0, 1, frames)[:, None]
    pose = (1 - w) * a + w * b
    bones = base_shape("large_male")
    return markers(forward_kinematics(pose, bones), "canonical21").numpy(), pose


def test_sequence_to_bvh_read_back_by_bvhio(tmp_path):
    bvhio = pytest.importorskip("bvhio", reason="bvhio (a dev dependency) is not installed")
    joints, _ = _sequence()
    joints[5] = np.nan  # a frame without a hand
    m = solve_sequence(joints, "canonical21", fps=30.0, fit_frames=24, fit_rounds=2)
    assert m.bvh.num_frames == 24 and m.held.tolist() == [i == 5 for i in range(24)]
    np.testing.assert_array_equal(m.pose[5], m.pose[4])  # held: the last frame's pose
    assert np.nanmax(m.residual_mm) < 3.0  # the markers the solved hand puts on the joints
    path = tmp_path / "hand.bvh"
    write_bvh(path, m.bvh)
    flat = bvhio.readAsBvh(str(path))
    assert flat.FrameCount == 24 and flat.FrameTime == pytest.approx(1 / 30, rel=1e-5)
    root = bvhio.readAsHierarchy(str(path))
    assert [j.Name for j, _, _ in root.layout()] == list(BVH_NAMES)
    # bvhio's world positions of the joints are the input's (joint centres of the fitted hand
    # against labels on them: the fit's own error)
    idx = [
        (CANONICAL21.names.index(n), i) for i, n in enumerate(BVH_NAMES) if n in CANONICAL21.names
    ]
    canon, mine = (list(x) for x in zip(*idx, strict=True))
    for f in (0, 11, 23):
        root.loadPose(f)
        got = np.array([list(j.PositionWorld) for j, _, _ in root.layout()])
        err = np.linalg.norm(got[mine] - joints[f, canon], axis=-1)
        assert err.mean() < 3.0, f"frame {f}: {err.mean():.2f} mm"


def test_bad_sequences_are_refused():
    joints, _ = _sequence(4)
    with pytest.raises(DataError, match="no frame has a hand"):
        solve_sequence(np.full_like(joints, np.nan), "canonical21", 30.0)
    part = joints.copy()
    part[1, 3] = np.nan
    with pytest.raises(DataError, match="frame 1 has only some joints"):
        solve_sequence(part, "canonical21", 30.0)

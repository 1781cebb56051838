"""The subject model and who is who (handvox.hand.ik.subject): rigid label pairs, clusters."""

from __future__ import annotations

import numpy as np
import pytest

from handvox.hand import ik
from handvox.hand.kinematics import get_marker_set
from handvox.joints import CANONICAL21

# Small batches run faster on one thread, the more so on a shared machine.
pytestmark = pytest.mark.usefixtures("one_thread")


def test_rigid_pairs():
    names = get_marker_set("nyu14").joint_set.names
    nyu = {frozenset((names[a], names[b])) for a, b in ik.rigid_pairs(get_marker_set("nyu14"))}
    want = [("wrist1", "wrist2"), ("wrist1", "palm"), ("wrist2", "palm"),
            ("thumb_tip", "thumb_root2")]  # fmt: skip
    assert nyu == {frozenset(p) for p in want}
    canon = set(ik.rigid_pairs(get_marker_set("canonical21")))
    assert set(CANONICAL21.bones) - {(0, 5), (0, 9), (0, 13), (0, 17)} <= canon


def test_nyu_clusters_are_the_three_hand_sizes(nyu_xyz):
    labels = ik.cluster_subjects(nyu_xyz, "nyu14", 3)
    assert np.bincount(labels).tolist() == [2440, 696, 5116]
    assert (labels[:2440] == 0).all()

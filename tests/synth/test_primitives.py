"""Hands and scenes as analytic primitives: builders, and the hand's shape as the camera sees it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from handvox.camera import Camera
from handvox.synth.primitives import (
    BACKGROUND,
    BODY,
    DEFAULT_RADII,
    EXTRA_PART_NAMES,
    OBJECT,
    OTHER_HAND,
    PART_NAMES,
    ROUND_CONE,
    SPHERE,
    Primitives,
    forearm_primitives,
    hand_primitives,
    scene_primitives,
)
from handvox.synth.raycast import render_depth
from tests.synth.scenes import open_hand

NYU = Camera.preset("nyu")


def test_builders():
    # A round cone whose big sphere swallows the small one becomes that sphere.
    p = Primitives.round_cones([[0, 0, 100], [0, 0, 100]], [[1, 0, 100], [0, 30, 100]], 5, [1, 2])
    assert sorted(p.kind.tolist()) == sorted([ROUND_CONE, SPHERE])
    assert len(Primitives.concat([])) == 0
    scene = scene_primitives(np.zeros(3) + [0, 0, 500])
    assert {BODY, BACKGROUND} == set(scene.part.tolist())
    with pytest.raises(ValueError, match="joints21"):
        hand_primitives(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="joints21"):
        hand_primitives(np.full((21, 3), np.nan))
    with pytest.raises(ValueError, match="radii"):
        Primitives.spheres([0, 0, 100], 0.0)


def test_palm_is_solid_and_thick():
    j = open_hand()
    out = render_depth(hand_primitives(j), NYU, return_ids=True)
    # No holes: every pixel inside the quadrilateral wrist, index MCP, little MCP is palm-hit.
    corners = NYU.project(j[[0, 5, 17]])
    v, u = np.mgrid[: NYU.height, : NYU.width]
    inside = np.ones_like(u, bool)
    for k in range(3):
        (u0, v0), (u1, v1) = corners[k], corners[(k + 1) % 3]
        inside &= (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0) >= 0
    if not inside.any():  # the other winding
        inside = np.ones_like(u, bool)
        for k in range(3):
            (u0, v0), (u1, v1) = corners[k], corners[(k + 1) % 3]
            inside &= (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0) <= 0
    assert inside.sum() > 2000 and np.all(out.ids[inside] >= 0)
    # Thickness: the palm tapers from 28 mm at the heel to 24 mm at the knuckles.
    centre = (j[0] + j[9]) / 2
    uv = NYU.project(centre).round().astype(int)
    assert centre[2] - 14.0 < out.depth[uv[1], uv[0]] < centre[2] - 12.0


def test_hand_from_nyu_labels_overlaps_real_frame(shared):
    """A hand built from NYU frame 1's labels covers the real hand and matches its depth."""
    rgb = np.asarray(Image.open(shared / "data/nyu/depth_1_0000001.png")).astype(np.int32)
    real = ((rgb[..., 1] << 8) | rgb[..., 2]).astype(np.float32)
    lines = (shared / "data/nyu/nyu_test_groundtruth_label.txt").open().readline()
    lab = np.array(lines.split(), float).reshape(14, 3)
    xyz = NYU.uvd_to_xyz(lab)
    j = np.zeros((21, 3))
    j[0] = (xyz[11] + xyz[12]) / 2
    for f, tip in ((1, 6), (2, 4), (3, 2), (4, 0)):  # NYU14 tip slots; the root follows
        root = xyz[tip + 1]
        j[1 + 4 * f : 5 + 4 * f] = root + np.outer([0, 0.5, 0.78, 1.0], xyz[tip] - root)
    j[1:5] = [xyz[10], xyz[9], (xyz[9] + xyz[8]) / 2, xyz[8]]
    syn = render_depth(hand_primitives(j, tip_inset=0.0), NYU)
    lo, hi = lab[:, :2].min(0) - 30, lab[:, :2].max(0) + 30
    v, u = np.mgrid[: NYU.height, : NYU.width]
    box = (u >= lo[0]) & (u <= hi[0]) & (v >= lo[1]) & (v <= hi[1])
    real_hand = box & (np.abs(real - lab[:, 2].mean()) < 60)
    both = real_hand & (syn > 0)
    assert both.sum() / (real_hand | (syn > 0)).sum() > 0.65
    assert np.median(np.abs(real[both] - syn[both])) < 12.0


def test_forearm_primitives_rebuild_the_hands_forearm():
    """The generic limb with the capsule hand's figures is the forearm hand_primitives draws."""
    j = open_hand()
    wrist, mcp = j[0], j[[5, 9, 13, 17]]
    width = np.linalg.norm(mcp[0] - mcp[3])
    end = wrist + (wrist - mcp[1]) / np.linalg.norm(wrist - mcp[1]) * 220.0
    r0 = DEFAULT_RADII[0]
    limb = forearm_primitives(wrist, end, mcp[0] - mcp[3], (0.3 * width, 0.36 * width),
                              (0.85 * r0, 1.3 * r0), part=OBJECT)  # fmt: skip
    whole = render_depth(hand_primitives(j, forearm=True), NYU)
    parts = render_depth(hand_primitives(j) + limb, NYU)
    np.testing.assert_allclose(parts, whole, atol=1e-3)
    assert set(limb.part.tolist()) == {OBJECT}
    assert (OBJECT, OTHER_HAND) == (len(PART_NAMES), len(PART_NAMES) + 1)
    assert EXTRA_PART_NAMES == ("object", "other_hand")

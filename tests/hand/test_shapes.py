"""Hand shapes (handvox.hand.shapes): the base shapes' measurements, random hands around them."""

from __future__ import annotations

import torch

from handvox.hand.shapes import (
    BASE_SHAPES,
    SHAPE_NAMES,
    base_shape,
    base_shapes,
    hand_breadth,
    hand_length,
    measure,
    sample_shape,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_base_shapes_plausible():
    assert len(SHAPE_NAMES) >= 5
    bones = base_shapes(F64)
    m = measure(bones)
    length, breadth = m["hand_length"], m["hand_breadth"]
    for i, name in enumerate(SHAPE_NAMES):
        spec = BASE_SHAPES[name]
        assert abs(float(length[i]) - spec.hand_length) < 0.5
        assert abs(float(breadth[i]) - spec.hand_breadth) < 0.5
        assert 120 < length[i] < 215 and 55 < breadth[i] < 100
        assert 0.38 < breadth[i] / length[i] < 0.55
        # middle finger (MCP to tip) is about half the hand length
        assert 0.45 < m["middle_finger"][i] / length[i] < 0.6
    order = [
        SHAPE_NAMES.index(n) for n in ("child_7y", "small_female", "average_adult", "large_male")
    ]
    assert all(length[order[k]] < length[order[k + 1]] for k in range(3))
    assert all(breadth[order[k]] < breadth[order[k + 1]] for k in range(3))
    avg_len = float(length[SHAPE_NAMES.index("average_adult")])
    assert 180 < avg_len < 195
    # every bone positive, finger lengths ordered middle > ring > index > little
    assert (bones.length > 0).all() and (bones.radius > 0).all()
    fingers = bones.length[:, 1:].sum(-1)
    assert (fingers[:, 1] > fingers[:, 2]).all() and (fingers[:, 2] > fingers[:, 0]).all()
    assert (fingers[:, 0] > fingers[:, 3]).all()


def test_sample_shape():
    a = sample_shape(_gen(9), 500, base="average_adult", dtype=F64)
    b = sample_shape(_gen(9), 500, base="average_adult", dtype=F64)
    assert torch.equal(a.length, b.length)  # reproducible
    ref = base_shape("average_adult", F64)
    ratio = hand_length(a) / hand_length(ref)
    assert 0.85 < ratio.min() and ratio.max() < 1.15 and ratio.std() > 0.02
    per_bone = a.length / ref.length
    assert 0.75 < per_bone.min() and per_bone.max() < 1.3
    # with no base: covers the space between the base shapes, continuously
    mixed = sample_shape(_gen(10), 2000, dtype=F64)
    lengths = hand_length(mixed)
    all_lengths = hand_length(base_shapes(F64))
    assert lengths.min() > all_lengths.min() * 0.85 and lengths.max() < all_lengths.max() * 1.15
    assert len(torch.unique(lengths.round())) > 50
    assert (hand_breadth(mixed) > 45).all()
    # every sampled hand is a valid skeleton: MCPs distal of their CMC pivots
    assert (mixed.base[:, 1:, 1] < mixed.cmc[:, :, 1] - 20).all()

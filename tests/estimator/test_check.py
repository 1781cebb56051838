"""The hand check and the confidences (handvox.estimator.check) and how the estimator uses them:
the mirror identity the left-hand labels rest on, the decision ``found`` takes from the check
and ``hand="auto"`` from the handedness classifier (with stubs whose answers are fixed), and the
shipped check on real and generated frames."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.estimator.check import (
    HandCheck,
    HandCheckConfig,
    HandCheckNet,
    frame_confidence,
    joint_confidence,
    load_hand_check,
    save_hand_check,
    shipped_hand_check,
    view_spread,
)
from handvox.estimator.handedness import Handedness, HandednessConfig
from handvox.estimator.pipeline import HandPoseEstimator, hand_volumes
from handvox.estimator.segment import SegmentConfig, segment_hand
from handvox.io.depth import read_depth

NYU = Camera.preset("nyu")


@pytest.fixture(scope="module")
def frame():
    from handvox.cli.bench import synthetic_frame

    return synthetic_frame(NYU)


def test_a_flipped_frame_gives_the_flipped_cube(frame):
    """The cube of the frame flipped left to right, seen through the mirrored camera around the
    mirrored centre, is the cube flipped along x: what the check's left hands are made of."""
    cfg = HandCheckConfig().volume
    seg = segment_hand(frame, NYU, SegmentConfig())
    assert seg.found
    a = hand_volumes(frame[None], [seg], NYU, cfg)
    flipped = np.ascontiguousarray(frame[:, ::-1])
    # The mask flipped too (segmentation's scan order makes its own result differ in a few
    # dozen edge pixels: the identity is the volume's).
    seg_f = dataclasses.replace(seg, mask=np.ascontiguousarray(seg.mask[:, ::-1]))
    centre = seg.com_xyz * [-1.0, 1.0, 1.0]
    b = hand_volumes(flipped[None], [seg_f], NYU.mirrored(), cfg, centres=centre[None])
    assert (a != 1).float().mean() > 0.02  # a hand in it, not an empty cube
    # Pixel sampling is nearest-neighbour: the flip maps pixel centres onto pixel centres.
    assert torch.equal(a.flip(-1), b)


def test_confidences():
    views = np.zeros((3, 2, 21, 3))
    views[1, 1] += [3.0, 0.0, 0.0]  # frame 1: one view 3 mm off along x
    s = view_spread(views)
    np.testing.assert_allclose(s[0], 0.0)
    np.testing.assert_allclose(s[1], (2.0 + 1.0 + 1.0) / 3)  # from the mean at x = 1
    np.testing.assert_allclose(joint_confidence(np.array([0.0, 10.0, 20.0]), 10.0), [1, 0.5, 0.25])
    c = frame_confidence(np.array([0.9, 0.9]), s, 10.0)
    assert c[0] == pytest.approx(0.9) and c[1] < c[0]
    np.testing.assert_allclose(frame_confidence(np.array([0.3]), None, 10.0), [0.3])


def _stub(p_hand: float, p_left: float) -> HandCheck:
    """A check that answers p_hand, p_left for every cube (its head's biases, no weights)."""
    net = HandCheckNet(2)
    with torch.no_grad():
        net.head[-1].weight.zero_()
        net.head[-1].bias.copy_(torch.logit(torch.tensor([p_hand, p_left])))
    return HandCheck(net.eval(), HandCheckConfig(), {})


class _Says(torch.nn.Module):
    """A classifier's network that gives every cube the logit ``right`` (traceable: it reads
    the batch size from its input)."""

    def __init__(self, right: float):
        super().__init__()
        self.right = right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1).mean(1) * 0 + self.right


class _Flip(torch.nn.Module):
    """A classifier's network whose answer is the hand's shape: the surface cells of the cube's
    right half (x >= D/2) less those of its left half, so that a frame and its mirror get
    opposite answers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        near = (x < 1).float()
        d = x.shape[-1] // 2
        return near[..., d:].flatten(1).sum(1) - near[..., :d].flatten(1).sum(1)


def _side(p_left: float, accuracy: float = 0.97) -> Handedness:
    """A handedness classifier that answers ``p_left`` for every hand, measured at ``accuracy``
    on held-out frames."""
    logit = float(torch.logit(torch.tensor(1 - p_left)))
    return Handedness(_Says(logit), HandednessConfig(), {"held_out": {"accuracy": accuracy}})


def test_found_and_auto_follow_the_check_and_the_classifier(frame, tiny_model):
    flipped = np.ascontiguousarray(frame[:, ::-1])
    both = np.stack([frame, flipped])
    views = {"test_rotations_deg": (20.0, -20.0)}  # views to agree or not: joint confidences
    plain = HandPoseEstimator.from_folder(tiny_model, hand_check=False, handedness=False, **views)
    ref = plain(both, NYU)
    assert ref.found.all() and np.isnan(ref.p_hand).all()
    # without a check the views' agreement alone; without views either, nothing to say: NaN
    assert ((ref.confidence > 0) & (ref.confidence <= 1)).all()
    bare = HandPoseEstimator.from_folder(tiny_model, hand_check=False, test_rotations_deg=())
    assert np.isnan(bare(both, NYU).confidence).all()
    with pytest.raises(HandvoxError, match="needs a handedness classifier"):
        plain(frame, NYU, hand="auto")

    # Not a hand: found=False, NaN joints, the reason, the check's figures kept.
    no = HandPoseEstimator.from_folder(tiny_model, hand_check=_stub(0.2, 0.1), **views)(both, NYU)
    assert not no.found.any() and np.isnan(no.joints_xyz).all()
    assert all(r.startswith("not a hand") and "below 0.500" in r for r in no.reason)
    np.testing.assert_allclose(no.p_hand, 0.2, rtol=1e-5)

    # A hand, right: the same joints as without a check; a confidence in (0, 1].
    yes = HandPoseEstimator.from_folder(tiny_model, hand_check=_stub(0.9, 0.7),
                                        handedness=_side(0.1), **views)  # fmt: skip
    r = yes(both, NYU, hand="auto")
    assert r.found.all() and r.hands == ["right", "right"] and r.hand == "auto"
    np.testing.assert_allclose(r.p_left, 0.1, rtol=1e-5)  # the classifier's, not the check's
    np.testing.assert_array_equal(r.joints_xyz, ref.joints_xyz)
    assert ((r.confidence > 0) & (r.confidence <= 0.9 + 1e-9)).all()
    assert r.joint_confidence.shape == (2, 14) and np.isfinite(r.joint_confidence).all()

    # A classifier that does not tell left from right well enough: auto is refused, saying why.
    weak = HandPoseEstimator.from_folder(tiny_model, hand_check=_stub(0.9, 0.1),
                                         handedness=_side(0.1, 0.949), **views)  # fmt: skip
    with pytest.raises(HandvoxError, match="94.9 % of held-out frames, below the 95 %"):
        weak(frame, NYU, hand="auto")
    assert weak(frame, NYU).found.all()  # the rest works without it

    # Called left: estimated exactly as hand="left" does.
    lefty = HandPoseEstimator.from_folder(tiny_model, hand_check=_stub(0.9, 0.1),
                                          handedness=_side(0.8), **views)  # fmt: skip
    a = lefty(both, NYU, hand="auto")
    b = lefty(both, NYU, hand="left")
    assert a.hands == ["left", "left"] and b.hands == ["left", "left"]
    np.testing.assert_array_equal(a.joints_xyz, b.joints_xyz)
    np.testing.assert_allclose(a.p_left, 0.8, rtol=1e-5)  # the classifier's, of the frame shown
    # hand="left" reports the check's: it saw the mirrored frame and said 0.1 for it.
    np.testing.assert_allclose(b.p_left, 0.9, rtol=1e-5)
    # a frame by frame decision: one hand each way
    mixed = _side(0.8)
    mixed.net = _Flip()
    m = HandPoseEstimator.from_folder(tiny_model, hand_check=_stub(0.9, 0.1), handedness=mixed,
                                      **views)(both, NYU, hand="auto")  # fmt: skip
    assert m.hands == ["right", "left"]
    # (the left pass sees one frame where b saw two: the batch's float rounding apart)
    np.testing.assert_allclose(m.joints_xyz[0], r.joints_xyz[0], atol=0.5)
    np.testing.assert_allclose(m.joints_xyz[1], b.joints_xyz[1], atol=0.5)
    assert np.abs(m.joints_xyz[1] - r.joints_xyz[1]).max() > 5  # a left hand's joints differ


def test_a_check_goes_with_the_way_the_hand_is_found(tiny_model, tmp_path):
    """The shipped check for each segment method is its own (cubes centred by the depth rule and
    by the locator differ where there is no hand); a check given for another method warns."""
    for method in ("depth", "learned"):
        est = HandPoseEstimator.from_folder(tiny_model, segment_method=method)
        if est.check is not None:
            assert est.check.config.segment_method == method
            assert est.check is shipped_hand_check(method)
    stub = _stub(0.9, 0.1)  # HandCheckConfig's default: the depth rule's cubes
    with pytest.warns(UserWarning, match="segment method 'depth'.*'learned'"):
        HandPoseEstimator.from_folder(tiny_model, segment_method="learned", hand_check=stub)
    # saved and loaded, the method goes with it
    learned = HandCheckConfig(width=2, segment_method="learned")
    save_hand_check(stub.net, learned, tmp_path, {})
    assert load_hand_check(tmp_path).config.segment_method == "learned"


def test_save_load_and_bad_folders(tmp_path):
    net = HandCheckNet(4)
    cfg = HandCheckConfig(width=4, spread_mm=7.5)
    save_hand_check(net, cfg, tmp_path / "chk", {"note": "x"})
    back = load_hand_check(tmp_path / "chk")
    assert back.config == cfg and back.meta == {"note": "x"}
    x = torch.rand(2, 1, 32, 32, 32)
    torch.testing.assert_close(back.net(x), net.eval()(x))
    with pytest.raises(DataError, match="not a hand check folder"):
        load_hand_check(tmp_path)
    (tmp_path / "config.json").write_text('{"format": "handvox-model"}')
    with pytest.raises(DataError, match="not a hand check"):
        load_hand_check(tmp_path)


@pytest.fixture(scope="module")
def shipped():
    check = shipped_hand_check()
    if check is None:
        pytest.skip("no hand check shipped")
    return HandPoseEstimator.default()


def test_shipped_check_on_the_real_nyu_frame_and_its_mirror(shipped, shared):
    """The real frame, and it mirrored (a left hand), are hands; without a handedness
    classifier measured at 95 % (docs/benchmarks.md, "Left or right") auto says to choose."""
    depth = read_depth(shared / "data/nyu/depth_1_0000001.png")
    a = shipped(depth, NYU)
    b = shipped(np.ascontiguousarray(depth[:, ::-1]), NYU.mirrored(), hand="left")
    t = shipped.check.config.threshold
    assert a.found[0] and a.p_hand[0] >= t and b.found[0] and b.p_hand[0] >= t
    assert 0 < a.confidence[0] <= a.p_hand[0]
    if shipped.handedness is None or not shipped.handedness.accuracy >= 0.95:
        with pytest.raises(HandvoxError, match="right' or 'left'"):
            shipped(depth, NYU, hand="auto")


def test_shipped_check_rejects_things_that_are_not_hands(shipped):
    """Depth frames of a box, a ball and a cylinder before a wall, each where a hand would be."""
    v, u = np.mgrid[0:480, 0:640].astype(np.float64)
    x, y = (u - NYU.cx) / NYU.fx, (v - NYU.cy) / NYU.fy
    wall = np.full((480, 640), 1800.0)
    frames = []
    box = wall.copy()
    box[200:300, 280:380] = 600.0  # a box face ~120 x 120 mm at 600 mm
    frames.append(box)
    # a ball of radius 60 mm at (0, 0, 650): the nearest hit along each ray
    b = x**2 + y**2 + 1
    c0 = np.array([0.0, 0.0, 650.0])
    proj = c0[2] / b
    disc = proj**2 * b - (c0 @ c0 - 60.0**2) / 1
    hit = disc > 0
    t = np.where(hit, proj - np.sqrt(np.maximum(disc, 0) / b), 0)
    ball = np.where(hit, t, wall)
    frames.append(ball)
    # a cylinder (a can) of radius 35 mm, axis vertical at x = 0, z = 550, 160 mm tall
    a = x**2 + 1
    disc = (550.0**2) - a * (550.0**2 - 35.0**2)
    t = (550.0 - np.sqrt(np.maximum(disc, 0))) / a
    can = np.where((disc > 0) & (np.abs(t * y) < 80.0), t, wall)
    frames.append(can)
    pred = shipped(np.stack(frames).astype(np.float32), NYU)
    segmented = [r == "" or r.startswith("not a hand") for r in pred.reason]
    assert not pred.found.any(), (pred.reason, pred.p_hand)
    assert sum(segmented) >= 1  # at least one reached the check (not all stopped by segmentation)


def test_the_fast_estimator_runs_the_frozen_check_with_the_same_answer(shipped, shared):
    depth = read_depth(shared / "data/nyu/depth_1_0000001.png")
    exact = HandPoseEstimator.default(fast=False)
    assert shipped.variants["check"] == "fp32-frozen"
    assert isinstance(shipped._check.net, torch.jit.ScriptModule)
    assert shipped._check.net is not shipped.check.net  # the check itself stays as loaded
    a, b = shipped(depth, NYU), exact(depth, NYU)
    assert abs(a.p_hand[0] - b.p_hand[0]) < 1e-4

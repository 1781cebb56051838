"""HandPoseEstimator: depth in, joints in mm out (handvox.estimator.pipeline). Random-weight
models, so the checks are on structure, the COM and batching, not on accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.errors import DataError, HandvoxError
from handvox.estimator.pipeline import DEFAULT_MODEL_DIR, HandPoseEstimator, hand_volumes
from handvox.estimator.segment import segment_hand
from handvox.estimator.weights import EstimatorConfig, build_networks, save_model
from handvox.io.depth import read_depth
from tests.tiny import tiny_config

NYU = Camera.preset("nyu")
# HANDS17 / BigHand2.2M's depth camera (the challenge's published intrinsics).
HANDS17 = Camera(475.065948, 475.065948, 315.944855, 245.287079, 640, 480)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = tiny_config(refine=True)
    folder = tmp_path_factory.mktemp("model")
    save_model(folder, cfg, *build_networks(cfg))
    return folder


@pytest.fixture(scope="module")
def nyu_frame(shared):
    return read_depth(shared / "data/nyu/depth_1_0000001.png")


@pytest.fixture(scope="module")
def synthetic_frame():
    from handvox.cli.bench import synthetic_frame

    return synthetic_frame(NYU)


@pytest.mark.parametrize("fast", [False, True])
def test_real_nyu_frame(model_dir, nyu_frame, shared, fast):
    est = HandPoseEstimator.from_folder(model_dir, fast=fast)
    pred = est(nyu_frame, "nyu")
    assert pred.found.tolist() == [True] and pred.reason == [""]
    assert pred.joints_xyz.shape == (1, 14, 3) and pred.joint_set == "nyu14"
    assert np.isfinite(pred.joints_xyz).all()
    # The COM comes from depth alone; the labels only score it.
    line = (shared / "data/nyu/nyu_test_groundtruth_label.txt").read_text().splitlines()[0]
    label_xyz = NYU.uvd_to_xyz(np.array(line.split(), float).reshape(14, 3))
    assert np.linalg.norm(pred.com_xyz[0] - label_xyz.mean(0)) < 40.0
    # Joints = COM + the pose net's output x target scale: a random net stays near the COM.
    assert np.abs(pred.joints_xyz[0] - pred.com_xyz[0]).max() < 150.0
    np.testing.assert_allclose(pred.joints_uvd, NYU.xyz_to_uvd(pred.joints_xyz))
    np.testing.assert_allclose(pred.com_uvd, NYU.xyz_to_uvd(pred.com_xyz))


def test_real_hands17_frame(model_dir, shared):
    depth = read_depth(shared / "data/hands17/image_D00000030.png")
    est = HandPoseEstimator.from_folder(model_dir)
    pred = est(depth, HANDS17)
    assert pred.found[0] and np.isfinite(pred.joints_xyz).all()
    assert 200 < pred.com_xyz[0, 2] < 1500
    assert np.abs(pred.joints_xyz[0] - pred.com_xyz[0]).max() < 150.0


def test_no_hand_gives_nan_not_zeros(model_dir, synthetic_frame):
    est = HandPoseEstimator.from_folder(model_dir)
    empty = np.zeros_like(synthetic_frame)
    far = np.full_like(synthetic_frame, 2001.0)  # NYU's "no reading" everywhere
    pred = est(np.stack([synthetic_frame, empty, far]), NYU)
    assert pred.found.tolist() == [True, False, False]
    assert np.isfinite(pred.joints_xyz[0]).all()
    for i in (1, 2):
        assert np.isnan(pred.joints_xyz[i]).all() and np.isnan(pred.joints_uvd[i]).all()
        assert np.isnan(pred.com_xyz[i]).all()
        assert pred.reason[i].startswith("no hand found")
    assert pred.reason[0] == ""


@pytest.mark.parametrize("fast", [False, True])
def test_batch_equals_one_by_one(model_dir, synthetic_frame, fast):
    rng = np.random.default_rng(0)
    # Different frames: the same hand shifted, with some pixels dropped, plus an empty one.
    frames = []
    for k in range(4):
        d = np.roll(synthetic_frame, 12 * k, axis=1).copy()
        d[rng.random(d.shape) < 0.05] = 0
        frames.append(d)
    frames.insert(2, np.zeros_like(synthetic_frame))
    # No hand check: the last shift wraps the forearm's end round to the left border, which
    # segmentation takes for the hand and the check (rightly) rejects; batching is the point.
    est = HandPoseEstimator.from_folder(model_dir, fast=fast, batch_size=3, hand_check=False)
    batch = est(np.stack(frames), NYU)
    ones = [est(f, NYU) for f in frames]
    assert batch.found.tolist() == [o.found[0] for o in ones] == [True, True, False, True, True]
    single = np.concatenate([o.joints_xyz for o in ones])
    # fp32 is exact up to summation order; fast's int8 Linear layers quantise activations with
    # one scale per batch, so a frame's joints move a little with its batch-mates.
    tol = 1e-3 if not fast else 1.0
    np.testing.assert_allclose(batch.joints_xyz, single, atol=tol, equal_nan=True)
    np.testing.assert_array_equal(batch.com_xyz, np.concatenate([o.com_xyz for o in ones]))


def test_fast_close_to_exact(model_dir, synthetic_frame):
    exact = HandPoseEstimator.from_folder(model_dir, fast=False)(synthetic_frame, NYU)
    fast_est = HandPoseEstimator.from_folder(model_dir, fast=True)
    assert fast_est.variants["pose"] != "fp32"
    fast = fast_est(synthetic_frame, NYU)
    assert np.abs(fast.joints_xyz - exact.joints_xyz).max() < 1.0


def test_inputs_torch_uint16_and_camera_strings(model_dir, synthetic_frame):
    est = HandPoseEstimator.from_folder(model_dir, fast=False)
    ref = est(synthetic_frame, NYU)
    as_u16 = np.rint(synthetic_frame).astype(np.uint16)
    np.testing.assert_allclose(est(torch.from_numpy(as_u16)[None], "nyu").joints_xyz,
                               ref.joints_xyz, atol=1e-3)  # fmt: skip
    spec = f"{NYU.fx},{NYU.fy},{NYU.cx},{NYU.cy},640,480"
    np.testing.assert_allclose(est(synthetic_frame, spec).joints_xyz, ref.joints_xyz, atol=1e-3)
    with pytest.raises(HandvoxError, match="preset"):
        est(synthetic_frame, "kinect9")


def test_wrong_size_for_camera(model_dir, synthetic_frame):
    est = HandPoseEstimator.from_folder(model_dir)
    with pytest.raises(DataError, match="640x480 but the camera is 320x240"):
        est(synthetic_frame, "icvl")
    with pytest.raises(DataError, match=r"\(H, W\) or \(B, H, W\)"):
        est(synthetic_frame[None, None], NYU)


def test_pose_only_model(tmp_path, synthetic_frame):
    cfg = tiny_config()
    save_model(tmp_path, cfg, *build_networks(cfg))
    est = HandPoseEstimator.from_folder(tmp_path, fast=False)
    assert est.refine_net is None and "refine" not in est.variants
    pred = est(synthetic_frame, NYU)
    assert pred.found[0] and np.isfinite(pred.joints_xyz).all()


def test_without_refinement_skips_only_the_refinement(model_dir, synthetic_frame):
    est = HandPoseEstimator.from_folder(model_dir, fast=False)
    bare = est.without_refinement()
    assert bare.refine_net is None and est.refine_net is not None
    seg = est.segment(synthetic_frame[None], NYU)
    tsdf = est.volumes(synthetic_frame[None], seg, NYU)
    with torch.inference_mode():
        want = est.pose_net(tsdf) * est.config.pose.target_scale_mm
    got = bare(synthetic_frame, NYU).joints_xyz - seg[0].com_xyz
    np.testing.assert_allclose(got, want.double().numpy(), atol=1e-4)
    assert (
        np.abs(est(synthetic_frame, NYU).joints_xyz - bare(synthetic_frame, NYU).joints_xyz).max()
        > 1e-3
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error(model_dir):
    with pytest.raises(HandvoxError, match="CUDA is not available"):
        HandPoseEstimator.from_folder(model_dir, device="cuda")


def test_shipped_default_model(nyu_frame, synthetic_frame, shared, tmp_path):
    # The model in the package: at most 25 MB, loads by default, finds the real NYU hand and
    # puts its 21 joints on it (the labels' 14, mapped approximately, within a few cm).
    from handvox.io.predictions import load_xyz
    from handvox.joints import convert_joints, get_joint_set

    weights = DEFAULT_MODEL_DIR / "model.safetensors"
    assert weights.stat().st_size <= 25_000_000
    est = HandPoseEstimator.default()
    assert est.config.joint_set == "canonical21" and est.meta["trained"] == ["pose"]
    pred = est(nyu_frame, "nyu")
    assert pred.found.tolist() == [True]
    gt = load_xyz(shared / "data/nyu/nyu_test_groundtruth_label.txt", NYU, get_joint_set("nyu14"),
                  "uvd")[0][0]  # fmt: skip
    err = np.linalg.norm(convert_joints(pred.joints_xyz[0], "canonical21", "nyu14") - gt, axis=-1)
    assert err.mean() < 40.0, err
    # the CLI uses it without --model
    from handvox.cli.main import main

    np.save(tmp_path / "frame.npy", synthetic_frame)
    assert main(["predict", str(tmp_path / "frame.npy"), "--camera", "nyu", "--out",
                 str(tmp_path / "p")]) == 0  # fmt: skip
    out = json.loads((tmp_path / "p" / "predictions.json").read_text())
    assert out["joint_set"] == "canonical21" and out["frames"][0]["found"]


def test_training_meta_decides_mask_and_refuses_untrained_pose(tmp_path, synthetic_frame):
    cfg = tiny_config(refine=True)
    nets = build_networks(cfg)
    save_model(tmp_path / "nomask", cfg, *nets, meta={"input": {"mask": False}})
    save_model(tmp_path / "mask", cfg, *nets, meta={"input": {"mask": True}})
    bare = HandPoseEstimator.from_folder(tmp_path / "nomask", fast=False)
    masked = HandPoseEstimator.from_folder(tmp_path / "mask", fast=False)
    assert not bare.use_mask and masked.use_mask
    # The rendered scene has a forearm, body and wall: outside the mask, but inside the cube.
    segs = masked.segment(synthetic_frame[None], NYU)
    v_mask = masked.volumes(synthetic_frame[None], segs, NYU)
    v_all = bare.volumes(synthetic_frame[None], segs, NYU)
    assert (v_all < 1).sum() > (v_mask < 1).sum()
    save_model(tmp_path / "refine_only", cfg, *nets, meta={"trained": ["refine"]})
    with pytest.raises(HandvoxError, match="pose net was not trained"):
        HandPoseEstimator.from_folder(tmp_path / "refine_only")


def test_recentring_pass_and_stage_timings(model_dir, synthetic_frame):
    # recentre=1: the second pass's cube is centred on the mean of the first pass's joints, and
    # its joints are measured from that centre.
    one = HandPoseEstimator.from_folder(model_dir, fast=False)
    two = HandPoseEstimator.from_folder(model_dir, fast=False, recentre=1)
    timings: dict[str, float] = {}
    p1, p2 = one(synthetic_frame, NYU), two(synthetic_frame, NYU, timings=timings)
    centre = p1.joints_xyz[0].mean(0)
    np.testing.assert_allclose(p2.com_xyz[0], centre, atol=1e-9)
    assert np.abs(p2.com_xyz[0] - p1.com_xyz[0]).max() > 1e-3
    seg = segment_hand(synthetic_frame, NYU, one.config.segment)
    vol = hand_volumes(synthetic_frame[None], [seg], NYU, one.config.volume, centres=centre[None])
    rel = one.relative_joints(vol, exact=True).double().numpy()[0]
    np.testing.assert_allclose(p2.joints_xyz[0], rel + centre, atol=1e-6)
    assert set(timings) == {"segmentation", "tsdf", "check", "refinement", "pose"}
    assert all(t > 0 for t in timings.values())


def test_test_time_rotations_average_rotated_back_predictions(model_dir, synthetic_frame):
    # Each view's cube and the way its offsets map back, computed independently (the numpy
    # oracle of the rotated, scaled cube; the rotation written out): the estimator must agree.
    from tests.oracles import tsdf_reference_numpy

    plain = HandPoseEstimator.from_folder(model_dir, fast=False)
    tta = HandPoseEstimator.from_folder(
        model_dir, fast=False, test_rotations_deg=(25.0, -40.0), test_scales=(1.15,)
    )
    assert tta.test_views() == [(0.0, 1.0), (25.0, 1.0), (-40.0, 1.0), (0.0, 1.15)]
    p0, p = plain(synthetic_frame, NYU), tta(synthetic_frame, NYU)
    seg = segment_hand(synthetic_frame, NYU, plain.config.segment)
    preds = [p0.joints_xyz[0]]
    for deg, s in ((25.0, 1.0), (-40.0, 1.0), (0.0, 1.15)):
        a = np.deg2rad(deg)
        vol = tsdf_reference_numpy(synthetic_frame, seg.com_xyz, NYU, plain.config.volume,
                                   seg.mask, a, s)  # fmt: skip
        off = plain.relative_joints(torch.from_numpy(vol)[None, None], exact=True)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        preds.append(s * off.double().numpy()[0] @ rot.T + seg.com_xyz)
    np.testing.assert_allclose(p.joints_xyz[0], np.mean(preds, axis=0), atol=1e-3)
    assert np.abs(p.joints_xyz[0] - p0.joints_xyz[0]).max() > 1e-3
    # A rotated cube is not the plain one; angle 0 is exactly it.
    segs = plain.segment(synthetic_frame[None], NYU)
    v0 = plain.volumes(synthetic_frame[None], segs, NYU)
    assert torch.equal(v0, hand_volumes(synthetic_frame[None], segs, NYU, plain.config.volume))
    assert not torch.equal(v0, plain.volumes(synthetic_frame[None], segs, NYU, angle_deg=25.0))
    assert not torch.equal(v0, plain.volumes(synthetic_frame[None], segs, NYU, scale=1.15))


def test_test_rotations_saved_with_the_model_and_checked(tmp_path):
    tta = {"test_rotations_deg": (-15.0, 15.0), "test_scales": (0.9, 1.1)}
    cfg = EstimatorConfig(**{**tiny_config().__dict__, **tta})
    assert EstimatorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    save_model(tmp_path, cfg, *build_networks(cfg))
    loaded = HandPoseEstimator.from_folder(tmp_path).config
    assert (loaded.test_rotations_deg, loaded.test_scales) == ((-15.0, 15.0), (0.9, 1.1))
    with pytest.raises(ValueError, match="test_rotations_deg"):
        EstimatorConfig(**{**cfg.__dict__, "test_rotations_deg": (0.0,)})
    for bad in (1.0, 0.0, -1.1, float("nan")):
        with pytest.raises(ValueError, match="test_scales"):
            EstimatorConfig(**{**cfg.__dict__, "test_scales": (bad,)})


def test_a_left_hand_is_estimated_mirrored_in_and_out(nyu_frame, shared):
    # The real NYU frame flipped left to right is a left hand seen by the mirrored camera. With
    # hand="left" it is estimated as the right hand it mirrors: exactly the unflipped frame's
    # joints, x negated; as a right hand (the networks' only kind) it comes out far worse.
    from handvox.io.predictions import load_xyz
    from handvox.joints import convert_joints, get_joint_set

    est = HandPoseEstimator.default()
    right = est(nyu_frame, NYU)
    flipped, cam = np.ascontiguousarray(nyu_frame[:, ::-1]), NYU.mirrored()
    assert cam.cx == 639 - NYU.cx and cam.fx == NYU.fx
    left = est(flipped, cam, hand="left")
    assert left.hand == "left" and right.hand == "right" and left.found.all()
    np.testing.assert_allclose(left.joints_xyz, right.joints_xyz * [-1, 1, 1], atol=1e-9)
    np.testing.assert_allclose(left.joints_uvd, cam.xyz_to_uvd(left.joints_xyz))
    gt = load_xyz(shared / "data/nyu/nyu_test_groundtruth_label.txt", NYU, get_joint_set("nyu14"),
                  "uvd")[0][0] * [-1, 1, 1]  # the labels of the flipped frame  # fmt: skip

    def error(pred) -> float:
        xyz = convert_joints(pred.joints_xyz[0], "canonical21", "nyu14")
        return float(np.linalg.norm(xyz - gt, axis=-1).mean())

    as_right = est(flipped, cam)
    assert error(left) < 30.0 and error(as_right) > error(left) + 15.0
    with pytest.raises(HandvoxError, match="hand"):
        est(flipped, cam, hand="both")


def test_told_the_hand_the_estimator_takes_the_candidate_of_that_side():
    """A frame whose second hand, a left one, takes the locator's heat (seed 7, frame 40): with
    ``other_min_heat`` the classifier sends the cube to the labelled right hand; told it is a
    left hand, the mirrored frame comes out the same, mirrored; ``hand="auto"`` chooses no
    candidate (it has no side to choose by)."""
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    frame = hand_frame_generator(HandSynthConfig.for_camera(NYU, second_hand_prob=1.0))(
        40, frame_rng(7, 40)
    )
    truth = frame.joints_xyz["canonical21"].mean(0)
    plain = HandPoseEstimator.default(hand_check=False, other_min_heat=0.0)
    told = HandPoseEstimator.default(hand_check=False, other_min_heat=0.03)
    assert told.config.segment.other_min_heat == 0.03
    assert np.linalg.norm(plain(frame.raw, NYU).com_xyz[0] - truth) > 150.0  # the other hand
    right = told(frame.raw, NYU)
    assert np.linalg.norm(right.com_xyz[0] - truth) < 30.0
    joints = frame.joints_xyz["canonical21"]
    assert np.linalg.norm(right.joints_xyz[0] - joints, axis=-1).mean() < 30.0
    left = told(np.ascontiguousarray(frame.raw[:, ::-1]), NYU.mirrored(), hand="left")
    np.testing.assert_allclose(left.com_xyz, right.com_xyz * [-1, 1, 1], atol=1e-9)
    auto = told(frame.raw, NYU, hand="auto")
    np.testing.assert_array_equal(auto.com_xyz, plain(frame.raw, NYU, hand="auto").com_xyz)


def test_a_second_candidate_the_hand_check_rejects_is_not_taken(monkeypatch):
    """The same frame, with a hand check that rejects everything (threshold 1) as the one the
    choice weighs the second candidate with: the cube stays on the first (the other hand)."""
    import dataclasses

    from handvox.estimator import pipeline
    from handvox.estimator.check import shipped_hand_check
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    frame = hand_frame_generator(HandSynthConfig.for_camera(NYU, second_hand_prob=1.0))(
        40, frame_rng(7, 40)
    )
    strict = shipped_hand_check("learned")
    strict = dataclasses.replace(strict, config=dataclasses.replace(strict.config, threshold=1.0))
    monkeypatch.setattr(pipeline, "shipped_hand_check", lambda method: strict)
    est = HandPoseEstimator.default(hand_check=False, other_min_heat=0.03)
    plain = HandPoseEstimator.default(hand_check=False, other_min_heat=0.0)
    np.testing.assert_array_equal(est(frame.raw, NYU).com_xyz, plain(frame.raw, NYU).com_xyz)


def test_a_margin_takes_the_candidate_less_left_than_the_first():
    """Seed 7, frame 39: the locator's first candidate is a left hand, and the classifier finds
    the labelled right hand left-ish too (both p_left >= 0.5). Below 0.5 only
    (``other_margin=None``), the cube stays on the other hand; with a margin the one clearly less
    left is taken, and lies on the labelled hand."""
    import dataclasses

    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    frame = hand_frame_generator(HandSynthConfig.for_camera(NYU, second_hand_prob=1.0))(
        39, frame_rng(7, 39)
    )
    truth = frame.joints_xyz["canonical21"].mean(0)

    def estimator(margin):
        est = HandPoseEstimator.default(hand_check=False, other_min_heat=0.001)
        seg = dataclasses.replace(est.config.segment, other_margin=margin)
        est.config = dataclasses.replace(est.config, segment=seg)
        return est

    below_half = estimator(None)(frame.raw, NYU).com_xyz[0]
    margin = estimator(0.2)(frame.raw, NYU).com_xyz[0]
    assert np.linalg.norm(below_half - truth) > 150.0
    assert np.linalg.norm(margin - truth) < 50.0


def test_a_track_carries_a_sequences_hand_one_frame_a_call_left_hands_too():
    """With a sequence's HandTrack the locator's network reads one frame in ``every``; a left
    hand's track follows the mirrored frames (the same carried hands, x negated)."""
    from handvox.estimator.locate import HandTrack
    from handvox.synth.sequence import render_sequence

    est = HandPoseEstimator.default(test_rotations_deg=())
    seq = render_sequence(6, 30.0, "wave", seed=5)
    right, left = HandTrack(every=3), HandTrack(every=3)
    cam = seq.camera.mirrored()
    for d in seq.depth:
        r = est(d, seq.camera, track=right)
        lh = est(np.ascontiguousarray(d[:, ::-1]), cam, hand="left", track=left)
        np.testing.assert_allclose(lh.joints_xyz, r.joints_xyz * [-1, 1, 1], atol=1e-6)
        np.testing.assert_allclose(r.joints_xyz, est(d, seq.camera).joints_xyz, atol=25.0)
    assert (right.reads, right.carried) == (left.reads, left.carried) == (2, 4)
    with pytest.raises(HandvoxError, match="one frame a call"):
        est(seq.depth[:2], seq.camera, track=right)


def test_pointing_deg_measures_where_the_hand_points_in_the_image():
    from handvox.estimator.pipeline import pointing_deg
    from handvox.joints import get_joint_set

    c21 = get_joint_set("canonical21")
    w, m = c21.names.index("wrist"), c21.names.index("middle_mcp")
    uv = np.zeros((4, 21, 2))
    uv[:, w] = [100.0, 100.0]
    uv[:, m] = [[100.0, 50.0], [150.0, 100.0], [100.0, 150.0], [50.0, 100.0]]
    np.testing.assert_allclose(np.abs(pointing_deg(uv, c21)), [0.0, 90.0, 180.0, 90.0])
    assert pointing_deg(uv, c21)[3] == -90.0  # left
    with pytest.raises(HandvoxError, match="middle_mcp"):
        pointing_deg(np.zeros((14, 2)), get_joint_set("nyu14"))
    with pytest.raises(ValueError, match="upright_beyond_deg"):
        EstimatorConfig(**{**tiny_config().__dict__, "upright_beyond_deg": 180.0})


@pytest.mark.slow
def test_the_upright_pass_mends_hands_turned_upside_down():
    """Rendered hands (seed 7) and the same frames turned 180° about the optical axis (hands
    pointing down, which training views hardly show): the second pass on a cube turned by where
    the first pass says the hand points brings the turned frames most of the way back, and leaves
    upright ones as they were."""
    from handvox.synth.frame import frame_rng
    from handvox.synth.hand import hand_frame_generator
    from handvox.synth.hand_config import HandSynthConfig

    make = hand_frame_generator(HandSynthConfig.for_camera(NYU))
    plain = HandPoseEstimator.default(upright_beyond_deg=None).without_check()
    upright = HandPoseEstimator.default(upright_beyond_deg=75.0).without_check()
    # the image turned 180°: pixel (u, v) -> (639 - u, 479 - v), a scene point (x, y, z) ->
    # (-x, -y, z) seen by the camera with its principal point turned likewise
    turned_cam = Camera(NYU.fx, NYU.fy, 639 - NYU.cx, 479 - NYU.cy, 640, 480)
    err = {k: [] for k in ("plain", "upright", "turned, plain", "turned, upright")}
    for i in range(8):
        f = make(i, frame_rng(7, i))
        d, gt = f.raw.astype(np.float32), f.joints_xyz["canonical21"]
        turned = np.ascontiguousarray(d[::-1, ::-1])
        for name, est in (("plain", plain), ("upright", upright)):
            err[name].append(np.linalg.norm(est(d, NYU).joints_xyz[0] - gt, axis=1).mean())
            got = est(turned, turned_cam).joints_xyz[0]
            err[f"turned, {name}"].append(np.linalg.norm(got - gt * [-1, -1, 1], axis=1).mean())
    mean = {k: float(np.mean(v)) for k, v in err.items()}
    # here: turned 24.0 -> 12.9 mm with the pass (7.7 upright, 7.6 without it) with the shipped
    # model of 2026-12-07 07:35; 23.2 -> 13.5 (7.8), 23.9 -> 14.4 (8.1) and 24.2 -> 14.1 (8.8)
    # with the three before
    assert mean["turned, upright"] < 0.7 * mean["turned, plain"]
    gap = mean["turned, plain"] - mean["upright"]
    assert mean["turned, plain"] - mean["turned, upright"] > 0.5 * gap  # most of the way back
    assert mean["upright"] <= mean["plain"] + 0.2

"""Natural hand poses (handvox.hand.poses): gestures, the articulation mixture, self-collisions,
placement in the camera's view."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from handvox.camera import Camera
from handvox.geometry import axis_angle_to_matrix
from handvox.hand.kinematics import (
    DOF_NAMES,
    LIMITS_DEG,
    clamp_to_limits,
    forward_kinematics,
    random_pose,
)
from handvox.hand.poses import (
    ARTICULATION_NAMES,
    COMPONENTS,
    DEFAULT_CENTRE_MM,
    GESTURE_NAMES,
    GESTURES,
    ArticulationConfig,
    PoseSamplerConfig,
    ViewConfig,
    articulation_to_pose,
    facing_rotation,
    gesture_articulations,
    hand_extent,
    sample_articulation,
    sample_global,
    sample_poses,
    self_overlap,
)
from handvox.hand.shapes import base_shape, sample_shape

F64 = torch.float64
TIPS = [4, 8, 12, 16, 20]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# Small batched ops: on a shared, busy machine torch's thread pool costs more than it saves.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def avg():
    return base_shape("average_adult", F64)


def _joints(art: torch.Tensor, bones) -> torch.Tensor:
    """``(n, 21, 3)`` hand-frame joints of articulations on one hand."""
    return forward_kinematics(articulation_to_pose(art.to(F64)), bones).joints


def _straightness(joints: torch.Tensor, bones) -> torch.Tensor:
    """``(n, 5)`` chord / length of each chain from its first joint after the palm (thumb MCP,
    finger MCP) to the tip: 1 straight, ~0.4 fully curled."""
    out = []
    for c in range(5):
        first = 2 + 4 * c if c == 0 else 1 + 4 * c
        length = bones.length[0, c, 1:].sum() if c == 0 else bones.length[0, c].sum()
        out.append((joints[:, 4 + 4 * c] - joints[:, first]).norm(dim=-1) / length)
    return torch.stack(out, 1)


# Per gesture, thumb..little: S straight (>= 0.97), C curled (<= 0.6), B bent (< 0.85), . any.
EXPECTED = {
    "open": "SSSSS", "fist": ".CCCC", "point": ".SCCC", "peace": ".SSCC",
    "thumbs_up": "SCCCC", "ok": ".BSSS", "pinch": ".....", "three": ".SSSB", "four": ".SSSS",
    "call_me": "SCCCS", "horns": ".SCCS", "l_shape": "SSCCC", "tripod": "...BB",
    "power_grasp": ".BBBB", "sphere_grasp": "S....", "spread": "SSSSS", "relaxed": ".....",
    "claw": ".CCCC", "flat_closed": "SSSSS", "key_grip": ".BCCC",
}  # fmt: skip


def test_gesture_library_is_within_limits():
    assert len(GESTURES) >= 15 and set(EXPECTED) == set(GESTURE_NAMES)
    for name, g in GESTURES.items():
        for dof, deg in g.degrees().items():
            lo, hi = LIMITS_DEG[dof]
            assert lo <= deg <= hi, f"{name}: {dof} = {deg} outside [{lo}, {hi}]"
    art = gesture_articulations(dtype=F64)
    assert art.shape == (len(GESTURES), 24)
    np.testing.assert_allclose(
        art[GESTURE_NAMES.index("fist"), ARTICULATION_NAMES.index("ring_cmc_flex")],
        math.radians(10.0),
    )
    assert torch.equal(clamp_to_limits(articulation_to_pose(art))[:, 6:], art)


def test_gestures_look_like_their_names(avg):
    art = gesture_articulations(dtype=F64)
    j = _joints(art, avg)
    s = _straightness(j, avg)
    for g, name in enumerate(GESTURE_NAMES):
        for c, want in enumerate(EXPECTED[name]):
            v = float(s[g, c])
            ok = {"S": v >= 0.97, "C": v <= 0.6, "B": v < 0.85, ".": True}[want]
            assert ok, f"{name}: chain {c} straightness {v:.2f}, expected {want}"
    at = {n: j[i] for i, n in enumerate(GESTURE_NAMES)}
    open_tip_wrist = at["open"][TIPS].norm(dim=-1)
    # fist: every fingertip pulled in to the palm, well under half its straight distance
    assert (at["fist"][TIPS[1:]].norm(dim=-1) < 0.4 * open_tip_wrist[1:]).all()
    # contact gestures: thumb tip at the index tip
    for name in ("ok", "pinch", "tripod"):
        assert (at[name][4] - at[name][8]).norm() < 20.0, name
    # four: the thumb is folded across the palm, ulnar of the index MCP
    assert at["four"][4, 0] < at["four"][5, 0]
    # thumbs up: the thumb points along the fingers' direction (-y), within 30 degrees
    d = at["thumbs_up"][4] - at["thumbs_up"][2]
    assert -d[1] / d.norm() > math.cos(math.radians(30.0))
    # L: thumb and index about perpendicular
    t, i = at["l_shape"][4] - at["l_shape"][2], at["l_shape"][8] - at["l_shape"][5]
    assert torch.rad2deg(torch.arccos(t @ i / (t.norm() * i.norm()))) > 60.0

    def span(name):
        return float((at[name][8] - at[name][20]).norm())

    assert span("spread") > span("open") + 20 > span("flat_closed") + 20


def test_articulation_is_deterministic_and_in_limits():
    a = sample_articulation(_gen(3), 500)
    assert a.shape == (500, 24) and a.dtype == torch.float32
    assert torch.equal(a, sample_articulation(_gen(3), 500))
    assert not torch.equal(a, sample_articulation(_gen(4), 500))
    pose = articulation_to_pose(a)
    assert torch.equal(clamp_to_limits(pose), pose)
    full = sample_poses(_gen(5), 300)
    assert full.shape == (300, 30) and torch.equal(full, sample_poses(_gen(5), 300))
    assert torch.equal(clamp_to_limits(full), full)


def test_mixture_components():
    n = 4000
    cfg = ArticulationConfig(max_overlap_mm=None)  # the weights are those of the draws
    art, comp = sample_articulation(_gen(0), n, cfg, return_component=True)
    frac = torch.bincount(comp, minlength=len(COMPONENTS)).double() / n
    np.testing.assert_allclose(frac, cfg.weights(), atol=0.03)
    # pure gestures are the library exactly
    only = ArticulationConfig(gesture=1, perturbed=0, synergy=0, transition=0, uniform=0,
                              gestures=("fist", "open"))  # fmt: skip
    got = sample_articulation(_gen(1), 50, only).double()
    lib = gesture_articulations(("fist", "open"), F64)
    dist = torch.cdist(got, lib).amin(1)
    assert dist.max() < 1e-6 and len({round(float(x), 3) for x in got[:, 5]}) == 2
    with pytest.raises(ValueError, match="mixture weights"):
        ArticulationConfig(gesture=-1).weights()


@pytest.mark.slow
def test_distribution_is_natural_not_uniform(avg):
    n = 6000
    art = sample_articulation(_gen(7), n).double()
    uni = random_pose(n, _gen(7), F64)[:, 6:]

    def corr(x, a, b):
        i, k = ARTICULATION_NAMES.index(a), ARTICULATION_NAMES.index(b)
        return float(np.corrcoef(x[:, i].numpy(), x[:, k].numpy())[0, 1])

    assert corr(art, "ring_mcp_flex", "little_mcp_flex") > 0.5
    assert corr(art, "middle_mcp_flex", "ring_mcp_flex") > 0.5
    assert corr(art, "index_mcp_flex", "index_pip_flex") > 0.5  # synergy within a finger
    assert abs(corr(uni, "ring_mcp_flex", "little_mcp_flex")) < 0.1
    # abduction narrows as fingers curl: spread of little abduction smaller in curled fingers
    curl = art[:, ARTICULATION_NAMES.index("little_mcp_flex")]
    abd = art[:, ARTICULATION_NAMES.index("little_mcp_abd")]
    assert abd[curl > math.radians(70)].std() < 0.7 * abd[curl < math.radians(15)].std()
    # many whole-hand states a uniform sampler never makes: fists and open hands
    s = _straightness(_joints(art, avg), avg)[:, 1:]
    s_uni = _straightness(_joints(uni, avg), avg)[:, 1:]
    fists, opens = (s < 0.6).all(1).double().mean(), (s > 0.95).all(1).double().mean()
    assert fists > 0.04 and opens > 0.1
    assert (s_uni < 0.6).all(1).double().mean() < 0.01
    assert (s_uni > 0.95).all(1).double().mean() < 0.01


def _tips_touch(art, bones) -> torch.Tensor:
    """Fingertips of different fingers closer than 10 mm: a rough self-collision proxy (the
    pulps of pinch / OK gestures are ~16 mm apart when they touch)."""
    tips = _joints(art, bones)[:, TIPS]
    d = torch.cdist(tips, tips) + torch.eye(5, dtype=F64) * 1e3
    return d.amin((1, 2)) < 10.0


@pytest.mark.slow
def test_self_collisions_are_rejected(avg):
    n = 3000
    free = sample_articulation(_gen(11), n, ArticulationConfig(max_overlap_mm=None))
    kept = sample_articulation(_gen(11), n)
    assert (self_overlap(free) > 4.0).double().mean() > 0.2  # what rejection removes
    assert (self_overlap(kept) > 4.0).double().mean() < 0.005
    assert _tips_touch(kept, avg).double().mean() < _tips_touch(free, avg).double().mean()
    assert _tips_touch(kept, avg).double().mean() < 0.02
    # the library itself passes: no gesture's fingers overlap by more than 3 mm
    assert self_overlap(gesture_articulations(dtype=F64)).max() < 3.0
    # capsules: two fingers crossed into each other overlap by about their thickness
    cross = gesture_articulations(("open",), F64).clone()
    cross[0, ARTICULATION_NAMES.index("index_mcp_abd")] = math.radians(-15)
    cross[0, ARTICULATION_NAMES.index("middle_mcp_abd")] = math.radians(15)
    assert self_overlap(cross) > 10.0


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["nyu", "icvl", "generic"])
def test_hands_land_in_view(preset):
    n = 1500
    gen = _gen(21)
    cfg = PoseSamplerConfig(view=ViewConfig.preset(preset))
    pose = sample_poses(gen, n, cfg).double()
    bones = sample_shape(gen, n, dtype=F64)  # random hands, not the one the placement used
    joints = forward_kinematics(pose, bones).joints
    cam = cfg.view.cam
    uv = cam.project(joints)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] <= cam.width - 1) & (uv[..., 1] >= 0)
    inside &= (uv[..., 1] <= cam.height - 1) & (joints[..., 2] > 0)
    assert inside.all(1).double().mean() >= 0.95
    # the average adult hand's bounding-box centre is exactly at the sampled depth
    centre, radius = hand_extent(pose[:, 6:])
    rot = axis_angle_to_matrix(pose[:, 3:6])
    c = (rot @ centre[..., None])[..., 0] + pose[:, :3]
    lo, hi = cfg.view.depth_mm
    assert c[:, 2].min() >= lo - 1e-3 and c[:, 2].max() <= hi + 1e-3
    assert c[:, 2].max() - c[:, 2].min() > 0.8 * (hi - lo)  # the range is covered
    assert (joints[..., 2] > lo - 1.3 * radius.max()).all()


def test_egocentric_hands_stay_beyond_the_sensors_near_limit():
    # Hands drawn nearer than a head-mounted sensor measures came out blank (the egocentric
    # test set's misses were such frames): no joint of the average adult nearer than near_mm.
    n = 2000
    cfg = PoseSamplerConfig(view=ViewConfig.preset("egocentric"))
    pose = sample_poses(_gen(22), n, cfg).double()
    joints = forward_kinematics(pose, base_shape("average_adult", F64)).joints
    assert cfg.view.near_mm == 200.0
    assert joints[..., 2].min() >= 200.0 - 1e-3
    # without the bound the same draw puts some of them nearer (the test can fail)
    free = PoseSamplerConfig(view=replace(cfg.view, near_mm=0.0))
    loose = forward_kinematics(sample_poses(_gen(22), n, free).double(),
                               base_shape("average_adult", F64)).joints  # fmt: skip
    assert (loose[..., 2].amin(1) < 200.0).double().mean() > 0.1
    # the range above the bound is still covered, up to the preset's far end
    assert joints[:, 0, 2].max() > 550.0


def test_orientations_face_the_camera():
    n = 4000
    cfg = ViewConfig()
    root = sample_global(_gen(2), n, cfg).double()
    rot = axis_angle_to_matrix(root[:, 3:6])
    palm = -rot[:, :, 2]  # palm normal (-z of the hand frame) in the camera frame
    view = root[:, :3] / root[:, :3].norm(dim=-1, keepdim=True)
    facing = -(palm * view).sum(-1)  # > 0: the palm is towards the camera
    front = (facing > 0.3).double().mean()
    back = (facing < -0.5).double().mean()
    assert 0.7 < front < 0.9 and 0.02 < back < 0.1
    # fingers (-y of the hand) point up or sideways in the image, almost never down
    fingers = -rot[:, :, 1]
    assert (fingers[:, 1] > 0.5).double().mean() < 0.05
    assert (fingers[:, 1] < -0.5).double().mean() > 0.4


def test_global_config():
    assert ViewConfig.preset("icvl").cam == Camera.preset("icvl")
    assert ViewConfig.preset("NYU").depth_mm == (600.0, 1100.0)
    with pytest.raises(ValueError, match="unknown view preset"):
        ViewConfig.preset("kinect2")
    # a fixed centre and radius: the centre lands in the central 70 % of the image
    root = sample_global(_gen(0), 500, ViewConfig(), centre=torch.zeros(3), radius=0.0)
    uv = Camera.preset("nyu").project(root[:, :3].double())
    assert (uv[:, 0] >= 0.15 * 640 - 1e-6).all() and (uv[:, 0] <= 0.85 * 640 + 1e-6).all()
    assert (uv[:, 1] >= 0.15 * 480 - 1e-6).all() and (uv[:, 1] <= 0.85 * 480 + 1e-6).all()
    assert root.shape == (500, 6) and len(DOF_NAMES) == 30


def test_egocentric_and_desk_views():
    n = 4000
    cam = Camera.preset("nyu")
    # egocentric: the back of the hand to the camera, seen from above, low in the image, close
    cfg = ViewConfig.preset("egocentric")
    root = sample_global(_gen(4), n, cfg).double()
    rot = axis_angle_to_matrix(root[:, 3:6])
    toward = (rot[:, 2, 2] < 0).double().mean()  # the back of the hand turned to the camera
    assert 0.65 < toward < 0.9  # palm-up and side views are the rest
    fingers, forearm = -rot[:, :, 1], rot[:, :, 1]
    assert (fingers[:, 2] > 0.3).double().mean() > 0.8  # fingers point away from the viewer
    assert (forearm[:, 1] > 0).double().mean() > 0.8  # the forearm runs down the image
    uv = cam.project(root[:, :3])
    centre = (rot @ torch.tensor(DEFAULT_CENTRE_MM, dtype=torch.float64))[..., :] + root[:, :3]
    assert centre[:, 2].min() >= 200 - 1e-6 and centre[:, 2].max() <= 600 + 1e-6
    assert (root[:, 2] < centre[:, 2]).double().mean() > 0.8  # the wrist nearer than the hand
    assert (uv[:, 1] > 0.5 * cam.height).double().mean() > 0.6  # the wrist in the lower part
    # desk: palm down under a camera above the table, turned any way in the image plane
    cfg = ViewConfig.preset("desk")
    rot = axis_angle_to_matrix(sample_global(_gen(5), n, cfg).double()[:, 3:6])
    assert (rot[:, 2, 2] < -0.7).double().mean() > 0.75  # the back of the hand faces up
    finger_angle = torch.atan2(-rot[:, 1, 1], -rot[:, 0, 1])  # fingers' direction in the image
    hist = torch.histc(finger_angle, bins=4, min=-math.pi, max=math.pi)
    assert hist.min() > 0.15 * n
    # third person is unchanged by the new bases: facing "camera" is the identity
    torch.testing.assert_close(facing_rotation("camera"), torch.eye(3, dtype=torch.float64))
    for facing in ("away", "down"):
        b = facing_rotation(facing)
        torch.testing.assert_close(b @ b.T, torch.eye(3, dtype=torch.float64))
        assert abs(float(torch.linalg.det(b)) - 1) < 1e-12
    with pytest.raises(ValueError, match="facing"):
        ViewConfig(facing="sideways")
    with pytest.raises(ValueError, match="target_region"):
        ViewConfig(target_region=(0.5, 0.4, 0.0, 1.0))

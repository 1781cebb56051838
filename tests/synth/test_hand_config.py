"""synth/hand_config.py: HandSynthConfig's checks and meta, view rules, part names, sub-configs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handvox.camera import Camera
from handvox.hand.poses import ArticulationConfig, ViewConfig
from handvox.synth import scene as synth_scene
from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import (
    CONTENT_FLAGS,
    HAND_PARTS,
    SCENE_PARTS,
    THIRD_PERSON,
    VIEW_RULES,
    HandSynthConfig,
    content_on,
    noise_config,
    part_names,
    pose_sampler_config,
    sensor_max_depth_mm,
    view_rules,
)
from handvox.synth.noise import NoiseConfig
from handvox.synth.sensors import DEVICES
from tests.synth.scenes import NYU


def test_sensor_settings_are_checked_and_default_meta_is_unchanged():
    d = HandSynthConfig().to_dict()
    assert "sensor" not in d and "sensor_camera" not in d  # datasets made before resume
    s = HandSynthConfig(sensor=["coded_light"], sensor_camera=True).to_dict()
    assert s["sensor"] == ["coded_light"] and s["sensor_camera"] is True
    assert HandSynthConfig(sensor="all").sensor == (
        "structured_light", "time_of_flight", "active_stereo", "coded_light")  # fmt: skip
    with pytest.raises(ValueError, match="unknown sensor family"):
        HandSynthConfig(sensor="kinect")
    with pytest.raises(ValueError, match="sensor_camera"):
        HandSynthConfig(sensor_camera=True)


def test_content_settings_are_checked_and_default_meta_is_unchanged(monkeypatch):
    d = HandSynthConfig().to_dict()
    old = {"camera", "view", "depth_mm", "articulation", "shapes", "shape_variation",
           "forearm_prob", "body_prob", "head_prob", "wall_prob", "wall_depth_mm",
           "wall_tilt_deg", "noise", "margin_px", "margin_mm", "forearm_max_toward_deg",
           "max_tries", "pose_block", "part_image"}  # fmt: skip
    assert set(d) == old  # datasets made before the content options resume
    assert part_names(HandSynthConfig(mesh_prob=0.5)) == HAND_PARTS  # the meta's part list
    assert part_names(HandSynthConfig(object_prob=0.1)) == SCENE_PARTS
    assert SCENE_PARTS[len(HAND_PARTS) :] == ("object", "other_hand")
    assert HandSynthConfig(near_object_prob=0.5).to_dict()["near_object_prob"] == 0.5
    with pytest.raises(ValueError, match="object_prob"):
        HandSynthConfig(object_prob=1.5)
    with pytest.raises(ValueError, match="unknown view"):
        HandSynthConfig(view="overhead")
    # Default frames never enter the new code, and hold the extras they always held.
    monkeypatch.setattr(synth_scene, "_build_content", None)
    f = hand_frame_generator()(0, frame_rng(3, 0))
    assert sorted(f.extra) == ["part", "scene"]


def test_view_rules_give_egocentric_and_desk_their_own_and_third_person_the_rest():
    assert view_rules("egocentric") is VIEW_RULES["egocentric"]
    assert view_rules("Desk") is VIEW_RULES["desk"]  # preset names in any case
    for view in ("nyu", "icvl", "generic"):
        assert view_rules(view) is THIRD_PERSON
    assert THIRD_PERSON.all_joints and THIRD_PERSON.min_joints == 21 and THIRD_PERSON.body
    assert THIRD_PERSON.forearm_check and not THIRD_PERSON.table and THIRD_PERSON.elbow_mm is None
    ego = view_rules("egocentric")
    assert not ego.all_joints and ego.min_joints == 16 and not ego.forearm_check
    assert not ego.body and ego.forearm_to_border and ego.elbow_mm is not None
    assert ego.min_depth_mm == 150.0 and ego.hand_up_deg == 100.0
    desk = view_rules("desk")
    assert desk.table and not desk.body and desk.forearm_to_border and desk.all_joints
    wave = view_rules("wave")  # third person's, but the hand up and the arm down out of sight
    assert wave.body and wave.all_joints and wave.forearm_to_border and wave.hand_up_deg == 50.0
    for view in VIEW_RULES:  # every view with rules of its own is a preset the config takes
        assert HandSynthConfig(view=view).view == view


def test_content_on_is_any_content_chance_above_zero():
    assert not content_on(HandSynthConfig())
    # the scene's own parts and the views are not content
    assert not content_on(HandSynthConfig(view="desk", body_prob=1.0, wall_prob=1.0))
    for flag in CONTENT_FLAGS:  # each flag of the "content" extra has its chance
        assert content_on(HandSynthConfig(**{f"{flag}_prob": 0.01})), flag


def test_part_names_add_object_and_other_hand_only_where_frames_may_hold_them():
    assert part_names(HandSynthConfig()) == HAND_PARTS
    assert part_names(HandSynthConfig(view="egocentric", mesh_prob=1.0)) == HAND_PARTS
    for name in ("object_prob", "near_object_prob", "second_hand_prob"):
        assert part_names(HandSynthConfig(**{name: 0.01})) == SCENE_PARTS, name
    assert SCENE_PARTS[: len(HAND_PARTS)] == HAND_PARTS  # the hand's ids keep their numbers


def test_sensor_max_depth_is_the_noise_models_or_the_farthest_devices():
    assert sensor_max_depth_mm(HandSynthConfig()) == 2000.0  # NYU's files: nothing beyond 2 m
    assert sensor_max_depth_mm(HandSynthConfig(noise="kinect")) == 4000.0
    assert sensor_max_depth_mm(HandSynthConfig(noise=NoiseConfig(max_depth_mm=1500.0))) == 1500.0
    # with sensor families, the farthest range of their devices; the noise setting is unused
    assert sensor_max_depth_mm(HandSynthConfig(sensor="coded_light", noise="kinect")) == 1500.0
    assert sensor_max_depth_mm(HandSynthConfig(sensor="structured_light")) == 4000.0
    both = HandSynthConfig(sensor=("coded_light", "active_stereo"))
    assert sensor_max_depth_mm(both) == 6000.0
    farthest = max(d.range_mm[1] for d in DEVICES)
    assert sensor_max_depth_mm(HandSynthConfig(sensor="all")) == farthest == 9000.0


def test_noise_config_reaches_nearer_in_the_close_views_only():
    nyu = NoiseConfig.preset("nyu")
    assert noise_config(HandSynthConfig()) == nyu
    assert noise_config(HandSynthConfig(view="icvl")).min_depth_mm == 400.0
    for view in ("egocentric", "desk"):  # their rules' min_depth_mm, the rest as the preset's
        assert noise_config(HandSynthConfig(view=view)) == replace(nyu, min_depth_mm=150.0)
    near = NoiseConfig(min_depth_mm=100.0)  # already nearer than the view asks: kept
    assert noise_config(HandSynthConfig(view="egocentric", noise=near)) is near
    assert noise_config(HandSynthConfig(noise=near)) is near


def test_pose_sampler_config_is_the_views_preset_with_the_configs_camera_and_depths():
    icvl = Camera.preset("icvl")
    p = pose_sampler_config(HandSynthConfig(camera=icvl))
    assert p.view.camera == icvl and p.view.depth_mm == ViewConfig.preset("nyu").depth_mm
    assert p.articulation == ArticulationConfig()
    ego = ViewConfig.preset("egocentric")
    p = pose_sampler_config(HandSynthConfig(view="egocentric", depth_mm=(250.0, 300.0)))
    assert p.view.camera == NYU and p.view.depth_mm == (250.0, 300.0)
    assert replace(p.view, camera=ego.camera, depth_mm=ego.depth_mm) == ego  # the rest: preset's
    art = ArticulationConfig(flex_sigma_deg=4.0)
    assert pose_sampler_config(HandSynthConfig(articulation=art)).articulation is art


def test_for_camera_gives_small_cameras_the_close_view_and_near_noise():
    assert HandSynthConfig.for_camera(NYU) == HandSynthConfig()  # 640x480: the defaults
    icvl = Camera.preset("icvl")
    cfg = HandSynthConfig.for_camera(icvl)
    assert cfg.camera == icvl and cfg.view == "icvl"
    assert cfg.noise == NoiseConfig(min_depth_mm=150.0)  # Kinect noise, measured from 150 mm
    cfg = HandSynthConfig.for_camera(icvl, view="generic", wall_prob=0.0)
    assert cfg.view == "generic" and cfg.wall_prob == 0.0 and cfg.camera == icvl

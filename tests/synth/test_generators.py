"""Frame generators by name, with the meta.json description of each."""

import pytest

from handvox.camera import Camera
from handvox.synth.frame import frame_rng
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HAND_VERSION, HandSynthConfig
from handvox.synth.toy import TOY_VERSION


def test_small_camera_gets_close_range_hands():
    cam = Camera.preset("icvl")
    gen, info = make_generator("hand", cam)
    assert info["config"]["view"] == "icvl" and info["config"]["camera"]["width"] == 320
    f = gen(0, frame_rng(0, 0))
    assert f.raw.shape == (240, 320)
    assert 200 < f.joints_xyz["canonical21"][:, 2].mean() < 480
    assert (f.raw > 0).sum() > 300


def test_names_and_descriptions():
    nyu = Camera.preset("nyu")
    _, info = make_generator("toy", nyu)
    assert info == {"name": "toy", "version": TOY_VERSION}
    _, info = make_generator("hand", nyu)
    assert info["name"] == "hand" and info["version"] == HAND_VERSION
    assert info["config"]["noise"] == "nyu" and info["parts"][0] == "none"
    with pytest.raises(ValueError, match="differs"):
        make_generator("hand", nyu, HandSynthConfig.for_camera(Camera.preset("icvl")))
    with pytest.raises(ValueError, match="unknown generator"):
        make_generator("mesh", nyu)

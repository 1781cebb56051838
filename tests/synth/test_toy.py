"""The toy stand-in generator: a function of (seed, index), plausible labels and images."""

import numpy as np

from handvox.camera import Camera
from handvox.joints import convert_joints
from handvox.synth.frame import frame_rng
from handvox.synth.toy import toy_frame

NYU = Camera.preset("nyu")


def test_toy_frame_is_a_function_of_seed_and_index():
    a = toy_frame(7, frame_rng(5, 7), NYU)
    b = toy_frame(7, frame_rng(5, 7), NYU)
    c = toy_frame(8, frame_rng(5, 8), NYU)
    for x, y in [(a.raw, b.raw), (a.clean, b.clean), (a.pose, b.pose), (a.extra["part"],
                 b.extra["part"])]:  # fmt: skip
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.clean, c.clean)
    assert a.raw.shape == a.clean.shape == (480, 640) and a.raw.dtype == np.float32
    assert a.pose.shape == (30,) and a.shape.shape == (20,)
    # Raw is valid only on the hand, close to the clean surface; parts mark the hand exactly.
    assert (a.raw[a.clean == 0] == 0).all() and (a.raw > 0).sum() > 0.8 * (a.clean > 0).sum()
    valid = a.raw > 0
    assert np.abs(a.raw[valid] - a.clean[valid]).max() < 10.0
    assert ((a.extra["part"] > 0) == (a.clean > 0)).all()
    # Joints: canonical inside the image and inside the hand's depth range; markers derived.
    uvd = NYU.xyz_to_uvd(a.joints_xyz["canonical21"])
    assert (uvd[:, 0] > 0).all() and (uvd[:, 0] < 640).all() and (uvd[:, 1] < 480).all()
    near = a.clean[valid].min()
    assert (uvd[:, 2] > near).all() and (uvd[:, 2] < near + 250).all()
    np.testing.assert_allclose(
        a.joints_xyz["msra21"], convert_joints(a.joints_xyz["canonical21"], "canonical21", "msra21")
    )

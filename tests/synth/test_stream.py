"""Frames rendered when read (``handvox.synth.stream``): the same frames the synthesis job
writes, from the folder's recipe alone, in any process."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.errors import DataError
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.generators import make_generator
from handvox.synth.hand_config import HandSynthConfig
from handvox.synth.job import synthesize
from handvox.synth.stream import RenderedFrames


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """4 frames of the hand generator with every sensor family, the skinned hand and objects
    in play (so that the stored encodings and the scene extras all take part), seed 5."""
    root = tmp_path_factory.mktemp("recipe")
    camera = Camera.preset("nyu")
    cfg = HandSynthConfig.for_camera(camera, mesh_prob=0.5, object_prob=0.5, sensor="all",
                                     sensor_camera=True)  # fmt: skip
    gen, info = make_generator("hand", camera, cfg)
    synthesize(root, gen, camera, 4, seed=5, generator_info=info, progress=False)
    return root


def test_a_folders_own_seed_renders_its_frames_bit_for_bit(recipe):
    stored = SyntheticDataset(recipe)
    rendered = RenderedFrames(recipe, seed=5, frames=4)
    assert rendered.camera == stored.camera and len(rendered) == 4
    for i in range(4):
        a, b = stored[i], rendered[i]
        np.testing.assert_array_equal(b.depth, a.depth)
        np.testing.assert_array_equal(b.clean_depth, a.clean_depth)
        np.testing.assert_array_equal(b.joints_xyz, a.joints_xyz)
        np.testing.assert_array_equal(b.joints_uvd, a.joints_uvd)
        assert b.depth.dtype == np.float32 and b.frame_id == f"render/5/{i:06d}"


def test_other_seeds_attempts_and_processes(recipe):
    r = RenderedFrames(recipe, seed=6, frames=1000, joint_set="nyu14", load_clean=False)
    first = r[3]
    assert first.clean_depth is None and first.joints_xyz.shape == (14, 3)
    assert not np.array_equal(first.depth, SyntheticDataset(recipe)[3].depth)  # new frames
    np.testing.assert_array_equal(r[3].depth, first.depth)  # the same on every read
    other = r.render(3, attempt=1)
    assert other.frame_id.endswith("/1") and not np.array_equal(other.depth, first.depth)
    # what a DataLoader worker gets: the recipe, not the generator; it renders the same frame
    copy = pickle.loads(pickle.dumps(r))
    assert copy._make is None and r._make is not None
    np.testing.assert_array_equal(copy[3].depth, first.depth)


def test_bad_recipes_are_named(recipe, tmp_path):
    with pytest.raises(DataError, match="meta.json"):
        RenderedFrames(tmp_path, seed=1, frames=10)
    with pytest.raises(ValueError, match=r"need \?seed=S&frames=N"):
        RenderedFrames(recipe, frames=10)
    with pytest.raises(ValueError, match="frames must be"):
        RenderedFrames(recipe, seed=1, frames=0)
    with pytest.raises(ValueError, match="joint set|unknown"):
        RenderedFrames(recipe, seed=1, frames=10, joint_set="no-such-set")
    meta = json.loads((recipe / "meta.json").read_text())
    meta["generator"]["name"] = "transfer"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="'transfer' cannot render on the fly"):
        RenderedFrames(tmp_path, seed=1, frames=10)

"""Fixtures of the train tests: the toy dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from handvox.synth.generators import make_generator
from handvox.synth.job import synthesize
from tests.train.toy import CAMERA, FRAMES


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """160 frames of the toy generator (with clean depth), seed 3."""
    root = tmp_path_factory.mktemp("toy")
    gen, info = make_generator("toy", CAMERA)
    synthesize(root, gen, CAMERA, FRAMES, seed=3, chunk_size=64, generator_info=info,
               progress=False)  # fmt: skip
    return root

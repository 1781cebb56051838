"""The package as a user installs it: a wheel built from the checkout, installed into a folder
outside it, imports and finds everything it ships (the default model, the hand locator, the hand
check, the LibHand mesh, py.typed) without the checkout on its path."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import sys
sys.path = [p for p in sys.path if "src" not in p.split("/")[-1:] and "__editable__" not in p]
sys.path.insert(0, {target!r})
import handvox
from pathlib import Path
assert Path(handvox.__file__).is_relative_to({target!r}), handvox.__file__
from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.estimator import HandPoseEstimator
from handvox.estimator.check import shipped_hand_check
from handvox.estimator.handedness import shipped_handedness
from handvox.estimator.locate import load_locator
from handvox.synth.skinned import libhand_hand
est = HandPoseEstimator.default()
pred = est(synthetic_frame(Camera.preset("nyu")), "nyu")
assert pred.found[0], pred.reason
assert shipped_hand_check() is not None and shipped_hand_check("learned") is not None
assert shipped_handedness() is not None
load_locator()
libhand_hand()
assert (Path(handvox.__file__).parent / "py.typed").is_file()
print("ok", handvox.__version__)
"""


@pytest.mark.slow
@pytest.mark.integration
def test_a_wheel_installs_outside_the_checkout_and_finds_what_it_ships(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(wheels), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("handvox-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = ["py.typed", "data/default_model/model.safetensors", "data/libhand/hand.mesh",
               "data/hand_check/model.safetensors", "data/locator/model.safetensors",
               "data/hand_check_learned/model.safetensors",
               "data/handedness/model.safetensors"]  # fmt: skip
    for name in shipped:
        assert f"handvox/{name}" in names, name
    target = tmp_path / "site"
    inst = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert inst.returncode == 0, inst.stderr[-3000:]
    probe = textwrap.dedent(_PROBE).format(target=str(target))
    env = {**os.environ, "PYTHONPATH": ""}
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env=env)  # fmt: skip
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]

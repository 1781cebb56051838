"""The command line's entry point (handvox.cli.main): OpenMP's wait policy per command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from handvox.cli.main import openmp_wait_policy

_PROBE = """
import os, sys
from handvox.cli.main import build_parser, main
build_parser().parse_args(sys.argv[1:])
assert "torch" not in sys.modules, "torch loaded before the policy is set"
main(sys.argv[1:])
print(os.environ.get("OMP_WAIT_POLICY"), "torch" in sys.modules)
"""


@pytest.mark.parametrize(
    ("args", "policy"),
    [
        # inference in one process keeps OpenMP's default (passive waiting halved its frames/s)
        (["predict", "/nonexistent.png", "--camera", "nyu", "--out", "/nonexistent/o"], "None"),
        (["live", "--source", "/nonexistent"], "None"),
        # jobs beside other processes wait passively
        (["synth", "--out", "/nonexistent/x", "--frames", "0", "--seed", "1"], "PASSIVE"),
        (
            [
                "evaluate",
                "--dataset",
                "nyu",
                "--pred",
                "/nonexistent",
                "--gt",
                "/nonexistent",
                "--out",
                "/nonexistent/o",
            ],
            "PASSIVE",
        ),  # fmt: skip
    ],
)
def test_the_wait_policy_is_set_before_torch_loads(args, policy):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.stdout.split()[0] == policy, out.stderr
    assert openmp_wait_policy(args[0]) == (None if policy == "None" else policy)


def test_a_policy_in_the_environment_wins():
    env = {**os.environ, "OMP_WAIT_POLICY": "ACTIVE"}
    out = subprocess.run([sys.executable, "-c", _PROBE, "synth", "--out", "/nonexistent/x",
                          "--frames", "0", "--seed", "1"], env=env, capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert out.stdout.split()[0] == "ACTIVE", out.stderr

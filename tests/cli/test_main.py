"""The command line's entry point (handvox.cli.main): OpenMP's waiting per command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from handvox.cli.main import INFERENCE_SPINCOUNT, openmp_env

_PROBE = """
import os, sys
from handvox.cli.main import build_parser, main
build_parser().parse_args(sys.argv[1:])
assert "torch" not in sys.modules, "torch loaded before OpenMP's settings"
main(sys.argv[1:])
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("GOMP_SPINCOUNT"))
"""
_SYNTH = ["synth", "--out", "/nonexistent/x", "--frames", "0", "--seed", "1"]


def _probe(args: list[str], **env: str) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", _PROBE, *args], env={**base, **env},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.stdout, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize(
    ("args", "policy", "spin"),
    [
        # inference in one process: a short spin (passive waiting halved its frames/s, OpenMP's
        # default spin stalled it on a loaded machine)
        (["predict", "/nonexistent.png", "--camera", "nyu", "--out", "/nonexistent/o"], "None",
         str(INFERENCE_SPINCOUNT)),
        (["live", "--source", "/nonexistent"], "None", str(INFERENCE_SPINCOUNT)),
        # jobs beside other processes wait passively
        (_SYNTH, "PASSIVE", "None"),
        (["evaluate", "--dataset", "nyu", "--pred", "/nonexistent", "--gt", "/nonexistent",
          "--out", "/nonexistent/o"], "PASSIVE", "None"),
    ],
)  # fmt: skip
def test_openmp_is_set_before_torch_loads(args, policy, spin):
    assert _probe(args) == [policy, spin]
    expected = {k: v for k, v in (("OMP_WAIT_POLICY", policy), ("GOMP_SPINCOUNT", spin))
                if v != "None"}  # fmt: skip
    assert openmp_env(args[0]) == expected


def test_the_users_setting_wins():
    assert _probe(_SYNTH, OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "None"]
    assert _probe(["live", "--source", "/nonexistent"], OMP_WAIT_POLICY="PASSIVE") == [
        "PASSIVE", "None"
    ]  # fmt: skip

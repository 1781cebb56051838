"""README.md runs as written: every ``bash`` and ``python`` block after the set-up block, in order,
in a fresh copy of the checkout (``git clone`` of this one, or a copy of its tracked files), with
``../shared`` beside it, so that a doc change that breaks a step fails CI.

Sizes are shrunk so that the whole README runs in minutes, by rewriting only numbers and adding
stopping flags (:data:`SHRINK`, :data:`APPEND`); every command, path, option and order is the
README's. The set-up block (``make demo`` / ``make test``) is not run here: CI runs ``make
test`` itself, and ``make demo`` is the demo tests' (tests/cli/test_demo.py) and each session's
fresh-clone check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# (option, the most it keeps) applied to each command: sizes only, never made larger.
SHRINK = [
    ("--frames", 120),  # enough for a validation split
    ("--frames-limit", 2),
    ("--epochs", 1),
    ("--steps", 3),
    ("--chunk-size", 12),
    ("--shapes", 1),
    ("--views", 1),
]
# Flags added to commands that run long by their config rather than by a size on the line.
APPEND = {
    "handvox train ": "--max-steps 2 --val-every 2",
    "handvox train-locator ": "--val-frames 8",
    "handvox transfer ": "--frames-limit 2",  # IK per pose: 2 poses, not all 1,596
    "handvox train-check ": "--steps 3 --val-every 3",
    "handvox demo ": "--frames 24 --domain-frames 4",
    "handvox synth ": "--quiet",
}


def blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block of ``text``, in order."""
    return [(m[1], m[2]) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def commands(body: str) -> list[str]:
    """A shell block's commands: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    out = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def shrink(cmd: str) -> str:
    for option, most in SHRINK:
        cmd = re.sub(rf"{option} (\d+)\b", lambda m, o=option, n=most: f"{o} {min(int(m[1]), n)}",
                     cmd)  # fmt: skip
    for prefix, extra in APPEND.items():
        if cmd.startswith(prefix):
            cmd = f"{cmd} {extra}"
    return cmd


def test_blocks_are_found():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = blocks(text)
    assert found[0][0] == "bash" and "make demo" in found[0][1] and "make test" in found[0][1]
    assert sum(lang == "bash" for lang, _ in found) >= 2
    assert sum(lang == "python" for lang, _ in found) >= 2
    cmds = [c for lang, b in found[1:] if lang == "bash" for c in commands(b)]
    assert len(cmds) >= 20 and all(c.startswith("handvox ") for c in cmds), cmds
    assert shrink("handvox synth --out x --frames 20000 --seed 7") == (
        "handvox synth --out x --frames 120 --seed 7 --quiet"
    )
    assert shrink("handvox bench --frames 40 --steps 2") == "handvox bench --frames 40 --steps 2"


def _fresh_copy(dest: Path) -> Path:
    clone = dest / "handvox"
    if (ROOT / ".git").exists() and shutil.which("git"):
        # the working tree as it is (tracked files, and changes not yet committed)
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        diff = subprocess.run(
            ["git", "diff", "--binary", "HEAD"], cwd=ROOT, capture_output=True, check=True
        )
        if diff.stdout:
            subprocess.run(["git", "apply", "--allow-empty"], cwd=clone, input=diff.stdout,
                           check=True)  # fmt: skip
        listed = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout  # fmt: skip
        for name in listed.splitlines():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    else:
        shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns(".venv", "*.egg-info"))
    return clone


@pytest.mark.slow
@pytest.mark.integration
def test_readme_runs_as_written(shared, tmp_path):
    clone = _fresh_copy(tmp_path)
    (tmp_path / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    env = {
        **os.environ,
        # the handvox of this environment; the clone's own files (configs/) by relative path
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "2",
        "HANDVOX_SCAN_CACHE": str(tmp_path / "scan-cache"),
        "MPLBACKEND": "Agg",
    }
    text = (clone / "README.md").read_text(encoding="utf-8")
    ran = []
    for k, (lang, body) in enumerate(blocks(text)):
        if k == 0 or lang not in ("bash", "python"):
            continue  # the set-up block (module docstring), output samples
        if lang == "python":
            proc = subprocess.run([sys.executable, "-c", body], cwd=clone, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, f"README python block {k}:\n{body}\n{proc.stderr[-3000:]}"
            ran.append(f"python block {k}")
            continue
        for cmd in commands(body):
            small = shrink(cmd)
            proc = subprocess.run(["bash", "-c", small], cwd=clone, env=env,
                                  capture_output=True, text=True, timeout=600)  # fmt: skip
            assert proc.returncode == 0, (
                f"README command failed:\n{cmd}\nrun as:\n{small}\n{proc.stderr[-3000:]}"
            )
            ran.append(cmd)
    assert len(ran) >= 22
    # What the steps say they write is there.
    for path in ("eval-nyu/metrics.json", "frame.png", "synth-data/meta.json", "run1/best",
                 "pred/predictions.json", "ev/metrics.json", "model.onnx",
                 "demo-run1/report.md", "averaged/model.safetensors",
                 "check/model.safetensors"):  # fmt: skip
        assert (clone / path).exists(), path

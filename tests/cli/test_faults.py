"""Every writing command on a full disk, a read-only file system and an output path blocked by a
file: a clean error naming the path (exit 2, no traceback) and no temporary file left behind.

The full and read-only file systems are real ones (tmpfs mounts, so the kernel's own ENOSPC and
EROFS): those cases need the right to mount and are skipped without it; the blocked path runs
anywhere. ``benchmarks/faults.py`` runs the same matrix with random kills and records the figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from handvox.camera import Camera
from handvox.cli.bench import synthetic_frame
from handvox.cli.main import main
from handvox.io.predictions import save_xyz
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.generators import make_generator
from handvox.synth.job import synthesize
from tests.train.toy import toy_config

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.integration]

NYU = Camera.preset("nyu")
TOY_CAM = Camera(150.0, 150.0, 80.0, 60.0, 160, 120)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_model) -> dict[str, Path]:
    """What the commands read, on the ordinary disk: a depth frame, a toy dataset (labels and
    training data), a prediction file and a training config."""
    root = tmp_path_factory.mktemp("fault_inputs")
    np.save(root / "frame.npy", np.rint(synthetic_frame(NYU)).astype(np.float32))
    gen, info = make_generator("toy", TOY_CAM)
    synthesize(root / "toy", gen, TOY_CAM, 40, seed=3, chunk_size=20, generator_info=info,
               progress=False)  # fmt: skip
    ds = SyntheticDataset(root / "toy", load_clean=False)
    save_xyz(root / "pred.txt", np.asarray(ds.joints_xyz, np.float64) + 4.0, TOY_CAM, "uvd")
    cfg = dataclasses.replace(toy_config(root / "toy"), epochs=1)
    (root / "train.json").write_text(json.dumps(cfg.to_dict()))
    return {"root": root, "model": tiny_model}


def _argv(command: str, out: Path, i: dict[str, Path]) -> list[str]:
    r = i["root"]
    return {
        "synth": ["synth", "--out", str(out), "--frames", "24", "--seed", "1", "--generator",
                  "toy", "--camera", "150,150,80,60,160,120", "--chunk-size", "8", "--quiet"],
        "predict": ["predict", str(r / "frame.npy"), "--model", str(i["model"]), "--camera",
                    "nyu", "--out", str(out), "--overlay", "--quiet"],
        "show": ["show", str(r / "frame.npy"), "--camera", "nyu", "--out", str(out / "s.png")],
        "evaluate": ["evaluate", "--dataset", "synthetic", "--gt", str(r / "toy"), "--pred",
                     str(r / "pred.txt"), "--out", str(out)],
        "train": ["train", "--config", str(r / "train.json"), "--out", str(out), "--quiet"],
        "average": ["average", str(i["model"]), str(i["model"]), "--out", str(out),
                    "--bn-batches", "0"],
    }[command]  # fmt: skip


COMMANDS = ["synth", "predict", "show", "evaluate", "train", "average"]


def _mount(point: Path, options: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip() or proc.returncode})")


@pytest.fixture()
def mounts(tmp_path):
    """``mounts(name, options) -> Path``: a fresh tmpfs, unmounted after the test."""
    done = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        _mount(point, options)
        done.append(point)
        return point

    yield mount
    for point in reversed(done):
        subprocess.run(["umount", "-l", str(point)], check=False)


def _fill(point: Path, leave: int) -> None:
    """Fill the file system at ``point`` until ``leave`` bytes are free."""
    free = os.statvfs(point).f_bavail * os.statvfs(point).f_frsize
    with open(point / "filler", "wb") as f:
        f.write(bytes(max(0, free - leave)))


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


def _check_clean_error(rc: int, err: str, where: Path, words: tuple[str, ...]) -> None:
    assert rc == 2, err
    assert "Traceback" not in err and "error:" in err, err
    assert str(where) in err, err
    assert any(w in err for w in words), err
    assert not _temporaries(where), _temporaries(where)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_disk_is_a_clean_error_with_nothing_half_written(command, inputs, mounts, capsys):
    disk = mounts("full", "size=2m")
    _fill(disk, leave=8192)  # room for a small file, not for an image or a chunk
    out = disk / "out"
    rc = main(_argv(command, out, inputs))
    err = capsys.readouterr().err
    _check_clean_error(rc, err, disk, ("No space left on device",))
    assert "the disk is full" in err
    # What is left is whole: no file of the command's ends short (every JSON parses).
    for p in out.rglob("*.json") if out.exists() else []:
        json.loads(p.read_text())


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_file_system_is_a_clean_error(command, inputs, mounts, capsys):
    ro = mounts("ro", "size=1m,ro")
    rc = main(_argv(command, ro / "out", inputs))
    err = capsys.readouterr().err
    _check_clean_error(rc, err, ro, ("Read-only file system",))
    assert not (ro / "out").exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_an_output_path_blocked_by_a_file_is_a_clean_error(command, inputs, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    out = tmp_path / "blocker" / "out"
    rc = main(_argv(command, out, inputs))
    err = capsys.readouterr().err
    _check_clean_error(rc, err, tmp_path / "blocker", ("Not a directory", "File exists"))
    assert ".tmp" not in err  # the path asked for, not a temporary's
    assert (tmp_path / "blocker").read_text() == "a file where a folder should be"


def test_undecodable_output_paths_are_printed_escaped(inputs, tmp_path):
    """A folder name of bytes that are not UTF-8 (the issue's UnicodeEncodeError on output)."""
    out = os.fsencode(tmp_path) + b"/out\xff\xfe"
    argv = [os.fsencode(a) for a in _argv("synth", Path("X"), inputs)]
    argv[argv.index(b"X")] = out
    proc = subprocess.run([sys.executable, "-m", "handvox.cli", *argv], capture_output=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert b"out\\udcff\\udcfe" in proc.stdout, proc.stdout  # escaped, not a crash
    assert os.path.isdir(out + b"/chunks")

"""Training of the hand locator (handvox.train.locator): its data, its loop, its command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handvox.errors import DataError
from handvox.estimator.locate import decode, load_locator, locator_input
from handvox.synth.frame import frame_rng
from handvox.synth.hand import hand_frame_generator
from handvox.synth.hand_config import SCENE_PARTS
from handvox.train.locator import (
    LOCATOR_SCENES,
    WAVE_SCENES,
    LocatorTrainConfig,
    _apportion,
    _make,
    kept_scenes,
    locator_sample,
    make_locator_data,
    scene_config,
    train_locator,
)


def test_scenes_share_all_frames_and_hold_out_the_test_shape():
    assert sum(s.share for s in LOCATOR_SCENES) == pytest.approx(1.0)
    for scene in LOCATOR_SCENES:
        _, config = scene_config(scene)
        assert "small_female" not in config.shapes  # the protocol's test shape
    # any frame count splits into whole per-scene counts that add up to it
    for frames in (7, 10, 16000):
        counts = _apportion(frames, [s.share for s in LOCATOR_SCENES])
        assert sum(counts) == frames and min(counts) >= 0
    assert _apportion(16000, [s.share for s in LOCATOR_SCENES]) == [
        round(16000 * s.share) for s in LOCATOR_SCENES
    ]


def test_a_sample_holds_the_grid_the_hand_and_its_centre():
    camera, config = scene_config(LOCATOR_SCENES[1])
    frame = hand_frame_generator(config)(0, frame_rng(5, 0))
    depth, hand, centre = locator_sample(frame, camera)
    assert depth.shape == hand.shape == (120, 160) and depth.dtype == np.uint16
    part = frame.extra["part"][::4, ::4]
    assert hand.any() and not hand[part == SCENE_PARTS.index("body")].any()
    truth = camera.xyz_to_uvd(frame.joints_xyz["canonical21"].mean(0).astype(float))
    assert np.allclose(centre, [truth[0] / 4, truth[1] / 4, truth[2]], atol=1e-3)
    # the hand's cells lie around the centre, and the raw depth is kept in whole mm
    rows, cols = np.nonzero(hand & (part != SCENE_PARTS.index("forearm")))
    assert abs(cols.mean() - centre[0]) < 15 and abs(rows.mean() - centre[1]) < 15
    assert np.array_equal(depth, np.rint(np.nan_to_num(frame.raw[::4, ::4])).astype(np.uint16))
    # on a coarser grid: every 8th pixel, the centre in its cells
    depth80, hand80, centre80 = locator_sample(frame, camera, grid_width=80)
    assert depth80.shape == hand80.shape == (60, 80)
    assert np.array_equal(depth80, depth[::2, ::2]) and np.array_equal(hand80, hand[::2, ::2])
    assert np.allclose(centre80, [truth[0] / 8, truth[1] / 8, truth[2]], atol=1e-3)


def _fake_data(path, n: int, seed: int) -> None:
    """Frames of a flat disc (the "hand") before a wall: enough for the loop to learn from."""
    rng = np.random.default_rng(seed)
    depth = np.full((n, 120, 160), 1500, np.uint16)
    hand = np.zeros((n, 120, 160), bool)
    centre = np.zeros((n, 3), np.float32)
    rows, cols = np.mgrid[:120, :160]
    for i in range(n):
        c, r, d = rng.uniform(30, 130), rng.uniform(30, 90), rng.uniform(400, 900)
        disc = (cols - c) ** 2 + (rows - r) ** 2 < 100
        depth[i][disc], hand[i] = d, disc
        centre[i] = c, r, d + 20
    np.savez(path, depth=depth, hand=hand, centre=centre, scene=np.ones(n, np.uint8))


def _fake_run(tmp_path, name: str, steps: int, val_every: int):
    """A small locator trained on :func:`_fake_data` (train.npz, val.npz in ``tmp_path``)."""
    _fake_data(tmp_path / "train.npz", 64, 0)
    _fake_data(tmp_path / "val.npz", 16, 1)
    cfg = LocatorTrainConfig(steps=steps, val_every=val_every, batch_size=8, width=8,
                             warmup_steps=5)  # fmt: skip
    torch.manual_seed(0)
    return train_locator(tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / name, cfg)


def test_training_learns_resumes_and_keeps_the_best(tmp_path):
    best = _fake_run(tmp_path, "run", 60, 30)
    info = json.loads((best / "config.json").read_text())
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    first, last = state["log"][0], state["log"][-1]
    assert state["step"] == 60 and [r["step"] for r in state["log"]] == [30, 60]
    assert last["val_mean_mm"] < first["val_mean_mm"] or last["val_mean_mm"] < 30
    assert info["validation"]["val_mean_mm"] == min(r["val_mean_mm"] for r in state["log"])
    load_locator(best)
    # a longer run in the same folder continues from step 60, not from scratch
    longer = LocatorTrainConfig(steps=90, val_every=30, batch_size=8, width=8, warmup_steps=5)
    train_locator(tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / "run", longer)
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=False)
    assert [r["step"] for r in state["log"]] == [30, 60, 90]
    # a fine-tune starts from the weights it is given: at a vanishing rate it validates as they do
    tune = LocatorTrainConfig(steps=1, val_every=1, batch_size=8, width=8, warmup_steps=1,
                              lr=1e-12, init=str(best))  # fmt: skip
    tuned = train_locator(tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / "tune", tune)
    got = json.loads((tuned / "config.json").read_text())["validation"]["val_mean_mm"]
    # (batch norm's running statistics move with the one step's batch, the weights do not)
    kept = json.loads((best / "config.json").read_text())["validation"]["val_mean_mm"]
    assert got == pytest.approx(kept, rel=0.2)
    assert got < first["val_mean_mm"] or got < 30
    wide = LocatorTrainConfig(steps=1, width=16, init=str(best))
    with pytest.raises(ValueError, match="a locator of width 8 on a grid 160 across, not the"):
        train_locator(tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / "wide", wide)
    # frames on one grid do not train a locator of another
    coarse = LocatorTrainConfig(steps=1, width=8, grid_width=80)
    with pytest.raises(ValueError, match="train.npz: frames 160 cells across, not on the grid 80"):
        train_locator(tmp_path / "train.npz", tmp_path / "val.npz", tmp_path / "run80", coarse)


def test_a_fine_tune_that_keeps_its_start_moves_less_on_the_scenes_it_knew(tmp_path):
    start = _fake_run(tmp_path, "start", 40, 40)
    # the fake frames are scene 1 of the shipped set, which the start was trained on
    assert kept_scenes(start, "shipped") == [True] * len(LOCATOR_SCENES)
    assert kept_scenes(start, "wave") == [True] * 6 + [False]
    # new targets for the same frames: the centre 12 cells to the right of the disc
    with np.load(tmp_path / "train.npz") as z:
        moved = {k: z[k] for k in z.files}
    moved["centre"][:, 0] += 12
    np.savez(tmp_path / "moved.npz", **moved)

    def drift(keep: float, **kw) -> float:
        kw = {"steps": 30, "width": 8, "init": str(start), **kw}
        tune = LocatorTrainConfig(val_every=30, batch_size=8, warmup_steps=1, lr=2e-3, keep=keep,
                                  **kw)  # fmt: skip
        torch.manual_seed(0)
        run = tmp_path / f"keep{keep}-{len(kw)}"
        out = train_locator(tmp_path / "moved.npz", tmp_path / "val.npz", run, tune)
        x = torch.from_numpy(np.load(tmp_path / "val.npz")["depth"]).float()
        x = locator_input(x, 1, 5000.0, 10.0)
        with torch.no_grad():
            a = decode(load_locator(start)(x), x).centre[:, 0]
            b = decode(load_locator(out)(x), x).centre[:, 0]
        return float((a - b).abs().mean())

    free, kept = drift(0.0), drift(10.0)
    # without it the centres follow the new targets (12 cells); with it they stay near
    assert free > 8 and kept < free / 4
    # the outputs kept may be another locator's (a teacher): here a copy of the start's, as kept
    import shutil

    shutil.copytree(start, tmp_path / "teacher")
    assert drift(10.0, teacher=str(tmp_path / "teacher")) == pytest.approx(kept, abs=1e-4)
    # a teacher must read the run's grid
    coarse = {**moved, "depth": moved["depth"][:, ::2, ::2], "hand": moved["hand"][:, ::2, ::2]}
    np.savez(tmp_path / "coarse.npz", **coarse)
    with pytest.raises(ValueError, match="start.best reads a grid 160 across, not the run's 80"):
        train_locator(tmp_path / "coarse.npz", tmp_path / "coarse.npz", tmp_path / "y",
                      LocatorTrainConfig(steps=1, width=8, grid_width=80, keep=1.0,
                                         teacher=str(start)))  # fmt: skip
    with pytest.raises(ValueError, match="keep: whose outputs to keep. Give a teacher or an init"):
        train_locator(tmp_path / "moved.npz", tmp_path / "val.npz", tmp_path / "x",
                      LocatorTrainConfig(steps=1, width=8, keep=1.0))  # fmt: skip
    # a start with no record of its scenes is named
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text('{"width": 8}')
    with pytest.raises(DataError, match="bare.*no record of the scenes it was trained on"):
        kept_scenes(tmp_path / "bare", "shipped")


@pytest.mark.slow
def test_train_locator_command_renders_then_trains(tmp_path):
    from handvox.cli.main import main

    out = tmp_path / "loc"
    args = ["train-locator", "--out", str(out), "--frames", "20", "--val-frames", "10",
            "--steps", "4", "--val-every", "2", "--batch-size", "4", "--workers", "1"]  # fmt: skip
    assert main(args) == 0
    with np.load(out / "data" / "train-20.npz") as z:
        scenes = set(range(len(LOCATOR_SCENES)))
        assert len(z["depth"]) == 20 and set(z["scene"].tolist()) <= scenes
    assert (out / "best" / "model.safetensors").is_file()
    # a fine-tune of that locator, on the same frames (the data folder reused), with its rate
    tune = tmp_path / "tune"
    (tune / "data").mkdir(parents=True)
    for name in ("train-20.npz", "val-10.npz"):
        (tune / "data" / name).symlink_to(out / "data" / name)
    targs = [*args[:2], str(tune), *args[3:], "--init", str(out / "best"), "--lr", "1e-4",
             "--flip-prob", "0"]  # fmt: skip
    assert main(targs) == 0
    cfg = json.loads((tune / "best" / "config.json").read_text())["train_config"]
    assert cfg["init"] == str(out / "best") and cfg["lr"] == 1e-4 and cfg["flip_prob"] == 0.0
    # A second writer of the run is refused while the first holds it (here: this process).
    from handvox.atomic import writer_lock

    with writer_lock(out, "train-locator", "a locator training run"):
        assert main(args) == 2


def test_the_waving_scene_set_renders_the_shipped_frames_and_people_waving(tmp_path):
    from handvox.cli.main import main

    # the first six scenes keep their seeds: frame i is the shipped data's frame i
    for k in (0, 5):
        _, shipped = _make((k, 0, 2, 160, "shipped"))
        _, wave = _make((k, 0, 2, 160, "wave"))
        assert all(np.array_equal(shipped[n], wave[n]) for n in shipped)
    assert WAVE_SCENES[6].settings["view"] == "wave" and sum(s.share for s in WAVE_SCENES) == 1
    out = tmp_path / "wave"
    args = ["train-locator", "--out", str(out), "--frames", "20", "--val-frames", "10",
            "--steps", "2", "--val-every", "2", "--batch-size", "4", "--workers", "1",
            "--scenes", "wave"]  # fmt: skip
    assert main(args) == 0
    with np.load(out / "data" / "train-20-wave.npz") as z:
        assert 6 in z["scene"].tolist()  # two frames of people waving
    info = json.loads((out / "best" / "config.json").read_text())
    assert info["scene_set"] == "wave" and len(info["scenes"]) == 7
    # those frames are not the shipped scenes': a run that takes them for those is refused
    data = out / "data"
    cfg = LocatorTrainConfig(steps=1, batch_size=4)
    with pytest.raises(ValueError, match="another set of scenes"):
        train_locator(data / "train-20-wave.npz", data / "val-10-wave.npz", tmp_path / "x", cfg)


def test_rendering_resumes_from_the_blocks_done(tmp_path):
    path = tmp_path / "d.npz"
    parts = tmp_path / "d.npz.parts"
    parts.mkdir()
    # a block "already done" by an interrupted run (scene 0, frames 0-1): reused, not redrawn
    fake = {"depth": np.full((2, 120, 160), 7, np.uint16), "hand": np.zeros((2, 120, 160), bool),
            "centre": np.zeros((2, 3), np.float32), "scene": np.zeros(2, np.uint8)}  # fmt: skip
    np.savez(parts / "0-0-2.npz", **fake)
    make_locator_data(path, 10, workers=1, block=2)
    with np.load(path) as z:
        assert len(z["depth"]) == 10 and (z["depth"][:2] == 7).all()
        assert not (z["depth"][2:] == 7).all()
        # scene then frame order: scene ids never decrease
        assert (np.diff(z["scene"].astype(int)) >= 0).all()
    assert not parts.exists()

"""``handvox train`` on a tiny toy synthetic dataset: learning, refinement pre-training and
fine-tuning, exact resumption, DDP under torchrun, logs, model folders, the validation split."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from handvox.camera import Camera
from handvox.cli.main import build_parser
from handvox.cli.train import config_from_args
from handvox.errors import HandvoxError
from handvox.estimator.networks import PoseNetConfig, RefineNetConfig
from handvox.estimator.segment import segment_hand
from handvox.estimator.volume import VolumeConfig, decode_joints, projective_tsdf
from handvox.estimator.weights import EstimatorConfig, load_model
from handvox.io.datasets import DatasetSpec
from handvox.io.synthetic import SyntheticDataset
from handvox.synth.generators import make_generator
from handvox.synth.job import synthesize
from handvox.train.data import epoch_plan, split_frames
from handvox.train.trainer import LOG_FIELDS, TrainConfig, train

# A quarter-size NYU camera keeps images, segmentation and TSDFs cheap.
CAMERA = Camera.from_string("147,147,80,60,160,120")
FRAMES = 160


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    gen, info = make_generator("toy", CAMERA)
    synthesize(root, gen, CAMERA, FRAMES, seed=3, chunk_size=64, generator_info=info,
               progress=False)  # fmt: skip
    return root


def tiny_estimator(refine: bool = False, dropout: float = 0.0) -> EstimatorConfig:
    return EstimatorConfig(
        joint_set="canonical21",
        volume=VolumeConfig(size=16, voxel_mm=18.75),
        pose=PoseNetConfig(input_size=16, channels=(4, 4), fc=(64,), dropout=dropout,
                           num_joints=21),
        refine=RefineNetConfig(encoder=((8, 8), (16, 16)), bottleneck=(16, 16),
                               decoder=((16, 16), (8, 8))) if refine else None,
    )  # fmt: skip


def config(toy: Path, **kw) -> TrainConfig:
    base = dict(
        data=(DatasetSpec("synthetic", str(toy)),),
        estimator=tiny_estimator(kw.pop("refine", False), kw.pop("dropout", 0.0)),
        epochs=3, batch_size=8, lr=1e-3, num_workers=0, val_fraction=0.2, val_block=10,
        progress=False,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def read_log(out: Path) -> list[dict[str, str]]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_training_learns_and_writes_a_loadable_model(toy, tmp_path):
    out = tmp_path / "run"
    res = train(config(toy, num_workers=1), out)
    assert res.finished and res.step == 3 * 15  # 120 training frames, batches of 8
    untrained, best = res.log[0]["val_mm"], res.best["val_mm"]
    assert res.log[0]["step"] == 0 and 50 < untrained < 120
    assert best < 0.6 * untrained, (untrained, best)
    assert res.best["val_pct50"] > res.log[0]["val_pct50"]

    rows = read_log(out)
    assert list(rows[0]) == list(LOG_FIELDS) and len(rows) == 4
    assert [float(r["epoch"]) for r in rows] == [0, 1, 2, 3]
    assert float(rows[-1]["train_loss"]) < float(rows[1]["train_loss"])
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # The best model folder loads and, run by hand through segmentation, TSDF and pose net on
    # the validation frames of split.json, gives the validation error the log reports.
    est = load_model(out / "best")
    assert est.config == config(toy).estimator and est.refine_net is None
    assert est.meta["mode"] == "pose" and est.meta["best_val"]["val_mm"] == best
    assert est.meta["train_config"]["epochs"] == 3 and "command" in est.meta
    assert load_model(out / "last").meta["step"] == res.step
    split = json.loads((out / "split.json").read_text())["sources"][0]
    ds = SyntheticDataset(toy, load_clean=False)
    errs = []
    for i in split["val"]:
        rec = ds[i]
        seg = segment_hand(rec.depth, CAMERA, est.config.segment)
        com = torch.from_numpy(seg.com_xyz)[None]
        vol = projective_tsdf(torch.from_numpy(rec.depth)[None], com, CAMERA, est.config.volume,
                              torch.from_numpy(seg.mask)[None])  # fmt: skip
        with torch.no_grad():
            xyz = decode_joints(est.pose_net(vol), com, est.config.pose.target_scale_mm)
        errs.append(np.linalg.norm(xyz[0].numpy() - rec.joints_xyz, axis=-1))
    assert np.mean(errs) == pytest.approx(best, rel=1e-5)


def test_validation_split_is_disjoint_and_deterministic(toy, tmp_path):
    a = split_frames(1000, 0.1, 50, seed=0)
    assert a.sum() == 100 and np.array_equal(a, split_frames(1000, 0.1, 50, seed=0))
    assert not np.array_equal(a, split_frames(1000, 0.1, 50, seed=1))
    assert np.all(a.reshape(20, 50).all(1) | ~a.reshape(20, 50).any(1))  # whole blocks
    # In a run: the recorded split is disjoint, covers every frame, and a second run (another
    # training seed) validates on the same frames.
    splits = []
    for seed in (0, 1):
        train(config(toy, epochs=0, seed=seed), tmp_path / f"s{seed}")
        splits.append(json.loads((tmp_path / f"s{seed}" / "split.json").read_text()))
    s = splits[0]["sources"][0]
    assert not set(s["train"]) & set(s["val"])
    assert sorted(s["train"] + s["val"]) == list(range(FRAMES)) and len(s["val"]) == 40
    assert splits[0] == splits[1]


def test_refine_pretraining_then_finetuning(toy, tmp_path):
    pre = train(config(toy, mode="refine", refine=True, epochs=5), tmp_path / "refine")
    untrained, best = pre.log[0]["val_tsdf"], pre.best["val_tsdf"]
    # The best constant volume (each voxel's mean over the validation frames) scores ~0.12
    # here: a net that learned nothing about the input cannot beat it.
    split = json.loads((tmp_path / "refine" / "split.json").read_text())["sources"][0]
    ds, cfg = SyntheticDataset(toy), config(toy).estimator.volume
    clean = []
    for i in split["val"]:
        rec = ds[i]
        seg, cseg = segment_hand(rec.depth, CAMERA), segment_hand(rec.clean_depth, CAMERA)
        clean.append(projective_tsdf(torch.from_numpy(rec.clean_depth)[None],
                                     torch.from_numpy(seg.com_xyz)[None], CAMERA, cfg,
                                     torch.from_numpy(cseg.mask)[None]))  # fmt: skip
    clean = torch.cat(clean)
    constant = float(((clean - clean.mean(0)) ** 2).mean())
    assert best < 0.5 * constant and best < 0.3 * untrained, (untrained, constant, best)
    refine_model = load_model(tmp_path / "refine" / "best")
    assert refine_model.meta["trained"] == ["refine"]

    # Fine-tuning starts from the pre-trained refinement net: before any step its validation
    # TSDF error is the pre-training's best.
    ft = train(config(toy, mode="finetune", refine=True, epochs=1, refine_weight=0.1,
                      init=str(tmp_path / "refine" / "best")), tmp_path / "ft")  # fmt: skip
    assert ft.log[0]["val_tsdf"] == pytest.approx(best, rel=1e-5)
    assert ft.best["val_mm"] < ft.log[0]["val_mm"]
    model = load_model(tmp_path / "ft" / "best")
    assert model.refine_net is not None and model.meta["trained"] == ["pose", "refine"]

    with pytest.raises(ValueError, match="init"):
        config(toy, mode="finetune")


def test_pose_run_continues_from_init(toy, tmp_path):
    """A pose run with ``init`` starts from that model's pose net (its first validation is the
    init's best); a pose net of another shape is refused instead of silently started afresh."""
    first = train(config(toy, epochs=2), tmp_path / "first")
    cont = train(config(toy, epochs=1, lr=3e-4, init=str(tmp_path / "first" / "best")),
                 tmp_path / "cont")  # fmt: skip
    assert cont.log[0]["val_mm"] == pytest.approx(first.best["val_mm"], rel=1e-5)
    assert cont.log[0]["val_mm"] < 0.9 * first.log[0]["val_mm"]
    other = dataclasses.replace(
        tiny_estimator(), pose=dataclasses.replace(tiny_estimator().pose, fc=(32,))
    )
    with pytest.raises(HandvoxError, match="pose net differs"):
        train(config(toy, estimator=other, init=str(tmp_path / "first" / "best")),
              tmp_path / "bad")  # fmt: skip


def test_keep_checkpoints_then_average(toy, tmp_path):
    """keep_checkpoints keeps the model of every validation; their average is a working model."""
    from handvox.estimator.weights import average_models

    args = build_parser().parse_args(["train", "--data", f"synthetic:{toy}", "--out", "x",
                                      "--keep-checkpoints"])  # fmt: skip
    assert config_from_args(args)[0].keep_checkpoints
    out = tmp_path / "run"
    res = train(config(toy, epochs=2, keep_checkpoints=True), out)
    kept = sorted((out / "checkpoints").iterdir())
    assert [p.name for p in kept] == ["step0000000", "step0000015", f"step{res.step:07d}"]
    assert _weights(kept[-1]).keys() == _weights(out / "last").keys()
    for k, v in _weights(out / "last").items():
        assert torch.equal(v, _weights(kept[-1])[k])
    first, final = _weights(kept[0]), _weights(kept[-1])
    assert any(not torch.equal(first[k], final[k]) for k in first)  # training moved them
    average_models(kept[1:], tmp_path / "avg")
    assert load_model(tmp_path / "avg").meta["averaged_from"][0]["step"] == 15


def test_shipped_recipe_configs_chain():
    """configs/: the shipped model's recipe: the fine-tuning config starts from the base run's
    best checkpoint with the same networks and data (only the schedule and augmentation move)."""
    root = Path(__file__).resolve().parents[1] / "configs"
    base, ft, swa = (TrainConfig.from_dict(json.loads((root / f).read_text()))
                     for f in ("default_model.json", "default_finetune.json",
                               "default_swa.json"))  # fmt: skip
    assert ft.init == "runs/default/best" and ft.mode == base.mode == "pose"
    assert ft.estimator.pose == base.estimator.pose and ft.estimator.volume == base.estimator.volume
    assert ft.data == base.data and ft.lr < base.lr
    assert ft.augment.label_centre_prob == 0 and ft.estimator.recentre == 0
    # stage 3 continues stage 2 at a constant rate, keeping a model at each validation
    assert swa.init == "runs/default-ft/last" and swa.keep_checkpoints
    assert swa.lr_schedule == "constant" and swa.lr < ft.lr
    assert (swa.estimator, swa.augment, swa.data) == (ft.estimator, ft.augment, ft.data)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


class Killed(Exception):
    pass


def test_resume_continues_exactly(toy, tmp_path):
    """Killed between checkpoints (steps after the last one are lost) and resumed, or stopped
    by max_steps and resumed: the same weights, bit for bit, and the same log."""
    cfg = config(toy, epochs=2, batch_size=16, dropout=0.3, checkpoint_every=3,
                 deterministic=True)  # fmt: skip
    whole = train(cfg, tmp_path / "whole")
    assert whole.step == 16

    def kill_at_11(step: int) -> None:
        if step == 11:  # epoch 2, step 3 of 8; the last checkpoint is step 9
            raise Killed

    with pytest.raises(Killed):
        train(cfg, tmp_path / "killed", on_step=kill_at_11)
    state = torch.load(tmp_path / "killed" / "train_state.pt", weights_only=True)
    assert (state["step"], state["epoch"], state["step_in_epoch"]) == (9, 1, 1)
    resumed = train(cfg, tmp_path / "killed")

    part = train(cfg, tmp_path / "stopped", max_steps=5)
    assert not part.finished and part.step == 5
    resumed2 = train(cfg, tmp_path / "stopped", resume=True)

    for run, res in (("killed", resumed), ("stopped", resumed2)):
        assert res.finished and res.step == whole.step
        for name in ("last", "best"):
            a, b = _weights(tmp_path / "whole" / name), _weights(tmp_path / run / name)
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a), (run, name)
        strip = [{k: v for k, v in r.items() if k != "time_s"} for r in read_log(tmp_path / run)]
        assert strip == [{k: v for k, v in r.items() if k != "time_s"}
                         for r in read_log(tmp_path / "whole")]  # fmt: skip

    # A folder holding another run's state is not silently mixed with a new config.
    with pytest.raises(HandvoxError, match="lr"):
        train(dataclasses.replace(cfg, lr=5e-4), tmp_path / "whole")
    with pytest.raises(HandvoxError, match="no training state"):
        train(cfg, tmp_path / "nothing", resume=True)


def test_ddp_two_processes_with_torchrun(toy, tmp_path):
    cfg = config(toy, epochs=1, batch_size=8)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    out = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "handvox.cli", "train",
           "--config", str(cfg_path), "--out", str(out), "--device", "cpu", "--quiet"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(out / "train_state.pt", weights_only=True)
    # 120 training frames shared by 2 processes in batches of 8: 8 steps each.
    assert state["world_size"] == 2 and state["step"] == 8 and state["epoch"] == 1
    rows = read_log(out)
    assert len(rows) == 2 and float(rows[1]["val_mm"]) < float(rows[0]["val_mm"])
    est = load_model(out / "best")
    assert est.config == cfg.estimator
    assert proc.stdout.count('"best"') == 1  # one summary: only rank 0 reports


def test_data_specs_mixing_and_cli_config(toy, tmp_path):
    s = DatasetSpec.parse("nyu:/data/nyu?kinect=2@0.5")
    assert (s.kind, s.root, s.weight, s.options) == ("nyu", "/data/nyu", 0.5, (("kinect", "2"),))
    with pytest.raises(ValueError, match="test split"):
        TrainConfig(data=(DatasetSpec.parse("icvl:/data/icvl?split=test"),))

    pools = [np.arange(0, 100), np.arange(100, 110)]
    plan = epoch_plan(pools, [1.0, 1.0], seed=0, epoch=0)
    assert len(plan) == 110 and (plan >= 100).sum() == 55  # the small source repeated
    assert np.array_equal(plan, epoch_plan(pools, [1.0, 1.0], seed=0, epoch=0))
    assert sorted(epoch_plan(pools, None, 0, 1)) == list(range(110))

    parser = build_parser()
    args = parser.parse_args(["train", "--data", f"synthetic:{toy}", "--out", str(tmp_path),
                              "--small", "--epochs", "2", "--mode", "joint"])  # fmt: skip
    cfg, resume = config_from_args(args)
    assert resume is None and cfg.epochs == 2 and cfg.batch_size == 6 and cfg.lr == 1e-4
    assert cfg.estimator.volume.size == 32 and cfg.estimator.refine is not None
    assert cfg.tsdf_weight == 1.0 and TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(HandvoxError, match="no training data"):
        config_from_args(parser.parse_args(["train", "--out", str(tmp_path / "x")]))
    assert isinstance(args, argparse.Namespace)


def test_frames_without_a_hand_are_skipped_and_counted(tmp_path):
    # Half the frames are blank: segmentation finds nothing there.
    root = tmp_path / "blank"
    gen, info = make_generator("toy", CAMERA)

    def half_blank(i, rng):
        f = gen(i, rng)
        if i % 2:
            f.raw[:] = 0
        return f

    synthesize(root, half_blank, CAMERA, 60, seed=1, chunk_size=60, progress=False)
    res = train(config(root, epochs=1), tmp_path / "out")
    val = split_frames(60, 0.2, 10, seed=0)
    assert res.skipped["no_hand"] == sum(i % 2 for i in np.flatnonzero(~val)) == 20
    assert res.skipped["val_no_hand"] == 10 and res.skipped["outside_cube"] == 0
    split = json.loads((tmp_path / "out" / "split.json").read_text())["sources"][0]
    assert all(i % 2 == 0 for i in split["train"] + split["val"])
    shutil.rmtree(tmp_path / "out")


def test_scan_keeps_the_segmentation_masks(toy, tmp_path):
    # Training reuses the scan's bit-packed masks instead of segmenting every sample again: they
    # must be the masks segment_hand gives, and the saved scan must load back the same.
    res = train(config(toy, epochs=0), tmp_path / "run")
    assert res.finished
    (scan_file,) = (tmp_path / "run" / "scan").glob("*.npz")
    from handvox.train.data import Scan

    with np.load(scan_file) as z:
        scan = Scan(**{k: z[k] for k in z.files})
    ds = SyntheticDataset(toy, load_clean=False)
    for i in (0, 7, len(ds) - 1):
        rec = ds[i]
        seg = segment_hand(rec.depth, CAMERA)
        assert seg.found and np.array_equal(scan.mask(i, rec.depth.shape), seg.mask)
        np.testing.assert_allclose(scan.com[i], seg.com_xyz)


def test_label_centred_samples_and_bf16_autocast(toy, tmp_path):
    from handvox.train.augment import AugmentConfig
    from handvox.train.data import Samples, _prepare_frames
    from handvox.train.trainer import _Dist

    aug = AugmentConfig(rotation_deg=0, scale=(1, 1), com_jitter_mm=0, label_centre_prob=1.0)
    cfg = config(toy, augment=aug, amp="bf16", epochs=1)
    frames = _prepare_frames(cfg, cfg.estimator, tmp_path, _Dist())
    samples: Samples = frames.samples
    ds = SyntheticDataset(toy, load_clean=False)
    for i in (1, 5):
        train_s = samples[(i, 0, i)]  # a training sample: centred on the labelled joints' mean
        val_s = samples[(i, -1, 0)]  # validation: the segmentation's COM
        np.testing.assert_allclose(train_s["com"].numpy(), ds[i].joints_xyz.mean(0), atol=1e-4)
        np.testing.assert_allclose(val_s["com"].numpy(), samples.coms[i])
        assert np.abs(train_s["com"].numpy() - val_s["com"].numpy()).max() > 1.0
    # bf16 autocast trains (the loss falls on this toy set as in float32)
    res = train(dataclasses.replace(cfg, epochs=2), tmp_path / "run")
    assert res.finished and res.best["val_mm"] < res.log[0]["val_mm"]


def test_total_steps_ends_within_an_epoch_and_is_not_exceeded(toy, tmp_path):
    # 120 training frames in batches of 8 = 15 steps an epoch; 20 steps end in epoch 2.
    cfg = config(toy, epochs=10, total_steps=20, lr_schedule="cosine")
    res = train(cfg, tmp_path / "run")
    assert res.finished and res.step == 20
    last = res.log[-1]
    assert last["step"] == 20 and last["epoch"] == pytest.approx(1 + 5 / 15, abs=1e-3)
    # the cosine schedule spans the 20 steps: the last one ran at step 19 of 20
    assert last["lr"] == pytest.approx(cfg.lr * 0.5 * (1 + np.cos(np.pi * 19 / 20)))
    assert load_model(tmp_path / "run" / "last").meta["step"] == 20
    again = train(cfg, tmp_path / "run")  # finished: resuming trains nothing more
    assert again.step == 20 and len(again.log) == len(res.log)
    # max_steps on a run already past it: not one step more
    stopped = train(config(toy, epochs=1), tmp_path / "short", max_steps=4)
    assert stopped.step == 4 and not stopped.finished
    assert train(config(toy, epochs=1), tmp_path / "short", max_steps=4).step == 4
